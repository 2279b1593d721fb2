"""What the "not this product" check changes on real test sets: eval-expert's figures with and without it.

Fits tire (MVTec 3D-AD, from ../shared) and elpv mono at the defaults (up to ``--train`` images), then
evaluates each model's test set twice in one run: as the product now judges it (a test image with a
fifth of its patches beyond every training patch is "unrecognised", with no boxes) and with the
check switched off (coverage None, as before). Decisions at tau come from the score, so image AUROC,
recall and false alarms cannot change; what can is the boxes the product draws. Prints one table:
both sides' figures, the test images counted unrecognised, and the largest share of any test image.

    .venv/bin/python benchmarks/unrecognised.py [--train 200] [--test 0] [--sets tire,elpv]
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Any

import numpy as np

SHARED_TIRE = Path(__file__).resolve().parents[2] / "shared" / "data" / "mvtec3d-tire"


def _row(name: str, evaluation: Any) -> list[str]:
    at_tau, boxes = evaluation.at_tau, evaluation.boxes

    def fmt(value: Any) -> str:
        return "-" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)

    return [name, fmt(evaluation.image_auroc), fmt(at_tau.get("recall")), str(at_tau.get("fp")),
            fmt(boxes.get("pointing_accuracy")), fmt(boxes.get("mean_best_iou")),
            str(boxes.get("normal_boxes"))]  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train", type=int, default=200, help="at most this many training images per set")
    parser.add_argument("--test", type=int, default=0, help="at most this many test images per set, spread "
                        "evenly over the sorted list (0: all)")  # fmt: skip
    parser.add_argument("--sets", default="tire,elpv", help="which sets, comma-separated (tire, elpv)")
    args = parser.parse_args()

    import torch

    from eagle_iad.data import get_layout
    from eagle_iad.eval.expert_eval import evaluate_expert
    from eagle_iad.expert import Expert, fit

    torch.set_num_threads(2)
    wanted = set(args.sets.split(","))
    sets: list[tuple[str, str, Path | None]] = [("elpv", "mono", None)] if "elpv" in wanted else []
    if "tire" in wanted and (SHARED_TIRE / "tire").is_dir():
        sets.insert(0, ("mvtec", "tire", SHARED_TIRE))
    elif "tire" in wanted:
        print(f"tire left out: no images at {SHARED_TIRE}", file=sys.stderr)
    header = ["set", "image AUROC", "recall at tau", "false alarms", "pointing", "mean best IoU", "boxes on normals",
              "unrecognised", "largest share"]  # fmt: skip
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header), flush=True)
    for layout_name, category, root in sets:
        layout = get_layout(layout_name)
        train = [s.path for s in layout.samples(root, category, "train")][: args.train]
        test = layout.samples(root, category, "test")
        if args.test and len(test) > args.test:
            test = [test[int(i)] for i in np.linspace(0, len(test) - 1, args.test)]
        expert = fit(train, category, show_progress=True)
        after = evaluate_expert(expert, test, show_progress=True)
        shares = [expert.inspect(s.path).foreign_share for s in test]
        before_model = dataclasses.replace(expert.model, coverage=None)
        before = evaluate_expert(Expert(before_model, expert.extractor, expert.search), test, show_progress=True)
        coverage = expert.model.coverage
        limit = coverage.limit if coverage is not None else float("nan")
        flagged = sum(1 for share in shares if share is not None and share >= limit)
        top = max((share for share in shares if share is not None), default=float("nan"))
        name = f"{category} ({len(train)} train, {len(test)} test)"
        for row in ([*_row(f"{name}, before", before), "-", "-"],
                    [*_row(f"{name}, after", after), str(flagged), f"{top:.3f}"]):  # fmt: skip
            print("| " + " | ".join(row) + " |", flush=True)
    return 0


if __name__ == "__main__":
    np.seterr(all="ignore")
    sys.exit(main())
