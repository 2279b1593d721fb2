"""Prepare and start a real ``eagle serve`` for the TypeScript client tests and the browser tests.

The Node test suites (``clients/ts``, ``web/e2e``) run against this exact server process: an expert
fitted on a few real elpv solar cells (category ``mono``; the cells ship in the ``elpv-dataset`` PyPI
package, so a fresh clone has them without ``../shared``), the tiny random Qwen2.5-VL (real
architecture and processor; no MLLM weights exist on this machine, so its replies are random text,
never a faked answer), an evaluation run written by ``eagle eval-expert`` so ``/v1/evaluations`` has
metrics and plots, and a data root with a folder of normal cells for fits from a server folder (and a
folder of undecodable ``.png`` files, for a fit job that fails).

Usage: ``python tests/serve_fixture.py --work DIR --port N [--mllm-queue N] [--runtime onnx]``
(``EAGLE_API_KEY`` passes through; ``--runtime onnx`` serves an ONNX export of the model instead, as
``eagle serve --runtime onnx`` on export folders does, exported once into ``DIR/exports``).
Preparation is cached in ``DIR`` (a marker file is written last), then the process *becomes*
``eagle serve`` (exec), so the caller stops the server by signalling the pid it started.
A failure is one line on stderr and exit status 2, which the Node suites show as the reason.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

from eagle_iad.data import get_layout

#: The category the suites inspect and fit against (also the model's directory name).
CATEGORY = "mono"
#: Bump when what ``prepare`` writes changes, so an older cache is rebuilt instead of reused.
#: v8: sample-good.jpg, and a model of schema 10 (its training images' encodings, which a JPEG's warning needs).
#: v9: a model of schema 11 (its training images' colour modes, which the noise frame's colour warning needs).
#: v10: a model of schema 12 (its training images' exposure range, which every verdict is compared with).
READY = ".prepared-v10"
NEEDED = ("models/mono/model.json", "runs/mono-expert/metrics.json", "tiny-qwen2.5-vl/config.json",
          "data/mono-good/05.png", "data/broken/b.png", "sample-good.png", "sample-crack.png",
          "sample-noise.png", "sample-good.jpg")  # fmt: skip


class FixtureError(Exception):
    """Preparation failed; the message says which step and why."""


#: The cracked cell the console and station tests inspect: one the fixture's 12-cell model catches with a
#: margin (score 153 against tau 139 at the default exposure; the first cracked cell, 130, now passes).
SAMPLE_CRACK = "cell0006.png"


def _eagle(*args: str) -> None:
    result = subprocess.run([sys.executable, "-m", "eagle_iad.cli", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    if result.returncode != 0:
        raise FixtureError(f"`eagle {args[0]}` failed (exit {result.returncode}): {result.stderr.strip()}")


def prepare(work: Path, train_images: int) -> None:
    """Models, tiny MLLM, evaluation run and data root under ``work`` (skipped when already there)."""
    if (work / READY).is_file() and all((work / path).is_file() for path in NEEDED):
        return
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    data = ["--layout", "elpv", "--category", CATEGORY]
    model = work / "models" / CATEGORY
    _eagle("fit", *data, "--out", str(model), "--limit-train", str(train_images), "--quiet")
    _eagle("eval-expert", *data, "--model", str(model), "--out", str(work / "runs" / f"{CATEGORY}-expert"),
           "--limit-test", "8", "--quiet")  # fmt: skip
    from eagle_iad.testing.tiny import build_tiny_qwen2_5_vl

    build_tiny_qwen2_5_vl(work / "tiny-qwen2.5-vl")
    layout = get_layout("elpv")
    # A server folder of normal cells (for fits by folder) and one normal and one cracked test cell.
    train = sorted(s.path for s in layout.samples(None, CATEGORY, "train"))
    for index, source in enumerate(train[-6:]):
        target = work / "data" / f"{CATEGORY}-good" / f"{index:02d}.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
    # Files a fit by folder accepts by name but cannot decode: the job itself fails (a failed-job path).
    for name in ("a.png", "b.png"):
        broken = work / "data" / "broken" / name
        broken.parent.mkdir(parents=True, exist_ok=True)
        broken.write_text("not an image")
    test = sorted(layout.samples(None, CATEGORY, "test"), key=lambda s: str(s.path))
    for name, label in (("sample-good.png", 0), ("sample-crack.png", 1)):
        source = next(s.path for s in test if s.label == label and (label == 0 or s.path.name == SAMPLE_CRACK))
        shutil.copyfile(source, work / name)
    # A frame of noise (a camera fault): not like the training cells at all, so "unrecognised".
    import numpy as np
    from PIL import Image

    # The normal cell as a JPEG (quality 95): the model was fitted on PNGs, so its verdict carries a warning.
    Image.open(work / "sample-good.png").save(work / "sample-good.jpg", "JPEG", quality=95)

    noise = np.random.default_rng(3).integers(0, 256, (300, 300, 3), dtype=np.uint8)
    Image.fromarray(noise).save(work / "sample-noise.png")
    (work / READY).write_text("ok\n")


def export(work: Path) -> Path:
    """``DIR/exports``: an ONNX export of each model (``eagle export``), made once. Apart from :func:`prepare`'s
    cache, since only the suites that serve an export pay for it; the export writes its sidecar last, so a
    folder with one is whole."""
    exports = work / "exports"
    target = exports / CATEGORY
    if not (target / "eagle-export.json").is_file():
        shutil.rmtree(target, ignore_errors=True)
        _eagle("export", "--model", str(work / "models" / CATEGORY), "--format", "onnx", "--out", str(target))
    return exports


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", required=True, help="cache directory for models, MLLM, runs and data")
    parser.add_argument("--port", required=True, type=int)
    parser.add_argument("--state-dir", help="service state (default: a fresh <work>/state-<port>)")
    parser.add_argument("--train-images", type=int, default=12)
    parser.add_argument("--mllm-queue", type=int, default=4, help="MLLM requests that may wait (1: 429s come fast)")
    parser.add_argument("--runtime", choices=("torch", "onnx"), default="torch",
                        help="onnx: serve an ONNX export of the model (eagle serve --runtime onnx)")  # fmt: skip
    parser.add_argument("--prepare-only", action="store_true")
    args = parser.parse_args()
    work = Path(args.work).resolve()
    try:
        prepare(work, args.train_images)
        served = export(work) if args.runtime == "onnx" else work / "models"
    except (FixtureError, OSError) as error:
        sys.exit(f"serve_fixture.py: cannot prepare {work}: {error}")
    if args.prepare_only:
        return
    state = Path(args.state_dir) if args.state_dir else work / f"state-{args.port}"
    shutil.rmtree(state, ignore_errors=True)
    models = state / "models"
    shutil.copytree(served, models)  # fits made by a test land in this run's copy only
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    command = [sys.executable, "-m", "eagle_iad.cli", "serve", "--models", str(models),
               "--mllm", f"hf:{work / 'tiny-qwen2.5-vl'}", "--runs", str(work / "runs"),
               "--data-root", str(work / "data"), "--state-dir", str(state), "--host", "127.0.0.1",
               "--port", str(args.port), "--mllm-queue", str(args.mllm_queue), "--log-level", "warning",
               "--runtime", args.runtime]  # fmt: skip
    os.execv(sys.executable, command)


if __name__ == "__main__":
    main()
