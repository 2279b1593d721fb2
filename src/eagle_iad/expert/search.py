"""Nearest-neighbour search over the memory bank, behind one interface.

Two exact strategies are interchangeable: chunked torch matrix products and faiss ``IndexFlatL2``.
Both support *group exclusion* — ignoring bank entries that came from the query's own training
image — which is what makes TGPS's leave-own-out training scores cost one scoring pass instead of
one index rebuild per image (docs/METHOD.md §2).

Distances are found with the fast ``|q|^2 - 2 q.b + |b|^2`` expansion, then the winning
neighbour's distance is recomputed directly as ``|q - b|`` so scores do not suffer the expansion's
float32 cancellation error.
"""

from __future__ import annotations

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


#: Search factories by name; the names are declared in ``choices.SEARCHES``.
SEARCH_REGISTRY: Registry[Callable[[], NearestNeighbourSearch]] = Registry("search")
SEARCH_REGISTRY.add("torch", TorchExactSearch)
SEARCH_REGISTRY.add("faiss", FaissExactSearch)


def make_search(name: str) -> NearestNeighbourSearch:
    """Search strategy by name (``torch`` or ``faiss``)."""
    return SEARCH_REGISTRY.get(name)()
