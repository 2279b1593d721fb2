"""Inspection speed and memory per runtime (torch, ONNX Runtime, OpenVINO) on one fitted model, in one run.

Fits one elpv mono model (or takes ``--model``), exports it to ONNX and OpenVINO, then inspects the
same decoded images with each runtime at batch 1, 4 (``eagle inspect``'s chunk) and 16, each runtime
in a fresh process so its peak RSS is its own (model load, compile and inference; the images are decoded before timing).
Prints one Markdown table: images/s, the ratio to torch, peak RSS; docs/DEPLOY.md's "Speed and memory" table.

    .venv/bin/python benchmarks/export.py [--train 40] [--images 32] [--size 320] [--model DIR]

Every figure is a best-of-``--repeat`` wall time on whatever else the machine runs: read the load
average printed with them. Host preprocessing (PIL resize) and the map's way back to the original
frame are inside the timing for every runtime alike, as in ``eagle inspect``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

RUNTIMES = ("torch", "onnx", "openvino")
BATCHES = (1, 4, 16)


def _images(count: int) -> list[Path]:
    from eagle_iad.data import get_layout

    samples = get_layout("elpv").samples(None, "mono", "test")
    return [s.path for s in samples][:count]


def worker(runtime: str, model: str, count: int, repeat: int) -> dict[str, Any]:
    """One runtime's images/s per batch size and its peak RSS, in this (fresh) process."""
    import numpy as np

    from eagle_iad.expert import load_expert
    from eagle_iad.images import load_rgb

    rgbs: list[np.ndarray] = [load_rgb(path) for path in _images(count)]
    start = time.perf_counter()
    expert = load_expert(model, runtime)
    load_s = time.perf_counter() - start
    rates: dict[str, float] = {}
    scores: list[float] = []
    for batch in BATCHES:
        expert.inspect_many(rgbs[:batch], batch=batch)  # warm-up: first-run allocations and kernel choices
        best = float("inf")
        for _ in range(repeat):
            start = time.perf_counter()
            results = expert.inspect_many(rgbs, batch=batch)
            best = min(best, time.perf_counter() - start)
        rates[str(batch)] = len(rgbs) / best
        scores = [r.score for r in results]
    return {"runtime": runtime, "rates": rates, "load_s": load_s, "peak_rss_mib": _peak_rss_mib(), "scores": scores}


def _peak_rss_mib() -> float:
    """This process's peak resident set (VmHWM): ru_maxrss would carry the forking parent's peak."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="a fitted model folder (default: fit elpv mono here)")
    parser.add_argument("--train", type=int, default=40, help="training images of the fitted model (default 40)")
    parser.add_argument("--size", type=int, default=320, help="input long side of the fitted model (default 320)")
    parser.add_argument("--images", type=int, default=32, help="images inspected per timing (default 32)")
    parser.add_argument("--repeat", type=int, default=2, help="best of this many timings (default 2)")
    parser.add_argument("--worker", choices=RUNTIMES, help=argparse.SUPPRESS)
    parser.add_argument("--worker-model", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.worker, args.worker_model, args.images, args.repeat)))
        return 0

    from eagle_iad.data import get_layout
    from eagle_iad.expert import ExpertConfig, fit, load_expert, save
    from eagle_iad.expert.export import export_expert

    with tempfile.TemporaryDirectory(prefix="eagle-bench-export-") as scratch:
        root = Path(scratch)
        model = args.model
        if model is None:
            train = [s.path for s in get_layout("elpv").samples(None, "mono", "train")][: args.train]
            expert = fit(train, "mono", ExpertConfig(size=args.size, native_up_to=0))
            model = str(save(expert.model, root / "model"))
        expert = load_expert(model)
        bank = tuple(expert.model.bank.shape)
        folders = {"torch": model}
        for fmt in ("onnx", "openvino"):
            start = time.perf_counter()
            export_expert(expert, fmt, root / fmt)
            print(f"export {fmt}: {time.perf_counter() - start:.1f} s", file=sys.stderr)
            folders[fmt] = str(root / fmt)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[1] / "src")])}
        rows = []
        for runtime in RUNTIMES:
            done = subprocess.run(
                [sys.executable, __file__, "--worker", runtime, "--worker-model", folders[runtime],
                 "--images", str(args.images), "--repeat", str(args.repeat)],
                capture_output=True, text=True, env=env, check=False,
            )  # fmt: skip
            if done.returncode != 0:
                print(done.stderr, file=sys.stderr)
                return 1
            rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
    torch_row = rows[0]
    config = expert.model.config
    print(
        f"model: {config.backbone}, {config.preprocess} {config.input_hw}, bank {bank[0]} x {bank[1]}; "
        f"{args.images} elpv images, best of {args.repeat}; load average {os.getloadavg()[0]:.1f}; "
        f"{os.cpu_count()} CPUs"
    )
    print()
    columns = "".join(f" images/s, batch {batch} | x torch |" for batch in BATCHES)
    print(f"| runtime |{columns} load s | peak RSS MiB | max score diff |")
    print("|---" * (4 + 2 * len(BATCHES)) + "|")
    for row in rows:
        diff = max(abs(a - b) / abs(b) for a, b in zip(row["scores"], torch_row["scores"], strict=True))
        cells = [row["runtime"]]
        for batch in BATCHES:
            rate = row["rates"][str(batch)]
            cells += [f"{rate:.1f}", f"{rate / torch_row['rates'][str(batch)]:.2f}"]
        cells += [f"{row['load_s']:.1f}", f"{row['peak_rss_mib']:.0f}", f"{diff:.1e} rel"]
        print("| " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
