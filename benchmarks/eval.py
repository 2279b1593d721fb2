"""What ``eagle eval`` costs on top of the work it does: images/s per condition, and the harness overhead.

Setup: a folder-layout dataset of real elpv cells (``--images`` test cells, half cracked), an
expert fitted on 6 training cells, and the test-sized random Qwen2.5-VL (built into a temp dir).

Measured:
  bare      ``Eagle.inspect`` per image and condition in a plain loop (``expert``: ``Expert.inspect``)
  harness   ``run_experiment`` into a fresh run directory: items, store (fsync per record), the same
            calls, expert evaluation (AUROC, histograms), metrics and the md/html report

Reported: images/s per condition (bare loop), the ratio harness wall time / bare wall time, and
that time split into per-record work (sum of record latencies) and fixed costs.
A warm-up pass runs first so first-call costs are excluded from both; the harness still loads its
own backend and expert once per run (a real part of what a user's run costs).

    .venv/bin/python benchmarks/eval.py [--data elpv|tire] [--images 8] [--tokens 2] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import torch

from eagle_iad.data import get_layout
from eagle_iad.eval.experiment import ExperimentConfig, run_experiment
from eagle_iad.eval.runner import Worker, WorkerConfig, ensure_expert
from eagle_iad.testing.tiny import build_tiny_qwen2_5_vl

CONDITIONS = ("baseline", "expert", "tgps", "eagle", "text-only", "visual-only")


TIRE = Path(__file__).resolve().parents[2] / "shared" / "data" / "mvtec3d-tire"


def make_cells(root: Path, n_test: int, data: str = "elpv") -> None:
    """``root/cells/{train/good,test/good,test/crack}`` from real images (packaged elpv cells or tire)."""
    if data == "tire":
        layout, source, category = get_layout("mvtec"), TIRE, "tire"
    else:
        layout, source, category = get_layout("elpv"), None, "mono"
    test = layout.samples(source, category, "test")
    groups = {
        "train/good": layout.samples(source, category, "train")[:6],
        "test/good": [s for s in test if s.label == 0][: n_test // 2],
        "test/crack": [s for s in test if s.label == 1][: n_test - n_test // 2],
    }
    for sub, samples in groups.items():
        folder = root / "cells" / sub
        folder.mkdir(parents=True, exist_ok=True)
        for sample in samples:
            shutil.copy(sample.path, folder / sample.path.name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--data", choices=("elpv", "tire"), default="elpv", help="tire needs ../shared/data")
    parser.add_argument("--tokens", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        make_cells(root / "data", args.images, args.data)
        model = build_tiny_qwen2_5_vl(root / "qwen")
        layout_root = root / "data"
        ensure_expert(root / "models", "cells", lambda: sorted((layout_root / "cells/train/good").iterdir()), None, 0)
        config = ExperimentConfig(
            layout="folder",
            data=str(layout_root),
            models=str(root / "models"),
            conditions=CONDITIONS,
            mllm=f"hf:{model}",
            max_new_tokens=args.tokens,
        )
        worker = Worker(WorkerConfig(CONDITIONS, str(root / "models"), f"hf:{model}", max_new_tokens=args.tokens))
        from eagle_iad.eval.experiment import build_items

        items = build_items(config)
        for condition in CONDITIONS:  # warm-up: load the backend and the expert, first-call costs
            worker.answer(items[0], condition)
        bare: dict[str, float] = {}
        for condition in CONDITIONS:
            start = time.perf_counter()
            for item in items:
                if condition == "expert":
                    worker.expert("cells").inspect(item.image)
                else:
                    from eagle_iad.mllm.caas import CaasSettings
                    from eagle_iad.pipeline import Eagle, EagleConfig

                    expert = None if condition == "baseline" else worker.expert("cells")
                    eagle_config = EagleConfig(
                        condition=condition,  # type: ignore[arg-type]  # a pipeline condition here
                        caas=CaasSettings(),
                        max_new_tokens=args.tokens,
                    )
                    Eagle(expert, worker.backend(), eagle_config).inspect(item.image, item.to_question())
            bare[condition] = time.perf_counter() - start
        run_experiment(config, root / "warm")  # warm the harness path (imports, matplotlib)
        start = time.perf_counter()
        run_experiment(config, root / "run")
        harness = time.perf_counter() - start
        timing = json.loads((root / "run" / "timing.json").read_text())
    in_records = sum(v["seconds"] for v in timing.values())
    total_bare = sum(bare.values())
    shape = f"{len(items)} images x {len(CONDITIONS)} conditions, {args.tokens} tokens, {args.threads} thread(s)"
    print(f"data {args.data}: {shape}")
    for condition, seconds in bare.items():
        print(f"  {condition:12s} {len(items) / seconds:8.1f} images/s (bare)")
    print(f"bare total {total_bare:.2f} s, harness {harness:.2f} s, overhead ratio {harness / total_bare:.2f}")
    print(
        f"  of which per-record work {in_records:.2f} s (ratio {in_records / total_bare:.2f} to bare), fixed "
        f"{harness - in_records:.2f} s (backend/expert load, fsync, expert evaluation, metrics, report)"
    )


if __name__ == "__main__":
    main()
