"""Idefics3 and SmolVLM: image splitting into tiles plus a global view, separators in the ids.

What one image becomes in the input ids (both processors, transformers 5):

* no splitting (image not larger than ``max_image_size``, or ``do_image_splitting=False``)::

      <fake_token_around_image><global-img><image>*S<fake_token_around_image>

* with splitting into ``R x C`` tiles::

      <fake_token_around_image><row_1_col_1><image>*S ... <fake_token_around_image><row_1_col_C><image>*S \\n
      ...                                                                                 (R rows)
      \\n<fake_token_around_image><global-img><image>*S<fake_token_around_image>

``S = image_seq_len = (image_size / patch_size)^2 / scale_factor^2`` (169 for Idefics3-8B, 64 for
SmolVLM-256M/500M, 81 for SmolVLM2-2.2B).

**CAAS span** (what is scaled): every ``<image>`` token of the image — all ``R*C`` tile runs *and*
the global run, so the span is ``R*C + 1`` disjoint ranges. The separators
(``<fake_token_around_image>``, ``<row_i_col_j>``, ``<global-img>``, ``\\n``) are text tokens
carrying no visual features and are not scaled, like the vision start/end markers of Qwen.

**Grid** (what attention capture maps onto the image): the global view's ``S`` tokens only, on a
``sqrt(S) x sqrt(S)`` grid in row-major order (the vision encoder's patch grid after the
pixel-shuffle connector, which keeps row-major order of the ``scale_factor``-merged blocks). The
global view is the whole image resized to a square, so the grid covers the whole image (coverage
``None``, aspect distorted exactly as the model saw it). Tile tokens are excluded from the map
(they still count in the attention *share*). Tiles could be placed on an ``R*sqrt(S) x C*sqrt(S)``
grid over the resized image, but the tile grid and the global grid have different resolutions,
and mixing them in one map would double-count regions; the global view is the one view that always
exists.

How images are told apart in the ids: each image *ends* with its global run, the one run
preceded by ``<global-img>``; every image-token run up to and including it belongs to the image.
This needs no image count from the processor (which discards rows/cols) and holds for prompts
whose text lies between images.

SmolVLM shares all of this (``smolvlm.py`` states its differences).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from eagle_iad.errors import ConfigError
from eagle_iad.mllm.families.base import FamilyBase, ImageTokens, Range, image_token_runs

GLOBAL_IMAGE_TOKEN = "<global-img>"


def global_view_images(
    input_ids: Sequence[int], image_token_id: int, global_token_id: int, image_seq_len: int
) -> list[ImageTokens]:
    """Group image-token runs into images that each end with a ``<global-img>`` run (ids only).

    Every run must hold exactly ``image_seq_len`` tokens (one tile or one global view); a run not
    preceded by a separator, or trailing runs with no global view, raise.
    """
    side = math.isqrt(image_seq_len)
    if side * side != image_seq_len:
        raise ConfigError(f"image_seq_len {image_seq_len} is not a square number of tokens")
    images: list[ImageTokens] = []
    pending: list[Range] = []
    for start, end in image_token_runs(input_ids, image_token_id):
        if end - start != image_seq_len:
            raise ConfigError(f"an image-token run of {end - start} tokens; expected {image_seq_len} per tile/view")
        pending.append((start, end))
        if start > 0 and input_ids[start - 1] == global_token_id:
            images.append(ImageTokens(tuple(pending), (1, side, side), ((start, end),)))
            pending = []
    if pending:
        raise ConfigError(f"{len(pending)} image-token runs without a closing global view")
    return images


@dataclass(frozen=True)
class Idefics3Family(FamilyBase):
    """Idefics3 / SmolVLM family knowledge (see the module docstring for spans and grid)."""

    def image_tokens(
        self, config: Any, processor: Any, inputs: Any, input_ids: Sequence[int], n_images: int
    ) -> list[ImageTokens]:
        global_id = int(processor.tokenizer.convert_tokens_to_ids(GLOBAL_IMAGE_TOKEN))
        if n_images and global_id == processor.tokenizer.unk_token_id:
            raise ConfigError(f"the tokenizer has no {GLOBAL_IMAGE_TOKEN} token; cannot find the images' global views")
        return global_view_images(input_ids, self.image_token_id(config), global_id, int(processor.image_seq_len))


IDEFICS3 = Idefics3Family("idefics3", ("idefics3",))
