"""Where the expert's time and memory go, with each variant as a ratio to its baseline, in one run.

Prints: fit time split into features / coreset / leave-own-out training scores; inspection
throughput; peak resident memory; the leave-own-out pass as a ratio to one plain scoring pass of
the same training patches (target <= 1.2x); faiss vs torch exact search; the greedy coreset step with
one BLAS thread vs the default.

    .venv/bin/python benchmarks/expert.py [--data elpv|tire] [--train 200] [--inspect 64]
"""

from __future__ import annotations

import argparse
import resource
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from eagle_iad.cli import select_training
from eagle_iad.data import Sample, get_layout
from eagle_iad.expert import ExpertConfig, fit
from eagle_iad.expert.coreset import ApproximateGreedyCoreset
from eagle_iad.expert.search import FaissExactSearch, TorchExactSearch
from eagle_iad.tgps.thresholds import leave_own_out_scores

TIRE = Path(__file__).resolve().parents[2] / "shared" / "data" / "mvtec3d-tire"


def timed(fn: Callable[[], Any], repeat: int = 1) -> tuple[float, Any]:
    """Best wall time of ``repeat`` calls (least disturbed by the other core's load) and the last result."""
    best, result = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def samples(name: str, train: int) -> tuple[list[Sample], list[Sample]]:
    if name == "tire":
        layout = get_layout("mvtec")
        return select_training(layout.samples(TIRE, "tire", "train"), train, 0), layout.samples(TIRE, "tire", "test")
    layout = get_layout("elpv")
    return select_training(layout.samples(None, "mono", "train"), train, 0), layout.samples(None, "mono", "test")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", choices=("elpv", "tire"), default="elpv")
    parser.add_argument("--train", type=int, default=200, help="training images (seeded subset)")
    parser.add_argument("--inspect", type=int, default=64, help="test images for throughput")
    args = parser.parse_args()
    train, test = samples(args.data, args.train)
    print(f"data {args.data}: {len(train)} training images, torch threads {torch.get_num_threads()}")

    fit_s, expert = timed(lambda: fit([s.path for s in train], "bench", ExpertConfig()))
    model = expert.model
    t = model.timings
    print("\n== fit")
    print(f"total {fit_s:.2f} s = features {t['features_s']:.2f} s + coreset {t['coreset_s']:.2f} s + ")
    bank = f"bank {model.bank.shape[0]} of {model.selected.numel()} patches"
    print(f"      training scores {t['train_scores_s']:.2f} s  ({bank})")

    paths = [s.path for s in test[: args.inspect]]
    expert.inspect_many(paths[:4])  # warm-up
    inspect_s, _ = timed(lambda: expert.inspect_many(paths))
    print("\n== inspect")
    print(f"{len(paths)} images in {inspect_s:.2f} s = {len(paths) / inspect_s:.2f} images/s")

    # Re-embed the training set once to time the search variants on identical inputs.
    from eagle_iad.images import load_rgb, to_tensor

    tensors = torch.stack([to_tensor(load_rgb(s.path), 256, 224)[0] for s in train])
    features = torch.cat([expert.embed(tensors[i : i + 16]) for i in range(0, len(tensors), 16)])
    features = features.reshape(-1, features.shape[-1]).contiguous()
    ids, selected, n = model.patch_image_ids, model.selected, len(train)
    unselected = features[~selected]

    searches: dict[str, Any] = {"torch": TorchExactSearch(), "faiss": FaissExactSearch()}
    rows = {}
    for name, search in searches.items():
        search.fit(model.bank, model.bank_image_ids)

        def plain(search: Any = search) -> Any:
            return search.search(unselected)

        def loo(search: Any = search) -> Any:
            return leave_own_out_scores(features, ids, selected, search, n)

        plain_s, _ = timed(plain, repeat=2)
        loo_s, _ = timed(loo, repeat=2)
        rows[name] = (plain_s, loo_s)
    print("\n== training-score pass (leave-own-out) vs one plain scoring pass of the same patches")
    for name, (plain_s, loo_s) in rows.items():
        print(f"{name:6s} plain {plain_s:.2f} s  leave-own-out {loo_s:.2f} s  ratio {loo_s / plain_s:.2f}x")
    print("\n== faiss vs torch exact search (plain pass over the unselected training patches)")
    print(f"faiss / torch time ratio: {rows['faiss'][0] / rows['torch'][0]:.2f}x")

    sampler = ApproximateGreedyCoreset()
    projected = sampler.project(features.numpy())
    sq = np.einsum("ij,ij->i", projected, projected)
    picks = 300

    def loop() -> None:
        for i in range(picks):
            sampler._distances(projected, sq, i)

    default_s, _ = timed(loop, repeat=3)
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        single_s, _ = timed(loop, repeat=3)
    print(f"\n== greedy coreset step ({projected.shape[0]} x 128), {picks} picks")
    print(f"default BLAS threads {default_s / picks * 1e3:.3f} ms/pick, 1 thread {single_s / picks * 1e3:.3f} ms/pick")
    print(f"1-thread / default ratio {single_s / default_s:.2f}x")
    points_t, sq_t = torch.from_numpy(projected), torch.from_numpy(sq)

    def torch_loop() -> None:
        for i in range(picks):
            torch.sqrt((sq_t - 2.0 * torch.mv(points_t, points_t[i]) + sq_t[i]).clamp_(min=0))

    torch_s, _ = timed(torch_loop, repeat=3)
    print(f"same step in torch {torch_s / picks * 1e3:.3f} ms/pick: torch / numpy ratio {torch_s / default_s:.2f}x")

    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\n== peak resident memory {peak_mb:.0f} MiB")


if __name__ == "__main__":
    main()
