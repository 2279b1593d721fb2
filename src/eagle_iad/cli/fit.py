"""``eagle fit``, ``eagle threshold`` and ``eagle info``: make a model, change its threshold on the record, show it."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from eagle_iad.cli.db import cli_actor
from eagle_iad.cli.flags import Subcommands, add_data_args, add_quiet, add_scratch, data_root
from eagle_iad.cli.printing import dumps, print_warnings
from eagle_iad.data import get_layout, select_training, skipped_files
from eagle_iad.errors import ConfigError
from eagle_iad.fit_options import config_overrides, fit_options, parse_fit_options
from eagle_iad.naming import category_name_problem


def add_fit(sub: Subcommands) -> None:
    fit = sub.add_parser("fit", help="fit the expert on a category's normal training images")
    add_data_args(fit)
    fit.add_argument("--out", required=True, help="model directory to write (replaced atomically)")
    fit.add_argument("--limit-train", type=int, default=None, help="use a seeded subset of N training images")
    add_quiet(fit)
    add_scratch(fit)
    evidence = fit.add_argument_group(
        "preprocessing and boxes (saved with the model; `eagle info` shows them)",
        "The default inspects the whole frame. --preset paper reproduces the published setting "
        "(shorter side 256, centre crop 224, boxes at 2/3 of the map maximum); options given "
        "explicitly override the preset.",
    )
    _add_fit_options(fit, evidence)
    fit.set_defaults(func=_cmd_fit)


def _add_fit_options(expert: argparse.ArgumentParser, evidence: argparse._ArgumentGroup) -> None:
    """One flag per row of the fit options table (eagle_iad/fit_options.py), defaults stated there.

    Every flag defaults to None so only what the user gave overrides the preset.
    """
    for option in fit_options():
        target = evidence if option.group == "evidence" else expert
        flags = [option.flag, *("--" + alias.replace("_", "-") for alias in option.aliases)]
        plural = "s" if len(option.rules) > 1 else ""
        used_by = f"; read by rule{plural} {', '.join(option.rules)}" if option.rules else ""
        default = "" if option.default is None else f" (default {option.default})"
        allowed = "" if option.range is None else f"; allowed {option.range}"
        help_text = f"{option.help}{used_by}{allowed}{default}"
        if option.aliases:
            help_text += f"; {', '.join(flags[1:])} is its old name"
        if option.open_choices and option.choices:
            help_text += f"; choices: {', '.join(option.choices)} (a plugin may add more)"
        if option.kind is bool:
            target.add_argument(*flags, dest=option.name, action="store_true", default=None, help=help_text)
        else:
            target.add_argument(*flags, dest=option.name, type=option.kind, default=None,
                                choices=None if option.open_choices else option.choices,
                                help=help_text)  # fmt: skip


def _cmd_fit(args: argparse.Namespace) -> int:
    from eagle_iad.expert import ExpertConfig, fit, save
    from eagle_iad.expert.coreset import greedy_pool
    from eagle_iad.expert.store import (
        FIT_MODEL_CHANGED,
        ModelChangedError,
        check_replaceable,
        model_fingerprint,
        recover_model,
        refit_notice,
    )

    check_replaceable(args.out)  # refuse a folder that is not ours before minutes of work, not after
    recover_model(args.out)  # a crashed save's retired model is the model there, not "none"
    # The model the fit may replace: one saved meanwhile (a teach, a threshold change) is not silently overwritten.
    replacing = model_fingerprint(args.out)
    problem = category_name_problem(args.category)
    if problem is not None:  # the service could never serve it
        raise ConfigError(problem)
    # Its teaches and hand-set tau, which the new model will not have, or the whole model if another category's.
    replaces = refit_notice(args.out, args.category)
    given = {o.name: getattr(args, o.name) for o in fit_options() if getattr(args, o.name, None) is not None}
    preset, overrides = config_overrides(parse_fit_options(given, flags=True))
    config = ExpertConfig.from_preset(preset, **overrides)
    config.validate()  # every setting a model could not be used with is refused now, before the data is read
    layout = get_layout(args.layout)
    samples = layout.samples(data_root(args.data, args.layout), args.category, "train")
    skipped = skipped_files(Path(s.path).parent for s in samples)  # said, not silent: a format left out by name
    samples = select_training(samples, args.limit_train, config.seed)
    print(f"fitting {args.category!r} on {len(samples)} normal images with {config.backbone}", file=sys.stderr)
    if skipped is not None:
        print_warnings([skipped])
    expert = fit([s.path for s in samples], args.category, config, show_progress=not args.quiet)
    # Who fitted it, as an API fit records its key's name: the versions list says "by cli:<login name>".
    model = dataclasses.replace(expert.model, fitted_by=cli_actor())
    if replaces is not None:
        model = dataclasses.replace(model, warnings=[replaces, *model.warnings])
    try:
        out = save(model, args.out, replacing=replacing)
    except ModelChangedError:
        raise ModelChangedError(f"{args.out}: {FIT_MODEL_CHANGED}") from None
    patches, points = int(model.selected.numel()), model.config.coreset_points
    print_warnings(model.warnings)
    summary = {
        "model": str(out),
        "category": model.category,
        "train_images": len(model.train_images),
        "bank_size": int(model.bank.shape[0]),
        # The greedy's pool: every training patch, or a sample of coreset_points of them and a second of as
        # many that it is completed over (docs/METHOD.md, "Large training sets").
        "train_patches": patches,
        "coreset_from": (
            greedy_pool(patches, points, model.config.coreset_ratio) if model.config.sampler == "greedy" else patches
        ),
        "rule": model.thresholds.rule,
        "tau": model.thresholds.tau,
        "s_max": model.thresholds.s_max,
        "timings_s": {k: round(v, 2) for k, v in model.timings.items()},
        "warnings": model.warnings if skipped is None else [skipped, *model.warnings],
    }
    print(dumps(summary))
    return 0


def add_info(sub: Subcommands) -> None:
    info = sub.add_parser("info", help="show a fitted model's manifest")
    info.add_argument("--model", required=True)
    info.set_defaults(func=_cmd_info)


def _cmd_info(args: argparse.Namespace) -> int:
    """The manifest as JSON on stdout (scripts read it), and on stderr the training images' exposure in one line.

    Why the line: the raw ``training.exposure`` gives the ranges but not the factor a photo must lie beyond to
    warn, which is widened for few images; a model saved before schema 12 says "not recorded" rather than nothing.
    """
    from eagle_iad.errors import ModelFormatError
    from eagle_iad.expert.lighting import ExposureRange, exposure_line
    from eagle_iad.expert.manifest import MANIFEST, model_root, read_manifest, upgraded_config

    manifest: dict[str, Any] = read_manifest(args.model)
    manifest["config"] = upgraded_config(manifest["config"], manifest["schema_version"])  # as a load reads it
    manifest["training"].pop("images", None)
    manifest["training"].pop("scores", None)
    manifest["training"].pop("map_maxima", None)
    raw = manifest["training"].get("exposure")
    try:
        exposure = None if raw is None else ExposureRange.parse(raw, "training.exposure")
    except ValueError as exc:  # as a load refuses it
        raise ModelFormatError(f"{model_root(args.model) / MANIFEST}: malformed manifest ({exc})") from None
    print(dumps(manifest))
    print(f"eagle: training exposure: {exposure_line(exposure)}", file=sys.stderr)
    return 0


def add_threshold(sub: Subcommands) -> None:
    thr = sub.add_parser(
        "threshold",
        help="change a model's tau on the record (who, when, why, previous value), restore one, or show the record",
        description="Without --tau or --restore: print the thresholds and the history of changes. With --tau: "
        "set tau (rule 'fixed'). With --restore N: put back the thresholds that change N replaced. Every change "
        "is saved atomically with the model and listed in its history; model.json must not be edited by hand "
        "(its checksum detects that and loading refuses the model).",
    )
    thr.add_argument("--model", required=True, help="fitted model directory")
    thr.add_argument("--tau", type=float, help="new decision threshold (a finite number >= 0)")
    thr.add_argument("--restore", type=int, metavar="N", help="put back the thresholds change N replaced")
    thr.add_argument("--why", help="reason for the change (required with --tau or --restore)")
    thr.add_argument(
        "--by",
        help="who makes the change, if not the login name: recorded as given here, "
        "'cli:<login name> as NAME' (default: 'cli:<login name>')",
    )
    thr.set_defaults(func=_cmd_threshold)


def _cmd_threshold(args: argparse.Namespace) -> int:
    """``eagle threshold``: change tau on the record, restore an earlier one, or show the record."""
    from eagle_iad.expert.store import change_threshold, load

    if args.tau is None and args.restore is None:
        model = load(args.model)
        print(dumps({"model": args.model, "thresholds": model.thresholds.to_dict(), "history": model.history}))
        return 0
    if args.why is None:
        raise ConfigError("--why is required: say why the threshold changes (it is kept in the model's history)")
    model, entry = change_threshold(args.model, tau=args.tau, restore=args.restore, why=args.why,
                                    by=cli_actor(args.by))  # fmt: skip
    print_warnings(model.warnings)
    print(dumps({"model": args.model, "change": entry["change"], "version": entry.get("version"),
                 "tau": model.thresholds.tau, "previous_tau": entry["before"]["tau"], "rule": model.thresholds.rule,
                 "warnings": model.warnings}))  # fmt: skip
    return 0


#: The subcommands this module adds, by name (``eagle_iad.cli`` adds them in its fixed order).
COMMANDS: dict[str, Callable[[Subcommands], None]] = {"fit": add_fit, "info": add_info, "threshold": add_threshold}
