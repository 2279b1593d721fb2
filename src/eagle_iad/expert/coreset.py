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

import inspect
import itertools
import math
import os
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from eagle_iad.choices import SAMPLERS as SAMPLERS
from eagle_iad.errors import ConfigError
from eagle_iad.expert.features import RowFile
from eagle_iad.expert.search import PrunedExactSearch, TorchExactSearch
from eagle_iad.registry import Registry

#: Training patches as rows: in memory, or on disk read back a range at a time.
FeatureRows = np.ndarray | RowFile

Progress = Callable[[int, int], None]

#: Rows per chunk of every pass over all points (projection, norms, anchors, the filter's copy), so
#: features on disk are never held in memory whole; the projection's chunk costs 13 KiB a row in
#: transient copies (float32 read, float64 cast, product), 52 MiB at this size. A multiple of
#: ``GEMV_PAD``; a chunked product equals one whole product bit for bit (tested).
PROJECT_ROWS = 1 << 12
#: Points per block of the lazy greedy: a block's float32 copy (``2048 x 128``) stays in cache.
BLOCK_ROWS = 2048
#: Rows of a gathered float64 matrix-vector product are padded to a multiple of this, so every row
#: goes through BLAS's main kernel, which sums in the same order as the full product (remainder
#: rows may not; checked by the coreset-identity tests).
GEMV_PAD = 16


def _chunks(count: int) -> list[slice]:
    """Row ranges of ``PROJECT_ROWS`` for the passes over all points; a tail shorter than
    ``GEMV_PAD`` joins the chunk before it, because numpy sends a one-row product to another BLAS
    routine (gemv or dot instead of gemm or gemv), which rounds differently from the whole product."""
    starts = list(range(0, count, PROJECT_ROWS))
    if len(starts) > 1 and count - starts[-1] < GEMV_PAD:
        starts.pop()
    return [slice(a, b) for a, b in zip(starts, [*starts[1:], count], strict=True)]


#: Picked points kept in memory for the exact recomputation when the points are on disk.
RECENT_CENTRES = 4096
#: Elements per float16 -> float32 copy: under torch's grain size (32,768), so it runs on one thread.
_CONVERT_ELEMENTS = 32_000

_U32 = 2.0**-24
_U64 = 2.0**-53
#: Rounding-error constant for ``|a|^2 + |b|^2 - 2 a.b`` in 128 dimensions: the dot product and
#: each squared norm carry at most gamma_128 ~ 128.01 u relative to ``|a||b|`` (any summation order,
#: FMA or not), two additions at most 2 u; 140 u leaves room to spare.
_EXPANSION_ERROR = 140.0


def _one_blas_thread() -> AbstractContextManager[object]:
    """One BLAS thread for everything the greedy multiplies: it is part of the definition.

    OpenBLAS rounds the rows where it splits a product between threads through another kernel path
    (measured: rows 5,000 and 20,000 of a 20,001-row projection, 50,000 and 100,000 of a
    100,002-row matrix-vector product differ in the last bit), so only the single-threaded loop gives
    the same picks on every machine; chunked single-threaded products equal one whole product bit for
    bit. It is also faster for the greedy's many small products (a 1024 x 40 product took 13 ms with
    two threads on a loaded 2-core machine, 0.7 ms with one).
    """
    limits: AbstractContextManager[object] = threadpool_limits(limits=1, user_api="blas")
    return limits


class Sampler(Protocol):
    """Chooses which training patches form the memory bank, at a fit and when a fitted bank grows."""

    def select(self, features: FeatureRows, progress: Progress | None = None) -> np.ndarray:
        """Sorted int64 indices into ``features`` (``N x D`` float32)."""
        ...

    def extend(
        self,
        bank: np.ndarray,
        new: np.ndarray,
        radius: float | None = None,
        progress: Progress | None = None,
        nearest: np.ndarray | None = None,
    ) -> Extension:
        """Which rows of ``new`` (new normal patches) join ``bank`` by the rule :meth:`select` chose it by.

        Why its own method: ``eagle teach`` adds images to a fitted model without the old training
        patches (a model keeps only its bank), so each sampler says how its rule continues from a bank.
        ``radius``: the covering radius the bank was chosen to, if known (else found from the bank).
        ``nearest``: each new patch's nearest bank row in feature space, if the caller has searched.
        """
        ...

    def select_covering(self, features: FeatureRows, progress: Progress | None = None) -> Extension:
        """:meth:`select`, with the covering radius it reached when the rule has one (kept with the model)."""
        ...


