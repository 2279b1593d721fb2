"""What ``eagle eval`` costs on top of the work it does: images/s per condition, and the harness overhead.

Setup: a folder-layout dataset of real elpv cells (``--images`` test cells, half cracked), an
expert fitted on 6 training cells, and the test-sized random Qwen2.5-VL (built into a temp dir).

Measured:
  bare      ``Eagle.inspect`` per image and condition in a plain loop (``expert``: ``Expert.inspect``),
            so each condition scores the image itself
  harness   ``run_experiment`` into a fresh run directory: items, store (fsync per record), the same
            calls, expert evaluation (AUROC, histograms), metrics and the md/html report; two variants
            of its worker, alternated (best of ``--repeats`` each):
              per-condition  the runner before issue 27: every condition that reads the expert's
                             result scores the image again (three passes per image by default)
              once           the runner now: one expert pass per image, kept in RUN/expert-cache

Reported: images/s per condition (bare loop); per variant the run's wall time, its images/s (test
images / wall time, all conditions) and its per-record work (sum of record latencies); the ratio of
the variants' images/s; the ratio harness (once) / bare wall time, split into per-record work and
fixed costs. A warm-up pass runs first so first-call costs are excluded; the harness still loads its
own backend and expert once per run (a real part of what a user's run costs).

    .venv/bin/python benchmarks/eval.py [--data elpv|tire] [--images 8] [--tokens 2] [--threads 1]
                                        [--conditions baseline,expert,...] [--repeats 1]
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
from eagle_iad.eval.executors import Sink
from eagle_iad.eval.experiment import ExperimentConfig, run_experiment
from eagle_iad.eval.protocol import EVAL_CONDITIONS, WorkItem, parse_conditions
from eagle_iad.eval.runner import Key, Worker, WorkerConfig, ensure_expert
from eagle_iad.expert.patchcore import ExpertResult
from eagle_iad.images import load_rgb
from eagle_iad.pipeline import expert_pass
from eagle_iad.testing.tiny import build_tiny_qwen2_5_vl


class PerConditionWorker(Worker):
    """``eagle eval``'s worker before issue 27: each condition that reads the expert scores the image again."""

    def expert_result(self, item: WorkItem) -> ExpertResult:
        return expert_pass(self.expert(item.category), load_rgb(item.image))


class VariantExecutor:
    """``LocalExecutor`` with the worker class under test."""

    def __init__(self, worker: type[Worker]) -> None:
        self.worker = worker

    def run(self, shards: dict[str, list[WorkItem]], config: WorkerConfig, done: set[Key], sink: Sink) -> None:
        worker = self.worker(config)
        for items in shards.values():
            for record in worker.run(items, done):
                sink(record)


VARIANTS: dict[str, type[Worker]] = {"per-condition": PerConditionWorker, "once": Worker}


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
    parser.add_argument("--conditions", default=",".join(EVAL_CONDITIONS), help="default: all six")
    parser.add_argument("--repeats", type=int, default=1, help="harness runs per variant (best kept)")
    args = parser.parse_args()
    conditions = parse_conditions(args.conditions)
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
            conditions=conditions,
            mllm=f"hf:{model}",
            max_new_tokens=args.tokens,
        )
        worker = Worker(WorkerConfig(conditions, str(root / "models"), f"hf:{model}", max_new_tokens=args.tokens))
        from eagle_iad.eval.experiment import build_items

        items = build_items(config)
        for condition in conditions:  # warm-up: load the backend and the expert, first-call costs
            worker.answer(items[0], condition)
        bare: dict[str, float] = {}
        for condition in conditions:
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
        harness: dict[str, float] = {}
        in_records: dict[str, float] = {}
        records: dict[str, list[str]] = {}
        for repeat in range(args.repeats):  # alternated, so drift of the machine hits both alike
            for name, worker_type in VARIANTS.items():
                run = root / f"{name}-{repeat}"
                start = time.perf_counter()
                run_experiment(config, run, VariantExecutor(worker_type))
                seconds = time.perf_counter() - start
                if seconds < harness.get(name, float("inf")):
                    harness[name] = seconds
                    timing = json.loads((run / "timing.json").read_text())
                    in_records[name] = sum(v["seconds"] for v in timing.values())
                records[name] = _stripped(run / "results.jsonl")
    if records["once"] != records["per-condition"]:
        raise SystemExit("the variants' records differ: the measurement compares different work")
    total_bare = sum(bare.values())
    shape = f"{len(items)} images x {len(conditions)} conditions, {args.tokens} tokens, {args.threads} thread(s)"
    print(f"data {args.data}: {shape}")
    for condition, seconds in bare.items():
        print(f"  {condition:12s} {len(items) / seconds:8.1f} images/s (bare)")
    print(f"eagle eval (run_experiment, best of {args.repeats}), same records in both variants:")
    for name, seconds in harness.items():
        rate = len(items) / seconds
        print(f"  {name:14s} {seconds:6.2f} s  {rate:6.2f} images/s  per-record work {in_records[name]:.2f} s")
    ratio = harness["per-condition"] / harness["once"]
    print(f"  images/s ratio once / per-condition: {ratio:.2f}x")
    once = harness["once"]
    print(f"bare total {total_bare:.2f} s, harness {once:.2f} s, overhead ratio {once / total_bare:.2f}")
    print(
        f"  of which per-record work {in_records['once']:.2f} s (ratio {in_records['once'] / total_bare:.2f} to bare), "
        f"fixed {once - in_records['once']:.2f} s (backend/expert load, fsync, expert evaluation, metrics, report)"
    )


def _stripped(path: Path) -> list[str]:
    """A run's records without their latencies, sorted: what must not depend on the variant."""
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    return sorted(json.dumps({k: v for k, v in row.items() if k != "latency_s"}, sort_keys=True) for row in rows)


if __name__ == "__main__":
    main()
