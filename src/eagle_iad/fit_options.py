"""Every option of a fit, declared once: the ``eagle fit`` flags, the service's fit options, the
OpenAPI schema of ``POST /v1/categories/{name}/fit`` (hence the TypeScript client's ``FitOptions``
and the console's form choices) and :class:`~eagle_iad.expert.ExpertConfig`'s defaults all read
this table.

A threshold rule's parameters join the table from the rule registry
(:data:`eagle_iad.tgps.thresholds.THRESHOLD_RULES`), so a rule registered by a plugin gets its
flag, its service option and its schema entry without touching this file; a preprocessing mode a plugin
registered joins ``preprocess``'s choices (hence the schema's enum) the same way. Torch-free: the help
screens read it.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from eagle_iad.choices import BACKBONES, DEFAULT_BACKBONE, DEFAULT_RULE, DEFAULT_SEARCH, SAMPLERS, SEARCHES
from eagle_iad.errors import ConfigError, one_of
from eagle_iad.ranges import Range, short_repr
from eagle_iad.tgps.thresholds import THRESHOLD_RULES, check_rule_params, rule_params, rules_using


@dataclass(frozen=True)
class FitOption:
    """One fit option. ``name`` is the service option and (with ``-`` for ``_``) the CLI flag."""

    name: str
    kind: type
    default: Any
    help: str
    choices: tuple[str, ...] | None = None
    #: The threshold rules that read this option (it is one of their parameters); empty otherwise.
    rules: tuple[str, ...] = ()
    #: Older names still accepted (CLI flags and service options), so old commands keep working.
    aliases: tuple[str, ...] = ()
    #: ``expert`` or ``evidence`` (preprocessing and boxes): the CLI's help groups.
    group: str = "expert"
    #: False: a local resource knob the service does not let a client set.
    service: bool = True
    #: True: the part's registry checks the name when the settings are validated, so one a plugin registered
    #: (EAGLE_PLUGINS) is accepted too; ``choices`` lists the built-in parts (and, for ``preprocess``, those a
    #: plugin registered: the OpenAPI enum is derived from the registry, as the rules' is).
    open_choices: bool = False
    #: The values a usable model can have (numbers only); checked when options are parsed, so an option
    #: that could only produce a model nothing loads is refused before any work (exit 2 / 400).
    range: Range | None = None

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


#: ``default`` inspects the whole frame; ``paper`` reproduces the published setting
#: (docs/USAGE.md, "What the expert inspects, and the evidence it shows").
PRESET_NAMES: tuple[str, ...] = ("default", "paper")
#: The built-in preprocessing modes; a plugin may register more (expert/preprocess.py's registry checks the name).
PREPROCESSING: tuple[str, ...] = ("resize", "scale", "tile", "center-crop")
REGION_RULE_NAMES: tuple[str, ...] = ("calibrated", "paper")
#: ``image`` (default): each input's grey mean and spread set to ImageNet's before the backbone; ``none``: the
#: pixels' own (the paper's, and every model saved before the setting). On tire image AUROC rose 0.778 -> 0.868 and on
#: elpv 0.951 -> 0.954 (docs/METHOD.md, "Exposure").
EXPOSURES: tuple[str, ...] = ("image", "none")

#: Largest whole-frame input side (and tile, crop): bounds the backbone's activation memory per view.
MAX_INPUT_SIDE = 4096
#: Seeds are numpy's (unsigned 32-bit).
MAX_SEED = 2**32 - 1
#: The default coreset's sample: the exact 10% greedy up to twice this many patches (500 images at 320 px),
#: where it costs at most four times the sample's; beyond, the greedy on a sample of this many, then continued
#: over as many patches outside it until each is within the sample's radius, so the quadratic stage stops
#: growing with the training set (docs/METHOD.md, "Large training sets").
CORESET_POINTS = 400_000
MAX_CORESET_POINTS = 2**40
#: Training images whose median long side is above ``size`` and at most this are inspected at that long side: a
#: 400-px tire at 416 px instead of 320. With the default exposure it raised tire's image AUROC 0.868 -> 0.941 and
#: its recall at tau 0.552 -> 0.621 (false alarms 1 -> 0 of 25) for about 1.7x the pixels; elpv's 300-px cells
#: are unchanged (docs/METHOD.md, "Choosing the defaults for misses"). 0: always ``size`` (the paper preset, and
#: every model saved before the option). An explicitly given ``size`` turns it off unless it is given too.
NATIVE_UP_TO = 512

_BEFORE_RULE = (
    FitOption("backbone", str, DEFAULT_BACKBONE, "feature extractor", BACKBONES, open_choices=True),
    FitOption("sampler", str, "greedy", "memory-bank subsampling", SAMPLERS),
    FitOption(
        "coreset_ratio",
        float,
        0.1,
        "fraction of patches kept (samplers greedy and random)",
        range=Range(0, 1, low_open=True),
    ),
    FitOption(
        "coreset_points",
        int,
        CORESET_POINTS,
        "beyond twice this many training patches the coreset's greedy runs on a seeded uniform sample of this "
        "many, then continues over as many patches outside the sample until each is within the sample's "
        "covering radius (0 = every patch, the paper's rule; docs/METHOD.md)",
        range=Range(0, MAX_CORESET_POINTS),
    ),
    FitOption("seed", int, 0, "seed of the coreset sampler and of --limit-train's subset", range=Range(0, MAX_SEED)),
    FitOption("search", str, DEFAULT_SEARCH, "nearest-neighbour search", SEARCHES),
)
_AFTER_RULE = (
    FitOption("batch_size", int, 16, "images per forward pass", service=False, range=Range(1, 1024)),
    FitOption(
        "preset",
        str,
        "default",
        "default (whole frame) | paper (shorter side 256, centre crop 224, "
        "boxes at 2/3 of the map maximum); options given explicitly override the preset",
        PRESET_NAMES,
        group="evidence",
    ),
    FitOption(
        "preprocess",
        str,
        "resize",
        "resize (whole frame) | scale (own aspect) | tile (large images) | center-crop (paper)",
        PREPROCESSING,
        group="evidence",
        open_choices=True,
    ),
    FitOption(
        "exposure",
        str,
        EXPOSURES[0],
        "image (each image's brightness and contrast set to ImageNet's before the backbone) | none (the pixels' own, "
        "the paper's)",
        EXPOSURES,
        group="evidence",
    ),
    FitOption(
        "size",
        int,
        320,
        "long side of the whole-frame input, a multiple of 32",
        group="evidence",
        range=Range(32, MAX_INPUT_SIDE),
    ),
    FitOption(
        "native_up_to",
        int,
        NATIVE_UP_TO,
        "training images whose median long side is above size and at most this many pixels are inspected at "
        "that long side (rounded up to a multiple of 32), not downscaled to size (0: always size; off when "
        "size is given without it)",
        group="evidence",
        range=Range(0, MAX_INPUT_SIDE),
    ),
    FitOption(
        "tile",
        int,
        256,
        "tile side in input pixels for preprocess tile",
        group="evidence",
        range=Range(32, MAX_INPUT_SIDE),
    ),
    FitOption(
        "tile_overlap",
        int,
        64,
        "least overlap of neighbouring tiles",
        group="evidence",
        range=Range(0, MAX_INPUT_SIDE - 1),
    ),
    FitOption(
        "resize",
        int,
        256,
        "center-crop: shorter side before the crop",
        group="evidence",
        range=Range(32, 2 * MAX_INPUT_SIDE),
    ),
    FitOption("crop", int, 224, "center-crop: square crop side", group="evidence", range=Range(32, MAX_INPUT_SIDE)),
    FitOption(
        "region_rule",
        str,
        "calibrated",
        "calibrated (pixels above the category's map threshold) | paper (2/3 of each map's maximum)",
        REGION_RULE_NAMES,
        group="evidence",
    ),
    FitOption(
        "position_baseline",
        bool,
        False,
        "subtract where normal images always score high from the map (tighter boxes on aligned products)",
        group="evidence",
    ),
)


def preprocessing_modes() -> tuple[str, ...]:
    """The built-in preprocessing modes, then those a plugin registered (``EAGLE_PLUGINS``).

    Read from the registry (``eagle_iad.expert.preprocess.PREPROCESSORS``) when that module is imported, and a
    plugin's mode can only be registered by importing it; when it is not, only the built-in modes exist. So the
    list is the registry's without this torch-free module importing torch for a help screen.
    """
    module = sys.modules.get("eagle_iad.expert.preprocess")
    if module is None:
        return PREPROCESSING
    return (*PREPROCESSING, *(name for name in module.PREPROCESSORS.names() if name not in PREPROCESSING))


#: Old names of rule parameters: the fixed rule's threshold was ``tau`` (CLI ``--tau``, service option
#: ``tau``), the word that also names the computed threshold; it is ``value`` now.
RULE_PARAM_ALIASES: dict[str, tuple[str, ...]] = {"value": ("tau",)}


def fit_options() -> tuple[FitOption, ...]:
    """The table, with the parameters of every rule registered so far (plugins included)."""
    rule = FitOption("rule", str, DEFAULT_RULE, "threshold rule (docs/METHOD.md §2)", THRESHOLD_RULES.names())
    after = tuple(replace(o, choices=preprocessing_modes()) if o.name == "preprocess" else o for o in _AFTER_RULE)
    params = tuple(
        FitOption(
            p.name,
            float,
            p.default,
            p.help,
            rules=rules_using(p.name),
            aliases=RULE_PARAM_ALIASES.get(p.name, ()),
            range=p.range,
        )
        for p in rule_params().values()
    )
    return (*_BEFORE_RULE, rule, *params, *after)


def option_default(name: str) -> Any:
    """The one stated default of option ``name`` (``ExpertConfig``'s field defaults read it)."""
    for option in (*_BEFORE_RULE, *_AFTER_RULE):
        if option.name == name:
            return option.default
    if name == "rule":
        return DEFAULT_RULE
    raise KeyError(name)


#: What a JSON client must send for each kind: no coercion, so ``"tau": true`` or ``"size": "640"`` is an
#: error, not 1.0 and 640 (a bool is an int in Python, hence the explicit exclusions).
_STRICT_TYPES: dict[type, tuple[type, ...]] = {float: (int, float), int: (int,), bool: (bool,), str: (str,)}


def _convert(option: FitOption, raw: Any, strict: bool = False) -> Any:
    if strict and (
        not isinstance(raw, _STRICT_TYPES[option.kind]) or (option.kind is not bool and isinstance(raw, bool))
    ):
        raise TypeError(raw)
    if option.kind is bool:
        if isinstance(raw, bool):
            return raw
        text = str(raw).strip().lower()
        if text in ("true", "1", "yes", "on"):
            return True
        if text in ("false", "0", "no", "off"):
            return False
        raise ValueError(raw)
    if (option.kind is float and isinstance(raw, bool)) or (option.kind is int and isinstance(raw, float)):
        raise ValueError(raw)
    value = option.kind(raw)
    if option.kind is float and value != value:  # NaN
        raise ValueError(raw)
    return value


def parse_fit_options(
    raw: Mapping[str, Any], *, service: bool = False, strict: bool = False, flags: bool = False
) -> dict[str, Any]:
    """Checked and typed values by canonical name, from names or aliases (``tau`` -> ``value``).

    Every user mistake (an unknown name, a value of the wrong type, a choice not offered, a number
    outside its range, a parameter of another threshold rule than the chosen one) is a
    :class:`ConfigError` whose message the CLI prints and the service answers with 400. ``strict``:
    values from JSON, whose types must already be right (a form's fields are text and are
    converted). ``flags``: the names came from command-line flags, so a message spells them so.
    """
    table = [o for o in fit_options() if o.service or not service]
    by_name = {name: o for o in table for name in (o.name, *o.aliases)}
    unknown = sorted(set(raw) - set(by_name))
    if unknown:
        raise ConfigError(f"unknown fit options {unknown}; known: {sorted(o.name for o in table)}")
    values: dict[str, Any] = {}
    for key, value in raw.items():
        option = by_name[key]
        if option.name in values:
            raise ConfigError(f"fit option {option.name} is given twice (as {option.name} and an older name)")
        try:
            typed = _convert(option, value, strict)
        except (TypeError, ValueError, OverflowError):
            raise ConfigError(f"fit option {key}: {short_repr(value)} is not a {option.kind.__name__}") from None
        if option.choices is not None and not option.open_choices and typed not in option.choices:
            what = option.name.replace("_", " ")
            raise ConfigError(f"unknown {what} {typed!r}; choose one of {one_of(option.choices)}")
        if option.range is not None:
            option.range.check(f"fit option {key}", typed)
        values[option.name] = typed
    # No preset chooses a rule, so a rule not given is the default one (its choices were checked above).
    spelled = {by_name[key].name: key.replace("_", "-") if flags else key for key in raw}
    check_rule_params(
        values.get("rule", option_default("rule")), spelled, lambda name: f"{'--' if flags else ''}{spelled[name]}"
    )
    return values


def check_ranges(values: Mapping[str, Any]) -> None:
    """Every value in ``values`` (canonical names) within its option's range: the Python API's check,
    the same table the CLI and the service parse with."""
    for option in fit_options():
        if option.range is not None and values.get(option.name) is not None:
            option.range.check(option.name, values[option.name])


def config_overrides(values: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """``(preset, ExpertConfig overrides)`` from parsed options: rule parameters go into ``rule_params``."""
    params = set(rule_params())
    overrides = {k: v for k, v in values.items() if k not in params and k != "preset"}
    if "size" in overrides and "native_up_to" not in overrides:
        # A size the user chose is the input's long side: keeping small images native is the default size's rule.
        overrides["native_up_to"] = 0
    rule_values = {k: float(v) for k, v in values.items() if k in params}
    if rule_values:
        overrides["rule_params"] = rule_values
    return str(values.get("preset", option_default("preset"))), overrides
