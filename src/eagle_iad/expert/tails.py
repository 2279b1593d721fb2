"""Each training image's highest-scoring patches, kept so that a teach rescores the old images exactly.

Why: a training image's leave-own-out score is its largest patch distance to the bank minus its own
rows, and a teach only adds rows, so it can only lower that score, and only where an added row comes
nearer than the bank did. A model keeps no old features, so before schema 9 a teach kept the old
scores as they were: an upper bound, which held tau up (on tire at 50 images taught, 79.40 against
78.31 exact). Keeping the ``k`` highest-scoring patches of each image (``rows``), their distance to
the bank without their image's rows (``distances``) and the largest score of the others (``floors``)
is enough to recompute it: a teach lowers each kept distance to the added rows where they are nearer
(a search of the few added rows, not of the bank), and the image's score is ``max(largest kept
distance, the rest)``, the rest being at most the floor. When the largest kept distance is still at
or above the floor, that is the exact score; else the floor is an upper bound, never below the exact
one (docs/METHOD.md, "Teaching normal images").
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from eagle_iad.expert.leave_own_out import scored_mask
from eagle_iad.expert.search import NearestNeighbourSearch

#: Patches kept per training image. Measured on tire (180 images, 50 taught; benchmarks/teach.py's
#: set-up): 8 gave the exact score for 178 of 180 images and tau within 0.02% of the exact one, 16 for
#: all; 8 costs 32 KiB an image at 1,024 dimensions (6.4 MB for 200 images, beside a 195 MB bank).
TAIL_PATCHES = 8


@dataclass(frozen=True)
class Tails:
    """The kept patches: ``rows`` (``M x D`` features, image after image), ``image_ids`` (``M``, each
    row's training image), ``distances`` (``M``, each row's distance to the bank without its image's
    rows, as the model's bank stands) and ``floors`` (one per image: the largest leave-own-out distance
    among its scored patches that are not kept, 0 when all are), with ``per_image`` the most kept of one
    image."""

    rows: torch.Tensor
    image_ids: torch.Tensor
    distances: np.ndarray
    floors: np.ndarray
    per_image: int

    def __add__(self, other: Tails) -> Tails:
        """The tails of a model's images followed by those of images added to it (ids already shifted)."""
        return Tails(
            rows=torch.cat([self.rows, other.rows]).contiguous(),
            image_ids=torch.cat([self.image_ids, other.image_ids]).contiguous(),
            distances=np.concatenate([self.distances, other.distances]),
            floors=np.concatenate([self.floors, other.floors]),
            per_image=self.per_image,
        )


def select_tails(
    patch_scores: np.ndarray,
    patch_image_ids: torch.Tensor,
    selected: torch.Tensor,
    n_images: int,
    take: Callable[[np.ndarray], np.ndarray | torch.Tensor],
    per_image: int = TAIL_PATCHES,
) -> Tails:
    """Each image's ``per_image`` highest-scoring scored patches (``take(indices)`` gives their features,
    ``patch_scores`` their distances) and the largest score of the rest. Ties are broken by patch order,
    so the choice is reproducible."""
    ids = patch_image_ids.numpy().astype(np.int64)
    use = scored_mask(patch_image_ids, selected, n_images).numpy()
    candidates = np.flatnonzero(use)
    # Image by image, highest score first (stable: the earlier patch first among equals).
    order = candidates[np.lexsort((-patch_scores[candidates].astype(np.float64), ids[candidates]))]
    owners = ids[order]
    starts = np.searchsorted(owners, np.arange(n_images), side="left")
    ends = np.searchsorted(owners, np.arange(n_images), side="right")
    kept: list[np.ndarray] = []
    floors = np.zeros(n_images, dtype=np.float64)
    for image in range(n_images):
        mine = order[starts[image] : ends[image]]
        kept.append(mine[:per_image])
        if mine.size > per_image:
            floors[image] = float(patch_scores[mine[per_image]])
    chosen = np.concatenate(kept) if kept else np.zeros(0, dtype=np.int64)
    rows = take(chosen)
    rows_t = torch.from_numpy(np.ascontiguousarray(rows)) if isinstance(rows, np.ndarray) else rows
    return Tails(
        rows=rows_t.float().contiguous(),
        image_ids=torch.from_numpy(ids[chosen].astype(np.int32)),
        distances=patch_scores[chosen].astype(np.float32),
        floors=floors,
        per_image=per_image,
    )


@dataclass(frozen=True)
class Rescored:
    """Old images' scores after rows were added: ``scores``, which of them are ``exact`` (else bounds), and
    the ``tails`` with their distances lowered to the added rows."""

    scores: np.ndarray
    exact: np.ndarray
    tails: Tails


@torch.no_grad()
def rescore(tails: Tails, added: NearestNeighbourSearch | None, n_images: int) -> Rescored:
    """Each image's leave-own-out score once the rows ``added`` searches are in the bank.

    None of the added rows is an old image's own, so a kept patch's distance to the grown bank minus its
    image's rows is the smaller of its kept distance and its distance to the added rows (``None``: none).
    """
    distances = tails.distances.astype(np.float32)
    if added is not None and tails.rows.shape[0]:
        nearer, _ = added.search(tails.rows)
        distances = np.minimum(distances, nearer.float().numpy())
    largest = np.full(n_images, -np.inf)
    np.maximum.at(largest, tails.image_ids.numpy().astype(np.int64), distances.astype(np.float64))
    exact = largest >= tails.floors
    lowered = Tails(tails.rows, tails.image_ids, distances, tails.floors, tails.per_image)
    return Rescored(scores=np.maximum(largest, tails.floors), exact=exact, tails=lowered)
