"""Leave-own-out training scores (docs/METHOD.md §2): what a new normal image would score, per training image.

A training image's own patches are in the memory bank, so scoring it naively gives near-zero
distances and a useless threshold. Leave-own-out fixes that: each training image is scored with
only its *unselected* patches against the bank *minus its own entries*, which estimates what a
new normal image would score. Masking the own-image columns inside one blocked distance pass
gives all of these scores at about the cost of one ordinary scoring pass. The threshold rules
(:mod:`eagle_iad.tgps.thresholds`) then turn the scores into tau; this scoring is the expert's,
because it needs the memory bank and its search.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from eagle_iad.errors import ConfigError
from eagle_iad.expert.features import RowFile
from eagle_iad.expert.search import NearestNeighbourSearch

#: Training patches scored per search call. A chunk costs about four copies of itself (read, the
#: search's query copy, gathered neighbours, differences): 8192 rows x 4 KiB is 128 MiB at the peak,
#: where 32768 rows held 512 MiB; the search blocks its own work in 4096 queries either way.
LOO_CHUNK_ROWS = 1 << 13


@dataclass(frozen=True)
class LeaveOwnOut:
    """Leave-own-out results: one score per training image and one distance per training patch.

    ``patch_scores[i]`` is patch ``i``'s distance to the bank minus its own image's entries (selected
    patches included: their own entry is excluded with the rest of their image), what a map of that
    training image would show were it a new normal image. ``image_scores`` takes the maximum over the
    *unselected* patches only, as the threshold rule expects (docs/METHOD.md).
    """

    image_scores: np.ndarray
    patch_scores: np.ndarray


@torch.no_grad()
def leave_own_out(
    features: torch.Tensor | RowFile,
    patch_image_ids: torch.Tensor,
    selected: torch.Tensor,
    search: NearestNeighbourSearch,
    n_images: int,
    progress: Callable[[int, int], None] | None = None,
    chunk_rows: int = LOO_CHUNK_ROWS,
) -> LeaveOwnOut:
    """Score every training patch against the bank minus its own image's entries, in one chunked pass.

    ``features`` are all ``N`` training patches, ``patch_image_ids`` their image index, ``selected``
    the coreset mask; ``search`` must already be fitted on ``features[selected]`` with
    ``bank_groups = patch_image_ids[selected]``. An image whose patches were all selected (tiny
    data sets) is scored with all of its patches. Rows are processed in chunks so no copy of the
    whole feature matrix is made and ``progress(done, total)`` can report.
    """
    if n_images < 2:
        raise ConfigError("leave-own-out training scores need at least 2 training images")
    use = ~selected
    fully_selected = torch.ones(n_images, dtype=torch.bool)
    fully_selected[patch_image_ids[use].long()] = False
    if bool(fully_selected.any()):
        use = use | fully_selected[patch_image_ids.long()]
    total = features.shape[0]
    patch_scores = torch.empty(total, dtype=torch.float32)
    for start in range(0, total, chunk_rows):
        stop = min(total, start + chunk_rows)
        rows = features[start:stop]
        queries = torch.from_numpy(rows) if isinstance(rows, np.ndarray) else rows
        dist, _ = search.search(queries, exclude_groups=patch_image_ids[start:stop].long())
        patch_scores[start:stop] = dist.float()
        if progress is not None:
            progress(stop, total)
    scores = torch.full((n_images,), float("-inf"), dtype=torch.float64)
    scores.scatter_reduce_(0, patch_image_ids[use].long(), patch_scores[use].double(), reduce="amax")
    return LeaveOwnOut(image_scores=scores.numpy(), patch_scores=patch_scores.numpy())


def leave_own_out_scores(
    features: torch.Tensor | RowFile,
    patch_image_ids: torch.Tensor,
    selected: torch.Tensor,
    search: NearestNeighbourSearch,
    n_images: int,
    progress: Callable[[int, int], None] | None = None,
    chunk_rows: int = LOO_CHUNK_ROWS,
) -> np.ndarray:
    """Per training image: max over its unselected patches of the distance to the bank minus its own entries."""
    return leave_own_out(features, patch_image_ids, selected, search, n_images, progress, chunk_rows).image_scores
