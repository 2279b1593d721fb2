"""``benchmarks/coreset_parts.py``'s sampler: the greedy run on each group of images alone (docs/METHOD.md, "Tried").

Why a test for a benchmark's part: the METHOD table it produced argues that a bank made of parts costs
recall; that argument holds only if a part is the default greedy on exactly that part's rows.
"""

from __future__ import annotations

import numpy as np
from bench_scripts import load_benchmark

from eagle_iad.expert.coreset import ApproximateGreedyCoreset


def _features(images: int, per_image: int, dim: int = 160) -> np.ndarray:
    rng = np.random.default_rng(7)
    return rng.standard_normal((images * per_image, dim)).astype(np.float32)


def test_one_group_of_every_image_is_the_default_greedy() -> None:
    bench = load_benchmark("coreset_parts")
    features = _features(6, 50)
    parts = bench.PartsCoreset(0.1, 0, 128, images=6, group=6).select_covering(features)
    whole = ApproximateGreedyCoreset(0.1, projection_dim=128, seed=0).select_covering(features)
    np.testing.assert_array_equal(parts.chosen, whole.chosen)
    assert parts.radius == whole.radius


def test_each_group_is_picked_from_its_own_rows_alone() -> None:
    bench = load_benchmark("coreset_parts")
    features = _features(6, 50)
    chosen = bench.PartsCoreset(0.1, 0, 128, images=6, group=2).select_covering(features).chosen
    for start in range(0, 300, 100):
        alone = ApproximateGreedyCoreset(0.1, projection_dim=128, seed=0).select(features[start : start + 100])
        np.testing.assert_array_equal(chosen[(chosen >= start) & (chosen < start + 100)], alone + start)
