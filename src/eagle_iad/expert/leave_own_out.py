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
    return LeaveOwnOut(image_scores=_image_scores(patch_scores, patch_image_ids, selected, n_images),
                       patch_scores=patch_scores.numpy())  # fmt: skip


def scored_mask(patch_image_ids: torch.Tensor, selected: torch.Tensor, n_images: int) -> torch.Tensor:
    """The patches an image's score is taken over: its unselected ones, or all of an image whose every
    patch was selected (tiny sets: an image must have a score)."""
    use = ~selected
    fully_selected = torch.ones(n_images, dtype=torch.bool)
    fully_selected[patch_image_ids[use].long()] = False
    if bool(fully_selected.any()):
        use = use | fully_selected[patch_image_ids.long()]
    return use


def _image_scores(
    patch_scores: torch.Tensor, patch_image_ids: torch.Tensor, selected: torch.Tensor, n_images: int
) -> np.ndarray:
    """Per image, the largest score of its unselected patches (all of its patches if every one was selected)."""
    use = scored_mask(patch_image_ids, selected, n_images)
    scores = torch.full((n_images,), float("-inf"), dtype=torch.float64)
    scores.scatter_reduce_(0, patch_image_ids[use].long(), patch_scores[use].double(), reduce="amax")
    result: np.ndarray = scores.numpy()
    return result


@torch.no_grad()
def leave_own_out_added(
    features: torch.Tensor,
    patch_image_ids: torch.Tensor,
    selected: torch.Tensor,
    base_dist: torch.Tensor,
    added_search: NearestNeighbourSearch | None,
    n_images: int,
    progress: Callable[[int, int], None] | None = None,
    chunk_rows: int = LOO_CHUNK_ROWS,
) -> LeaveOwnOut:
    """Leave-own-out of images added to a fitted bank (a teach), without searching the old bank again.

        The grown bank is the old bank, whose rows all come from other images, plus the rows chosen from
        the added images. So a new patch's distance to the grown bank minus its own image's rows is the
        smaller of its distance to the old bank (``base_dist``: the teach's guard has measured it) and its
        distance to the chosen rows of the *other* added images (``added_search``, fitted on those rows with
        their image ids ``0 .. n_images - 1``, which ``patch_image_ids`` uses too; ``None`` when no row was
    added): the same minimum a
        search of the whole grown bank finds, for a search of the few added rows. Both searches are exact;
        the value of one pair's distance may differ in the last float32 bit between the two searches'
        code paths, not more.
    """
    total = features.shape[0]
    patch_scores = torch.empty(total, dtype=torch.float32)
    for start in range(0, total, chunk_rows):
        stop = min(total, start + chunk_rows)
        base = base_dist[start:stop].float()
        if added_search is None:
            patch_scores[start:stop] = base
        else:
            dist, _ = added_search.search(features[start:stop], exclude_groups=patch_image_ids[start:stop].long())
            patch_scores[start:stop] = torch.minimum(dist.float(), base)
        if progress is not None:
            progress(stop, total)
    return LeaveOwnOut(image_scores=_image_scores(patch_scores, patch_image_ids, selected, n_images),
                       patch_scores=patch_scores.numpy())  # fmt: skip


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
