"""Qwen2-VL and Qwen2.5-VL: ``<|image_pad|>`` runs, ``image_grid_thw`` with 2x2 spatial merge.

The processor cuts an image into 14 px patches on a ``(t, h, w)`` grid (``image_grid_thw``), and the
vision merger fuses each 2x2 block into one language token, in row-major order of the merged grid,
so an image yields ``t * h/2 * w/2`` tokens laid out on ``(t, h/2, w/2)``.

transformers 5's Qwen processors declare a video processor, which needs torchvision. An inspection
tool never sends video, and torchvision must not be required, so without torchvision we load
:class:`QwenImageOnlyProcessor` / :class:`Qwen25ImageOnlyProcessor`: subclasses of the real
processors with the video attribute left out; all image and text handling is the real class's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from transformers import Qwen2_5_VLProcessor, Qwen2VLProcessor

from eagle_iad.mllm.families.base import ImageTokens, one_run_per_image


class QwenImageOnlyProcessor(Qwen2VLProcessor):  # type: ignore[misc]
    """Qwen2-VL processor without the (torchvision-only) video processor."""

    def __init__(self, image_processor: Any = None, tokenizer: Any = None, chat_template: Any = None, **kwargs: Any):
        super().__init__(image_processor, tokenizer, None, chat_template=chat_template, **kwargs)


class Qwen25ImageOnlyProcessor(Qwen2_5_VLProcessor):  # type: ignore[misc]
    """Qwen2.5-VL processor without the (torchvision-only) video processor."""

    def __init__(self, image_processor: Any = None, tokenizer: Any = None, chat_template: Any = None, **kwargs: Any):
        super().__init__(image_processor, tokenizer, None, chat_template=chat_template, **kwargs)


@dataclass(frozen=True)
class QwenVLFamily:
    """Qwen2-VL / Qwen2.5-VL family knowledge."""

    name: str
    model_types: tuple[str, ...]
    image_only_processor: Any

    def load_processor(self, path: str | Path, **kwargs: Any) -> Any:
        from transformers.utils import is_torchvision_available

        if is_torchvision_available():
            from transformers import AutoProcessor

            return AutoProcessor.from_pretrained(path, **kwargs)
        return self.image_only_processor.from_pretrained(path, backend="pil", **kwargs)

    def image_token_id(self, config: Any) -> int:
        return int(config.image_token_id)

    def grid_coverage(self, height: int, width: int) -> tuple[int, int, int, int] | None:
        return None  # Qwen resizes the whole image (to multiples of 28); nothing is cropped.

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
        # One <|image_pad|> run per image (between <|vision_start|> and <|vision_end|>), all on the grid.
        return one_run_per_image(input_ids, self.image_token_id(config), self.grids(config, inputs, n_images))


QWEN2_5_VL = QwenVLFamily("qwen2_5_vl", ("qwen2_5_vl",), Qwen25ImageOnlyProcessor)
QWEN2_VL = QwenVLFamily("qwen2_vl", ("qwen2_vl",), QwenImageOnlyProcessor)
