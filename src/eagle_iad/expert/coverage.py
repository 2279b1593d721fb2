"""Whether an image is like the training images at all: the share of its patches beyond every normal patch.

Why: the expert's score is the distance of the image's *most* unusual patch, so a frame of noise, a
blocked camera or another product scored high and was reported as a defect, with one box around
everything. A defect changes a part of the image; an image of something else changes nearly all of it.
So a fit keeps its coverage radius, the largest leave-own-out distance of any training patch to the
bank (every normal patch lies within it), and an inspected image with at least a fifth of its patches
beyond that radius is "unrecognised": a separate outcome, not a defect.

Measured with 16 training images (docs/METHOD.md): on elpv mono, defective test cells had at most 2.8%
of their patches beyond the radius and normal ones 0.1%, while a tire had 24%, and noise, a black, a
grey frame and a checkerboard 90-98%; on tire (MVTec 3D-AD), cut, hole, contamination and combined
defects at most 0.9%, solar cells 99.7%, noise 99.9%, a black frame 79%. A fifth leaves a margin of
seven times the largest defect seen. A station should treat ``unrecognised`` as "do not pass" (the OPC
UA sink's ``anomalous`` flag does), so a large-area defect read as foreign is still stopped. With 4
training cells, though, normal test cells had up to 88% (four images cover too little of a product's
normal variation), so a fit on fewer than :data:`MIN_IMAGES` images keeps no coverage and judges every
image as this product, as models saved before the check do.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

#: An image is unrecognised when at least this share of its patches is beyond the coverage radius.
LIMIT = 0.2
#: Fewer training images than this cover too little normal variation to call anything foreign.
MIN_IMAGES = 10


@dataclass(frozen=True)
class Coverage:
    """A category's coverage radius and the share of patches beyond it that makes an image unrecognised."""

    radius: float
    limit: float = LIMIT

    def share(self, patch_scores: np.ndarray) -> float | None:
        """The share of an image's inspected patches farther than :attr:`radius` from the bank."""
        finite = patch_scores[np.isfinite(patch_scores)]
        return None if finite.size == 0 else float((finite > self.radius).mean())

    def unrecognised(self, share: float | None) -> bool | None:
        return None if share is None else share >= self.limit

    def to_dict(self) -> dict[str, Any]:
        return {"radius": self.radius, "limit": self.limit}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Coverage:
        radius, limit = float(data["radius"]), float(data["limit"])
        if not (np.isfinite(radius) and radius >= 0 and 0 < limit <= 1):
            raise ValueError(f"coverage needs a finite radius >= 0 and a limit in (0, 1], got {data}")
        return cls(radius=radius, limit=limit)


def fit_coverage(train_patch_scores: np.ndarray, n_images: int) -> Coverage | None:
    """The coverage of a fit from its training patches' leave-own-out distances (all images' patches);
    ``None`` for fewer than :data:`MIN_IMAGES` images or without a finite distance."""
    finite = train_patch_scores[np.isfinite(train_patch_scores)]
    if n_images < MIN_IMAGES or finite.size == 0:
        return None
    return Coverage(radius=float(finite.max()))
