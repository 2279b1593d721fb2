"""Memory-bank subsampling strategies (docs/METHOD.md §1: approximate greedy k-centre coreset, 10%).

Keeping every training patch makes each query cost ten times more for little gain; a greedy
k-centre coreset keeps the patches that cover the feature space, so rare-but-normal patterns stay
in the bank. Distances are measured after a fixed random projection to 128 dimensions, which
preserves them well enough for choosing centres at a fraction of the cost.

The greedy loop is sequential (each pick depends on the last). Done literally it streams the whole
projected bank once per pick, a memory-bound matrix-vector product; :class:`ApproximateGreedyCoreset`
instead runs it *lazily in blocks* and gets exactly the same picks (see its docstring and
``docs/METHOD.md``): ``benchmarks/expert.py`` times it against the literal loop.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from eagle_iad.choices import SAMPLERS as SAMPLERS
from eagle_iad.errors import ConfigError
from eagle_iad.expert.features import RowFile
from eagle_iad.registry import Registry

#: Training patches as rows: in memory, or on disk read back a range at a time.
FeatureRows = np.ndarray | RowFile

Progress = Callable[[int, int], None]

#: Rows projected per matrix product, so features on disk are never held in memory whole.
PROJECT_ROWS = 1 << 14
#: Points per block of the lazy greedy: a block's float32 copy (``2048 x 128``) stays in cache.
BLOCK_ROWS = 2048
#: Rows of a gathered float64 matrix-vector product are padded to a multiple of this, so every row
#: goes through BLAS's main kernel, which sums in the same order as the full product (remainder
#: rows may not; checked by the coreset-identity tests).
GEMV_PAD = 16

_U32 = 2.0**-24
_U64 = 2.0**-53
#: Rounding-error constant for ``|a|^2 + |b|^2 - 2 a.b`` in 128 dimensions: the dot product and
#: each squared norm carry at most gamma_128 ~ 128.01 u relative to ``|a||b|`` (any summation order,
#: FMA or not), two additions at most 2 u; 140 u leaves room to spare.
_EXPANSION_ERROR = 140.0


def _one_blas_thread() -> AbstractContextManager[object]:
    """One BLAS thread for the greedy's many small products: threads cost more than they bring there,
    and spin badly when other processes share the cores (a 1024 x 40 product took 13 ms with two
    threads on a loaded 2-core machine, 0.7 ms with one). Results do not depend on it."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # optional (dev extra): only speed differs
        return nullcontext()
    limits: AbstractContextManager[object] = threadpool_limits(limits=1, user_api="blas")
    return limits


class Sampler(Protocol):
    """Chooses which training patches form the memory bank."""

    def select(self, features: FeatureRows, progress: Progress | None = None) -> np.ndarray:
        """Sorted int64 indices into ``features`` (``N x D`` float32)."""
        ...


@dataclass(frozen=True)
class ApproximateGreedyCoreset:
    """Greedy k-centre selection on randomly projected features, seeded for reproducibility.

    Starts, like PatchCore's reference sampler, from the mean distance to a few random anchors
    instead of one arbitrary first centre, which makes the first picks less seed-dependent.

    The definition is the literal loop (``min_dist = min(min_dist, d(points, pick))`` in float64,
    stored as float32, then ``pick = argmax(min_dist)``), kept as the reference in the tests and
    the benchmark. It is evaluated lazily: points are cut into blocks that each remember which
    centres they have not applied yet and an upper bound of their largest ``min_dist``. A pick
    only brings up to date the blocks whose bound could hold the maximum, applying their pending
    centres in one float32 matrix product (compute-bound instead of memory-bound); that product
    only *filters*: a point-centre pair is skipped when a rigorous rounding-error bound proves the
    float64 distance cannot go below the point's current ``min_dist``, and every other pair is
    recomputed exactly as the literal loop computes it. ``min`` does not depend on the order in
    which centres are applied, so the picks, ties included (lowest index wins), are identical.
    """

    ratio: float = 0.1
    projection_dim: int = 128
    seed: int = 0
    starting_points: int = 10

    def __post_init__(self) -> None:
        if not 0.0 < self.ratio <= 1.0:
            raise ConfigError(f"coreset ratio must be in (0, 1], got {self.ratio}")

    def project(self, features: FeatureRows) -> np.ndarray:
        """The fixed, seeded random projection (identity when already at or below the target width).

        The matrix is float32 Gaussian over a float64 ``sqrt``, so the product (and everything the
        greedy computes) is float64; it is taken in row chunks (bit-identical to one product) so
        features on disk (:class:`RowFile`) are read once and never held whole.
        """
        dim = features.shape[1]
        if dim <= self.projection_dim:
            return np.ascontiguousarray(features[0 : features.shape[0]], dtype=np.float32)
        rng = np.random.default_rng(self.seed)
        matrix = rng.standard_normal((dim, self.projection_dim)).astype(np.float32) / np.sqrt(self.projection_dim)
        out = np.empty((features.shape[0], self.projection_dim), dtype=np.result_type(np.float32, matrix))
        for start in range(0, features.shape[0], PROJECT_ROWS):
            chunk = np.asarray(features[start : start + PROJECT_ROWS]).astype(np.float32, copy=False)
            np.matmul(chunk, matrix, out=out[start : start + PROJECT_ROWS])
        return out

    def initial_distances(self, points: np.ndarray, sq_norms: np.ndarray) -> np.ndarray:
        """Mean distance to ``starting_points`` seeded anchors: the ``min_dist`` before the first pick."""
        count = points.shape[0]
        rng = np.random.default_rng(self.seed)
        anchors = rng.choice(count, size=min(self.starting_points, count), replace=False)
        min_dist = np.zeros(count, dtype=np.float32)
        for anchor in anchors:
            min_dist += self._distances(points, sq_norms, int(anchor))
        min_dist /= len(anchors)
        return min_dist

    def select(self, features: FeatureRows, progress: Progress | None = None) -> np.ndarray:
        count = features.shape[0]
        target = max(1, int(count * self.ratio))
        if target >= count:
            return np.arange(count, dtype=np.int64)
        points = self.project(features)
        sq_norms = np.einsum("ij,ij->i", points, points)
        min_dist = self.initial_distances(points, sq_norms)
        with _one_blas_thread():
            chosen = _LazyGreedy(points, sq_norms, min_dist).run(target, progress)
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