@dataclass(frozen=True)
class Extension:
    """The rows of the new patches that join the bank (sorted), and the covering radius used (None: none)."""

    chosen: np.ndarray
    radius: float | None


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
    #: The sample's size (0: never sample, the paper's rule): above twice this many training patches
    #: (:func:`samples`), ``ratio`` of a seeded uniform sample of this many (:func:`sample_rows`), then the
    #: greedy continued over as many patches outside it until each is within the sample's radius
    #: (:meth:`_complete`).
    points: int = 0

    def __post_init__(self) -> None:
        if not 0.0 < self.ratio <= 1.0:
            raise ConfigError(f"coreset ratio must be in (0, 1], got {self.ratio}")
        if self.points < 0:
            raise ConfigError(f"coreset points must be >= 0 (0 = every patch), got {self.points}")

    def project(self, features: FeatureRows) -> np.ndarray:
        """The fixed, seeded random projection (identity when already at or below the target width).

        The matrix is float32 Gaussian over a float64 ``sqrt``, so the product (and everything the
        greedy computes) is float64; it is taken in row chunks with one BLAS thread (bit-identical to
        one single-threaded product, see :func:`_one_blas_thread`) so
        features on disk (:class:`RowFile`) are read once and never held whole.
        """
        dim = features.shape[1]
        if dim <= self.projection_dim:
            return np.ascontiguousarray(features[0 : features.shape[0]], dtype=np.float32)
        matrix = self._matrix(dim)
        out = np.empty((features.shape[0], self.projection_dim), dtype=np.result_type(np.float32, matrix))
        with _one_blas_thread():
            for rows in _chunks(features.shape[0]):
                chunk = np.asarray(features[rows]).astype(np.float32, copy=False)
                np.matmul(chunk, matrix, out=out[rows])
        return out

    def _matrix(self, dim: int) -> np.ndarray:
        rng = np.random.default_rng(self.seed)
        matrix: np.ndarray = rng.standard_normal((dim, self.projection_dim)).astype(np.float32) / np.sqrt(
            self.projection_dim
        )
        return matrix

    def _project_to_disk(self, features: RowFile) -> _FileRows:
        """:meth:`project` for features on disk: the same rows, written beside them and read back as needed.

        The float64 projection is the coreset's largest structure (1 KiB per training patch, 8 GiB at
        5,000 images of 320 px), so it stays in the fit's scratch folder; the greedy reads back only
        the rows it recomputes exactly (:class:`_FileRows`). Features already narrow enough are read
        from their own file, without a copy.
        """
        features.close()
        count, dim = features.shape
        if dim <= self.projection_dim:
            return _FileRows(features.path, np.dtype(np.float32), count, dim)
        matrix = self._matrix(dim)
        path = features.path.with_name("coreset-projection.f64")
        dtype = np.result_type(np.float32, matrix)
        buffer = np.empty((min(PROJECT_ROWS + GEMV_PAD, count), self.projection_dim), dtype=dtype)
        with path.open("wb") as out, _one_blas_thread():
            for rows in _chunks(count):
                chunk = features[rows]
                product = np.matmul(chunk, matrix, out=buffer[: chunk.shape[0]])
                out.write(product.tobytes())
        return _FileRows(path, dtype, count, self.projection_dim)

    def initial_distances(self, points: Points, sq_norms: np.ndarray) -> np.ndarray:
        """Mean distance to ``starting_points`` seeded anchors: the ``min_dist`` before the first pick.

        Each anchor's distances are taken a chunk of rows at a time with one BLAS thread: equal, bit
        for bit, to one full single-threaded product (chunks are whole kernel blocks), which is how
        the definition is written. A multi-threaded product is not: the rows where OpenBLAS splits the
        work between threads come out of a different kernel path (e.g. rows 50,000 and 100,000 of
        100,002 differ in the last bit).
        """
        count = points.shape[0]
        rng = np.random.default_rng(self.seed)
        anchors = rng.choice(count, size=min(self.starting_points, count), replace=False)
        min_dist = np.zeros(count, dtype=np.float32)
        with _one_blas_thread():
            for anchor in anchors:
                centre = np.array(points[int(anchor)])
                centre_sq = sq_norms[int(anchor)]
                for rows in _chunks(count):
                    min_dist[rows] += _distances_to(points[rows], sq_norms[rows], centre, centre_sq)
        min_dist /= len(anchors)
        return min_dist

    def select(self, features: FeatureRows, progress: Progress | None = None) -> np.ndarray:
        return self.select_covering(features, progress).chosen

    def select_covering(self, features: FeatureRows, progress: Progress | None = None) -> Extension:
        """The picks and the last pick's distance, which is the bank's covering radius (:meth:`covering_radius`)."""
        count = features.shape[0]
        target = kept_rows(count, self.ratio)
        if target >= count:  # a ratio of 1 keeps every patch, sampled or not
            return Extension(np.arange(count, dtype=np.int64), None)
        if samples(count, self.points):
            sample = sample_rows(count, self.points, self.seed)
            rest = completion_rows(count, sample, self.points, self.seed)
            with _sampled(features, sample) as rows:
                inner = replace(self, points=0).select_covering(rows, _phase(progress, 0, rest.size))
                # A sample of one patch is kept whole and has no radius: the completion then covers to 0.
                radius = 0.0 if inner.radius is None else inner.radius
                # From the sample's scratch file (a tenth of the features), not a pass over all of them.
                bank = rows.take(inner.chosen) if isinstance(rows, RowFile) else rows[inner.chosen]
            chosen = sample[inner.chosen]
            return Extension(self._complete(features, rest, chosen, bank, radius, progress), radius)
        if not isinstance(features, RowFile):
            picks, radius = self._greedy(self.project(features), target, progress)
            return Extension(np.sort(picks), radius)
        on_disk = self._project_to_disk(features)
        try:
            picks, radius = self._greedy(on_disk, target, progress)
            return Extension(np.sort(picks), radius)
        finally:
            on_disk.close()
            if on_disk.path != features.path:  # the projection: free its disk space now
                on_disk.path.unlink(missing_ok=True)

    def _complete(
        self,
        features: FeatureRows,
        rest: np.ndarray,
        chosen: np.ndarray,
        bank: np.ndarray,
        radius: float,
        progress: Progress | None,
    ) -> np.ndarray:
        """The sample's picks ``chosen`` (features ``bank``), plus the patches of ``rest`` (rows outside the
        sample, :func:`completion_rows`) that the same greedy, continued, adds to bring each of them
        within the sample's covering radius (docs/METHOD.md, "Large training sets").

        Why: the exact greedy leaves every patch within its last pick's distance, and the patches it had
        to pick for that are the training images' rarest; the threshold's leave-own-out maximum skips
        picked patches. A bank picked from a sample alone leaves the rare patches outside the sample
        unpicked, so they enter that maximum at their full distance: on tire (497,120 patches, a
        400,000 sample) tau rose 2% and recall at tau fell 0.07 against the exact greedy. Continuing the
        greedy over them, as ``eagle teach`` does for new images, restores that kind of guarantee, at the
        sample's radius (larger than the exact rule's on every patch would be), for one projected search
        of ``rest`` against the bank plus a greedy over those left uncovered. ``rest`` is at most as large
        as the sample: completing over all of 8 million patches (5,000 images) added 74,000 rows to a
        40,000-row bank, and every inspection and the training-score pass pay for each row.

        The rows of ``rest`` are read a chunk at a time, projected, and searched against the projected
        bank (exact, in float32); only those farther than ``radius`` are kept in memory (1 KiB each,
        float64 projected, plus the greedy's 300 bytes), and the lazy greedy runs on them from their
        distances, stopped by the radius (:meth:`_cover`). So every patch ends within ``radius`` up to
        float32 rounding of the search (a relative 1e-6), which decides only borderline picks.
        """
        dim = features.shape[1]
        # After the sample's picks; one step stays open for the cover's picks, whose count the search finds.
        scanned = _phase(progress, chosen.size, 1)
        # The search's projection: float32 on every BLAS thread (an eighth of the float64 one's time over
        # millions of rows); the greedy gets the float64 projection of the far rows alone.
        matrix = self._matrix(dim).astype(np.float32) if dim > self.projection_dim else None
        search = PrunedExactSearch()
        search.fit(torch.from_numpy(np.ascontiguousarray(bank if matrix is None else bank @ matrix)))
        del bank
        rows: list[np.ndarray] = []
        points: list[np.ndarray] = []
        dists: list[np.ndarray] = []
        step = PROJECT_ROWS * 4
        for start in range(0, rest.size, step):
            wanted = rest[start : start + step]
            chunk = features.take(wanted) if isinstance(features, RowFile) else features[wanted]
            query = chunk if matrix is None else chunk @ matrix
            dist = search.search(torch.from_numpy(np.ascontiguousarray(query, dtype=np.float32)))[0].numpy()
            far = np.flatnonzero(dist > radius)
            rows.append(wanted[far])
            points.append(self.project(chunk[far]))
            dists.append(dist[far].astype(np.float32))
            if scanned is not None:
                scanned(start + wanted.size, rest.size)
        far_rows = np.concatenate(rows) if rows else np.empty(0, dtype=np.int64)
        if far_rows.size == 0:
            if progress is not None:
                progress(chosen.size + rest.size, chosen.size + rest.size)
            return chosen
        cover = _phase(progress, chosen.size + rest.size, 0)
        picks = self._cover(np.concatenate(points), np.concatenate(dists), radius, cover)
        return np.sort(np.concatenate([chosen, far_rows[picks]]))

    @staticmethod
    def _cover(points: np.ndarray, min_dist: np.ndarray, radius: float, progress: Progress | None) -> np.ndarray:
        """The greedy continued over ``points`` (projected, each farther than ``radius`` from the bank,
        at ``min_dist``) until every one is within ``radius``: the rows picked, in pick order."""
        sq_norms = np.einsum("ij,ij->i", points, points)
        with _one_blas_thread():
            return _LazyGreedy(points, sq_norms, min_dist).run(points.shape[0], progress, radius=radius)

    def _greedy(self, points: Points, target: int, progress: Progress | None) -> tuple[np.ndarray, float]:
        count = points.shape[0]
        sq_norms = np.empty(count, dtype=points.dtype)
        for rows in _chunks(count):
            chunk = points[rows]
            np.einsum("ij,ij->i", chunk, chunk, out=sq_norms[rows])
        min_dist = self.initial_distances(points, sq_norms)
        with _one_blas_thread():
            greedy = _LazyGreedy(points, sq_norms, min_dist)
            picks = greedy.run(target, progress)
        return picks, greedy.last_distance

    @staticmethod
    def _distances(points: np.ndarray, sq_norms: np.ndarray, index: int) -> np.ndarray:
        return _distances_to(points, sq_norms, points[index], sq_norms[index])

    def covering_radius(self, bank: np.ndarray) -> float:
        """The distance (projected) at which the greedy stopped: the smallest distance between two bank rows.

        Why that is the radius: every pick was the point farthest from the centres before it, and
        those farthest distances only shrink, so the last pick's distance to its nearest earlier
        centre, ``r_k``, is the smallest of them, and no two centres are closer than the later one's
        own pick distance. Hence ``r_k`` is exactly the minimum pairwise distance of the bank: found
        from the bank alone, so a model saved before it was recorded can still be taught.
        """
        points = torch.from_numpy(np.ascontiguousarray(self.project(bank), dtype=np.float32))
        if points.shape[0] < 2:
            return 0.0
        own = torch.arange(points.shape[0], dtype=torch.int64)
        search = TorchExactSearch()
        search.fit(points, own)
        dist, _ = search.search(points, exclude_groups=own)
        return float(dist.min())

    def extend(
        self,
        bank: np.ndarray,
        new: np.ndarray,
        radius: float | None = None,
        progress: Progress | None = None,
        nearest: np.ndarray | None = None,
    ) -> Extension:
        """Continue the greedy from ``bank``: pick new patches farthest from every centre until the
        farthest is within the bank's covering radius (docs/METHOD.md, "Teaching normal images").

        The new points start with their distance to the nearest bank row (the state the greedy would
        be in had the bank's centres been applied to them); the picks then follow the same lazy loop
        as a fit, stopped by the radius instead of a count. Not the picks a refit on the union would
        make (those depend on every old patch, which a model does not keep), but the same covering
        guarantee for the new images: each of their patches ends within ``radius`` of a bank row.

        With ``nearest`` (each new patch's nearest bank row in feature space, which a teach has from
        its guard's search) a point starts at its projected distance to that row instead: at least its
        projected distance to the nearest row, so the loop may pick a few points it need not, never
        leaves one uncovered, and skips a search of every new patch against the projected bank.
        """
        if radius is None:
            radius = self.covering_radius(bank)
        if new.shape[0] == 0:
            return Extension(np.empty(0, dtype=np.int64), radius)
        points = self.project(new)
        if nearest is not None:
            used, where = np.unique(nearest, return_inverse=True)  # project each bank row once, not per patch
            rows = self.project(bank[used])[where.reshape(-1)]
            min_dist = np.sqrt(((points - rows) ** 2).sum(axis=1)).astype(np.float32)
            del rows
        else:
            search = TorchExactSearch()
            search.fit(torch.from_numpy(np.ascontiguousarray(self.project(bank), dtype=np.float32)))
            dist, _ = search.search(torch.from_numpy(np.ascontiguousarray(points, dtype=np.float32)))
            min_dist = dist.numpy().astype(np.float32)
        # A point already within the radius can never be picked (the loop stops once the farthest point
        # is within it, and until then the farthest is beyond it), and its distance never decides a pick:
        # the loop over the others alone makes the same picks.
        open_rows = np.flatnonzero(min_dist > radius)
        if open_rows.size == 0:
            return Extension(np.empty(0, dtype=np.int64), radius)
        picks = self._cover(points[open_rows], min_dist[open_rows], radius, progress)
        return Extension(np.sort(open_rows[picks]), radius)


