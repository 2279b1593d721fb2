"""LLaVA-1.5: ``<image>`` runs on the CLIP patch grid (24x24 for 336 px), CLS token removed.

With ``vision_feature_select_strategy="default"`` the CLS feature is dropped, so an image yields
``(image_size / patch_size)^2`` tokens in row-major patch order; with ``"full"`` the CLS token leads
the run and is not part of the grid (rejected: only ``"default"`` checkpoints are supported).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from eagle_iad.errors import ConfigError
from eagle_iad.mllm.families.base import FamilyBase, ImageTokens, one_run_per_image


@dataclass(frozen=True)
class LlavaFamily(FamilyBase):
    """LLaVA-1.5 family knowledge (its processor has no video processor: the stock class loads)."""

    def grid_coverage(self, height: int, width: int) -> tuple[int, int, int, int] | None:
        # CLIP preprocessing: resize the shorter side, then centre-crop a square.
        side = min(height, width)
        x0, y0 = (width - side) // 2, (height - side) // 2
        return (x0, y0, x0 + side, y0 + side)

    def grids(self, config: Any, inputs: Any, n_images: int) -> list[tuple[int, int, int]]:
        if config.vision_feature_select_strategy != "default":
            raise ConfigError("only LLaVA checkpoints with vision_feature_select_strategy='default' are supported")
        side = int(config.vision_config.image_size) // int(config.vision_config.patch_size)
        return [(1, side, side)] * n_images

    def image_tokens(
        self, config: Any, processor: Any, inputs: Any, input_ids: Sequence[int], n_images: int
    ) -> list[ImageTokens]:
        # The chat template renders "<image>\n" per image, so runs are separated; counting tokens per
        # image (not runs) also stays right for a template that renders images back to back.
        return one_run_per_image(input_ids, self.image_token_id(config), self.grids(config, inputs, n_images))


LLAVA = LlavaFamily("llava", ("llava",))
