"""The exported graph's bank search (expert/graph_search.py) finds the exact nearest row, proven or not.

Each case compares with a float64 brute force over the whole bank: on data with a dominant subspace
(where the proof succeeds for nearly every query), on isotropic data with a 2-d subspace and one
candidate (where it fails for most), and through ONNX Runtime and OpenVINO with the unproven
queries none, some and all of a batch (an empty ``NonZero`` is the case a runtime gets wrong).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from eagle_iad.expert.graph_search import GraphSearch


def _clustered(rows: int, dim: int, seed: int) -> torch.Tensor:
    """Points near a 12-d subspace of ``dim``-d space, like patch features near their principal components."""
    gen = torch.Generator().manual_seed(seed)
    basis = torch.linalg.qr(torch.randn(dim, 12, generator=gen))[0]
    points: torch.Tensor = (torch.randn(rows, 12, generator=gen) * 5) @ basis.T
    return points + 0.05 * torch.randn(rows, dim, generator=gen)


def _near(bank: torch.Tensor, rows: int, seed: int) -> torch.Tensor:
    """Queries close to bank rows, as an inspected image's patches are close to the normal ones'."""
    gen = torch.Generator().manual_seed(seed)
    picked = bank[torch.randint(0, bank.shape[0], (rows,), generator=gen)]
    return picked + 0.3 * torch.randn(rows, bank.shape[1], generator=gen)


def _isotropic(rows: int, dim: int, seed: int) -> torch.Tensor:
    return torch.randn(rows, dim, generator=torch.Generator().manual_seed(seed))


def _reference(queries: torch.Tensor, bank: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Nearest row and distance by float64 brute force."""
    dist = torch.cdist(queries.double(), bank.double())
    best = dist.min(dim=1)
    return best.indices.numpy(), best.values.numpy()


def _assert_exact(nearest: np.ndarray, dist: np.ndarray, queries: torch.Tensor, bank: torch.Tensor) -> None:
    ref_rows, ref_dist = _reference(queries, bank)
    np.testing.assert_allclose(dist, ref_dist, rtol=1e-5)
    # The row itself may differ only on a float32 tie, where both rows are as near.
    direct = torch.linalg.vector_norm(queries.double() - bank.double()[torch.from_numpy(nearest)], dim=1).numpy()
    np.testing.assert_allclose(direct, ref_dist, rtol=1e-6)
    assert (nearest == ref_rows).mean() > 0.99


@pytest.mark.parametrize(
    ("data", "dims", "candidates", "proven_at_least", "proven_at_most"),
    [("clustered", 16, 8, 0.95, 1.0), ("isotropic", 2, 1, 0.0, 0.2)],
)
def test_the_search_is_exact_whether_or_not_the_subspace_proves_it(
    data: str, dims: int, candidates: int, proven_at_least: float, proven_at_most: float
) -> None:
    if data == "clustered":
        bank = _clustered(3000, 96, 0)
        queries = _near(bank, 700, 1)
    else:
        bank, queries = _isotropic(3000, 96, 0), _isotropic(700, 96, 1)
    search = GraphSearch(bank, dims=dims, candidates=candidates)
    assert search.pruned and search.dims == dims
    assert GraphSearch(bank, dims=64).dims == 96 // 4  # never more than a quarter of the features
    with torch.no_grad():
        _, _, proven = search.prove(queries)
        nearest, dist = search(queries)
    assert proven_at_least <= float(proven.float().mean()) <= proven_at_most
    _assert_exact(nearest.numpy(), dist.numpy(), queries, bank)


def test_a_small_bank_is_searched_in_full() -> None:
    bank = _clustered(30, 64, 2)  # no more than 4 x (candidates + 1) rows: the subspace cannot pay
    search = GraphSearch(bank, dims=16, candidates=8)
    assert not search.pruned
    queries = _near(bank, 50, 3)
    with torch.no_grad():
        nearest, dist = search(queries)
    _assert_exact(nearest.numpy(), dist.numpy(), queries, bank)


