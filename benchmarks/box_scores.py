"""What a box's patch score costs: turning the expert's results into verdicts with and without it, in one run.

A box's ``patch_score`` (the largest patch score under it, on the image score's scale) needs the raw
patch grid drawn over the original image (``verdict.patch_map``): one more full-size float32 map per
image. This fits elpv mono and, when ../shared has it, the tire (MVTec 3D-AD, 800x800 RGB and larger)
at the defaults, scores their test images once, then times ``make_verdict`` on the same results both
ways and prints milliseconds per image, the ratio, and the share of a whole inspection (scoring plus
verdict) the patch map adds. Also checks, on every anomalous image, how often box #1's patch score is
the image's score exactly.

    .venv/bin/python benchmarks/box_scores.py [--train 60] [--test 40] [--repeat 3]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any
from unittest import mock

SHARED_TIRE = Path(__file__).resolve().parents[2] / "shared" / "data" / "mvtec3d-tire"


def _time(function: Any, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train", type=int, default=60, help="training images per set")
    parser.add_argument("--test", type=int, default=40, help="test images per set")
    parser.add_argument("--repeat", type=int, default=3, help="timing repeats (the best is kept)")
    args = parser.parse_args()

    import torch

    from eagle_iad import verdict as verdict_module
    from eagle_iad.data import get_layout
    from eagle_iad.expert import fit
    from eagle_iad.verdict import make_verdict

    torch.set_num_threads(2)
    sets: list[tuple[str, str, str, Path | None]] = [("elpv mono", "elpv", "mono", None)]
    if (SHARED_TIRE / "tire").is_dir():
        sets.append(("tire", "mvtec", "tire", SHARED_TIRE))
    else:
        print(f"(tire left out: no images at {SHARED_TIRE})")
    print(
        "| set | images | scoring ms/img | verdict ms/img without | with patch score | ratio "
        "| share of an inspection | box #1 = score |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name, layout_name, category, root in sets:
        layout = get_layout(layout_name)
        train = [s.path for s in layout.samples(root, category, "train")][: args.train]
        samples = layout.samples(root, category, "test")
        step = max(1, len(samples) // args.test)
        test = [s.path for s in samples[::step]][: args.test]  # spread over the defect types
        expert = fit(train, category)
        start = time.perf_counter()
        results = expert.inspect_many(test)
        scoring = (time.perf_counter() - start) / len(test)

        def verdicts(expert: Any = expert, test: list[Path] = test, results: list[Any] = results) -> list[Any]:
            return [make_verdict(expert, str(path), result) for path, result in zip(test, results, strict=True)]

        with_score = _time(verdicts, args.repeat) / len(test)
        with mock.patch.object(verdict_module, "patch_map", lambda _result: None):
            without = _time(verdicts, args.repeat) / len(test)
        anomalous = [v for v in verdicts() if v.boxes]
        exact = sum(1 for v in anomalous if v.boxes[0].patch_score == v.score)
        added = with_score - without
        share = added / (scoring + without)
        print(
            f"| {name} | {len(test)} | {scoring * 1e3:.1f} | {without * 1e3:.2f} | {with_score * 1e3:.2f} | "
            f"{with_score / without:.2f}x | {share:.1%} | {exact} of {len(anomalous)} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
