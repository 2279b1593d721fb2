"""``eagle eval-expert``, ``eagle eval`` and ``eagle demo``: measured runs that write a report folder."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from eagle_iad.choices import EVAL_MAX_NEW_TOKENS, EVAL_SEED, EXECUTORS
from eagle_iad.cli.flags import (
    Subcommands,
    add_caas,
    add_caas_mllm,
    add_data_args,
    add_force_caas,
    add_mllm,
    add_quiet,
    add_scratch,
    check_force_caas,
    data_root,
    mllm_spec,
)
from eagle_iad.cli.printing import dumps
from eagle_iad.data import get_layout, layout_names, mask_names, select_test
from eagle_iad.errors import ConfigError
from eagle_iad.naming import printable
from eagle_iad.outputs import check_output_path, check_outputs, staged_folder, write_errors

#: The files every ``eval-expert`` report holds (checked against the user's files before any work), and the
#: two that mark a report folder written before output ledgers existed (outputs.check_outputs).
REPORT_FILES = ("report.md", "metrics.json", "scores.jsonl", "histogram.png", "boxes_grid.png")
REPORT_MARKERS = ("metrics.json", "report.md")
#: What a refusal of ``eval-expert``'s test images leaves undone: it fits nothing and asks no MLLM (those are
#: ``eagle eval``'s words), but its model is not loaded yet and no report is written.
EVAL_EXPERT_NOTHING_DONE = "the model was not loaded and nothing was evaluated or written"


def add_eval_expert(sub: Subcommands) -> None:
    ev = sub.add_parser("eval-expert", help="image/pixel AUROC, AUPRO, metrics at tau, box quality, figures")
    add_data_args(ev)
    ev.add_argument("--model", required=True, help="fitted model directory")
    ev.add_argument("--out", required=True, help="directory for report.md, metrics.json, scores.jsonl and figures")
    ev.add_argument(
        "--limit-test",
        type=int,
        default=None,
        help="a seeded subset of N test images that keeps the split's normal/anomalous ratio (at least one normal)",
    )
    ev.add_argument("--seed", type=int, default=0, help="seed for --limit-test")
    ev.add_argument(
        "--allow-category-mismatch",
        action="store_true",
        help="evaluate a model fitted on another category than --category (e.g. to measure transfer); the "
        "report then names both. Without it such a model is refused",
    )
    add_quiet(ev)
    ev.set_defaults(func=_cmd_eval_expert)


def _cmd_eval_expert(args: argparse.Namespace) -> int:
    from eagle_iad.eval.expert_eval import evaluate_expert, missing_mask_note, write_evaluation
    from eagle_iad.eval.preflight import check_test_files
    from eagle_iad.expert import load_expert

    out = check_output_path(args.out, "a report", "./report")
    samples = get_layout(args.layout).samples(data_root(args.data, args.layout), args.category, "test")
    samples = select_test(samples, args.limit_test, args.seed)
    # Every image decoded, every mask read against its image: a bad file fails before the model loads,
    # not after the evaluation, and one error names all of them.
    check_test_files([(s.path, s.mask_path) for s in samples], outcome=EVAL_EXPERT_NOTHING_DONE)
    inputs = [p for s in samples for p in (s.path, s.mask_path) if p is not None]
    check_outputs(out, REPORT_FILES, inputs, legacy=REPORT_MARKERS)  # a user's report.md fails now, not after
    expert = load_expert(args.model)
    check_category(expert.model.category, args.category, args.model, args.allow_category_mismatch)
    start = time.perf_counter()
    evaluation = evaluate_expert(expert, samples, show_progress=not args.quiet, mask_names=mask_names(args.layout))
    with staged_folder(out, legacy=REPORT_MARKERS) as staging:
        write_evaluation(expert, evaluation, staging)
    summary = evaluation.summary()
    # A layout with masks (some found, or some looked for): a missing one is worth a line; elpv has none to miss.
    expects_masks = any(s.mask_path is not None or s.mask_sought is not None for s in samples)
    note = missing_mask_note(evaluation)
    if note is not None and expects_masks:
        print(f"eagle: warning: {note}", file=sys.stderr)
    summary["seconds"] = round(time.perf_counter() - start, 2)
    print(dumps(summary))
    print(f"wrote {Path(args.out) / 'report.md'} (metrics.json, histogram.png, boxes_grid.png)", file=sys.stderr)
    return 0


def check_category(model_category: str, data_category: str, model: str, allowed: bool) -> None:
    """:class:`ConfigError` naming both categories when the model was fitted on another one than the data's.

    One wrong ``--model`` in a sweep would otherwise give a plausible table of the wrong model's numbers.
    """
    if model_category != data_category and not allowed:
        raise ConfigError(
            f"{model} is a model of category {model_category!r}, but --category is {data_category!r}; give the "
            f"model fitted on {data_category!r}, or --allow-category-mismatch to evaluate it on {data_category!r} "
            "anyway (the report then names both)"
        )


def add_eval(sub: Subcommands) -> None:
    evp = sub.add_parser("eval", help="EAGLE and its baselines on a dataset: MMAD metrics, report, resumable")
    evp.add_argument(
        "--data",
        help="dataset root (--layout elpv: none for the packaged cells, or a folder holding its own labels.csv)",
    )
    evp.add_argument("--layout", required=True, choices=[*layout_names(), "mmad"], help="dataset layout")
    evp.add_argument("--mmad-json", help="MMAD's mmad.json (with --layout mmad; paths relative to --data)")
    evp.add_argument("--models", required=True, help="expert directory: <models>/<category>, fitted when missing")
    add_mllm(evp, "MLLM backend spec (not needed for --conditions expert)")
    add_caas_mllm(evp)
    evp.add_argument("--conditions", default="baseline,expert,tgps,eagle",
                     help="comma-separated: baseline,expert,tgps,eagle,text-only,visual-only")  # fmt: skip
    evp.add_argument("--shots", type=int, default=0, choices=(0, 1), help="1: add a normal template image")
    evp.add_argument("--tasks", default="anomaly", choices=("anomaly", "all"), help="MMAD task types to ask")
    evp.add_argument("--attention", action="store_true", help="record attention; per-layer curves in the report")
    evp.add_argument("--executor", default=EXECUTORS[0], choices=EXECUTORS)
    evp.add_argument("--ray-address", default=None, help="Ray cluster address (default: a local instance)")
    evp.add_argument("--ray-workers", type=int, default=2, help="Ray actors (default 2)")
    evp.add_argument("--ray-gpus-per-worker", type=float, default=0.0, help="GPUs each Ray actor reserves")
    evp.add_argument(
        "--category",
        action="append",
        dest="categories",
        metavar="NAME",
        help="evaluate only this category (repeatable; default: every category of the data)",
    )
    evp.add_argument(
        "--limit",
        type=int,
        default=None,
        help="at most N test images per category: seeded by --seed, half normal and half anomalous (the other "
        "class fills in where one runs short), the anomalous ones spread over the defect types",
    )
    evp.add_argument("--limit-train", type=int, default=None, help="fit missing experts on a seeded subset of N")
    evp.add_argument(
        "--fit-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an `eagle fit` option for the fit of a missing expert (repeatable), e.g. rule=quantile, size=256, "
        f"preset=paper; an expert already in --models is not fitted again. Keys: {', '.join(_fit_option_names())}",
    )
    evp.add_argument(
        "--max-new-tokens",
        type=int,
        default=EVAL_MAX_NEW_TOKENS,
        help="tokens each MLLM answer may run to (default %(default)s; >= 2 with --attention)",
    )
    add_caas(evp, layers=False)
    add_force_caas(evp)
    evp.add_argument(
        "--seed",
        type=int,
        default=EVAL_SEED,
        help="seed of --limit's and --limit-train's subsets and of a missing expert's fit (default %(default)s; a "
        "--fit-option seed=N overrides it for the fit)",
    )
    evp.add_argument("--out", required=True, help="run directory (results.jsonl, metrics.json, report.*)")
    add_quiet(evp, "no progress bars (a missing expert's fit)")
    add_scratch(evp)
    evp.set_defaults(func=_cmd_eval)


def _cmd_eval(args: argparse.Namespace) -> int:
    from eagle_iad.eval.executors import make_executor
    from eagle_iad.eval.experiment import ExperimentConfig, run_experiment
    from eagle_iad.eval.protocol import parse_conditions

    out = check_output_path(args.out, "a run", "./run")
    data_root(args.data, args.layout)  # required, or (elpv) a folder with its own labels.csv
    if args.mmad_json is not None and args.layout != "mmad":
        raise ConfigError(f"--mmad-json is read only with --layout mmad, not {args.layout!r}; leave it out")

    def absolute(path: str | None) -> str | None:
        # Absolute paths make the config hash and the record keys independent of the working directory.
        return None if path is None else str(Path(path).resolve())

    conditions = parse_conditions(args.conditions)
    check_force_caas(args.force_caas, args.mllm, conditions)
    config = ExperimentConfig(
        layout=args.layout,
        data=absolute(args.data),
        models=str(Path(args.models).resolve()),
        conditions=conditions,
        mllm=mllm_spec(args),
        mmad_json=absolute(args.mmad_json),
        shots=args.shots,
        tasks=args.tasks,
        attention=args.attention,
        limit=args.limit,
        limit_train=args.limit_train,
        max_new_tokens=args.max_new_tokens,
        alpha=args.alpha,
        caas_phase=args.caas_phase,
        force_caas=args.force_caas,
        seed=args.seed,
        categories=None if args.categories is None else tuple(sorted(set(args.categories))),
        fit_options=tuple(sorted(parse_fit_option_args(args.fit_option).items())),
    )
    executor = make_executor(args.executor, args.ray_address, args.ray_workers, args.ray_gpus_per_worker)
    start = time.perf_counter()
    with write_errors(out, "the run keeps every finished record; free space and run the same command to resume"):
        added: list[int] = []
        metrics = run_experiment(config, out, executor, show_progress=not args.quiet, warn=_warn, made=added.append)
    for condition, entry in metrics["mllm"]["conditions"].items():
        acc = entry["overall"]["anomaly"]["accuracy"]
        print(f"{condition}: anomaly accuracy {'–' if acc is None else f'{100 * acc:.2f}%'}")
    if added == [0]:  # a rerun of a finished run: its seconds are the report's, not the run's
        print(f"nothing left to do: every item of this run is in {Path(args.out) / 'results.jsonl'}; "
              f"rewrote {Path(args.out) / 'report.md'}", file=sys.stderr)  # fmt: skip
    else:
        print(f"wrote {Path(args.out) / 'report.md'} in {time.perf_counter() - start:.1f} s", file=sys.stderr)
    return 0


def _warn(line: str) -> None:
    """A missing expert's fit warning (or a note on --fit-option) on stderr, as `eagle fit` prints them."""
    print(f"eagle: warning: {printable(line)}", file=sys.stderr)