class _Wrapped(nn.Module):
    def __init__(self, search: GraphSearch) -> None:
        super().__init__()
        self.search = search

    def forward(self, queries: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        found: tuple[torch.Tensor, torch.Tensor] = self.search(queries)
        return found


def _export(search: GraphSearch, path: Path) -> None:
    dim = search.bank.shape[1]
    rows = torch.export.Dim("rows", min=1, max=100_000)
    program = torch.onnx.export(
        _Wrapped(search).eval(),
        (torch.zeros(4, dim),),
        dynamo=True,
        input_names=["queries"],
        output_names=["nearest", "dist"],
        dynamic_shapes={"queries": {0: rows}},
        verbose=False,
    )
    assert program is not None
    program.save(str(path))


@pytest.mark.parametrize("runtime", ["onnx", "openvino"])
def test_the_exported_search_is_exact_with_none_some_or_all_queries_unproven(tmp_path: Path, runtime: str) -> None:
    ort = pytest.importorskip("onnxruntime", reason="the deploy extra is not installed")
    bank = _clustered(2000, 64, 4)
    search = GraphSearch(bank, dims=12, candidates=4).eval()
    path = tmp_path / "search.onnx"
    _export(search, path)
    if runtime == "onnx":
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])

        def run(queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            nearest, dist = session.run(["nearest", "dist"], {"queries": queries})
            return np.asarray(nearest), np.asarray(dist)
    else:
        pytest.importorskip("openvino", reason="the deploy extra is not installed")
        from eagle_iad.expert.runtime import compile_openvino

        compiled = compile_openvino(path)  # the thread keeps its signal stack (eagle_iad.signal_stack)

        def run(queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            out = compiled({"queries": queries})
            return np.asarray(out[compiled.output("nearest")]), np.asarray(out[compiled.output("dist")])

    near = _near(bank, 300, 5)  # proven
    far = _isotropic(40, 64, 6) * 30  # far from the subspace: the bound proves nothing
    with torch.no_grad():
        assert bool(search.prove(near)[2].all())
        assert not bool(search.prove(far)[2].any())
    for queries in (near, far, torch.cat([near, far])):
        nearest, dist = run(queries.numpy())
        with torch.no_grad():
            expected_rows, expected_dist = search(queries)
        np.testing.assert_array_equal(nearest, expected_rows.numpy())
        np.testing.assert_allclose(dist, expected_dist.numpy(), rtol=1e-6)
        _assert_exact(nearest, dist, queries, bank)


@pytest.mark.parametrize("columns", [40, 300, 1000, 5000])
def test_the_two_step_selection_finds_the_smallest_partials(columns: int) -> None:
    """Blocks ranked by their minimum, then the best blocks searched: the same values as one top-k over the row."""
    from eagle_iad.expert.graph_search import BLOCK, PAD_PARTIAL

    search = GraphSearch(_clustered(200, 32, 7), dims=8, candidates=8)
    gen = torch.Generator().manual_seed(columns)
    partial = torch.randn(64, columns, generator=gen)
    partial[:8, : columns // 2] = partial[:8, : columns // 2].round()  # ties
    partial[8:16] = partial[8:16] + torch.arange(columns) * 0.01  # the smallest all in the first block
    padded = torch.cat([partial, torch.full((64, -columns % BLOCK), PAD_PARTIAL)], dim=1)
    values, rows = search._smallest(padded)
    expected = torch.topk(partial, 9, dim=1, largest=False, sorted=True).values
    assert torch.equal(values, expected)
    assert torch.equal(partial.gather(1, rows), expected[:, :8])
    assert len({tuple(r) for r in rows.sort(dim=1).values.tolist()}) > 1 and int(rows.max()) < columns
    assert all(len(set(r)) == 8 for r in rows.tolist())


@pytest.mark.parametrize("offset", [0.0, 300.0])
def test_no_row_the_threshold_rules_out_is_nearer_than_the_kept_one(offset: float) -> None:
    """The bound itself, pair by pair: every row at most as far as the kept candidate (float64) passes it.

    The exactness tests above see only final answers, which a bound too tight for its rounding would
    still get right whenever the true nearest row happens to be among the candidates.
    """
    bank = _clustered(2500, 128, 8) + offset  # an offset makes every squared norm, and every rounding, large
    queries = torch.cat([_near(bank, 200, 9), bank[:20], _isotropic(40, 128, 10) * 3 + offset])
    search = GraphSearch(bank, dims=16, candidates=4)
    with torch.no_grad():
        partial, centred_norm, proj_sq = search.subspace(queries)
        nearest, dist, _ = search.prove(queries)
        threshold = search.threshold(dist, centred_norm, proj_sq)
    true = torch.cdist(queries.double(), bank.double())
    kept = true.gather(1, nearest.unsqueeze(1))
    rows, cols = torch.nonzero(true <= kept, as_tuple=True)
    assert rows.numel() >= len(queries)
    assert bool((partial[rows, cols] <= threshold[rows]).all())
