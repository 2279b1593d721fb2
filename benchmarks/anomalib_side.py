"""``eagle inspect`` beside anomalib's PatchCore on the same images and the same WideResNet-50-2 weights.

anomalib needs torchvision, which eagle-iad does not install (it pulls a CUDA torch build on most
machines), so anomalib runs in its own environment: give its Python with ``--anomalib-python``
(for example a venv made with ``python -m venv A && A/bin/pip install torch==2.13.0 anomalib``).
Without one this script says so and stops.

Both sides get one set of random WideResNet-50-2 weights (torchvision's initialisation, seed 0;
no pretrained file can be downloaded here, and speed does not depend on the values), the same elpv
training cells for the bank (10% greedy coreset each) and the same test cells, decoded before
timing. Each side runs in its own process, best of ``--repeat``, at batch 1 and 4:

- eagle: ``Expert.inspect_many`` at ``--size`` (whole frame, resize): score, map in the frame,
  calibrated; layer2 + layer3 pooled to 1,024 dims, exact pruned search.
- anomalib: its PreProcessor (resize to ``--size``) and ``PatchcoreModel`` in eval mode: score
  (its re-weighted nearest-neighbour score) and map; layer2 + layer3 concatenated (1,536 dims),
  ``torch.cdist`` search. Its post-processor (normalisation) and visualiser are not timed.

    .venv/bin/python benchmarks/anomalib_side.py --anomalib-python /tmp/anom/bin/python
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Literal

BATCHES = (1, 4)


def _cells(split: Literal["train", "test"], count: int) -> list[str]:
    from eagle_iad.data import get_layout

    return [str(s.path) for s in get_layout("elpv").samples(None, "mono", split)][:count]


def _rates(run: Any, images: list[Any], repeat: int) -> dict[str, float]:
    """Images per second of ``run(chunk)`` over ``images`` in chunks of each batch size, best of ``repeat``."""
    rates = {}
    for batch in BATCHES:
        run(images[:batch])  # first-run allocations
        best = float("inf")
        for _ in range(repeat):
            start = time.perf_counter()
            for i in range(0, len(images), batch):
                run(images[i : i + batch])
            best = min(best, time.perf_counter() - start)
        rates[str(batch)] = len(images) / best
    return rates


def _import_torchvision_without_its_compiled_ops() -> None:
    """Import torchvision where its compiled ops cannot load: PyPI's build links CUDA torch libraries.

    Its import registers shapes for those ops (nms, roi_align, ...) and fails when they do not
    exist. PatchCore uses none of them, so the registrations are skipped for that one import.
    """
    import torch.library

    original = torch.library.register_fake

    def lenient(op: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(op, str) and op.startswith("torchvision::"):
            return lambda fn: fn
        return original(op, *args, **kwargs)

    torch.library.register_fake = lenient
    try:
        import torchvision  # noqa: F401
    finally:
        torch.library.register_fake = original


def anomalib_worker(weights: str, train: list[str], test: list[str], size: int, repeat: int) -> dict[str, Any]:
    """In anomalib's environment: write the shared weights, fit its PatchCore, time its inference."""
    import numpy as np
    import torch

    _import_torchvision_without_its_compiled_ops()
    import torchvision
    from anomalib.models import Patchcore
    from PIL import Image

    torch.manual_seed(0)
    network = torchvision.models.wide_resnet50_2(weights=None).eval()
    torch.save(network.state_dict(), weights)
    model = Patchcore(backbone="wide_resnet50_2", pre_trained=False, coreset_sampling_ratio=0.1)
    extractor = model.model.feature_extractor.feature_extractor
    missing, _ = extractor.load_state_dict(network.state_dict(), strict=False)
    if missing:
        raise SystemExit(f"anomalib's backbone did not take the weights: missing {missing[:5]}")
    pre = Patchcore.configure_pre_processor(image_size=(size, size)).transform

    def tensors(paths: list[str]) -> list[torch.Tensor]:
        return [torch.from_numpy(np.asarray(Image.open(p).convert("RGB"))).permute(2, 0, 1) for p in paths]

    start = time.perf_counter()
    core = model.model.train()
    with torch.no_grad():
        for i in range(0, len(train), 8):
            chunk = tensors(train[i : i + 8])
            core(torch.stack([pre(t.float() / 255) for t in chunk]))
        core.subsample_embedding(0.1)
    fit_s = time.perf_counter() - start
    core.eval()
    images = tensors(test)

    def run(chunk: list[torch.Tensor]) -> None:
        with torch.no_grad():
            core(torch.stack([pre(t.float() / 255) for t in chunk]))

    return {"fit_s": fit_s, "bank": list(core.memory_bank.shape), "rates": _rates(run, images, repeat)}