def _fit_option_names() -> list[str]:
    """The keys ``--fit-option`` takes: ``eagle fit``'s options (the table in eagle_iad/fit_options.py)."""
    from eagle_iad.fit_options import fit_options

    return [option.name for option in fit_options()]


def parse_fit_option_args(values: list[str]) -> dict[str, Any]:
    """``["rule=quantile", "size=256"]`` -> checked, typed fit options, as ``eagle fit``'s flags would give them.

    A key may be written as the option (``coreset_ratio``) or as its flag (``coreset-ratio``, ``--coreset-ratio``).
    """
    from eagle_iad.fit_options import parse_fit_options

    raw: dict[str, str] = {}
    for value in values:
        key, sep, text = value.partition("=")
        name = key.strip().lstrip("-").replace("-", "_")
        if not sep or not name:
            raise ConfigError(f"--fit-option {value!r}: expected KEY=VALUE, e.g. rule=quantile")
        if name in raw:
            raise ConfigError(f"--fit-option {name} is given twice")
        raw[name] = text.strip()
    return parse_fit_options(raw)


def add_demo(sub: Subcommands) -> None:
    demo = sub.add_parser("demo", help="fit, evaluate and inspect elpv mono cells; write a report")
    demo.add_argument("--out", default="runs/demo")
    demo.add_argument("--limit-train", type=int, default=None, help="seeded subset of training cells (default: all)")
    demo.add_argument("--size", type=int, default=None, help="whole-frame input side (default: the demo's, 224)")
    demo.add_argument("--coreset-ratio", type=float, default=None, help="fraction of patches kept (default 0.01)")
    demo.add_argument("--limit-test", type=int, default=None,
                      help="a seeded subset of N test cells that keeps the normal/cracked ratio")  # fmt: skip
    add_quiet(demo)
    add_scratch(demo)
    demo.set_defaults(func=_cmd_demo)


def _cmd_demo(args: argparse.Namespace) -> int:
    from eagle_iad.demo import run_demo

    out = check_output_path(args.out, "a demo", "./demo")
    with write_errors(out, "files written before it are complete"):
        report = run_demo(
            out,
            train_limit=args.limit_train,
            test_limit=args.limit_test,
            show_progress=not args.quiet,
            size=args.size,
            coreset_ratio=args.coreset_ratio,
        )
    print(f"demo report: {report}")
    return 0


#: The subcommands this module adds, by name (``eagle_iad.cli`` adds them in its fixed order).
COMMANDS: dict[str, Callable[[Subcommands], None]] = {
    "eval-expert": add_eval_expert,
    "eval": add_eval,
    "demo": add_demo,
}