class _LazyGreedy:
    """The blocked, lazily updated greedy loop of :class:`ApproximateGreedyCoreset` (same picks).

    Exactness of the float32 filter: with ``q = fl32(p - mean)``, the float32 value ``D`` of
    ``|q_p|^2 + |q_c|^2 - 2 q_p.q_c`` is within ``E32 = 140 u32 (|q_p| + |q_c|)^2`` of
    ``|q_p - q_c|^2``, and ``|q_p - q_c|`` within ``s = u32 (|p - mean| + |c - mean|)`` (rounding
    of q) of the true distance ``d``. The literal loop's value (float64, unit roundoff ``u``;
    float32 when the features were not projected) is at least ``sqrt(d^2 - E)(1 - 2 u)`` with
    ``E = 140 u (|p| + |c|)^2``. So if ``D >= (sqrt(m^2 (1 + 8 u) + E) + s)^2 + E32`` (with
    slack, rounded up to float32), the loop's distance is at least the point's current
    ``min_dist`` ``m`` and cannot change it. Every other pair is recomputed with the loop's own
    arithmetic: the same BLAS matrix-vector product on the same rows (padded so that every row
    takes the kernel path the full product takes), the same operations in the same order. All
    norms are bounded by the largest over the data set.
    """

    def __init__(self, points: np.ndarray, sq_norms: np.ndarray, min_dist: np.ndarray) -> None:
        count, dim = points.shape
        self.points = points
        self.sq_norms = sq_norms
        self.min_dist = min_dist
        mean = points.mean(axis=0)
        self.q = np.empty((count, dim), dtype=np.float32)
        for start in range(0, count, PROJECT_ROWS):
            rows = slice(start, start + PROJECT_ROWS)
            np.subtract(points[rows], mean, out=self.q[rows], casting="same_kind")
        self.q_sq = np.einsum("ij,ij->i", self.q, self.q)
        q_max = math.sqrt(float(self.q_sq.max()) * (1.0 + 1e-5)) * (1.0 + 2.0 * _U32) + 1e-30
        # The literal loop computes in the points' precision: float64 after a projection, float32
        # when the features were already narrow enough to be used as they are.
        self.unit = _U64 if points.dtype == np.float64 else _U32
        p_max = math.sqrt(float(sq_norms.max()) * (1.0 + 256.0 * self.unit)) + 1e-30
        self.e32 = _EXPANSION_ERROR * _U32 * (2.0 * q_max) ** 2 * 1.01
        self.slack = 2.0 * q_max * _U32 * 1.01
        self.e64 = _EXPANSION_ERROR * self.unit * (2.0 * p_max) ** 2 * 1.01
        self.threshold = self._threshold(min_dist)
        self.block = BLOCK_ROWS
        blocks = -(-count // self.block)
        self.block_max = np.array([min_dist[b * self.block : (b + 1) * self.block].max() for b in range(blocks)])
        self.applied = np.zeros(blocks, dtype=np.int64)
        self.centres: list[int] = []
        self.centre_q = np.empty((0, dim), dtype=np.float32)
        self.centre_q_sq = np.empty(0, dtype=np.float32)
        self._gather = np.zeros((self.block + GEMV_PAD, dim), dtype=points.dtype)
        self._dots = np.zeros(self.block + GEMV_PAD, dtype=points.dtype)

    def _threshold(self, min_dist: np.ndarray) -> np.ndarray:
        """Float32 bound on the filter value below which a pair must be recomputed (rounded up)."""
        m = min_dist.astype(np.float64)
        bound = (np.sqrt(m * m * (1.0 + 8.0 * self.unit) + self.e64) + self.slack) ** 2 + self.e32
        bound *= 1.0 + 1e-12
        return np.nextafter(bound.astype(np.float32), np.float32(np.inf))

    def run(self, target: int, progress: Progress | None) -> np.ndarray:
        dim = self.q.shape[1]
        self.centre_q = np.empty((target, dim), dtype=np.float32)
        self.centre_q_sq = np.empty(target, dtype=np.float32)
        chosen = np.empty(target, dtype=np.int64)
        step = max(1, target // 100)
        for i in range(target):
            while True:
                b = int(np.argmax(self.block_max))
                if self.applied[b] == i:
                    break
                self._refresh(b, i)
            start = b * self.block
            pick = start + int(np.argmax(self.min_dist[start : start + self.block]))
            chosen[i] = pick
            self.centres.append(pick)
            self.centre_q[i] = self.q[pick]
            self.centre_q_sq[i] = self.q_sq[pick]
            if progress is not None and (i % step == 0 or i == target - 1):
                progress(i + 1, target)
        return chosen

    def _refresh(self, b: int, upto: int) -> None:
        """Apply centres ``applied[b]:upto`` to block ``b`` and make its maximum exact."""
        start = b * self.block
        stop = min(start + self.block, self.q.shape[0])
        first = int(self.applied[b])
        filt = self.q[start:stop] @ self.centre_q[first:upto].T
        filt *= -2.0
        filt += self.q_sq[start:stop, None]
        filt += self.centre_q_sq[None, first:upto]
        rows, cols = np.nonzero(filt < self.threshold[start:stop, None])
        if rows.size:
            order = np.argsort(cols, kind="stable")
            rows, cols = rows[order] + start, cols[order]
            cuts = [0, *(np.flatnonzero(cols[1:] != cols[:-1]) + 1).tolist(), cols.size]
            for lo, hi in itertools.pairwise(cuts):
                self._apply_exact(rows[lo:hi], self.centres[first + int(cols[lo])])
            touched = np.unique(rows)
            self.threshold[touched] = self._threshold(self.min_dist[touched])
        self.applied[b] = upto
        self.block_max[b] = self.min_dist[start:stop].max()

    def _apply_exact(self, rows: np.ndarray, centre: int) -> None:
        """``min_dist[rows] = min(min_dist[rows], d(rows, centre))`` exactly as the literal loop does it."""
        count = rows.size
        padded = -(-count // GEMV_PAD) * GEMV_PAD
        # Rows past ``count`` hold stale data: harmless, each output row depends on its own row only.
        gathered = self._gather[:padded]
        np.take(self.points, rows, axis=0, out=gathered[:count])
        dist = np.matmul(gathered, self.points[centre], out=self._dots[:padded])[:count]
        dist *= -2.0
        dist += self.sq_norms[rows]
        dist += self.sq_norms[centre]
        np.maximum(dist, 0.0, out=dist)
        np.sqrt(dist, out=dist)
        self.min_dist[rows] = np.minimum(self.min_dist[rows], dist)


@dataclass(frozen=True)
class RandomSampler:
    """Uniform random subset: a cheap baseline for ablations."""

    ratio: float = 0.1
    seed: int = 0

    def select(self, features: FeatureRows, progress: Progress | None = None) -> np.ndarray:
        count = features.shape[0]
        target = max(1, int(count * self.ratio))
        rng = np.random.default_rng(self.seed)
        return np.sort(rng.choice(count, size=min(target, count), replace=False)).astype(np.int64)


@dataclass(frozen=True)
class IdentitySampler:
    """Keep every patch (exact PatchCore without subsampling; memory and time grow 10x)."""

    def select(self, features: FeatureRows, progress: Progress | None = None) -> np.ndarray:
        return np.arange(features.shape[0], dtype=np.int64)


#: ``factory(ratio, seed, projection_dim) -> Sampler`` by name; the names are declared in ``choices.SAMPLERS``.
SAMPLER_REGISTRY: Registry[Callable[[float, int, int], Sampler]] = Registry("sampler")
SAMPLER_REGISTRY.add("greedy", lambda ratio, seed, dim: ApproximateGreedyCoreset(ratio, projection_dim=dim, seed=seed))
SAMPLER_REGISTRY.add("random", lambda ratio, seed, _dim: RandomSampler(ratio=ratio, seed=seed))
SAMPLER_REGISTRY.add("all", lambda _ratio, _seed, _dim: IdentitySampler())


def make_sampler(name: str, ratio: float, seed: int, projection_dim: int = 128) -> Sampler:
    """Sampler by name: ``greedy`` (default), ``random`` or ``all``."""
    return SAMPLER_REGISTRY.get(name)(ratio, seed, projection_dim)