def eagle_worker(weights: str, train: list[str], test: list[str], size: int, repeat: int) -> dict[str, Any]:
    """In eagle's environment: fit at the same size with the same weights, time ``inspect_many``."""
    from eagle_iad.expert import ExpertConfig, fit
    from eagle_iad.images import load_rgb

    os.environ["EAGLE_WRN50_WEIGHTS"] = weights
    start = time.perf_counter()
    expert = fit(train, "mono", ExpertConfig(backbone="wide_resnet50_2", size=size, native_up_to=0))
    fit_s = time.perf_counter() - start
    images = [load_rgb(p) for p in test]
    rates = _rates(lambda chunk: expert.inspect_many(chunk, batch=len(chunk)), images, repeat)
    return {"fit_s": fit_s, "bank": list(expert.model.bank.shape), "rates": rates}


def _run(python: str, side: str, args: argparse.Namespace, weights: str, env: dict[str, str]) -> dict[str, Any]:
    payload = json.dumps({"weights": weights, "train": _cells("train", args.train),
                          "test": _cells("test", args.images), "size": args.size, "repeat": args.repeat})  # fmt: skip
    done = subprocess.run(
        [python, __file__, "--worker", side], input=payload, capture_output=True, text=True, env=env, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"the {side} side failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--anomalib-python", default=os.environ.get("ANOMALIB_PYTHON"))
    parser.add_argument("--train", type=int, default=40, help="training cells (default 40)")
    parser.add_argument("--images", type=int, default=32, help="test cells timed (default 32)")
    parser.add_argument("--size", type=int, default=256, help="input side, anomalib's default 256")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--worker", choices=("eagle", "anomalib"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        job = json.loads(sys.stdin.read())
        work = eagle_worker if args.worker == "eagle" else anomalib_worker
        print(json.dumps(work(job["weights"], job["train"], job["test"], job["size"], job["repeat"])))
        return 0
    if not args.anomalib_python:
        print("anomalib is not installed beside eagle-iad (it needs torchvision); make an environment with it "
              "and pass --anomalib-python (see this file's docstring)", file=sys.stderr)  # fmt: skip
        return 2
    src = str(Path(__file__).resolve().parents[1] / "src")
    env = {**os.environ, "PYTHONPATH": src}
    with tempfile.TemporaryDirectory(prefix="eagle-anomalib-") as scratch:
        weights = str(Path(scratch) / "wide_resnet50_2-random.pth")
        theirs = _run(args.anomalib_python, "anomalib", args, weights, env)  # writes the weights
        ours = _run(sys.executable, "eagle", args, weights, env)
    load = os.getloadavg()[0]
    print(f"elpv mono, {args.train} training cells, {args.images} test cells at {args.size} px, WideResNet-50-2 "
          f"(random, shared), best of {args.repeat}; load average {load:.1f}; {os.cpu_count()} CPUs")  # fmt: skip
    print()
    columns = "".join(f" images/s, batch {b} |" for b in BATCHES)
    print(f"| side | bank |{columns} fit s |")
    print("|---" * (3 + len(BATCHES)) + "|")
    for name, row in (("eagle", ours), ("anomalib 2.7 PatchCore", theirs)):
        rates = " | ".join(f"{row['rates'][str(b)]:.2f}" for b in BATCHES)
        print(f"| {name} | {row['bank'][0]} x {row['bank'][1]} | {rates} | {row['fit_s']:.0f} |")
    ratios = ", ".join(f"batch {b}: {ours['rates'][str(b)] / theirs['rates'][str(b)]:.2f}x" for b in BATCHES)
    print(f"\neagle / anomalib images/s: {ratios}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
