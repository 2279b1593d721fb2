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


#: Unit roundoff of float32 (round to nearest): every bound below is stated in multiples of it.
_U32 = 2.0**-24


def _gamma(n: int) -> float:
    """Higham's gamma_n = n u / (1 - n u): the relative error bound of an ``n``-term float32 dot product."""
    return n * _U32 / (1.0 - n * _U32)


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
    """

    name = "pruned"

    def __init__(self, dims: int = 64, block_elements: int = 1 << 22, max_checks: int | None = None) -> None:
        self.dims = dims
        self.block_elements = block_elements
        self.max_checks = max_checks
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
        #: Work done by the last search: queries, entries compared in full, queries left to the plain search.
        self.stats: dict[str, int] = {"queries": 0, "checked": 0, "fallback": 0}

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
        basis = _principal_basis(self.bank, self._mean, dims)
        self._basis = basis.float().contiguous()
        # |V32^T x| <= sigma |x|: V64 is orthonormal to ~1e-15 and each V32 entry is within u of it.
        self._sigma = 1.0 + _U32 * math.sqrt(dims) * 1.01 + 1e-12
        basis64 = self._basis.double()
        mean64 = self._mean.double()
        proj = torch.empty(count, dims, dtype=torch.float32)
        for start in range(0, count, 4096):  # float64, then one rounding to float32 (error <= u |p|)
            proj[start : start + 4096] = ((self.bank[start : start + 4096].double() - mean64) @ basis64).float()
        self._proj = proj
        self._proj_sq = (proj.double() ** 2).sum(dim=1).float()
        self._proj_max = float(proj.double().norm(dim=1).max())

    @torch.no_grad()
    def search(
        self, queries: torch.Tensor, exclude_groups: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        queries = queries.float().contiguous()
        if exclude_groups is not None and self.bank_groups is None:
            raise ValueError("group exclusion needs bank_groups at fit time")
        count = queries.shape[0]
        self.stats = {"queries": count, "checked": 0, "fallback": 0}
        if self._basis is None or count == 0:
            self.stats["fallback"] = count
            return self._plain.search(queries, exclude_groups)
        size = self.bank.shape[0]
        limit = self.max_checks if self.max_checks is not None else max(16, size // 16)
        index = torch.empty(count, dtype=torch.long)
        dist = torch.empty(count, dtype=torch.float32)
        heavy_rows: list[torch.Tensor] = []
        rows = max(1, self.block_elements // max(1, size))
        for start in range(0, count, rows):
            block = queries[start : start + rows]
            groups = None if exclude_groups is None else exclude_groups[start : start + rows].long()
            found, found_dist, heavy = self._search_block(block, groups, limit)
            index[start : start + rows] = found
            dist[start : start + rows] = found_dist
            if heavy.numel():
                heavy_rows.append(heavy + start)
        if heavy_rows:
            heavy = torch.cat(heavy_rows)
            self.stats["fallback"] = int(heavy.numel())
            dist[heavy], index[heavy] = self._plain.search(
                queries[heavy], None if exclude_groups is None else exclude_groups[heavy]
            )
        return dist, index

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
        self, block: torch.Tensor, groups: torch.Tensor | None, limit: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Nearest entries of one block of queries, their distances, and the rows left to the plain search.

        The two products run in torch (BLAS threads pay off there); everything elementwise runs in
        numpy, single-threaded: on two cores shared with other processes each of torch's parallel
        elementwise operations waited at a thread barrier (a 1,337 x 1,024 subtraction took 42 ms
        with two threads against 0.5 ms with one), which made the pruned search no faster than the
        full product there.
        """
        assert self._basis is not None
        count = block.shape[0]
        dim, dims = self._basis.shape
        queries = block.numpy()
        bank = self.bank.numpy()
        centred = queries - self._mean.numpy()
        proj = (torch.from_numpy(centred) @ self._basis).numpy()
        proj64 = proj.astype(np.float64)
        proj_sq = np.einsum("ij,ij->i", proj64, proj64)
        # Partial squared subspace distances |b|^2 - 2 q.b; |q|^2 is folded into the threshold.
        partial = torch.addmm(
            self._proj_sq.unsqueeze(0), torch.from_numpy(proj), self._proj.T, beta=1.0, alpha=-2.0
        ).numpy()
        if groups is not None and self.bank_groups is not None:
            self._exclude(partial, groups.numpy())
        first = partial.argmin(axis=1)
        alive = np.isfinite(partial[np.arange(count), first])
        result = np.full(count, -1, dtype=np.int64)
        best_dist = np.full(count, np.inf, dtype=np.float32)
        if not alive.any():
            return torch.from_numpy(result), torch.from_numpy(best_dist), torch.empty(0, dtype=torch.long)
        first = np.where(alive, first, 0)
        diff = queries - bank[first]
        first_dist = np.sqrt(np.einsum("ij,ij->i", diff, diff))
        # An upper bound on that candidate's true full distance (a float32 norm is within gamma_(D+2)).
        best = first_dist.astype(np.float64) * (1 + 2 * _gamma(dim + 2))
        # Entry j may be skipped only if |p(q) - p(b_j)| provably exceeds sigma * best. The computed
        # projections are off by at most: query (float32 centring and dot products of length D)
        # (gamma_D sqrt(d) + 2u) |q - mean|; bank (float64 products, then rounded to float32)
        # u |p(b)| + 2 D u64 sqrt(d) |b - mean|.
        # The GEMM's |b|^2 - 2 q.b and |q|^2 are off by at most gamma_(d+4) (|q| + |b|)^2.
        centred64 = centred.astype(np.float64)
        centred_norm = np.sqrt(np.einsum("ij,ij->i", centred64, centred64)) * (1 + 1e-12)
        query_err = (_gamma(dim) * math.sqrt(dims) + 2 * _U32) * centred_norm * 1.01
        # (A bank entry that matters is within centred_norm + sigma * best of the mean.)
        float64_projection = 2.0 * dim * 2.0**-53 * math.sqrt(dims)
        bank_err = 1.01 * _U32 * self._proj_max + float64_projection * (1 + centred_norm + 2 * best)
        radius = best * self._sigma + query_err + bank_err
        gemm = 2 * _gamma(dims + 4) * (np.sqrt(proj_sq) + self._proj_max) ** 2
        threshold = (radius * radius + gemm - proj_sq).astype(np.float32)
        threshold = np.nextafter(threshold, np.float32(np.inf))  # the cast rounded to nearest
        threshold[~alive] = -np.inf
        pair_rows, pair_cols = np.nonzero(partial <= threshold[:, None])
        heavy_mask = np.bincount(pair_rows, minlength=count) > limit
        # The first candidate's distance is known already; the others passing the bound are measured.
        keep = (pair_cols != first[pair_rows]) & ~heavy_mask[pair_rows]
        pair_rows, pair_cols = pair_rows[keep], pair_cols[keep]
        light = alive & ~heavy_mask
        self.stats["checked"] += int(light.sum()) + int(pair_rows.size)
        dist = np.empty(pair_rows.size, dtype=np.float32)
        for start in range(0, pair_rows.size, 8192):
            r, c = pair_rows[start : start + 8192], pair_cols[start : start + 8192]
            pair_diff = queries[r] - bank[c]
            dist[start : start + 8192] = np.sqrt(np.einsum("ij,ij->i", pair_diff, pair_diff))
        nearest = first_dist.copy()
        np.minimum.at(nearest, pair_rows, dist)
        # Ties (equal float32 distances): the lowest bank index, as a float64 brute force's argmin.
        chosen = np.where(first_dist == nearest, first, bank.shape[0])
        winners = dist == nearest[pair_rows]
        np.minimum.at(chosen, pair_rows[winners], pair_cols[winners])
        result[light] = chosen[light]
        best_dist[light] = nearest[light]
        return torch.from_numpy(result), torch.from_numpy(best_dist), torch.from_numpy(np.flatnonzero(heavy_mask))


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


def _principal_basis(bank: torch.Tensor, mean: torch.Tensor, dims: int, rows: int = 2048) -> torch.Tensor:
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
