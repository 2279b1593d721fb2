"""Nearest-neighbour search over the memory bank, behind one interface.

Three exact strategies are interchangeable: chunked torch matrix products, faiss ``IndexFlatL2``,
and a pruned search that compares full vectors only where a proven PCA-subspace lower bound cannot
rule an entry out (the default: the same answers for a fraction of the multiply-adds).
Both support *group exclusion* — ignoring bank entries that came from the query's own training
image — which is what makes TGPS's leave-own-out training scores cost one scoring pass instead of
one index rebuild per image (docs/METHOD.md §2).

Distances are found with the fast ``|q|^2 - 2 q.b + |b|^2`` expansion, then the winning
neighbour's distance is recomputed directly as ``|q - b|`` so scores do not suffer the expansion's
float32 cancellation error.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

import numpy as np
import torch

from eagle_iad.choices import DEFAULT_SEARCH as DEFAULT_SEARCH
from eagle_iad.choices import SEARCHES as SEARCHES
from eagle_iad.errors import ConfigError
from eagle_iad.registry import Registry

#: Bound on the temporary distance block (queries x bank entries), in elements (float32).
DEFAULT_BLOCK_ELEMENTS = 1 << 24


class NearestNeighbourSearch(Protocol):
    """Exact 1-NN over a fixed bank, optionally excluding one group of entries per query."""

    name: str

    def fit(self, bank: torch.Tensor, bank_groups: torch.Tensor | None = None) -> None:
        """Index ``bank`` (``M x D`` float32); ``bank_groups`` (``M`` int) labels each entry's origin."""
        ...

    def search(
        self, queries: torch.Tensor, exclude_groups: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Distances and indices of each query's nearest bank entry.

        With ``exclude_groups`` (``Q`` int; -1 = exclude nothing), entries whose group equals the
        query's are skipped; a query with nothing left gets distance ``inf`` and index -1.
        """
        ...


def _exact_distances(queries: torch.Tensor, bank: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    found = index >= 0
    if bool(found.all()):  # the usual case: no masked copy of the queries
        norms: torch.Tensor = torch.linalg.vector_norm(queries - bank[index], dim=1)
        return norms
    dist = torch.full((queries.shape[0],), float("inf"), dtype=torch.float32)
    if bool(found.any()):
        diff = queries[found] - bank[index[found]]
        dist[found] = torch.linalg.vector_norm(diff, dim=1)
    return dist


class TorchExactSearch:
    """Blocked ``queries @ bank.T`` on the CPU (or whatever device the tensors live on)."""

    name = "torch"

    def __init__(self, block_elements: int = DEFAULT_BLOCK_ELEMENTS) -> None:
        self.block_elements = block_elements
        self.bank = torch.empty(0, 0)
        self.bank_sq = torch.empty(0)
        self.bank_groups: torch.Tensor | None = None

    def fit(self, bank: torch.Tensor, bank_groups: torch.Tensor | None = None) -> None:
        self.bank = bank.float().contiguous()
        self.bank_sq = (self.bank * self.bank).sum(dim=1)
        self.bank_groups = None if bank_groups is None else bank_groups.long()

    @torch.no_grad()
    def search(
        self, queries: torch.Tensor, exclude_groups: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        queries = queries.float().contiguous()
        if exclude_groups is not None and self.bank_groups is None:
            raise ValueError("group exclusion needs bank_groups at fit time")
        count = queries.shape[0]
        index = torch.empty(count, dtype=torch.long)
        rows = max(1, self.block_elements // max(1, self.bank.shape[0]))
        for start in range(0, count, rows):
            block = queries[start : start + rows]
            d2 = torch.addmm(self.bank_sq.unsqueeze(0), block, self.bank.T, beta=1.0, alpha=-2.0)
            if exclude_groups is not None and self.bank_groups is not None:
                own = exclude_groups[start : start + rows].long().unsqueeze(1) == self.bank_groups.unsqueeze(0)
                d2.masked_fill_(own, float("inf"))
            best, arg = d2.min(dim=1)
            arg[torch.isinf(best)] = -1
            index[start : start + rows] = arg
        return _exact_distances(queries, self.bank, index), index


class FaissExactSearch:
    """faiss ``IndexFlatL2``; exclusion asks for a few extra neighbours and falls back when needed."""

    name = "faiss"

    def __init__(self, extra_neighbours: int = 8) -> None:
        try:
            import faiss
        except ImportError as exc:
            raise ConfigError("search 'faiss' needs the faiss-cpu package: pip install faiss-cpu") from exc
        self._faiss = faiss
        self.extra = extra_neighbours
        self.bank = torch.empty(0, 0)
        self.bank_groups: torch.Tensor | None = None
        self._fallback = TorchExactSearch()
        self._index: object | None = None

    def fit(self, bank: torch.Tensor, bank_groups: torch.Tensor | None = None) -> None:
        self.bank = bank.float().contiguous()
        self.bank_groups = None if bank_groups is None else bank_groups.long()
        index = self._faiss.IndexFlatL2(self.bank.shape[1])
        index.add(self.bank.numpy())
        self._index = index
        self._fallback.fit(self.bank, self.bank_groups)

    @torch.no_grad()
    def search(
        self, queries: torch.Tensor, exclude_groups: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        assert self._index is not None, "fit() first"
        queries = queries.float().contiguous()
        arr = queries.numpy()
        if exclude_groups is None:
            _, found = self._index.search(arr, 1)  # type: ignore[attr-defined]
            index = torch.from_numpy(found[:, 0].astype(np.int64))
            return _exact_distances(queries, self.bank, index), index
        if self.bank_groups is None:
            raise ValueError("group exclusion needs bank_groups at fit time")
        k = min(self.bank.shape[0], 1 + self.extra)
        _, found = self._index.search(arr, k)  # type: ignore[attr-defined]
        candidates = torch.from_numpy(found.astype(np.int64))
        groups = self.bank_groups[candidates.clamp(min=0)]
        usable = (groups != exclude_groups.long().unsqueeze(1)) & (candidates >= 0)
        first = usable.float().argmax(dim=1)
        index = candidates.gather(1, first.unsqueeze(1)).squeeze(1)
        missing = ~usable.any(dim=1)
        if bool(missing.any()):
            _, fallback = self._fallback.search(queries[missing], exclude_groups[missing])
            index[missing] = fallback
        return _exact_distances(queries, self.bank, index), index


#: One block's nearest entries, their distances, its rows left to the plain search and its work counts.
_Block = tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict[str, int]]

#: Banks smaller than this are searched without clusters: measured on a 9,600-entry bank (a 320-px
#: model of 60 images) clusters made the search 1.2x slower, on a 32,000-entry one (200 images)
#: 1.5x faster (``benchmarks/inspect_stages.py``; the per-cluster products are small and many).
CLUSTER_MIN_ENTRIES = 16384
#: Clusters per square root of the bank's size: 0.75 (134 clusters for 32,000 entries) was the
#: fastest of 64, 128 and 192 there.
CLUSTERS_PER_ROOT = 0.75
#: Lloyd iterations of the bank's k-means: enough for clusters tight enough to skip, on a sample.
KMEANS_ITERATIONS = 8

#: Fewest queries a block of the pruned search is cut to so that every thread has one: below that a
#: block's fixed costs (projection, first candidates, cluster bookkeeping) outweigh the second core.
MIN_PARALLEL_ROWS = 512
#: Most threads one search uses, whatever torch's count: each block in flight holds its own transient
#: arrays (tens of MB at ``block_elements``), and the per-cluster loop's Python steps share one GIL.
MAX_THREADS = 8

#: Candidate pairs measured in full per step: small enough that the two gathered blocks (4 MB each at
#: 1,024 dims) reuse heap memory instead of fresh pages the kernel must fault in each time.
PAIR_CHUNK = 1024

#: Unit roundoff of float32 (round to nearest): every bound below, and graph_search.py's, is stated
#: in multiples of it.
U32 = 2.0**-24


def gamma32(n: int) -> float:
    """Higham's gamma_n = n u / (1 - n u): the relative error bound of an ``n``-term float32 dot product."""
    return n * U32 / (1.0 - n * U32)


class PrunedExactSearch:
    """Exact 1-NN that compares full vectors only where a subspace lower bound cannot rule them out.

    The distance between the projections of two vectors onto orthonormal directions never exceeds
    their full distance. So each query is first compared with the whole bank in a ``dims``-d
    subspace close to the bank's top principal components (one GEMM of ``dims / D`` the full one's
    cost), its best subspace candidate's full distance is computed directly, and only the entries
    whose subspace distance, less a rigorous bound on every rounding error made on the way (the
    float32 basis' departure from orthonormality, the float32 query projection, the float32-rounded
    bank projection, the GEMM's dot products), could still be within that distance are compared in
    full. Every entry skipped is therefore provably no nearer than the one kept; the nearest is
    chosen among the checked entries by its directly computed distance (ties: the lowest bank
    index) and reported as ``|q - b|`` like the other searches. Queries whose bound leaves more
    than ``max_checks`` entries (data with no dominant subspace) go to the blocked torch search.
    The basis only decides how much is pruned, never the answer.

    A large bank is also split into clusters of its projections (k-means, ``clusters`` of them;
    by default :data:`CLUSTERS_PER_ROOT` times the square root of the bank's size, none below
    :data:`CLUSTER_MIN_ENTRIES`).
    Each query's first candidate then comes from its nearest cluster, and a whole cluster is
    skipped when the query's projection is farther from its centre than the cluster's radius plus
    the query's bound: by the triangle inequality no member can then pass the entry test, so the
    answer is the same while the subspace products shrink to the clusters that can matter (on a
    320-px model's 32,000-entry bank to 43%).

    Blocks of queries are searched on as many threads as torch uses (``torch.get_num_threads()``,
    at most :data:`MAX_THREADS`), an inspection's few thousand patches cut into one block per
    thread. Why threads: most of a block's time is numpy's single-threaded elementwise passes and
    small products, which release the GIL, so a second block uses the second core; one block with
    two-thread products left it mostly idle (tire's 416-px model: 72 against 121-136 ms an image).
    Each query's nearest entry is exact whatever its block, so the split changes no answer (a test
    compares one thread and three bit for bit); each block in flight holds its own transient arrays
    (``block_elements`` bounds one).
    """

    name = "pruned"

    def __init__(
        self, dims: int = 64, block_elements: int = 1 << 22, max_checks: int | None = None, clusters: int | None = None
    ) -> None:
        self.dims = dims
        self.block_elements = block_elements
        self.max_checks = max_checks
        self.clusters = clusters
        self._members: list[np.ndarray] = []  # per cluster: bank rows, ascending
        self._member_proj: list[torch.Tensor] = []  # per cluster: their projections (float32)
        self._member_sq: list[torch.Tensor] = []
        self._centres = np.empty((0, 0))  # K x d float64
        self._centre_sq = np.empty(0)
        self._cluster_radius = np.empty(0)
        self.bank = torch.empty(0, 0)
        self.bank_groups: torch.Tensor | None = None
        self._plain = TorchExactSearch()
        self._basis: torch.Tensor | None = None  # D x d float32, orthonormal up to float32 rounding
        self._mean = torch.empty(0)
        self._proj = torch.empty(0, 0)  # M x d float32
        self._proj_sq = torch.empty(0)
        self._proj_max = 0.0
        self._sigma = 1.0
        self._group_ranges: tuple[torch.Tensor, torch.Tensor] | None = None
        #: Work done by the last search: queries, entries compared in full, queries left to the plain
        #: search, and entries compared in the subspace.
        self.stats: dict[str, int] = {"queries": 0, "checked": 0, "fallback": 0, "compared": 0}

    def fit(self, bank: torch.Tensor, bank_groups: torch.Tensor | None = None) -> None:
        self.bank = bank.float().contiguous()
        self.bank_groups = None if bank_groups is None else bank_groups.long()
        self._plain.fit(self.bank, self.bank_groups)
        self._group_ranges = _group_ranges(self.bank_groups)
        count, dim = self.bank.shape
        dims = min(self.dims, dim // 2)
        if dims < 1 or count < 2:
            self._basis = None
            return
        self._mean = self.bank.mean(dim=0)
        basis = principal_basis(self.bank, self._mean, dims)
        self._basis = basis.float().contiguous()
        # |V32^T x| <= sigma |x|: V64 is orthonormal to ~1e-15 and each V32 entry is within u of it.
        self._sigma = 1.0 + U32 * math.sqrt(dims) * 1.01 + 1e-12
        basis64 = self._basis.double()
        mean64 = self._mean.double()
        proj = torch.empty(count, dims, dtype=torch.float32)
        for start in range(0, count, 4096):  # float64, then one rounding to float32 (error <= u |p|)
            proj[start : start + 4096] = ((self.bank[start : start + 4096].double() - mean64) @ basis64).float()
        self._proj = proj
        self._proj_sq = (proj.double() ** 2).sum(dim=1).float()
        self._proj_max = float(proj.double().norm(dim=1).max())
        self._cluster(proj)

    def _cluster(self, proj: torch.Tensor) -> None:
        """Split the bank's projections into k-means clusters, each with its centre and exact radius.

        How good the clusters are decides only the speed; their radius is the largest distance of a
        member's stored float32 projection from the centre, computed in float64 (what the skip
        test relies on).
        """
        count = proj.shape[0]
        wanted = self.clusters if self.clusters is not None else (
            0 if count < CLUSTER_MIN_ENTRIES else round(math.sqrt(count) * CLUSTERS_PER_ROOT)
        )  # fmt: skip
        wanted = min(wanted, count)
        if wanted < 2:
            self._members = []
            return
        points = proj.double()
        gen = torch.Generator().manual_seed(0)
        sample = points if count <= 64 * wanted else points[torch.randperm(count, generator=gen)[: 64 * wanted]]
        centres = sample[torch.randperm(sample.shape[0], generator=gen)[:wanted]].clone()
        for _ in range(KMEANS_ITERATIONS):
            assign = _nearest_centre(sample, centres)
            sums = torch.zeros_like(centres).index_add_(0, assign, sample)
            sizes = torch.bincount(assign, minlength=wanted).double()
            moved = sizes > 0
            centres[moved] = sums[moved] / sizes[moved].unsqueeze(1)
        labels = _nearest_centre(points, centres).numpy()
        order = np.argsort(labels, kind="stable")  # rows ascending within each cluster
        bounds = np.searchsorted(labels[order], np.arange(wanted + 1))
        members = [order[bounds[k] : bounds[k + 1]] for k in range(wanted) if bounds[k + 1] > bounds[k]]
        used = [k for k in range(wanted) if bounds[k + 1] > bounds[k]]
        centre_array = centres[used].numpy()
        radius = np.array(
            [
                np.sqrt(((points[rows].numpy() - centre_array[k]) ** 2).sum(axis=1)).max()
                for k, rows in enumerate(members)
            ]
        )
        self._members = members
        self._member_proj = [proj[rows].contiguous() for rows in members]
        self._member_sq = [self._proj_sq[rows].contiguous() for rows in members]
        self._centres = centre_array
        self._centre_sq = (centre_array**2).sum(axis=1)
        self._cluster_radius = radius * (1 + 1e-12) + 1e-300

    @torch.no_grad()
    def search(
        self, queries: torch.Tensor, exclude_groups: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        queries = queries.float().contiguous()
        if exclude_groups is not None and self.bank_groups is None:
            raise ValueError("group exclusion needs bank_groups at fit time")
        count = queries.shape[0]
        self.stats = {"queries": count, "checked": 0, "fallback": 0, "compared": 0}
        if self._basis is None or count == 0:
            self.stats["fallback"] = count
            return self._plain.search(queries, exclude_groups)
        size = self.bank.shape[0]
        limit = self.max_checks if self.max_checks is not None else max(16, size // 16)
        index = torch.empty(count, dtype=torch.long)
        dist = torch.empty(count, dtype=torch.float32)
        heavy_rows: list[torch.Tensor] = []
        if self._members:
            rows = max(256, min(16384, self.block_elements // (4 * len(self._members))))
        else:
            rows = max(1, self.block_elements // max(1, size))
        workers = max(1, min(MAX_THREADS, torch.get_num_threads()))
        # Enough blocks for every worker (an inspection's few thousand patches would otherwise be one
        # or two uneven blocks), but none so small that its fixed costs dominate.
        rows = max(1, min(rows, max(MIN_PARALLEL_ROWS, -(-count // workers))))
        starts = list(range(0, count, rows))

        def one_block(start: int) -> _Block:
            tally = {"checked": 0, "compared": 0}
            with torch.no_grad():  # grad mode is per thread
                block = queries[start : start + rows]
                groups = None if exclude_groups is None else exclude_groups[start : start + rows].long()
                if self._members:
                    found, found_dist, heavy = self._search_clustered(block, groups, limit, tally)
                else:
                    found, found_dist, heavy = self._search_block(block, groups, limit, tally)
            return found, found_dist, heavy, tally

        results = self._in_threads(one_block, starts, workers)
        for start, (found, found_dist, heavy, tally) in zip(starts, results, strict=True):
            index[start : start + rows] = found
            dist[start : start + rows] = found_dist
            if heavy.numel():
                heavy_rows.append(heavy + start)
            for key, value in tally.items():
                self.stats[key] += value
        if heavy_rows:
            heavy = torch.cat(heavy_rows)
            self.stats["fallback"] = int(heavy.numel())
            dist[heavy], index[heavy] = self._plain.search(
                queries[heavy], None if exclude_groups is None else exclude_groups[heavy]
            )
        return dist, index

    @staticmethod
    def _in_threads(work: Callable[[int], _Block], starts: list[int], workers: int) -> list[_Block]:
        """``work`` of every block, on up to ``workers`` threads (in order; inline where one is enough).

        A failing block stops the rest (queued blocks are cancelled, not run before the error is
        raised). Where no thread can be started (the interpreter is shutting down, or a thread limit
        is reached) the blocks run one after another: the answers are the same.
        """
        if workers == 1 or len(starts) == 1:
            return [work(start) for start in starts]
        try:
            pool = ThreadPoolExecutor(max_workers=min(workers, len(starts)), thread_name_prefix="eagle-search")
            futures = [pool.submit(work, start) for start in starts]
        except RuntimeError:  # "cannot schedule new futures after interpreter shutdown", "can't start new thread"
            return [work(start) for start in starts]
        try:
            return [future.result() for future in futures]
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def _exclude(self, partial: np.ndarray, groups: np.ndarray) -> None:
        """Set each query's own-group entries to inf.

        A fitted bank lists its entries image by image, so a group is one column range and a block of
        training queries holds only a few groups: filling those ranges touches a sliver of the block,
        where comparing every query's group with every entry's would cost two passes over it.
        """
        assert self.bank_groups is not None
        if self._group_ranges is None:
            partial[groups[:, None] == self.bank_groups.numpy()[None, :]] = np.inf
            return
        starts, stops = self._group_ranges
        for group in np.unique(groups).tolist():
            if 0 <= group < starts.numel() and starts[group] < stops[group]:
                rows = np.flatnonzero(groups == group)
                partial[rows, int(starts[group]) : int(stops[group])] = np.inf

    def _search_block(
        self, block: torch.Tensor, groups: torch.Tensor | None, limit: int, tally: dict[str, int]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Nearest entries of one block of queries, their distances, and the rows left to the plain search.

        The two products run in torch (BLAS threads pay off there, beside the other blocks' threads);
        everything elementwise runs in numpy, single-threaded within a block: on two cores shared
        with other processes each of torch's parallel elementwise operations waited at a thread
        barrier (a 1,337 x 1,024 subtraction took 42 ms with two threads against 0.5 ms with one),
        which made the pruned search no faster than the full product there.
        """
        queries, centred_norm, proj, proj_sq = self._project(block)
        # Partial squared subspace distances |b|^2 - 2 q.b; |q|^2 is folded into the threshold.
        partial = torch.addmm(
            self._proj_sq.unsqueeze(0), torch.from_numpy(proj), self._proj.T, beta=1.0, alpha=-2.0
        ).numpy()
        if groups is not None and self.bank_groups is not None:
            self._exclude(partial, groups.numpy())
        count = queries.shape[0]
        tally["compared"] += partial.size
        first = partial.argmin(axis=1)
        alive = np.isfinite(partial[np.arange(count), first])
        first = np.where(alive, first, 0)
        first_dist, threshold, _ = self._bound(queries, centred_norm, proj_sq, first, alive)
        # numpy's 2-D nonzero is ~8x slower than a flat one plus a divmod (it builds each index
        # column element by element); on a 320-px model it was the search's largest single cost.
        pair_rows, pair_cols = np.divmod(np.flatnonzero(partial <= threshold[:, None]), partial.shape[1])
        return self._resolve(queries, first, first_dist, alive, pair_rows, pair_cols, limit, tally)

    def _search_clustered(
        self, block: torch.Tensor, groups: torch.Tensor | None, limit: int, tally: dict[str, int]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """:meth:`_search_block` comparing each query only with the clusters its bound cannot rule out.

        Rows whose nearest cluster holds only excluded entries (their own image's, in a
        leave-own-out pass) have no first candidate here and are answered by :meth:`_search_block`.
        """
        queries, centred_norm, proj, proj_sq = self._project(block)
        count = queries.shape[0]
        proj64 = proj.astype(np.float64)
        # Squared distances to the centres in float64; the expansion's rounding (at most a few
        # float64 ulps of (|p| + |c|)^2) is taken off before the square root, so the distance used
        # is never above the true one.
        centre_sq = np.maximum(proj_sq[:, None] - 2 * proj64 @ self._centres.T + self._centre_sq[None, :], 0.0)
        slack = (
            8 * (proj.shape[1] + 2) * 2.0**-53 * (np.sqrt(proj_sq)[:, None] + np.sqrt(self._centre_sq)[None, :]) ** 2
        )
        centre_dist = np.sqrt(np.maximum(centre_sq - slack, 0.0))
        nearest = centre_sq.argmin(axis=1)
        own = None if groups is None or self.bank_groups is None else groups.numpy()
        first = np.zeros(count, dtype=np.int64)
        alive = np.zeros(count, dtype=bool)
        order = np.argsort(nearest, kind="stable")
        cuts = np.searchsorted(nearest[order], np.arange(len(self._members) + 1))
        proj_t = torch.from_numpy(proj)
        for cluster, rows in enumerate(self._members):
            mine = order[cuts[cluster] : cuts[cluster + 1]]
            if mine.size == 0:
                continue
            partial = self._cluster_partial(proj_t, mine, cluster, own)
            local = partial.argmin(axis=1)
            found = np.isfinite(partial[np.arange(mine.size), local])
            first[mine] = rows[local]
            alive[mine] = found
        first_dist, threshold, radius = self._bound(queries, centred_norm, proj_sq, first, alive)
        # A cluster whose every member's projection is provably farther than the radius is skipped.
        reach = centre_dist - self._cluster_radius[None, :] <= radius[:, None]
        reach &= alive[:, None]
        found_rows: list[np.ndarray] = []
        found_cols: list[np.ndarray] = []
        found_partial: list[np.ndarray] = []
        compared = 0
        # Pairs found per query: one past the limit, a query is left to the plain search (as in
        # _search_block) and compared with no further cluster, which bounds the pairs kept.
        counts = np.zeros(count, dtype=np.int64)
        for cluster, rows in enumerate(self._members):
            mine = np.flatnonzero(reach[:, cluster] & (counts <= limit))
            if mine.size == 0:
                continue
            compared += mine.size * rows.size
            partial = self._cluster_partial(proj_t, mine, cluster, own)
            hits = np.flatnonzero(partial <= threshold[mine][:, None])
            hit_rows, hit_cols = np.divmod(hits, rows.size)
            found_rows.append(mine[hit_rows])
            found_cols.append(rows[hit_cols])
            found_partial.append(partial.reshape(-1)[hits])
            counts += np.bincount(mine[hit_rows], minlength=count)
        tally["compared"] += compared
        pair_rows = np.concatenate(found_rows) if found_rows else np.empty(0, dtype=np.int64)
        pair_cols = np.concatenate(found_cols) if found_cols else np.empty(0, dtype=np.int64)
        pair_partial = np.concatenate(found_partial) if found_partial else np.empty(0, dtype=np.float32)
        crowded = counts > limit
        if crowded.any():  # their pairs are dropped before any sorting; the plain search answers them
            kept = ~crowded[pair_rows]
            pair_rows, pair_cols, pair_partial = pair_rows[kept], pair_cols[kept], pair_partial[kept]
        # The nearest cluster's best is a weaker first candidate than the whole bank's subspace
        # nearest, which is among the pairs found (it is no farther in the subspace than the first
        # candidate is in full). Where it is nearer in full, it tightens the test, and the pairs
        # are filtered again by the tighter threshold.
        if pair_rows.size:
            order = np.lexsort((pair_cols, pair_partial, pair_rows))
            leaders = order[np.r_[True, pair_rows[order][1:] != pair_rows[order][:-1]]]
            second = first.copy()
            second[pair_rows[leaders]] = pair_cols[leaders]
            second_dist, second_threshold, _ = self._bound(queries, centred_norm, proj_sq, second, alive)
            better = second_dist < first_dist
            first = np.where(better, second, first)
            first_dist = np.where(better, second_dist, first_dist)
            threshold = np.where(better, second_threshold, threshold)
            keep = pair_partial <= threshold[pair_rows]
            pair_rows, pair_cols = pair_rows[keep], pair_cols[keep]
        live = alive & ~crowded
        result, best_dist, heavy = self._resolve(queries, first, first_dist, live, pair_rows, pair_cols, limit, tally)
        heavy_rows = [heavy.numpy(), np.flatnonzero(crowded)]
        # No candidate in the nearest cluster: the whole bank, as without clusters, in blocks of the
        # same bounded size as _search_block's own.
        missing = np.flatnonzero(~alive)
        step = max(1, self.block_elements // max(1, self.bank.shape[0]))
        for start in range(0, missing.size, step):
            piece = torch.from_numpy(missing[start : start + step])
            sub_groups = None if groups is None else groups[piece]
            found, found_dist, sub_heavy = self._search_block(block[piece], sub_groups, limit, tally)
            result[piece] = found
            best_dist[piece] = found_dist
            heavy_rows.append(piece[sub_heavy].numpy())
        return result, best_dist, torch.from_numpy(np.unique(np.concatenate(heavy_rows)))

    def _cluster_partial(
        self, proj: torch.Tensor, rows: np.ndarray, cluster: int, own: np.ndarray | None
    ) -> np.ndarray:
        """``|b|^2 - 2 q.b`` in the subspace for queries ``rows`` against one cluster's members; inf
        where a member belongs to the query's own group (``own``: each query's group, if excluding)."""
        partial: np.ndarray = torch.addmm(
            self._member_sq[cluster].unsqueeze(0),
            proj[torch.from_numpy(rows)],
            self._member_proj[cluster].T,
            beta=1.0,
            alpha=-2.0,
        ).numpy()
        if own is not None and self.bank_groups is not None:
            members = self.bank_groups.numpy()[self._members[cluster]]
            partial[own[rows][:, None] == members[None, :]] = np.inf
        return partial

    def _project(self, block: torch.Tensor) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The queries, their distances from the bank's mean (float64, rounded up), their float32 projections
        onto the basis and those projections' squared norms (float64)."""
        assert self._basis is not None
        queries = block.numpy()
        centred = queries - self._mean.numpy()
        proj = (torch.from_numpy(centred) @ self._basis).numpy()
        proj64 = proj.astype(np.float64)
        # Squares and sums in float64 (einsum casts in small buffers: no float64 copy of the block).
        centred_norm = np.sqrt(np.einsum("ij,ij->i", centred, centred, dtype=np.float64)) * (1 + 1e-12)
        return queries, centred_norm, proj, np.einsum("ij,ij->i", proj64, proj64)

    def _bound(
        self, queries: np.ndarray, centred_norm: np.ndarray, proj_sq: np.ndarray, first: np.ndarray, alive: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Each query's first candidate's full distance, the entry test's threshold and the subspace radius.

        An entry whose computed partial distance exceeds the threshold is provably no nearer than
        the first candidate; neither is one whose projection is farther than the radius from the
        query's computed projection.
        """
        assert self._basis is not None
        dim, dims = self._basis.shape
        first_dist = self._pair_distances(queries, np.arange(queries.shape[0]), first)
        # An upper bound on that candidate's true full distance (a float32 norm is within gamma_(D+2)).
        best = first_dist.astype(np.float64) * (1 + 2 * gamma32(dim + 2))
        # Entry j may be skipped only if |p(q) - p(b_j)| provably exceeds sigma * best. The computed
        # projections are off by at most: query (float32 centring and dot products of length D)
        # (gamma_D sqrt(d) + 2u) |q - mean|; bank (float64 products, then rounded to float32)
        # u |p(b)| + 2 D u64 sqrt(d) |b - mean|.
        # The GEMM's |b|^2 - 2 q.b and |q|^2 are off by at most gamma_(d+4) (|q| + |b|)^2.
        query_err = (gamma32(dim) * math.sqrt(dims) + 2 * U32) * centred_norm * 1.01
        # (A bank entry that matters is within centred_norm + sigma * best of the mean.)
        float64_projection = 2.0 * dim * 2.0**-53 * math.sqrt(dims)
        bank_err = 1.01 * U32 * self._proj_max + float64_projection * (1 + centred_norm + 2 * best)
        radius = best * self._sigma + query_err + bank_err
        gemm = 2 * gamma32(dims + 4) * (np.sqrt(proj_sq) + self._proj_max) ** 2
        threshold = (radius * radius + gemm - proj_sq).astype(np.float32)
        threshold = np.nextafter(threshold, np.float32(np.inf))  # the cast rounded to nearest
        threshold[~alive] = -np.inf
        return first_dist, threshold, radius

    def _pair_distances(self, queries: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """``|queries[rows] - bank[cols]|`` pair by pair, in float32, :data:`PAIR_CHUNK` pairs a step."""
        bank = self.bank.numpy()
        dist = np.empty(rows.size, dtype=np.float32)
        for start in range(0, rows.size, PAIR_CHUNK):
            r, c = rows[start : start + PAIR_CHUNK], cols[start : start + PAIR_CHUNK]
            pair_diff = queries[r] - bank[c]
            dist[start : start + PAIR_CHUNK] = np.sqrt(np.einsum("ij,ij->i", pair_diff, pair_diff))
        return dist

    def _resolve(
        self,
        queries: np.ndarray,
        first: np.ndarray,
        first_dist: np.ndarray,
        alive: np.ndarray,
        pair_rows: np.ndarray,
        pair_cols: np.ndarray,
        limit: int,
        tally: dict[str, int],
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The nearest of each query's first candidate and the entries that passed its test (measured in full)."""
        count = queries.shape[0]
        bank = self.bank.numpy()
        heavy_mask = np.bincount(pair_rows, minlength=count) > limit
        # The first candidate's distance is known already; the others passing the bound are measured.
        keep = (pair_cols != first[pair_rows]) & ~heavy_mask[pair_rows]
        pair_rows, pair_cols = pair_rows[keep], pair_cols[keep]
        light = alive & ~heavy_mask
        tally["checked"] += int(light.sum()) + int(pair_rows.size)
        dist = self._pair_distances(queries, pair_rows, pair_cols)
        nearest = first_dist.copy()
        np.minimum.at(nearest, pair_rows, dist)
        # Ties (equal float32 distances): the lowest bank index, as a float64 brute force's argmin.
        chosen = np.where(first_dist == nearest, first, bank.shape[0])
        winners = dist == nearest[pair_rows]
        np.minimum.at(chosen, pair_rows[winners], pair_cols[winners])
        result = np.full(count, -1, dtype=np.int64)
        best_dist = np.full(count, np.inf, dtype=np.float32)
        result[light] = chosen[light]
        best_dist[light] = nearest[light]
        return torch.from_numpy(result), torch.from_numpy(best_dist), torch.from_numpy(np.flatnonzero(heavy_mask))


def _nearest_centre(points: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    """Index of each point's nearest centre (float64), in chunks of at most 2^24 products."""
    centre_sq = (centres * centres).sum(dim=1).unsqueeze(0)
    rows = max(1, (1 << 24) // max(1, centres.shape[0]))
    parts = [
        (centre_sq - 2 * points[start : start + rows] @ centres.T).argmin(dim=1)
        for start in range(0, points.shape[0], rows)
    ]
    return torch.cat(parts) if parts else torch.empty(0, dtype=torch.long)


def _group_ranges(groups: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Per group id ``g``: entries ``starts[g]:stops[g]``, when groups are sorted, non-negative and not huge."""
    if groups is None or groups.numel() == 0:
        return None
    if bool((groups[1:] < groups[:-1]).any()) or int(groups.min()) < 0 or int(groups.max()) > 10 * groups.numel():
        return None
    ids = torch.arange(int(groups.max()) + 1)
    starts = torch.searchsorted(groups, ids, right=False)
    stops = torch.searchsorted(groups, ids, right=True)
    return starts, stops


def principal_basis(bank: torch.Tensor, mean: torch.Tensor, dims: int, rows: int = 2048) -> torch.Tensor:
    """A float64 orthonormal ``D x dims`` basis near the bank's top principal directions.

    Subspace iteration on a row sample with a fixed seed (deterministic, a fraction of a dense
    eigendecomposition's seconds); a final float64 QR makes the columns orthonormal to ~1e-15,
    which is all the search's exactness relies on.
    """
    gen = torch.Generator().manual_seed(0)
    count, dim = bank.shape
    sample = bank if count <= rows else bank[torch.randperm(count, generator=gen)[:rows]]
    centred = sample - mean
    cov = centred.T @ centred
    width = min(dim, dims + 8)
    basis, _ = torch.linalg.qr(torch.randn(dim, width, generator=gen))
    for _ in range(3):
        basis, _ = torch.linalg.qr(cov @ basis)
    small = basis.T.double() @ cov.double() @ basis.double()
    _, vectors = torch.linalg.eigh((small + small.T) / 2)
    top = basis.double() @ vectors[:, -dims:].flip(1)
    orthonormal: torch.Tensor = torch.linalg.qr(top)[0]
    return orthonormal


#: Search factories by name; the names are declared in ``choices.SEARCHES``.
SEARCH_REGISTRY: Registry[Callable[[], NearestNeighbourSearch]] = Registry("search")
SEARCH_REGISTRY.add("torch", TorchExactSearch)
SEARCH_REGISTRY.add("faiss", FaissExactSearch)
SEARCH_REGISTRY.add("pruned", PrunedExactSearch)


def make_search(name: str) -> NearestNeighbourSearch:
    """Search strategy by name (``torch``, ``faiss`` or ``pruned``)."""
    return SEARCH_REGISTRY.get(name)()
