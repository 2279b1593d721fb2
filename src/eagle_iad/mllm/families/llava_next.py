"""LLaVA-NeXT and LLaVA-OneVision: anyres tiling, one ``<image>`` run per image, base view first.

What one image becomes in the input ids: ``N`` consecutive ``<image>`` tokens, where the processor
computes ``N`` (``replace_image_token``) and the model fills the positions, in this order
(``pack_image_features``):

1. the **base view**: the whole image resized to the vision tower's square input
   (``image_size``), ``side x side`` features with ``side = image_size / patch_size``, row-major
   (CLS already dropped for CLIP's ``"default"`` strategy; SigLIP's ``"full"`` has none);
2. the **anyres tiles** (single-image prompts): the tiles' features stitched to one big grid,
   unpadded back to the image's aspect ratio (OneVision: bilinearly shrunk when larger than
   ``anyres_max_9`` allows), with an ``image_newline`` embedding appended to every row —
   the newline positions are ``<image>`` tokens in the ids, the embedding is inserted inside the
   model;
3. OneVision, multi-image prompts: no tiles, the base view plus one trailing ``image_newline``.

**CAAS span**: all ``N`` tokens (base view, tiles and the newline positions — every position the
model fills with this image's visual embeddings). Chat templates of both families render images
back to back (``<image><image>...``, OneVision without any separator), so several images may form
one run; each image takes its own ``N`` tokens, in order (:func:`split_runs`), so the span is
the image's exact range, never its neighbour's.

**Grid**: the base view's ``side x side`` tokens (the first ``side^2`` of the image), row-major.
The base view is a square resize of the whole image (``size`` = ``crop_size`` in released
checkpoints, so the centre crop removes nothing): coverage ``None``. Tile and newline tokens are
excluded from the map (they count in the attention *share*): the unpadded tile grid has a
different, image-dependent resolution and, in OneVision, may be resampled, so its cells do not
map 1:1 onto image regions.

OneVision's processor declares a video processor that needs torchvision; without torchvision we
load its image-only subclass (:func:`~eagle_iad.mllm.families.base.image_only`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from transformers import LlavaOnevisionProcessor

from eagle_iad.errors import ConfigError
from eagle_iad.mllm.families.base import (
    FamilyBase,
    ImageTokens,
    image_only,
    image_token_runs,
    leading_tokens,
    split_runs,
)

LlavaOnevisionImageOnlyProcessor = image_only(LlavaOnevisionProcessor)


def image_token_counts(processor: Any, inputs: Any, n_images: int) -> list[int]:
    """Per image, how many ``<image>`` tokens the processor itself inserted for it.

    Asks the processor's own ``replace_image_token`` (what its ``__call__`` used to expand each
    ``<image>``), so the counts agree with the ids by construction, anyres and multi-image included.
    """
    token = str(processor.image_token)
    return [str(processor.replace_image_token(inputs, index)).count(token) for index in range(n_images)]


def base_view_images(
    input_ids: Sequence[int], image_token_id: int, counts: Sequence[int], side: int
) -> list[ImageTokens]:
    """Split the ids' image tokens by ``counts``; the first ``side^2`` of each image form its grid."""
    images = []
    for ranges, count in zip(split_runs(image_token_runs(input_ids, image_token_id), counts), counts, strict=True):
        if count < side * side:
            raise ConfigError(f"an image of {count} tokens cannot hold a {side}x{side} base view")
        images.append(ImageTokens(ranges, (1, side, side), leading_tokens(ranges, side * side)))
    return images


@dataclass(frozen=True)
class LlavaAnyresFamily(FamilyBase):
    """LLaVA-NeXT / LLaVA-OneVision family knowledge (see the module docstring)."""

    def image_tokens(
        self, config: Any, processor: Any, inputs: Any, input_ids: Sequence[int], n_images: int
    ) -> list[ImageTokens]:
        if n_images == 0:
            return []
        side = int(config.vision_config.image_size) // int(config.vision_config.patch_size)
        counts = image_token_counts(processor, inputs, n_images)
        return base_view_images(input_ids, self.image_token_id(config), counts, side)


LLAVA_NEXT = LlavaAnyresFamily("llava_next", ("llava_next",))
LLAVA_ONEVISION = LlavaAnyresFamily("llava_onevision", ("llava_onevision",), LlavaOnevisionImageOnlyProcessor)
