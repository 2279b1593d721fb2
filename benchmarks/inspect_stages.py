"""Where an inspection's time goes, stage by stage, for this code and an earlier revision, in one run.

Both revisions score the same images with the same saved model (by default one fitted here at the
defaults: whole frame 320 px, 10% greedy coreset, on ``--train`` elpv mono cells). Each revision
runs in its own child process (the earlier one from a ``git worktree`` of ``--against``, default
de9f86a, the code of issue 26's "today"); the children alternate, ``--repeat`` times, and each
stage keeps its best time. A child times the steps ``eagle inspect --out`` chains, in its chunks of
4 images: decode, preprocess, backbone, pooling (the patch aggregation), search, map (stitching,
upsampling, blur), regions (the verdict with its boxes) and pictures (heatmap and boxed picture,
rendered and written), then the whole of ``pipeline.inspect_records`` with pictures, end to end.
The verdicts of both must agree; the largest score difference is printed.

    .venv/bin/python benchmarks/inspect_stages.py [--train 200] [--images 48] [--repeat 3] [--against REV] [--model DIR]

Figures are wall times on whatever else runs on the machine: read the load average printed with them.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

STAGES = ("decode", "preprocess", "backbone", "pooling", "search", "map", "regions", "pictures")
ROOT = Path(__file__).resolve().parent.parent
#: The code as issue 26 measured it: before the channel pooling product, batch-norm folding,
#: channels-last maps, the flat candidate scan and fast PNG encoding.
DEFAULT_AGAINST = "de9f86a"


def test_images(count: int) -> list[str]:
    from eagle_iad.data import get_layout

    samples = get_layout("elpv").samples(None, "mono", "test")
    step = max(1, len(samples) // count)
    return [str(s.path) for s in samples[::step][:count]]


def child(model: str, images: list[str], out: Path) -> dict[str, Any]:
    """Stage times (seconds, all images) and the scores, with whatever ``eagle_iad`` is on the path."""
    import torch

    from eagle_iad.expert import load_expert
    from eagle_iad.expert.features import aggregate
    from eagle_iad.expert.preprocess import prepare
    from eagle_iad.images import load_rgb
    from eagle_iad.pipeline import inspect_records
    from eagle_iad.tgps.render import save_png
    from eagle_iad.verdict import evidence_picture, heatmap_picture, make_verdict

    expert = load_expert(model)
    config = expert.model.config
    times = dict.fromkeys(STAGES, 0.0)

    @contextmanager
    def stage(name: str) -> Iterator[None]:
        start = time.perf_counter()
        yield
        times[name] += time.perf_counter() - start

    def run(paths: list[str]) -> list[tuple[float, bool]]:
        verdicts = []
        with torch.no_grad():
            for first in range(0, len(paths), 4):
                chunk = paths[first : first + 4]
                with stage("decode"):
                    rgbs = [load_rgb(path) for path in chunk]
                with stage("preprocess"):
                    prepared = [prepare(rgb, config) for rgb in rgbs]
                    batch = torch.cat([tensor for tensor, _ in prepared])
                with stage("backbone"):
                    shallow, deep = expert.extractor(batch)
                with stage("pooling"):
                    patches = aggregate(shallow, deep, config.pretrain_dim, config.target_dim)
                with stage("search"):
                    dist, rows = expert.search.search(patches.reshape(-1, patches.shape[-1]))
                grids = dist.reshape(len(chunk), *expert.model.grid).numpy()
                row_grids = rows.reshape(len(chunk), *expert.model.grid).numpy()
                for index, (path, (_, geometry)) in enumerate(zip(chunk, prepared, strict=True)):
                    with stage("map"):
                        result = expert._result(grids[index : index + 1], row_grids[index : index + 1], geometry)
                    with stage("regions"):
                        verdict = make_verdict(expert, path, result)
                    with stage("pictures"):
                        save_png(out / "heatmap.png", heatmap_picture(verdict, rgbs[index], result))
                        save_png(out / "box.png", evidence_picture(verdict, rgbs[index], result, "box", False))
                    verdicts.append((float(result.score), bool(result.is_anomalous)))
        return verdicts

    run(images[:4])  # warm-up: allocator, oneDNN kernels, cached maps
    for name in times:
        times[name] = 0.0
    verdicts = run(images)
    start = time.perf_counter()
    inspect_records(expert, images, category="bench", out_dir=out / "records")
    end_to_end = time.perf_counter() - start
    return {"stages": times, "end_to_end": end_to_end, "verdicts": verdicts}


def worktree(revision: str, folder: Path) -> Path:
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(folder), revision], check=True,
                   capture_output=True)  # fmt: skip
    return folder / "src"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", type=int, default=200, help="elpv mono training cells of the fitted model")
    parser.add_argument("--images", type=int, default=48, help="elpv mono test cells to inspect")
    parser.add_argument("--repeat", type=int, default=3, help="alternating runs of each revision (best kept)")
    parser.add_argument("--against", default=DEFAULT_AGAINST, help="the earlier revision (git)")
    parser.add_argument("--model", default="", help="a saved model to use instead of fitting one")
    parser.add_argument("--child", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        request = json.loads(args.child)
        print(json.dumps(child(request["model"], request["images"], Path(request["out"]))))
        return

    with tempfile.TemporaryDirectory(prefix="eagle-stages-") as scratch:
        folder = Path(scratch)
        model = args.model
        if not model:
            from eagle_iad.data import get_layout
            from eagle_iad.data.selection import select_training
            from eagle_iad.expert import ExpertConfig, fit
            from eagle_iad.expert.store import save

            cells = select_training(get_layout("elpv").samples(None, "mono", "train"), args.train, 0)
            print(f"fitting a 320 px model on {len(cells)} elpv mono cells ...", flush=True)
            model = str(folder / "model")
            fitted = fit([s.path for s in cells], "bench", ExpertConfig()).model
            save(fitted, model)
            stages = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in fitted.timings.items())
            print(f"fit: {stages}; bank {fitted.bank.shape[0]} x {fitted.bank.shape[1]}", flush=True)
        images = test_images(args.images)
        sources = {
            "after (this code)": str(ROOT / "src"),
            f"before ({args.against})": str(worktree(args.against, folder / "before")),
        }
        best: dict[str, dict[str, Any]] = {}
        try:
            for _ in range(args.repeat):
                for name, src in sources.items():
                    out = folder / "out" / name.split()[0]
                    out.mkdir(parents=True, exist_ok=True)
                    env = {**os.environ, "PYTHONPATH": src}
                    request = json.dumps({"model": model, "images": images, "out": str(out)})
                    done = subprocess.run([sys.executable, __file__, "--child", request], env=env, check=True,
                                          capture_output=True, text=True)  # fmt: skip
                    result = json.loads(done.stdout.strip().splitlines()[-1])
                    kept = best.setdefault(name, result)
                    for stage in STAGES:
                        kept["stages"][stage] = min(kept["stages"][stage], result["stages"][stage])
                    kept["end_to_end"] = min(kept["end_to_end"], result["end_to_end"])
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(folder / "before")],
                           check=False, capture_output=True)  # fmt: skip
        report(best, len(images), model)


def report(best: dict[str, dict[str, Any]], count: int, model: str) -> None:
    after, before = best.values()
    names = list(best)
    print(f"\n== inspect {count} elpv mono test cells, model {model}, best of each ({load()})")
    print(f"| stage | {names[1]} ms/image | {names[0]} ms/image | ratio |")
    print("|---|---|---|---|")
    for stage in STAGES:
        old, new = before["stages"][stage] * 1000 / count, after["stages"][stage] * 1000 / count
        print(f"| {stage} | {old:.1f} | {new:.1f} | {old / new:.2f}x |")
    old_sum, new_sum = sum(before["stages"].values()), sum(after["stages"].values())
    print(f"| all stages | {old_sum * 1000 / count:.1f} | {new_sum * 1000 / count:.1f} | {old_sum / new_sum:.2f}x |")
    old_rate, new_rate = count / before["end_to_end"], count / after["end_to_end"]
    end_to_end = "end to end (`inspect_records` with pictures), images/s"
    print(f"| {end_to_end} | {old_rate:.2f} | {new_rate:.2f} | {new_rate / old_rate:.2f}x |")
    decisions = sum(a[1] == b[1] for a, b in zip(before["verdicts"], after["verdicts"], strict=True))
    difference = max(abs(a[0] - b[0]) for a, b in zip(before["verdicts"], after["verdicts"], strict=True))
    print(f"\nsame decision on {decisions} of {count} images; largest score difference {difference:.3g}")


def load() -> str:
    return "load average " + " ".join(f"{v:.2f}" for v in os.getloadavg())


if __name__ == "__main__":
    main()
