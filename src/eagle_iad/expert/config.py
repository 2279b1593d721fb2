"""A fitted model's settings: :class:`ExpertConfig` (saved with the model) and the named presets.

Split from the expert itself so that what a model computes is read in one small module: every
field here changes the fitted numbers, every check is made before minutes of fitting (and the
preprocessing mode checks its own fields, expert/preprocess.py).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from eagle_iad.errors import ConfigError, ModelFormatError, one_of
from eagle_iad.expert.backbones import DEFAULT_BACKBONE, check_backbone
from eagle_iad.expert.manifest import SETTINGS_BEFORE_THEM
from eagle_iad.expert.preprocess import preprocessor_of
from eagle_iad.expert.search import DEFAULT_SEARCH
from eagle_iad.fit_options import EXPOSURES, MAX_INPUT_SIDE, check_ranges, option_default
from eagle_iad.tgps.regions import REGION_RULES
from eagle_iad.tgps.thresholds import DEFAULT_RULE, THRESHOLD_RULES, check_rule_params, rule_params

#: The default preprocessing and its input size, chosen by measurement (docs/MEASUREMENTS.md, "Choosing the defaults");
#: stated once, in the fit options table.
DEFAULT_PREPROCESS: str = option_default("preprocess")
DEFAULT_SIZE: int = option_default("size")
DEFAULT_REGION_RULE: str = option_default("region_rule")
#: Largest whole-frame input side: bounds the backbone's activation memory per view (the fit options' range).
MAX_SIZE = MAX_INPUT_SIDE


@dataclass(frozen=True)
class ExpertConfig:
    """Every setting that changes what a fitted model computes; saved with the model."""

    backbone: str = DEFAULT_BACKBONE
    #: How an image becomes the network input (expert/preprocess.py): ``resize`` (whole frame, default),
    #: ``tile`` (overlapping tiles of a larger whole-frame input) or ``center-crop`` (the paper's).
    preprocess: str = DEFAULT_PREPROCESS
    #: ``image``: each input's brightness and contrast set to ImageNet's before the backbone (preprocess.expose);
    #: ``none``: the pixels' own (the paper's; every model saved before the setting reads as ``none``).
    exposure: str = option_default("exposure")
    #: Long side of the whole-frame input (``resize`` and ``tile``); the other side follows the aspect.
    size: int = DEFAULT_SIZE
    #: Training images whose median long side lies in ``(size, native_up_to]`` are inspected at that long side
    #: (rounded up to 32) rather than downscaled: a fit-time choice, recorded in ``size`` and ``input_hw``. The
    #: CLI and the service set it to 0 when a size is given without it (fit_options.config_overrides); a
    #: config built here keeps the default, so code that means "this size" says ``native_up_to=0``.
    native_up_to: int = option_default("native_up_to")
    #: The fixed ``(H, W)`` input of ``resize``/``tile``, set by :func:`fit` from the training images.
    input_hw: tuple[int, int] | None = None
    #: ``scale``: input pixels per image pixel, set by :func:`fit` (the training images' median long side to ``size``).
    pixel_scale: float | None = None
    #: ``tile``: the square tile (input pixels) and the least overlap between neighbouring tiles.
    tile: int = option_default("tile")
    tile_overlap: int = option_default("tile_overlap")
    #: ``center-crop``: shorter side resized to ``resize``, then a centre ``crop`` square.
    resize: int = option_default("resize")
    crop: int = option_default("crop")
    pretrain_dim: int = 1024
    target_dim: int = 1024
    sampler: str = option_default("sampler")
    coreset_ratio: float = option_default("coreset_ratio")
    #: The greedy coreset's sample size, used above twice this many training patches (0: never, the paper's rule).
    coreset_points: int = option_default("coreset_points")
    projection_dim: int = 128
    seed: int = option_default("seed")
    search: str = DEFAULT_SEARCH
    rule: str = DEFAULT_RULE
    #: The rule's parameters given explicitly (``k``, ``q``, ``p``, ``value``, a plugin rule's own);
    #: those not given take the rule's defaults (tgps/thresholds.py).
    rule_params: dict[str, float] = field(default_factory=dict)
    sigma: float = 4.0
    #: Subtract where normal images of the category always score high (a specular highlight, a
    #: textured edge) from the map, so the map's peak points at what is unusual *for that position*.
    #: The image score and tau are untouched (docs/METHOD.md, "Calibrated maps and boxes"). Off by
    #: default: on tire it made boxes tighter (box/defect area 5.5 -> 2.1) but cost pixel AUROC
    #: (0.993 -> 0.956) and AUPRO (0.969 -> 0.854), so it stays an option (docs/MEASUREMENTS.md table).
    position_baseline: bool = option_default("position_baseline")
    #: Which map pixels make the boxes (tgps/regions.py): ``calibrated`` (above the category's pixel
    #: threshold from normal training maps) or ``paper`` (2/3 of the image's own map maximum).
    region_rule: str = DEFAULT_REGION_RULE
    batch_size: int = option_default("batch_size")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ExpertConfig:
        known = {f for f in cls.__dataclass_fields__} | {"rule_k", "rule_q", "rule_p", "rule_value"}
        unknown = set(data) - known
        if unknown:
            raise ModelFormatError(f"unknown expert settings {sorted(unknown)}")
        values = dict(data)
        # Models saved before the rule registry held one field per built-in rule parameter.
        legacy = {name: values.pop(f"rule_{name}") for name in ("k", "q", "p", "value") if f"rule_{name}" in values}
        if legacy:
            values["rule_params"] = {k: float(v) for k, v in legacy.items() if v is not None}
        if "rule_params" in values:
            values["rule_params"] = {str(k): float(v) for k, v in dict(values["rule_params"]).items()}
        # Models (and exports) saved before a setting existed did what its absence means (manifest.upgraded_config).
        for name, value in SETTINGS_BEFORE_THEM.items():
            values.setdefault(name, value)
        if values.get("input_hw") is not None:
            values["input_hw"] = (int(values["input_hw"][0]), int(values["input_hw"][1]))
        return cls(**values)

    @classmethod
    def from_preset(cls, preset: str, **overrides: Any) -> ExpertConfig:
        """A named starting point (``default``, ``paper``) with explicit settings on top."""
        if preset not in PRESETS:
            raise ConfigError(f"unknown preset {preset!r}; choose one of {one_of(PRESETS)}")
        return cls(**{**PRESETS[preset], **overrides})

    def validate(self) -> None:
        spec = THRESHOLD_RULES.get(self.rule)
        check_backbone(self.backbone)  # the registry, so a backbone a plugin registered is accepted
        unknown = set(self.rule_params) - set(rule_params())
        if unknown:
            raise ConfigError(f"unknown threshold rule parameters {sorted(unknown)}; known: {', '.join(rule_params())}")
        check_rule_params(self.rule, self.rule_params)  # another rule's parameter would be silently ignored
        for param in spec.params:  # a parameter without a default must be given: say so before minutes of fitting
            if param.default is None and param.name not in self.rule_params:
                raise ConfigError(f"rule {self.rule!r} needs {param.name} ({param.help})")
        mode = preprocessor_of(self)  # the registry, so a mode a plugin registered is accepted
        if self.exposure not in EXPOSURES:
            raise ConfigError(f"unknown exposure {self.exposure!r}; choose one of {one_of(EXPOSURES)}")
        if self.region_rule not in REGION_RULES:
            raise ConfigError(f"unknown region rule {self.region_rule!r}; choose one of {one_of(REGION_RULES)}")
        mode.validate(self)
        if self.position_baseline and not mode.fixed_grid:
            raise ConfigError(
                f"position_baseline needs one patch grid for every image; preprocess {self.preprocess!r} gives each "
                "image its own"
            )
        if self.batch_size < 1:
            raise ConfigError("batch size must be at least 1")
        check_ranges({**self.to_dict(), **self.rule_params})

    def views_per_image(self) -> int:
        """How many network inputs one image becomes (tiles), hence its patch count = views x grid."""
        return preprocessor_of(self).views_per_image(self)


#: Named settings: ``paper`` reproduces the published setting exactly (shorter side 256, centre crop
#: 224, boxes at 2/3 of each map's maximum); ``default`` is the product's whole-frame inspection.
PRESETS: dict[str, dict[str, Any]] = {
    "default": {},
    "paper": {
        "preprocess": "center-crop",
        "resize": 256,
        "crop": 224,
        "region_rule": "paper",
        "position_baseline": False,
        "coreset_points": 0,
        "native_up_to": 0,
        "exposure": "none",
    },
}
