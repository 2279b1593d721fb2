"""Memory-bank subsampling strategies (docs/METHOD.md §1: approximate greedy k-centre coreset, 10%).

Keeping every training patch makes each query cost ten times more for little gain; a greedy
k-centre coreset keeps the patches that cover the feature space, so rare-but-normal patterns stay
in the bank. Distances are measured after a fixed random projection to 128 dimensions, which
preserves them well enough for choosing centres at a fraction of the cost.

The greedy loop is inherently sequential (each pick depends on the last), so its speed is one
matrix-vector product per pick: it runs in NumPy float32, whose per-call overhead is several
times lower than torch's for this shape (measured in ``benchmarks/expert.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from eagle_iad.choices import SAMPLERS as SAMPLERS
from eagle_iad.errors import ConfigError

Progress = Callable[[int, int], None]


class Sampler(Protocol):
    """Chooses which training patches form the memory bank."""

    def select(self, features: np.ndarray, progress: Progress | None = None) -> np.ndarray:
        """Sorted int64 indices into ``features`` (``N x D`` float32)."""
        ...


@dataclass(frozen=True)
class ApproximateGreedyCoreset:
    """Greedy k-centre selection on randomly projected features, seeded for reproducibility.

    Starts, like PatchCore's reference sampler, from the mean distance to a few random anchors
    instead of one arbitrary first centre, which makes the first picks less seed-dependent.
    """

    ratio: float = 0.1
    projection_dim: int = 128
    seed: int = 0
    starting_points: int = 10

    def __post_init__(self) -> None:
        if not 0.0 < self.ratio <= 1.0:
            raise ConfigError(f"coreset ratio must be in (0, 1], got {self.ratio}")

    def project(self, features: np.ndarray) -> np.ndarray:
        """The fixed, seeded random projection (identity when already at or below the target width)."""
        dim = features.shape[1]
        if dim <= self.projection_dim:
            return np.ascontiguousarray(features, dtype=np.float32)
        rng = np.random.default_rng(self.seed)
        matrix = rng.standard_normal((dim, self.projection_dim)).astype(np.float32) / np.sqrt(self.projection_dim)
        return np.ascontiguousarray(features.astype(np.float32, copy=False) @ matrix)

    def select(self, features: np.ndarray, progress: Progress | None = None) -> np.ndarray:
        count = features.shape[0]
        target = max(1, int(count * self.ratio))
        if target >= count:
            return np.arange(count, dtype=np.int64)
        points = self.project(features)
        sq_norms = np.einsum("ij,ij->i", points, points)
        rng = np.random.default_rng(self.seed)
        anchors = rng.choice(count, size=min(self.starting_points, count), replace=False)
        min_dist = np.zeros(count, dtype=np.float32)
        for anchor in anchors:
            min_dist += self._distances(points, sq_norms, int(anchor))
        min_dist /= len(anchors)
        chosen = np.empty(target, dtype=np.int64)
        step = max(1, target // 100)
        for i in range(target):
            pick = int(np.argmax(min_dist))
            chosen[i] = pick
            np.minimum(min_dist, self._distances(points, sq_norms, pick), out=min_dist)
            if progress is not None and (i % step == 0 or i == target - 1):
                progress(i + 1, target)
        return np.sort(chosen)

    @staticmethod
    def _distances(points: np.ndarray, sq_norms: np.ndarray, index: int) -> np.ndarray:
        centre = points[index]
        dist: np.ndarray = points @ centre
        dist *= -2.0
        dist += sq_norms
        dist += sq_norms[index]
        np.maximum(dist, 0.0, out=dist)
        np.sqrt(dist, out=dist)
        return dist


@dataclass(frozen=True)
class RandomSampler:
    """Uniform random subset: a cheap baseline for ablations."""

    ratio: float = 0.1
    seed: int = 0

    def select(self, features: np.ndarray, progress: Progress | None = None) -> np.ndarray:
        count = features.shape[0]
        target = max(1, int(count * self.ratio))
        rng = np.random.default_rng(self.seed)
        return np.sort(rng.choice(count, size=min(target, count), replace=False)).astype(np.int64)


@dataclass(frozen=True)
class IdentitySampler:
    """Keep every patch (exact PatchCore without subsampling; memory and time grow 10x)."""

    def select(self, features: np.ndarray, progress: Progress | None = None) -> np.ndarray:
        return np.arange(features.shape[0], dtype=np.int64)


def make_sampler(name: str, ratio: float, seed: int, projection_dim: int = 128) -> Sampler:
    """Sampler by name: ``greedy`` (default), ``random`` or ``all``."""
    if name == "greedy":
        return ApproximateGreedyCoreset(ratio=ratio, projection_dim=projection_dim, seed=seed)
    if name == "random":
        return RandomSampler(ratio=ratio, seed=seed)
    if name == "all":
        return IdentitySampler()
    raise ConfigError(f"unknown sampler {name!r}; choose one of {', '.join(SAMPLERS)}")
