"""Gemma 3: ``<start_of_image>`` + ``mm_tokens_per_image`` soft tokens per view; pan-and-scan crops.

What one image becomes in the input ids (the chat template writes ``<start_of_image>``, which the
processor expands)::

    \n\n<start_of_image><image_soft_token>*S<end_of_image>\n\n

``S = mm_tokens_per_image`` (256 for the released checkpoints): the SigLIP patch grid of the
896 px square resize, average-pooled to ``sqrt(S) x sqrt(S)`` and flattened row-major. With
pan-and-scan on, the processor writes "Here is the original image" + that sequence, then "and here
are some crops..." + one such sequence per crop.

**CAAS span**: every ``<image_soft_token>`` of the image (the original view and its crops; the
markers are text tokens). **Grid**: the original view's ``S`` tokens (the first of the image), a
square resize of the whole image, so coverage ``None``. Which views belong to which image is
not in the ids (only the crops' introductory *text* says so), and the processor drops its
``num_crops``: so each image must be one view. The family loads the processor with pan-and-scan
off (as the released checkpoints ship it), and a prompt whose views still outnumber its images (a
processor built elsewhere) is refused with that reason rather than scaling a crop as if it were
the next image.

Two things differ from the other families and are handled in :mod:`eagle_iad.mllm.caas`: the
language model lets an image's tokens attend to each other both ways (its mask says so; CAAS
leaves the mask as given), and five of every six layers use a sliding window whose cache keeps only
the latest keys, so during decoding a key column is not a prompt position any more.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eagle_iad.errors import ConfigError
from eagle_iad.mllm.families.base import FamilyBase, ImageTokens, image_token_runs, leading_tokens, split_runs


@dataclass(frozen=True)
class Gemma3Family(FamilyBase):
    """Gemma 3 family knowledge (see the module docstring); its processor has no video processor."""

    def load_processor(self, path: str | Path, **kwargs: Any) -> Any:
        processor = super().load_processor(path, **kwargs)
        # One view per image: crops could not be told from the next image (module docstring).
        processor.image_processor.do_pan_and_scan = False
        return processor

    def image_tokens(
        self, config: Any, processor: Any, inputs: Any, input_ids: Sequence[int], n_images: int
    ) -> list[ImageTokens]:
        if n_images == 0:
            return []
        per_view = int(config.mm_tokens_per_image)
        side = math.isqrt(per_view)
        if side * side != per_view:
            raise ConfigError(f"mm_tokens_per_image {per_view} is not a square number of tokens")
        runs = image_token_runs(input_ids, self.image_token_id(config))
        views = sum(end - start for start, end in runs) / per_view
        if views != n_images:
            raise ConfigError(
                f"{views:g} image views for {n_images} images: pan-and-scan crops cannot be told from the next "
                "image; turn the image processor's do_pan_and_scan off"
            )
        return [
            ImageTokens(ranges, (1, side, side), leading_tokens(ranges, per_view))
            for ranges in split_runs(runs, [per_view] * n_images)
        ]


GEMMA3 = Gemma3Family("gemma3", ("gemma3",))
