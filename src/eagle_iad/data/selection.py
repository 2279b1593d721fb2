"""Seeded subsets of a split: the one training-set (and test-set) selection every caller shares.

The CLI's ``--limit-train``/``--limit-test``, the demo, the eval runner and the benchmarks must pick
the same images for the same limit and seed, or a model fitted by one would not be the model
another reports on; so the draw lives here, once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

import numpy as np

from eagle_iad.data.base import Sample
from eagle_iad.errors import ConfigError

T = TypeVar("T")


def subsample(items: Sequence[T], limit: int | None, seed: int) -> list[T]:
    """A seeded, order-preserving subset of at most ``limit`` items (all of them when ``limit`` is None)."""
    if limit is None or limit >= len(items):
        return list(items)
    keep = np.sort(np.random.default_rng(seed).choice(len(items), size=limit, replace=False))
    return [items[int(i)] for i in keep]


def select_training(samples: list[Sample], limit: int | None, seed: int) -> list[Sample]:
    """A seeded, order-preserving subset of at most ``limit`` training samples."""
    if limit is None or limit >= len(samples):
        return samples
    if limit < 2:
        raise ConfigError("--limit-train must be at least 2")
    return subsample(samples, limit, seed)


def select_test(samples: list[Sample], limit: int | None, seed: int) -> list[Sample]:
    """A seeded subset of at most ``limit`` test samples that keeps the normal/anomalous ratio."""
    if limit is None or limit >= len(samples):
        return samples
    normal = [s for s in samples if s.label == 0]
    anomalous = [s for s in samples if s.label == 1]
    n_normal = min(len(normal), max(1, round(limit * len(normal) / len(samples))))
    picked = select_training(normal, n_normal, seed) if n_normal >= 2 else normal[:n_normal]
    rest = limit - len(picked)
    picked += select_training(anomalous, rest, seed) if rest >= 2 else anomalous[:rest]
    return sorted(picked, key=lambda s: str(s.path))