#: The greedy runs on every patch up to this many times ``points``: there its work (patches x picks, each a
#: share of the patches) is at most the square of this times the sample's greedy, and the sample would save
#: little, since its completion searches every other patch anyway.
EXACT_UP_TO = 2


def samples(count: int, points: int) -> bool:
    """Whether a greedy coreset with ``points`` (0: never) over ``count`` patches runs on a sample.

    Why not from ``points`` on: up to twice ``points`` the exact greedy costs at most four times the sample's,
    and it is the paper's rule, so a fit's decisions are the exact greedy's wherever they can be at that
    cost. A sample's bank, even completed (:meth:`ApproximateGreedyCoreset._complete`), is smaller than the
    exact rule's, and on tire, where the sample was 80% of the patches, it caught fewer defects at tau
    (docs/METHOD.md, "Large training sets").
    """
    return points > 0 and count > EXACT_UP_TO * points


def greedy_pool(count: int, points: int, ratio: float) -> int:
    """How many of ``count`` training patches the greedy with ``points`` and ``ratio`` picks from or covers
    (what ``eagle fit`` reports): all of them, kept whole at a ratio of 1 or chosen from by the exact
    greedy, or a sample of ``points`` and a second of as many that it completes over."""
    return 2 * points if greedy_samples(count, points, ratio) else count


