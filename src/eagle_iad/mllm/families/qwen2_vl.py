"""Qwen2-VL and Qwen2.5-VL: ``<|image_pad|>`` runs, ``image_grid_thw`` with 2x2 spatial merge.

The processor cuts an image into 14 px patches on a ``(t, h, w)`` grid (``image_grid_thw``), and the
vision merger fuses each 2x2 block into one language token, in row-major order of the merged grid,
so an image yields ``t * h/2 * w/2`` tokens laid out on ``(t, h/2, w/2)``, one run between
``<|vision_start|>`` and ``<|vision_end|>``. Qwen3-VL and GLM-4V follow the same layout
(``qwen3_vl.py``, ``glm4v.py`` state only their differences).

The processors declare a video processor, which needs torchvision; an inspection tool never sends
video, so without torchvision the image-only subclass (:func:`~eagle_iad.mllm.families.base.image_only`)
is loaded. With torchvision the stock class is, with its default (fast) image processor.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from transformers import Qwen2_5_VLProcessor, Qwen2VLProcessor

from eagle_iad.mllm.families.base import FamilyBase, ImageTokens, image_only, one_run_per_image


@dataclass(frozen=True)
class QwenVLFamily(FamilyBase):
    """Qwen2-VL / Qwen2.5-VL family knowledge (and every family whose processor returns ``image_grid_thw``)."""

    def load_processor(self, path: str | Path, **kwargs: Any) -> Any:
        from transformers.utils import is_torchvision_available

        if is_torchvision_available():
            from transformers import AutoProcessor

            return AutoProcessor.from_pretrained(path, **kwargs)
        return self.image_only_processor.from_pretrained(path, backend="pil", **kwargs)

    def grids(self, config: Any, inputs: Any, n_images: int) -> list[tuple[int, int, int]]:
        merge = int(config.vision_config.spatial_merge_size)
        if n_images == 0:
            return []
        thw = inputs["image_grid_thw"].tolist()
        if len(thw) != n_images:
            raise ValueError(f"processor returned {len(thw)} image grids for {n_images} images")
        return [(int(t), int(h) // merge, int(w) // merge) for t, h, w in thw]

    def image_tokens(
        self, config: Any, processor: Any, inputs: Any, input_ids: Sequence[int], n_images: int
    ) -> list[ImageTokens]:
        # One image-pad run per image (between the vision markers), all on the grid.
        return one_run_per_image(input_ids, self.image_token_id(config), self.grids(config, inputs, n_images))


QwenImageOnlyProcessor = image_only(Qwen2VLProcessor)
Qwen25ImageOnlyProcessor = image_only(Qwen2_5_VLProcessor)

QWEN2_5_VL = QwenVLFamily("qwen2_5_vl", ("qwen2_5_vl",), Qwen25ImageOnlyProcessor)
QWEN2_VL = QwenVLFamily("qwen2_vl", ("qwen2_vl",), QwenImageOnlyProcessor)
