"""The memory-bank search inside an exported graph: exact, with a subspace top-k in front of the bank.

Why not the torch path's :class:`~eagle_iad.expert.search.PrunedExactSearch` as it is: its work per
query depends on the data (entries passing a bound, clusters reached), which a static graph cannot
express, so the graph compared every query with every bank row in full. On a 320-px model that one
product was 85% of an exported inspection and made ONNX Runtime and OpenVINO 0.4x the torch path.

What the graph does instead, per query (every step a fixed-shape tensor operation):

1. project the query onto ``dims`` orthonormal directions near the bank's top principal components
   and compare it with every bank row *in that subspace* (one product of ``dims / D`` the full one's
   multiply-adds);
2. measure the ``candidates`` rows nearest in the subspace in full and keep the nearest of them;
3. prove that no other row can be nearer: a row's subspace distance never exceeds its full
   distance, so when the next row in subspace order is (after a rigorous bound on every float32
   rounding made on the way) already farther in the subspace than the kept row is in full, every
   row not measured is farther too;
4. the few queries where that proof fails are compared with the whole bank in full, as before
   (``NonZero`` picks them; on elpv's 200-cell model 0.02% of queries at the defaults).

So every query gets the row the full search would give it, whatever the data (up to the float32
rounding of the ``|b|^2 - 2 q.b`` expansion that ranks the measured candidates, as the full search
ranks the whole bank); the basis and the two sizes decide only the speed. The proof holds for
float32 arithmetic: a runtime computing in TF32, fp16 or bf16 voids it.

The bound is the one ``PrunedExactSearch._bound`` proves for the torch path, with the terms that
path computes in float64 (the query's distance from the bank's mean, its projection's squared
norm) rounded outward for float32, and one more margin for the float32 arithmetic of the
threshold itself.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from eagle_iad.expert.search import U32, gamma32, principal_basis

#: Subspace directions the graph compares in. On elpv and tire features (1,024-d) 128 directions
#: leave about one query in 5,000 unproven with 8 candidates; 64 leave one in five.
GRAPH_DIMS = 128
#: Rows measured in full per query.
GRAPH_CANDIDATES = 8
#: The most floats one run of the graph should hold in its per-query tensors (each query's subspace
#: partials against every bank row, and its candidates' full rows): the host feeds it that many
#: images at a time. A 320-px image against a 32,000-row bank is already 64 million (256 MB); a
#: batch of 16 at once took 5 GB and ran slower than one image at a time.
SUBSPACE_ELEMENTS = 1 << 26
#: Bank columns per block of the two-step selection (:meth:`GraphSearch._smallest`).
BLOCK = 128
#: The partial of a padding column: finite (it passes through a product) and above any real one,
#: which is at most ``|P_b|^2 + 2 |p| |P_b|`` of feature norms in the hundreds.
PAD_PARTIAL = 1e30


def images_per_run(patches_per_image: int, floats_per_query: int) -> int:
    """Images the host feeds the graph at a time, so its largest tensors stay near :data:`SUBSPACE_ELEMENTS`."""
    return max(1, SUBSPACE_ELEMENTS // max(1, patches_per_image * floats_per_query))


def exact_nearest(queries: torch.Tensor, bank: torch.Tensor, bank_sq: torch.Tensor) -> torch.Tensor:
    """Each query's nearest bank row by the full ``|b|^2 - 2 q.b`` expansion (the graph's plain search)."""
    d2 = torch.addmm(bank_sq.unsqueeze(0), queries, bank.T, beta=1.0, alpha=-2.0)
    return d2.argmin(dim=1)


class GraphSearch(nn.Module):
    """``N x D`` queries → each one's nearest bank row (exactly) and its distance, in exportable operations."""

    bank: torch.Tensor
    bank_sq: torch.Tensor
    mean: torch.Tensor
    basis: torch.Tensor
    table: torch.Tensor

    def __init__(self, bank: torch.Tensor, dims: int = GRAPH_DIMS, candidates: int = GRAPH_CANDIDATES) -> None:
        super().__init__()
        bank = bank.float().contiguous()
        count, dim = bank.shape
        self.register_buffer("bank", bank)
        self.register_buffer("bank_sq", (bank * bank).sum(dim=1))
        #: At most a quarter of the features: the subspace product must be a fraction of the full one.
        self.dims = min(dims, dim // 4)
        self.candidates = candidates
        #: And the bank must be larger than the rows measured: else the plain product is the search.
        self.pruned = self.dims >= 1 and count > 4 * (candidates + 1)
        if not self.pruned:
            for name in ("mean", "basis", "table"):
                self.register_buffer(name, torch.zeros(0))
            self.proj_max = 0.0
            return
        mean = bank.double().mean(dim=0)
        basis64 = principal_basis(bank, mean.float(), self.dims)
        basis = basis64.float()
        # Projections in float64 of the float32 basis, then one rounding: error <= u |p| each.
        proj64 = (bank.double() - mean.float().double()) @ basis.double()
        proj = proj64.float()
        self.register_buffer("mean", mean.float())
        self.register_buffer("basis", basis.contiguous())
        # [p, 1] @ table = |P_b|^2 - 2 p.P_b: one plain product (the bias of a Gemm cost ORT 40% more),
        # exact in its scaling by -2, off by at most gamma_(d+1) (|p| + |P_b|)^2 like the addmm.
        proj_sq = (proj.double() ** 2).sum(dim=1).float()
        table = torch.cat([-2 * proj, proj_sq.unsqueeze(1)], dim=1)
        padding = torch.zeros(-count % BLOCK, self.dims + 1)
        padding[:, -1] = PAD_PARTIAL  # [p, 1] . [0, ..., 0, PAD] = PAD: far above any real partial
        self.register_buffer("table", torch.cat([table, padding]).T.contiguous())
        self.proj_max = float(proj.double().norm(dim=1).max())
        # |V32^T x| <= sigma |x|: V64 is orthonormal to ~1e-15 and each V32 entry is within u of it.
        self.sigma = 1.0 + U32 * math.sqrt(self.dims) * 1.01 + 1e-12
        dims = self.dims
        self.query_err = (gamma32(dim) * math.sqrt(dims) + 2 * U32) * 1.01
        self.float64_projection = 2.0 * dim * 2.0**-53 * math.sqrt(dims)
        self.bank_err = 1.01 * U32 * self.proj_max
        self.gemm = 2 * gamma32(dims + 4)
        self.dist_up = 1 + 2 * gamma32(dim + 2)
        self.norm_up = 1 + 2 * gamma32(dim + 2)
        self.sq_low = 1 - 2 * gamma32(dims + 2)

    def describe(self, patches_per_image: int) -> dict[str, object]:
        """The sidecar's ``search`` entry: how the graph searches, and how many images to feed it a run."""
        rows = int(self.bank.shape[0])
        return {
            "method": "subspace candidates, proven, else the full bank" if self.pruned else "full bank",
            "bank_rows": rows,
            "subspace_dims": self.dims if self.pruned else None,
            "candidates": self.candidates if self.pruned else None,
            "images_per_run": images_per_run(patches_per_image, self.floats_per_query()),
        }

    def floats_per_query(self) -> int:
        """The largest per-query tensors a run holds: its partials (padded rows) and its candidates' rows."""
        rows, dim = self.bank.shape
        if not self.pruned:
            return int(rows)
        return int(self.table.shape[1] + self.candidates * dim)

    def forward(self, queries: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Each query's nearest bank row and its distance ``|q - b|``, computed directly (not by expansion)."""
        if not self.pruned:
            nearest = exact_nearest(queries, self.bank, self.bank_sq)
            return nearest, torch.linalg.vector_norm(queries - self.bank[nearest], dim=1)
        nearest, dist, proven = self.prove(queries)
        unproven = torch.nonzero(~proven).squeeze(1)
        rest = queries[unproven]
        found = exact_nearest(rest, self.bank, self.bank_sq)
        found_dist = torch.linalg.vector_norm(rest - self.bank[found], dim=1)
        return nearest.index_put((unproven,), found), dist.index_put((unproven,), found_dist)

    def prove(self, queries: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The nearest of each query's subspace candidates, its distance, and whether no other row is nearer."""
        k = self.candidates
        partial, centred_norm, proj_sq = self.subspace(queries)
        values, picked = self._smallest(partial)
        # The candidates are ranked by the expansion, as the plain search (and the torch path's
        # TorchExactSearch) ranks the whole bank, so a candidate nearer than the kept one by less
        # than the expansion's float32 rounding may be passed over, as there; the one kept is
        # measured directly, which is what the bound needs.
        dots = torch.bmm(self.bank[picked], queries.unsqueeze(2)).squeeze(2)
        best = (self.bank_sq[picked] - 2 * dots).argmin(dim=1)
        nearest = picked.gather(1, best.unsqueeze(1)).squeeze(1)
        dist = torch.linalg.vector_norm(queries - self.bank[nearest], dim=1)
        # Every row not measured has a partial of at least the (k+1)-th smallest.
        return nearest, dist, values[:, k] > self.threshold(dist, centred_norm, proj_sq)

    def subspace(self, queries: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Each query's partials ``|P_b|^2 - 2 p.P_b`` against every (padded) bank row, an upper bound on
        ``|q - mean|`` and a lower bound on ``|p|^2`` (the torch path computes both in float64)."""
        centred = queries - self.mean
        proj = centred @ self.basis
        centred_norm = torch.linalg.vector_norm(centred, dim=1) * self.norm_up
        proj_sq = (proj * proj).sum(dim=1)
        ones = torch.ones_like(proj_sq).unsqueeze(1)
        return torch.cat([proj, ones], dim=1) @ self.table, centred_norm, proj_sq

    def threshold(self, dist: torch.Tensor, centred_norm: torch.Tensor, proj_sq: torch.Tensor) -> torch.Tensor:
        """PrunedExactSearch._bound: a row whose computed partial exceeds this is no nearer than ``dist``.

        The constants are Python floats the graph holds in float32 (each off by at most u); the
        ``1 + 8u`` on the radius covers those and the radius' own four float32 operations, and the
        last term the rounding of forming the threshold from its three parts.
        """
        best_up = dist * self.dist_up
        radius = (
            best_up * self.sigma
            + self.query_err * centred_norm
            + self.bank_err
            + self.float64_projection * (1 + centred_norm + 2 * best_up)
        ) * (1 + 8 * U32)
        gemm = self.gemm * (torch.sqrt(proj_sq) + self.proj_max) ** 2
        threshold = radius * radius + gemm - proj_sq * self.sq_low
        return threshold + 8 * U32 * (radius * radius + gemm + proj_sq)

    def _smallest(self, partial: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The ``k + 1`` smallest partials of each row (ascending) and the bank rows of the first ``k``.

        In two steps, because OpenVINO's ``TopK`` over a 32,000-wide row took 60 ms an image (ONNX
        Runtime's 9): the row's blocks of :data:`BLOCK` columns are ranked by their minimum, and the
        ``k + 1`` smallest values lie in the ``k + 1`` blocks of smallest minimum (a block holding
        one of them whose minimum ranked lower would need ``k + 1`` smaller values elsewhere), so
        only those blocks are searched. Padding columns hold :data:`PAD_PARTIAL`, never among them.
        """
        k = self.candidates
        count = partial.shape[0]
        blocks = partial.reshape(count, -1, BLOCK)
        taken = min(k + 1, blocks.shape[1])
        _, chosen = torch.topk(blocks.amin(dim=2), taken, dim=1, largest=False, sorted=False)
        # One row gather from the (rows x blocks) x BLOCK view: a gather along the blocks axis needs
        # its index expanded to every column first, which cost ONNX Runtime more than the gather.
        flat = (chosen + torch.arange(count).unsqueeze(1) * blocks.shape[1]).reshape(-1)
        within = blocks.reshape(-1, BLOCK)[flat].reshape(count, taken * BLOCK)
        values, where = torch.topk(within, k + 1, dim=1, largest=False, sorted=True)
        first = where[:, :k]
        rows = chosen.gather(1, torch.div(first, BLOCK, rounding_mode="floor")) * BLOCK + torch.remainder(first, BLOCK)
        return values, rows