def greedy_samples(count: int, points: int, ratio: float) -> bool:
    """Whether the greedy with ``points`` and ``ratio`` chooses from a sample of ``count`` patches: above twice
    ``points`` (:func:`samples`), unless the ratio keeps every patch. What ``eagle fit`` reports and what the
    fit warns of (``expert/fitting.py``, ``sample_warning``) both ask this."""
    return kept_rows(count, ratio) < count and samples(count, points)


def kept_rows(count: int, ratio: float) -> int:
    """How many of ``count`` patches the greedy keeps at ``ratio`` (at least one), as a fit and
    :func:`greedy_pool` both count them."""
    return max(1, int(count * ratio))


def _phase(progress: Progress | None, before: int, after: int) -> Progress | None:
    """One phase of the coreset stage on the stage's one progress count: ``done`` of the phase's ``total``
    is reported as ``before + done`` of ``before + total + after``.

    Why: a sampled coreset is three phases (the sample's picks, the search of the rows it completes over,
    the picks that cover them), and a bar or a service's progress that restarts at 0 twice reads as a
    stage that went back; this way the count only rises and reaches the total only at the end. The total
    is a bound until then: it grows once, by the cover's candidates when the search has found them, and
    comes down to the picks made when every candidate is covered.
    """
    if progress is None:
        return None

    def report(done: int, total: int) -> None:
        progress(before + done, before + total + after)

    return report


