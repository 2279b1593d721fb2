"""Which expert settings give the best evidence? One table over tire and elpv (issue 9, docs/METHOD.md).

Every named variant is a set of :class:`~eagle_iad.expert.ExpertConfig` field overrides on the
defaults. Each is fitted and evaluated on each dataset with ``evaluate_expert`` -- the same code as
``eagle eval-expert``, so the boxes measured are the boxes the product draws -- and one Markdown
table reports ranking quality (image/pixel AUROC, AUPRO), what a user gets at tau (recall, false
alarms among the normal test images, balanced accuracy), how well the pictures point at the defect
(pointing accuracy, best-box IoU, box-to-defect area, touch rate, boxes on normal images) and the
cost: fit seconds and evaluation throughput (inspection, boxes and measures per image), with
their ratios to the first variant listed.

    .venv/bin/python benchmarks/evidence.py [--variants paper,whole320,...] [--datasets tire,elpv]
        [--limit-train N] [--limit-test N] [--out DIR]

Tire is read from ``../shared/data/mvtec3d-tire`` (skipped with a message when absent); elpv ships
with its package. Without ``--limit-train``, elpv uses the demo's 200 seeded training cells and tire
all of its training images. A variant naming a field this version of ``ExpertConfig`` does not have
is refused before anything is fitted.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path
from typing import Any

from real_sets import real_set
from run_record import write_run_record

from eagle_iad.data import Sample
from eagle_iad.errors import EagleError
from eagle_iad.eval.expert_eval import evaluate_expert
from eagle_iad.expert import ExpertConfig, fit
from eagle_iad.expert.patchcore import PRESETS

FORMAT_VERSION = 1

#: Variant name -> ExpertConfig overrides. The first variant on the command line is the cost baseline.
VARIANTS: dict[str, dict[str, Any]] = {
    "default": {},
    # The paper: shorter side 256, centre crop 224, the 2/3-of-max box rule.
    "paper": dict(PRESETS["paper"]),
    # Whole frame at three input resolutions (long side), calibrated boxes.
    "whole224": {"preprocess": "resize", "size": 224, "region_rule": "calibrated"},
    "whole320": {"preprocess": "resize", "size": 320, "region_rule": "calibrated"},
    "whole448": {"preprocess": "resize", "size": 448, "region_rule": "calibrated"},
    "whole448-baseline": {"preprocess": "resize", "size": 448, "region_rule": "calibrated", "position_baseline": True},
    # The two region rules on the same whole-frame model.
    "whole320-paper-rule": {"preprocess": "resize", "size": 320, "region_rule": "paper"},
    "paper-calibrated": {"preprocess": "center-crop", "resize": 256, "crop": 224, "region_rule": "calibrated"},
    "tile": {"preprocess": "tile", "region_rule": "calibrated"},
    # The packaged backbones with everything else at the defaults.
    "lite0": {"backbone": "efficientnet_lite0"},
    "lite1": {"backbone": "efficientnet_lite1"},
    "lite2": {"backbone": "efficientnet_lite2"},
}
DEFAULT_VARIANTS = "paper,whole224,whole320,whole448,whole320-paper-rule,lite0,lite1,lite2"

COLUMNS = (
    ("data", "data"),
    ("variant", "variant"),
    ("image_auroc", "image AUROC"),
    ("pixel_auroc", "pixel AUROC"),
    ("aupro", "AUPRO"),
    ("recall", "recall @tau"),
    ("false_alarms", "false alarms @tau"),
    ("balanced_accuracy", "bal. acc. @tau"),
    ("pointing_accuracy", "pointing acc."),
    ("mean_best_iou", "mean best-box IoU"),
    ("median_area_ratio", "median box/defect area"),
    ("touch_rate", "boxes touch defect"),
    ("normal_boxes", "boxes on normals"),
    ("fit_s", "fit s"),
    ("images_per_s", "img/s"),
    ("fit_ratio", "fit cost vs first"),
    ("inspect_ratio", "inspect cost vs first"),
)


class VariantError(EagleError):
    """A variant name or override this version cannot run."""


def variant_config(name: str) -> ExpertConfig:
    """``ExpertConfig()`` with the variant's overrides; unknown names and fields are refused by name."""
    if name not in VARIANTS:
        raise VariantError(f"unknown variant {name!r}; known variants: {', '.join(VARIANTS)}")
    overrides = VARIANTS[name]
    known = {f.name for f in dataclasses.fields(ExpertConfig)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise VariantError(
            f"variant {name!r} sets {', '.join(unknown)}, which ExpertConfig does not have in this version "
            f"(its fields: {', '.join(sorted(known))})"
        )
    config = dataclasses.replace(ExpertConfig(), **overrides)
    try:
        config.validate()
    except EagleError as exc:
        raise VariantError(f"variant {name!r}: {exc}") from exc
    return config


def datasets(
    names: list[str], limit_train: int | None, limit_test: int | None, elpv_category: str, seed: int
) -> dict[str, tuple[list[Sample], list[Sample]]]:
    out: dict[str, tuple[list[Sample], list[Sample]]] = {}
    for name in names:
        if name not in ("tire", "elpv"):
            raise VariantError(f"unknown dataset {name!r}; known: tire, elpv")
        found = real_set(name, limit_train, limit_test, seed, elpv_category, tag="evidence")
        if found is not None:
            out[name if name == "tire" else f"elpv-{elpv_category}"] = found
    return out


def run_variant(
    config: ExpertConfig, data: str, train: list[Sample], test: list[Sample], out_dir: Path | None
) -> dict[str, Any]:
    """Fit, evaluate and flatten the metrics of one (variant, dataset) pair into a table row."""
    start = time.perf_counter()
    expert = fit([s.path for s in train], data, config)
    fit_s = time.perf_counter() - start
    start = time.perf_counter()
    ev = evaluate_expert(expert, test, out_dir)
    eval_s = time.perf_counter() - start
    tau = ev.at_tau
    boxes = ev.boxes
    return {
        "n_train": len(train),
        "n_normal": ev.n_normal,
        "n_anomalous": ev.n_anomalous,
        "image_auroc": ev.image_auroc,
        "pixel_auroc": ev.pixel_auroc,
        "aupro": ev.aupro,
        "recall": float(tau["recall"]),
        "false_alarms": int(tau["fp"]),
        "balanced_accuracy": float(tau["balanced_accuracy"]),
        **{key: boxes[key] for key in ("pointing_accuracy", "mean_best_iou", "median_area_ratio", "touch_rate")},
        "normal_boxes": int(boxes["normal_boxes"]),
        "normal_images_with_boxes": int(boxes["normal_images_with_boxes"]),
        "fit_s": fit_s,
        "images_per_s": len(test) / eval_s if eval_s > 0 else None,
        "boxes": boxes,
    }


def add_ratios(rows: list[dict[str, Any]]) -> None:
    """Fit and inspection cost of each row relative to the first row of the same data (1.00 for itself)."""
    for row in rows:
        base = next(r for r in rows if r["data"] == row["data"])
        row["fit_ratio"] = row["fit_s"] / base["fit_s"] if base["fit_s"] else None
        speed, base_speed = row["images_per_s"], base["images_per_s"]
        row["inspect_ratio"] = base_speed / speed if speed and base_speed else None


def _cell(key: str, row: dict[str, Any]) -> str:
    value = row.get(key)
    if value is None:
        return "–"
    if key == "false_alarms":
        return f"{value} of {row['n_normal']}"
    if key == "normal_boxes":
        return f"{value} on {row['normal_images_with_boxes']} of {row['n_normal']}"
    if key in ("fit_ratio", "inspect_ratio"):
        return f"{value:.2f}x"
    if key in ("fit_s", "images_per_s", "median_area_ratio"):
        return f"{value:.1f}"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = ["| " + " | ".join(title for _, title in COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(_cell(key, row) for key, _ in COLUMNS) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--variants", default=DEFAULT_VARIANTS, help=f"comma-separated, from: {', '.join(VARIANTS)}")
    parser.add_argument("--datasets", default="tire,elpv", help="comma-separated: tire, elpv")
    parser.add_argument("--elpv-category", default="mono", help="elpv cell type: mono or poly")
    parser.add_argument("--limit-train", type=int, default=None, help="seeded training subset per dataset")
    parser.add_argument("--limit-test", type=int, default=None, help="seeded test subset (keeps the class ratio)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the subsets")
    parser.add_argument("--out", help="directory for evidence.json, evidence.md and each run's eval-expert output")
    args = parser.parse_args(argv)
    try:
        names = [v.strip() for v in args.variants.split(",") if v.strip()]
        configs = {name: variant_config(name) for name in names}  # every variant checked before any fit
        data = datasets(
            [d.strip() for d in args.datasets.split(",") if d.strip()],
            args.limit_train,
            args.limit_test,
            args.elpv_category,
            args.seed,
        )
        out = Path(args.out) if args.out else None
        rows: list[dict[str, Any]] = []
        for data_name, (train, test) in data.items():
            for name, config in configs.items():
                print(f"[evidence] {data_name} / {name}: {len(train)} train, {len(test)} test", file=sys.stderr)
                run_dir = None if out is None else out / data_name / name
                measured = run_variant(config, data_name, train, test, run_dir)
                rows.append({"data": data_name, "variant": name, **measured})
    except EagleError as exc:
        print(f"evidence: error: {exc}", file=sys.stderr)
        return 2
    add_ratios(rows)
    table = markdown(rows)
    print(table)
    if out is not None:
        variants = {name: VARIANTS[name] for name in names}
        document = {"format_version": FORMAT_VERSION, "variants": variants, "rows": rows}
        write_run_record(out, "evidence", argv, document, table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
