"""Where an inspection's time goes, stage by stage, for this code and an earlier revision, in one run.

Both revisions score the same images with the same saved model: by default one that the earlier
revision fits at its defaults (whole frame 320 px, 10% greedy coreset, on ``--train`` elpv mono
cells), since an earlier revision cannot read a model saved by a later schema while this code reads
every earlier one (as ``exposure none``, the setting such models were fitted with). A third run
times this code with a model it fits at today's defaults (``--exposure image`` since issue 29): what
a user gets now, with its own verdicts (not with ``--model``, which both revisions must be able to
read). Each run is its own child process (the earlier revision from
a ``git worktree`` of ``--against``, default de9f86a, the code of issue 26's "today"); the children
alternate, ``--repeat`` times, and each stage keeps its best time. A child times the steps ``eagle
inspect --out`` chains, in its chunks of 4 images: decode, preprocess, backbone, pooling (the patch
aggregation), search, map (stitching, upsampling, blur), regions (the verdict with its boxes) and
pictures (heatmap and boxed picture, rendered and written), then the whole of
``pipeline.inspect_records`` with pictures, end to end. The verdicts of the two revisions on the
same model must agree; the largest score difference is printed.

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
    parser.add_argument(
        "--model",
        default="",
        help="a saved model for both revisions instead of fitting one (one --against can read: de9f86a reads "
        "schema <= 6); no third run",
    )
    parser.add_argument("--child", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        request = json.loads(args.child)
        print(json.dumps(child(request["model"], request["images"], Path(request["out"]))))
        return

    with tempfile.TemporaryDirectory(prefix="eagle-stages-") as scratch:
        folder = Path(scratch)
        before_src = str(worktree(args.against, folder / "before"))
        this_src = str(ROOT / "src")
        # (name, code on the path, model): the first two share a model, so their verdicts must agree.
        runs: list[tuple[str, str, str]] = []
        try:
            if args.model:
                runs = [
                    (f"before ({args.against})", before_src, args.model),
                    ("after (this code)", this_src, args.model),
                ]
            else:
                cells = training_cells(args.train)
                print(f"fitting 320 px models on {len(cells)} elpv mono cells (each revision's defaults)", flush=True)
                shared = fit_with(f"{args.against} (the shared model)", before_src, cells, folder / "model-before")
                today = fit_with("this code (today's defaults)", this_src, cells, folder / "model-today")
                runs = [
                    (f"before ({args.against})", before_src, shared),
                    ("after (this code)", this_src, shared),
                    ("this code, today's defaults", this_src, today),
                ]
            images = test_images(args.images)
            best: dict[str, dict[str, Any]] = {}
            for _ in range(args.repeat):
                for index, (name, src, model) in enumerate(runs):
                    out = folder / "out" / str(index)
                    out.mkdir(parents=True, exist_ok=True)
                    env = {**os.environ, "PYTHONPATH": src}
                    request = json.dumps({"model": model, "images": images, "out": str(out)})
                    done = subprocess.run([sys.executable, __file__, "--child", request], env=env, check=False,
                                          capture_output=True, text=True)  # fmt: skip
                    if done.returncode:
                        raise SystemExit(f"{name} failed on {model}:\n{done.stderr.strip()}")
                    result = json.loads(done.stdout.strip().splitlines()[-1])
                    kept = best.setdefault(name, result)
                    for stage in STAGES:
                        kept["stages"][stage] = min(kept["stages"][stage], result["stages"][stage])
                    kept["end_to_end"] = min(kept["end_to_end"], result["end_to_end"])
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(folder / "before")],
                           check=False, capture_output=True)  # fmt: skip
        report(best, len(images), runs[0][2])


def training_cells(count: int) -> list[str]:
    from eagle_iad.data import get_layout
    from eagle_iad.data.selection import select_training

    return [str(s.path) for s in select_training(get_layout("elpv").samples(None, "mono", "train"), count, 0)]


#: A fit at the defaults of whichever ``eagle_iad`` is on the child's path, saved in its own schema.
FIT_CHILD = """import json, sys
from eagle_iad.expert import ExpertConfig, fit
from eagle_iad.expert.store import save
paths, out = json.loads(sys.argv[1])
fitted = fit(paths, "bench", ExpertConfig()).model
save(fitted, out)
stages = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in fitted.timings.items())
print(f"fit: {stages}; bank {fitted.bank.shape[0]} x {fitted.bank.shape[1]}", flush=True)
"""


def fit_with(label: str, src: str, cells: list[str], out: Path) -> str:
    print(f"{label}:", flush=True)
    env = {**os.environ, "PYTHONPATH": src}
    subprocess.run([sys.executable, "-c", FIT_CHILD, json.dumps([cells, str(out)])], env=env, check=True)
    return str(out)


def report(best: dict[str, dict[str, Any]], count: int, model: str) -> None:
    names = list(best)
    before = best[names[0]]
    print(f"\n== inspect {count} elpv mono test cells, shared model {model}, best of each ({load()})")
    columns = [f"{name} ms/image" for name in names] + [f"ratio ({name})" for name in names[1:]]
    print(f"| stage | {' | '.join(columns)} |")
    print("|---" * (len(columns) + 1) + "|")

    def row(label: str, values: list[float], higher_is_better: bool = False) -> None:
        ratios = [(v / values[0] if higher_is_better else values[0] / v) for v in values[1:]]
        cells = " | ".join(f"{v:.2f}" if higher_is_better else f"{v:.1f}" for v in values)
        print(f"| {label} | {cells} | " + " | ".join(f"{r:.2f}x" for r in ratios) + " |")

    for stage in STAGES:
        row(stage, [best[name]["stages"][stage] * 1000 / count for name in names])
    row("all stages", [sum(best[name]["stages"].values()) * 1000 / count for name in names])
    end_to_end = "end to end (`inspect_records` with pictures), images/s"
    row(end_to_end, [count / best[name]["end_to_end"] for name in names], higher_is_better=True)
    after = best[names[1]]
    decisions = sum(a[1] == b[1] for a, b in zip(before["verdicts"], after["verdicts"], strict=True))
    difference = max(abs(a[0] - b[0]) for a, b in zip(before["verdicts"], after["verdicts"], strict=True))
    print(f"\nsame model: same decision on {decisions} of {count} images; largest score difference {difference:.3g}")
    if len(names) > 2:
        today = best[names[2]]
        alike = sum(a[1] == b[1] for a, b in zip(before["verdicts"], today["verdicts"], strict=True))
        print(f"today's defaults (their own model): the same decision as the earlier revision on {alike} of {count}")


def load() -> str:
    return "load average " + " ".join(f"{v:.2f}" for v in os.getloadavg())


if __name__ == "__main__":
    main()