def sample_rows(count: int, points: int, seed: int) -> np.ndarray:
    """The sorted rows a coreset chooses from when it samples (above twice ``points`` patches, :func:`samples`).

    Why a sample: the greedy's cost grows with patches x picks, so with the picks a fixed share of
    the patches it grows with the square of the training set (a day at 5,000 images of 320 px). A
    greedy on a uniform sample of a fixed size keeps that stage bounded; a normal pattern seen in a
    share ``f`` of the patches is missing from the sample with probability about ``(1 - f)^points``
    (e^-80 for one image's worth of 5,000 at 400,000 points), and the greedy is then continued over up
    to ``points`` of the patches the sample misses (:meth:`ApproximateGreedyCoreset._complete`;
    docs/METHOD.md, "Large training sets"). Its stream is seeded apart from the projection's, so both
    stay reproducible.
    """
    if points >= count:
        return np.arange(count, dtype=np.int64)
    rng = np.random.default_rng((seed, count, points))
    return np.sort(rng.choice(count, size=points, replace=False)).astype(np.int64)


def completion_rows(count: int, sample: np.ndarray, points: int, seed: int) -> np.ndarray:
    """The sorted rows outside ``sample`` that its bank is completed over: all of them, or when there are
    more than ``points``, a seeded uniform sample of ``points`` (its own stream, apart from the sample's).

    Why bounded: the completion's search and its picks grow with the rows it covers, and every pick costs
    every later inspection, so the completion costs what a second sample does (docs/METHOD.md, "Large
    training sets"). A fit samples only above twice ``points`` patches (:func:`samples`), so there it is
    always a sample; "all of them" is for callers with other sizes.
    """
    rest = np.setdiff1d(np.arange(count, dtype=np.int64), sample, assume_unique=True)
    if rest.size <= points:
        return rest
    rng = np.random.default_rng((seed, count, points, 1))
    return np.sort(rng.choice(rest, size=points, replace=False)).astype(np.int64)


@contextmanager
def _sampled(features: FeatureRows, rows: np.ndarray) -> Iterator[FeatureRows]:
    """``features[rows]``: in memory for rows in memory, else a scratch file beside the features
    (written a chunk at a time, removed after), so a sample of features on disk is never held whole."""
    if not isinstance(features, RowFile):
        yield np.ascontiguousarray(features[rows])
        return
    sample = RowFile(features.path.with_name("coreset-sample.f32"), features.dim)
    try:
        chunk = PROJECT_ROWS * 4
        for start in range(0, rows.size, chunk):
            sample.append(features.take(rows[start : start + chunk]))
        sample.close()
        yield sample
    finally:
        sample.close()
        sample.path.unlink(missing_ok=True)


def _distances_to(
    points: np.ndarray, sq_norms: np.ndarray, centre: np.ndarray, centre_sq: np.floating | float
) -> np.ndarray:
    """The literal loop's distances from ``centre`` to every row, in its operations and order."""
    dist: np.ndarray = points @ centre
    dist *= -2.0
    dist += sq_norms
    dist += centre_sq
    np.maximum(dist, 0.0, out=dist)
    np.sqrt(dist, out=dist)
    return dist


class _FileRows:
    """A row matrix in a scratch file, read with plain reads: a range, one row, or a range into a reused buffer.

    Not a memory map: the greedy touches scattered rows, and each fault maps a whole page-cache folio
    (measured: about 190 KiB of resident file pages per row touched), which counts towards the
    process's memory until unmapped. Reads copy just the bytes asked for; the file's pages stay in the
    page cache, which the kernel may reclaim. Supports the slice/int indexing the greedy uses on an
    in-memory array, so the same code runs on both.
    """

    def __init__(self, path: Path, dtype: np.dtype[Any], count: int, dim: int) -> None:
        self.path = path
        self.dtype = dtype
        self.shape = (count, dim)
        self._row_bytes = dim * dtype.itemsize
        self._file = path.open("rb")
        if os.fstat(self._file.fileno()).st_size < count * self._row_bytes:
            self._file.close()
            raise ConfigError(f"{path}: scratch rows missing ({count * self._row_bytes} bytes expected)")
        self._buffer = np.empty((0, dim), dtype=dtype)

    def _read(self, start: int, out: np.ndarray) -> np.ndarray:
        view = out.data.cast("B")
        done = 0
        while done < view.nbytes:  # a read may return less than asked
            got = os.preadv(self._file.fileno(), [view[done:]], start * self._row_bytes + done)
            if got <= 0:
                raise ConfigError(f"{self.path}: scratch file ended early")
            done += got
        return out

    def __getitem__(self, index: int | slice) -> np.ndarray:
        if isinstance(index, slice):
            start, stop, _ = index.indices(self.shape[0])
            return self._read(start, np.empty((max(0, stop - start), self.shape[1]), dtype=self.dtype))
        return self._read(int(index), np.empty(self.shape[1], dtype=self.dtype))

    def span(self, start: int, stop: int) -> np.ndarray:
        """Rows ``start:stop`` in a buffer reused by the next call (the greedy's per-refresh read)."""
        if self._buffer.shape[0] < stop - start:
            self._buffer = np.empty((stop - start, self.shape[1]), dtype=self.dtype)
        return self._read(start, self._buffer[: stop - start])

    def close(self) -> None:
        self._file.close()


