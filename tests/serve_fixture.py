"""Prepare and start a real ``eagle serve`` for the TypeScript client tests and the browser tests.

The Node test suites (``clients/ts``, ``web/e2e``) run against this exact server process: a tire
expert fitted on a few real MVTec 3D-AD tire images, the tiny random Qwen2.5-VL (real architecture
and processor; no MLLM weights exist on this machine, so its replies are random text, never a faked
answer), an evaluation run written by ``eagle eval-expert`` so ``/v1/evaluations`` has metrics and
plots, and a data root with a folder of normal images for fits from a server folder (and a folder of
undecodable ``.png`` files, for a fit job that fails).

Usage: ``python tests/serve_fixture.py --work DIR --port N [--mllm-queue N]`` (``EAGLE_API_KEY``
passes through). Preparation is cached in ``DIR`` (a marker file is written last), then the process
*becomes* ``eagle serve`` (exec), so the caller stops the server by signalling the pid it started.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TIRE = REPO.parent / "shared" / "data" / "mvtec3d-tire"
READY = ".prepared-v2"


def _eagle(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "eagle_iad.cli", *args], check=True, stdout=subprocess.DEVNULL)


def prepare(work: Path, train_images: int) -> None:
    """Models, tiny MLLM, evaluation run and data root under ``work`` (skipped when already there)."""
    needed = ("models/tire/model.json", "runs/tire-expert/metrics.json", "tiny-qwen2.5-vl/config.json",
              "data/tire-good/05.png", "data/broken/b.png", "sample-good.png", "sample-cut.png")  # fmt: skip
    if (work / READY).is_file() and all((work / path).is_file() for path in needed):
        return
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    data = ["--data", str(TIRE), "--layout", "mvtec", "--category", "tire"]
    _eagle("fit", *data, "--out", str(work / "models" / "tire"), "--limit-train", str(train_images), "--quiet")
    _eagle("eval-expert", *data, "--model", str(work / "models" / "tire"), "--out", str(work / "runs" / "tire-expert"),
           "--limit-test", "8", "--quiet")  # fmt: skip
    from eagle_iad.mllm.tiny import build_tiny_qwen2_5_vl

    build_tiny_qwen2_5_vl(work / "tiny-qwen2.5-vl")
    # A server folder of normal tire images (for fits by folder) and a few test images for uploads.
    good = sorted((TIRE / "tire" / "train" / "good").glob("*.png"))
    for index, source in enumerate(good[-6:]):
        target = work / "data" / "tire-good" / f"{index:02d}.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
    # Files a fit by folder accepts by name but cannot decode: the job itself fails (a failed-job path).
    for name in ("a.png", "b.png"):
        broken = work / "data" / "broken" / name
        broken.parent.mkdir(parents=True, exist_ok=True)
        broken.write_text("not an image")
    for kind in ("good", "cut"):
        source = sorted((TIRE / "tire" / "test" / kind).glob("*.png"))[0]
        shutil.copyfile(source, work / f"sample-{kind}.png")
    (work / READY).write_text("ok\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", required=True, help="cache directory for models, MLLM, runs and data")
    parser.add_argument("--port", required=True, type=int)
    parser.add_argument("--state-dir", help="service state (default: a fresh <work>/state-<port>)")
    parser.add_argument("--train-images", type=int, default=12)
    parser.add_argument("--mllm-queue", type=int, default=4, help="MLLM requests that may wait (1: 429s come fast)")
    parser.add_argument("--prepare-only", action="store_true")
    args = parser.parse_args()
    work = Path(args.work).resolve()
    prepare(work, args.train_images)
    if args.prepare_only:
        return
    state = Path(args.state_dir) if args.state_dir else work / f"state-{args.port}"
    shutil.rmtree(state, ignore_errors=True)
    models = state / "models"
    shutil.copytree(work / "models", models)  # fits made by a test land in this run's copy only
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    command = [sys.executable, "-m", "eagle_iad.cli", "serve", "--models", str(models),
               "--mllm", f"hf:{work / 'tiny-qwen2.5-vl'}", "--runs", str(work / "runs"),
               "--data-root", str(work / "data"), "--state-dir", str(state), "--host", "127.0.0.1",
               "--port", str(args.port), "--mllm-queue", str(args.mllm_queue), "--log-level", "warning"]  # fmt: skip
    os.execv(sys.executable, command)


if __name__ == "__main__":
    main()
