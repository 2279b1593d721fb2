"""InternVL3 (transformers' native ``InternVLForConditionalGeneration``): dynamic tiles + thumbnail.

What one image becomes in the input ids::

    <img><IMG_CONTEXT>*(S*P)</img>

The image processor (GotOCR2's ``crop_to_patches``) resizes the image to the best ``a x b`` tile
layout (``min_patches <= a*b <= max_patches``), cuts ``P - 1 = a*b`` square tiles in row-major
order and, when there is more than one tile, appends a **thumbnail** — the whole image resized to
one tile — as the last patch (``P = a*b + 1``; a 1x1 layout has the single tile only, ``P = 1``).
Each patch yields ``S = image_seq_length = (image_size / patch_size)^2 * downsample_ratio^2``
tokens (256 for InternVL3: 448 px, 14 px patches, pixel shuffle 0.5), in row-major order of the
``sqrt(S) x sqrt(S)`` shuffled grid (the pixel shuffle keeps row-major order of 2x2 blocks).

**CAAS span**: all ``S*P`` ``<IMG_CONTEXT>`` tokens of the image — one contiguous run between
``<img>`` and ``</img>`` (the markers are text tokens and are not scaled).

**Grid**: the thumbnail's ``S`` tokens, i.e. the *last* ``S`` of the run (the single tile when
``P = 1``), on a ``sqrt(S) x sqrt(S)`` grid. The thumbnail (and a lone tile) is a square resize of
the whole image, so the grid covers the whole image (coverage ``None``). Tile tokens are excluded
from the map (they count in the attention *share*): the tile layout depends on the image's aspect
ratio and the tiles' grid has a different resolution from the thumbnail's.

InternVL's processor declares a video processor that needs torchvision; without torchvision we
load its image-only subclass (:func:`~eagle_iad.mllm.families.base.image_only`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from transformers import InternVLProcessor

from eagle_iad.errors import ConfigError
from eagle_iad.mllm.families.base import FamilyBase, ImageTokens, image_only, image_token_runs, trailing_tokens

InternVLImageOnlyProcessor = image_only(InternVLProcessor)


def thumbnail_images(input_ids: Sequence[int], image_token_id: int, image_seq_length: int) -> list[ImageTokens]:
    """One run per image (between ``<img>``/``</img>``); its last ``S`` tokens (the thumbnail) on the grid."""
    side = math.isqrt(image_seq_length)
    if side * side != image_seq_length:
        raise ConfigError(f"image_seq_length {image_seq_length} is not a square number of tokens")
    images = []
    for start, end in image_token_runs(input_ids, image_token_id):
        if (end - start) % image_seq_length:
            raise ConfigError(
                f"an image run of {end - start} tokens is not a whole number of {image_seq_length}-token patches"
            )
        ranges = ((start, end),)
        images.append(ImageTokens(ranges, (1, side, side), trailing_tokens(ranges, image_seq_length)))
    return images


@dataclass(frozen=True)
class InternVLFamily(FamilyBase):
    """InternVL (3 / 3.5, ``-hf`` checkpoints) family knowledge (see the module docstring)."""

    def image_tokens(
        self, config: Any, processor: Any, inputs: Any, input_ids: Sequence[int], n_images: int
    ) -> list[ImageTokens]:
        return thumbnail_images(input_ids, self.image_token_id(config), int(processor.image_seq_length))


INTERNVL = InternVLFamily("internvl", ("internvl",), InternVLImageOnlyProcessor)
