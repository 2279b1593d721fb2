"""A coreset made of independent parts (each image, or each group of images) against the greedy over every patch.

Why: a teach cannot pick the bank a refit on the union would, because the global greedy's picks depend on
every old patch, which a model does not keep (docs/METHOD.md, "Teaching normal images"). A bank that is the
union of greedy picks made on each part alone would be reproduced exactly by teaching a new part. This
measures what such a bank costs in quality, at the same 10% of the patches, on tire's 112 test images
(`eagle eval-expert`'s measures), so the choice can be checked again.

The parts are registered as a sampler plugin (``SAMPLER_REGISTRY``), the way a user's sampler would be;
every image of a fixed-size preprocessing gives the same number of patches, which is how a part's rows are
found in the stacked training features.

    .venv/bin/python benchmarks/coreset_parts.py [--groups 1 40] [--exact]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from eagle_iad.expert.coreset import (
    SAMPLER_REGISTRY,
    ApproximateGreedyCoreset,
    Extension,
    FeatureRows,
    Progress,
    Sampler,
)

SHARED_TIRE = Path(__file__).resolve().parents[2] / "shared" / "data" / "mvtec3d-tire"


@dataclass(frozen=True)
class PartsCoreset:
    """The exact greedy (the default's code path, ``points`` 0) on each group of ``group`` images alone."""

    ratio: float
    seed: int
    projection_dim: int
    images: int
    group: int

    def select(self, features: FeatureRows, progress: Progress | None = None) -> np.ndarray:
        return self.select_covering(features).chosen

    def select_covering(self, features: FeatureRows, progress: Progress | None = None) -> Extension:
        rows = features.shape[0]
        if rows % self.images:
            raise SystemExit(f"{rows} patches do not split into {self.images} images of one size")
        per_image = rows // self.images
        greedy = ApproximateGreedyCoreset(self.ratio, projection_dim=self.projection_dim, seed=self.seed, points=0)
        picks: list[np.ndarray] = []
        radius = 0.0
        for start in range(0, rows, per_image * self.group):
            part = np.asarray(features[start : start + per_image * self.group], dtype=np.float32)
            chosen = greedy.select_covering(part)
            picks.append(chosen.chosen + start)
            radius = max(radius, chosen.radius or 0.0)
        return Extension(np.concatenate(picks).astype(np.int64), radius)

    def extend(
        self,
        bank: np.ndarray,
        new: np.ndarray,
        radius: float | None = None,
        progress: Progress | None = None,
        nearest: np.ndarray | None = None,
    ) -> Extension:
        """Teaching a new group would be its greedy alone; this benchmark measures fits only."""
        raise NotImplementedError


def parts(images: int, group: int) -> Callable[[float, int, int, int], Sampler]:
    """The registry's factory for groups of ``group`` of the ``images`` training images."""
    return lambda ratio, seed, dim, _points: PartsCoreset(ratio, seed, dim, images, group)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--groups", type=int, nargs="+", default=[1, 40], help="images per part")
    parser.add_argument("--exact", action="store_true", help="also fit the default (the greedy over every patch)")
    args = parser.parse_args()
    if not (SHARED_TIRE / "tire").is_dir():
        print(f"no tire images at {SHARED_TIRE}")
        return 0

    import torch

    from eagle_iad.data import get_layout
    from eagle_iad.eval.expert_eval import evaluate_expert
    from eagle_iad.expert import ExpertConfig, fit

    torch.set_num_threads(2)
    layout = get_layout("mvtec")
    train = [s.path for s in layout.samples(SHARED_TIRE, "tire", "train")]
    test = layout.samples(SHARED_TIRE, "tire", "test")
    variants: list[tuple[str, ExpertConfig]] = []
    if args.exact:
        variants.append(("the greedy over every patch (the default)", ExpertConfig()))
    for group in args.groups:
        name = f"parts-{group}"
        SAMPLER_REGISTRY.add(name, parts(len(train), group))
        label = "the greedy on each image alone" if group == 1 else f"the greedy on each group of {group} images"
        variants.append((label, ExpertConfig(sampler=name)))
    print("| coreset | bank | image AUROC | pixel AUROC | AUPRO | recall / false alarms at tau | tau | coreset s |")
    print("|---|---|---|---|---|---|---|---|")
    for label, config in variants:
        start = time.perf_counter()
        expert = fit(train, "tire", config)
        fitted = time.perf_counter() - start
        result = evaluate_expert(expert, test)
        at_tau = result.at_tau
        print(
            f"| {label} | {expert.model.bank.shape[0]:,} | {result.image_auroc:.4f} | {result.pixel_auroc:.4f} "
            f"| {result.aupro:.4f} | {at_tau['recall']:.3f} / {at_tau['fp']} of {at_tau['fp'] + at_tau['tn']} "
            f"| {result.tau:.2f} | {expert.model.timings.get('coreset_s', float('nan')):.0f} (fit {fitted:.0f}) |",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