#: The projected points: in memory, or in the fit's scratch folder.
Points = np.ndarray | _FileRows


class _LazyGreedy:
    """The blocked, lazily updated greedy loop of :class:`ApproximateGreedyCoreset` (same picks).

    Exactness of the filter: it works on ``q = fl(fl64(p - mean))``, a float16 copy of the centred
    points (float32 if a value would overflow float16), multiplied in float32, in which the float16
    values are exact. The float32 value ``D`` of ``|q_p|^2 + |q_c|^2 - 2 q_p.q_c`` is within
    ``E32 = 140 u32 (|q_p| + |q_c|)^2`` of ``|q_p - q_c|^2``, and ``|q_p - q_c|`` within
    ``s = (u_q + 2 u64)(|p - mean| + |c - mean|) + 2 sqrt(dim) eta`` of the true distance ``d``
    (``u_q`` the copy's unit roundoff, ``eta`` half its smallest subnormal). The literal loop's value
    (float64, unit roundoff ``u``; float32 when the features were not projected) is at least
    ``sqrt(d^2 - E)(1 - 2 u)`` with ``E = 140 u (|p| + |c|)^2``. So if
    ``D >= (sqrt(m^2 (1 + 8 u) + E) + s)^2 + E32`` (with slack, rounded up to float32), the loop's
    distance is at least the point's current ``min_dist`` ``m`` and cannot change it. Every other
    pair is recomputed with the loop's own arithmetic: the same BLAS matrix-vector product on the
    same rows (padded so that every row takes the kernel path the full product takes), the same
    operations in the same order. All norms are bounded by the largest over the data set.

    The float16 copy (256 bytes per point, half of float32) is what the greedy keeps in memory per
    point; the float64 points may stay in a scratch file (:class:`_FileRows`), of which each refresh
    reads only the span of rows it recomputes and the centres it applies. The coarser
    copy only widens the margin ``s`` (about 0.1% of the largest centred norm), so a few more pairs
    are recomputed exactly; the picks cannot change.
    """

    def __init__(self, points: Points, sq_norms: np.ndarray, min_dist: np.ndarray) -> None:
        count, dim = points.shape
        self.points = points
        self.sq_norms = sq_norms
        self.min_dist = min_dist
        total = np.zeros(dim, dtype=np.float64)
        largest = 0.0
        for rows in _chunks(count):
            chunk = points[rows]
            total += chunk.sum(axis=0, dtype=np.float64)
            largest = max(largest, float(np.abs(chunk).max()))
        mean = total / count
        # Any fixed ``mean`` is valid (the bound uses the copy's own norms); it only keeps values small.
        self.q_dtype = np.dtype(np.float16) if largest + float(np.abs(mean).max()) < 30000.0 else np.dtype(np.float32)
        self.q = np.empty((count, dim), dtype=self.q_dtype)
        self.q_sq = np.empty(count, dtype=np.float32)
        for rows in _chunks(count):
            centred = np.subtract(points[rows], mean, dtype=np.float64)
            self.q[rows] = centred
            wide = self.q[rows].astype(np.float32)
            np.einsum("ij,ij->i", wide, wide, out=self.q_sq[rows])
        del centred, wide
        info = np.finfo(self.q_dtype)
        u_q = float(info.eps) / 2.0
        eta = float(info.smallest_subnormal) / 2.0
        q_max = math.sqrt(float(self.q_sq.max()) * (1.0 + 1e-5)) + 1e-30
        x_max = (q_max + math.sqrt(dim) * eta) / (1.0 - 2.0 * u_q)
        # The literal loop computes in the points' precision: float64 after a projection, float32
        # when the features were already narrow enough to be used as they are.
        self.unit = _U64 if points.dtype == np.float64 else _U32
        p_max = math.sqrt(float(sq_norms.max()) * (1.0 + 256.0 * self.unit)) + 1e-30
        self.e32 = _EXPANSION_ERROR * _U32 * (2.0 * q_max) ** 2 * 1.01
        self.slack = (2.0 * x_max * (u_q + 2.0 * _U64) + 2.0 * math.sqrt(dim) * eta) * 1.01
        self.e64 = _EXPANSION_ERROR * self.unit * (2.0 * p_max) ** 2 * 1.01
        self.threshold = np.empty(count, dtype=np.float32)
        for rows in _chunks(count):
            self.threshold[rows] = self._threshold(min_dist[rows])
        self.block = BLOCK_ROWS
        blocks = -(-count // self.block)
        self.block_max = np.array([min_dist[b * self.block : (b + 1) * self.block].max() for b in range(blocks)])
        self.applied = np.zeros(blocks, dtype=np.int64)
        self.centres = np.empty(0, dtype=np.int64)
        self.centre_q = np.empty((0, dim), dtype=np.float32)
        #: The last picks' points when the points are on disk (4 MiB): most refreshes apply recent picks.
        self._recent = np.empty((RECENT_CENTRES, dim), dtype=points.dtype) if isinstance(points, _FileRows) else None
        self.centre_q_sq = np.empty(0, dtype=np.float32)
        self._wide = torch.empty((self.block, dim), dtype=torch.float32)
        self._gather = np.zeros((self.block + GEMV_PAD, dim), dtype=points.dtype)
        self._dots = np.zeros(self.block + GEMV_PAD, dtype=points.dtype)
        #: The distance of the latest pick from the centres before it (0 before any pick).
        self.last_distance = 0.0

    def _threshold(self, min_dist: np.ndarray) -> np.ndarray:
        """Float32 bound on the filter value below which a pair must be recomputed (rounded up)."""
        m = min_dist.astype(np.float64)
        bound = (np.sqrt(m * m * (1.0 + 8.0 * self.unit) + self.e64) + self.slack) ** 2 + self.e32
        bound *= 1.0 + 1e-12
        return np.nextafter(bound.astype(np.float32), np.float32(np.inf))

    def _float32(self, rows: np.ndarray, out: torch.Tensor | None = None) -> np.ndarray:
        """The copy's rows as float32 (exact).

        torch converts float16 about 15x faster than numpy, but splits a copy of more than 32,768
        elements over all its threads, which spin when the cores are shared (a greedy on 20,000
        points took 15 s instead of 1 s): pieces under that size stay on this thread, and torch's
        thread count, which the rest of the process uses, is left alone.
        """
        if rows.dtype == np.float32:
            return rows
        target = torch.empty(rows.shape, dtype=torch.float32) if out is None else out[: rows.shape[0]]
        source = torch.from_numpy(rows)
        step = max(1, _CONVERT_ELEMENTS // max(1, rows.shape[1]))
        for start in range(0, rows.shape[0], step):
            target[start : start + step].copy_(source[start : start + step])
        return target.numpy()

    def run(self, target: int, progress: Progress | None, radius: float | None = None) -> np.ndarray:
        """The first ``target`` picks, or fewer: none is made once every point is within ``radius``."""
        dim = self.q.shape[1]
        self.centres = np.empty(target, dtype=np.int64)
        # float32 (exact for the copy's values): converted once at the pick, not at every refresh.
        self.centre_q = np.empty((target, dim), dtype=np.float32)
        self.centre_q_sq = np.empty(target, dtype=np.float32)
        step = max(1, target // 100)
        for i in range(target):
            while True:
                b = int(np.argmax(self.block_max))
                if self.applied[b] == i:
                    break
                self._refresh(b, i)
            start = b * self.block
            pick = start + int(np.argmax(self.min_dist[start : start + self.block]))
            if radius is not None and self.min_dist[pick] <= radius:  # covered: every point within radius
                if progress is not None:
                    progress(i, i)
                return self.centres[:i].copy()
            self.last_distance = float(self.min_dist[pick])  # the last one is the covering radius
            self.centres[i] = pick
            self.centre_q[i] = self.q[pick]
            self.centre_q_sq[i] = self.q_sq[pick]
            if self._recent is not None:
                self._recent[i % len(self._recent)] = self.points[pick]
            if progress is not None and (i % step == 0 or i == target - 1):
                progress(i + 1, target)
        return self.centres.copy()

    def _refresh(self, b: int, upto: int) -> None:
        """Apply centres ``applied[b]:upto`` to block ``b`` and make its maximum exact."""
        start = b * self.block
        stop = min(start + self.block, self.q.shape[0])
        first = int(self.applied[b])
        filt = self._float32(self.q[start:stop], self._wide) @ self.centre_q[first:upto].T
        filt *= -2.0
        filt += self.q_sq[start:stop, None]
        filt += self.centre_q_sq[None, first:upto]
        rows, cols = np.nonzero(filt < self.threshold[start:stop, None])
        if rows.size:
            order = np.argsort(cols, kind="stable")
            rows, cols = rows[order] + start, cols[order]
            cuts = [0, *(np.flatnonzero(cols[1:] != cols[:-1]) + 1).tolist(), cols.size]
            low = int(rows.min())
            span = self._span(low, int(rows.max()) + 1)
            for lo, hi in itertools.pairwise(cuts):
                self._apply_exact(span, low, rows[lo:hi], first + int(cols[lo]), upto)
            touched = np.unique(rows)
            self.threshold[touched] = self._threshold(self.min_dist[touched])
        self.applied[b] = upto
        self.block_max[b] = self.min_dist[start:stop].max()

    def _span(self, start: int, stop: int) -> np.ndarray:
        """Points ``start:stop``: a view in memory, one read into a reused buffer from a scratch file."""
        if isinstance(self.points, _FileRows):
            return self.points.span(start, stop)
        return self.points[start:stop]

    def _centre(self, i: int, picked: int) -> np.ndarray:
        """The ``i``-th centre's point, ``picked`` centres having been chosen: kept from its pick when
        recent enough (points on disk), otherwise read."""
        if self._recent is not None and picked - i <= len(self._recent):
            recent: np.ndarray = self._recent[i % len(self._recent)]
            return recent
        row: np.ndarray = self.points[int(self.centres[i])]
        return row

    def _apply_exact(self, span: np.ndarray, low: int, rows: np.ndarray, i: int, picked: int) -> None:
        """``min_dist[rows] = min(min_dist[rows], d(rows, centre i))`` exactly as the literal loop does it.

        ``span`` holds points ``low:low + len(span)``, which include ``rows``.
        """
        centre = int(self.centres[i])
        count = rows.size
        padded = -(-count // GEMV_PAD) * GEMV_PAD
        # Rows past ``count`` hold stale data: harmless, each output row depends on its own row only.
        gathered = self._gather[:padded]
        np.take(span, rows - low, axis=0, out=gathered[:count])
        dist = np.matmul(gathered, self._centre(i, picked), out=self._dots[:padded])[:count]
        dist *= -2.0
        dist += self.sq_norms[rows]
        dist += self.sq_norms[centre]
        np.maximum(dist, 0.0, out=dist)
        np.sqrt(dist, out=dist)
        self.min_dist[rows] = np.minimum(self.min_dist[rows], dist)


class _NoRadius:
    """For samplers whose rule is not a cover: :meth:`Sampler.select_covering` is their picks, no radius."""

    def select(self, features: FeatureRows, progress: Progress | None = None) -> np.ndarray:
        raise NotImplementedError

    def select_covering(self, features: FeatureRows, progress: Progress | None = None) -> Extension:
        return Extension(self.select(features, progress), None)


@dataclass(frozen=True)
class RandomSampler(_NoRadius):
    """Uniform random subset: a cheap baseline for ablations."""

    ratio: float = 0.1
    seed: int = 0
    #: ``ratio`` of at most this many patches is kept (0: of all), the size of the greedy's sample; the greedy
    #: samples only above twice as many, since below that its exact rule is affordable, and it adds the
    #: completion's picks, so at one setting the two banks' sizes differ.
    points: int = 0

    def select(self, features: FeatureRows, progress: Progress | None = None) -> np.ndarray:
        count = features.shape[0]
        pool = min(count, self.points) if self.points > 0 else count
        target = max(1, int(pool * self.ratio))
        rng = np.random.default_rng(self.seed)
        return np.sort(rng.choice(count, size=min(target, count), replace=False)).astype(np.int64)

    def extend(
        self,
        bank: np.ndarray,
        new: np.ndarray,
        radius: float | None = None,
        progress: Progress | None = None,
        nearest: np.ndarray | None = None,
    ) -> Extension:
        """The same share of the new patches, drawn at random (seeded by the bank's size, so reproducible)."""
        count = new.shape[0]
        target = min(count, max(1, int(count * self.ratio))) if count else 0
        rng = np.random.default_rng([self.seed, bank.shape[0]])
        return Extension(np.sort(rng.choice(count, size=target, replace=False)).astype(np.int64), None)


@dataclass(frozen=True)
class IdentitySampler(_NoRadius):
    """Keep every patch (exact PatchCore without subsampling; memory and time grow 10x)."""

    def select(self, features: FeatureRows, progress: Progress | None = None) -> np.ndarray:
        return np.arange(features.shape[0], dtype=np.int64)

    def extend(
        self,
        bank: np.ndarray,
        new: np.ndarray,
        radius: float | None = None,
        progress: Progress | None = None,
        nearest: np.ndarray | None = None,
    ) -> Extension:
        """Every new patch, as at a fit."""
        return Extension(np.arange(new.shape[0], dtype=np.int64), None)


#: ``factory(ratio, seed, projection_dim, points) -> Sampler`` by name; the names are declared in
#: ``choices.SAMPLERS``. ``points``: the option ``coreset_points`` (0: every patch), which each rule reads its way.
SAMPLER_REGISTRY: Registry[Callable[[float, int, int, int], Sampler]] = Registry("sampler")
SAMPLER_REGISTRY.add(
    "greedy",
    lambda ratio, seed, dim, points: ApproximateGreedyCoreset(ratio, projection_dim=dim, seed=seed, points=points),
)
SAMPLER_REGISTRY.add("random", lambda ratio, seed, _dim, points: RandomSampler(ratio=ratio, seed=seed, points=points))
SAMPLER_REGISTRY.add("all", lambda _ratio, _seed, _dim, _points: IdentitySampler())


def make_sampler(name: str, ratio: float, seed: int, projection_dim: int = 128, points: int = 0) -> Sampler:
    """Sampler by name: ``greedy`` (default), ``random`` or ``all``; ``points``: ``coreset_points``, read by each rule.

    A plugin's factory written before ``points`` existed takes three arguments; it still works, and
    chooses from every patch as it always did.
    """
    factory: Callable[..., Sampler] = SAMPLER_REGISTRY.get(name)
    try:
        takes_points = len(inspect.signature(factory).parameters) >= 4
    except (TypeError, ValueError):  # no signature to read (a builtin): assume the current one
        takes_points = True
    return factory(ratio, seed, projection_dim, points) if takes_points else factory(ratio, seed, projection_dim)
