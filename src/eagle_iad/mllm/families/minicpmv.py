"""MiniCPM-V 4.6 / 4.7 (the paper's fifth backbone family, native ``minicpmv4_6`` / ``minicpmv4_7``).

What one image becomes in the input ids (``<image_id>`` text first when ``use_image_id`` is on)::

    <image_id>N</image_id><image><image-token>*S0</image>          the source view
    <slice><image-token>*S1</slice><slice>...</slice>\\n ...        R rows of C slices (if sliced)

The image processor resizes the whole image to the source view (keeping roughly its aspect ratio,
both sides a multiple of ``4 * patch_size``) and, for images larger than ``scale_resolution``,
cuts an ``R x C`` grid of slices. Each view of ``h x w`` patches (``target_sizes``, in the same
order as the runs) becomes ``h*w / 16`` tokens in ``"16x"`` mode (a 2x2 window merge inside the
vision tower, then a 2x2 merger) or ``h*w / 4`` in ``"4x"`` mode (merger only); both merges keep
row-major order of the merged blocks, so a view's tokens lie on an ``h/4 x w/4`` (``h/2 x w/2``)
grid in row-major order.

**CAAS span**: every image token of the image (source view and slices; the markers are text).
**Grid**: the source view, a resize of the whole image (coverage ``None``). Runs are grouped into
images by their opening marker: a run after ``<image>`` starts an image, runs after ``<slice>``
belong to it — from ids only, checked against the processor's ``target_sizes``.

The language model is Qwen3.5, a hybrid: three linear-attention (Gated DeltaNet) layers to each
softmax-attention layer. Linear attention has no attention logits, so CAAS and attention capture
act on the attention layers only (the default band keeps its attention layers: docs/METHOD.md).
The processor reads its video processor's settings when built, so the image-only subclass builds
the real video processor class, which needs no torchvision until it processes a video.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from transformers import MiniCPMV4_6Processor, MiniCPMV4_7Processor
from transformers.models.minicpmv4_6.video_processing_minicpmv4_6 import MiniCPMV4_6VideoProcessor

from eagle_iad.errors import ConfigError
from eagle_iad.mllm.families.base import FamilyBase, ImageTokens, Range, image_only, image_token_runs


def source_view_images(
    input_ids: Sequence[int],
    image_token_id: int,
    image_start_id: int,
    slice_start_id: int,
    view_sizes: Sequence[tuple[int, int]],
    divisor: int,
) -> list[ImageTokens]:
    """Group image-token runs into images (``<image>`` opens one, ``<slice>`` runs join it); the
    source view (the opening run) is the grid. ``view_sizes``: each run's ``(h, w)`` in patches."""
    side = {16: 4, 4: 2}.get(divisor)
    if side is None:
        raise ConfigError(f"unknown MiniCPM-V token divisor {divisor} (expected 16 or 4)")
    runs = image_token_runs(input_ids, image_token_id)
    if len(runs) != len(view_sizes):
        raise ConfigError(f"{len(runs)} image-token runs for {len(view_sizes)} processed views")
    images: list[ImageTokens] = []
    pending: list[Range] = []
    grid: tuple[int, int, int] | None = None
    source: Range | None = None
    for (start, end), (height, width) in zip(runs, view_sizes, strict=True):
        if (height * width) // divisor != end - start:
            raise ConfigError(f"a run of {end - start} tokens for a {height}x{width}-patch view")
        marker = input_ids[start - 1] if start > 0 else None
        if marker == image_start_id:
            if grid is not None and source is not None:
                images.append(ImageTokens(tuple(pending), grid, (source,)))
            pending, grid, source = [(start, end)], (1, height // side, width // side), (start, end)
        elif marker == slice_start_id and grid is not None:
            pending.append((start, end))
        else:
            raise ConfigError("an image-token run that neither opens an image nor is one of its slices")
    if grid is not None and source is not None:
        images.append(ImageTokens(tuple(pending), grid, (source,)))
    return images


@dataclass(frozen=True)
class MiniCPMVFamily(FamilyBase):
    """MiniCPM-V 4.6 / 4.7 family knowledge (see the module docstring)."""

    def image_tokens(
        self, config: Any, processor: Any, inputs: Any, input_ids: Sequence[int], n_images: int
    ) -> list[ImageTokens]:
        if n_images == 0:
            return []
        tokenizer = processor.tokenizer
        starts = [tokenizer.convert_tokens_to_ids(processor.image_start_token)]
        starts.append(tokenizer.convert_tokens_to_ids(processor.slice_start_token))
        sizes = [(int(h), int(w)) for h, w in inputs["target_sizes"].tolist()]
        divisor = int(processor.image_token_divisor)
        return source_view_images(input_ids, self.image_token_id(config), starts[0], starts[1], sizes, divisor)


MiniCPMV4_6ImageOnlyProcessor = image_only(MiniCPMV4_6Processor, MiniCPMV4_6VideoProcessor)
MiniCPMV4_7ImageOnlyProcessor = image_only(MiniCPMV4_7Processor, MiniCPMV4_6VideoProcessor)

#: Qwen3.5's template thinks first unless told not to: an inspection's answer must be its first tokens.
NO_THINKING = {"enable_thinking": False}
MINICPMV4_6 = MiniCPMVFamily("minicpmv4_6", ("minicpmv4_6",), MiniCPMV4_6ImageOnlyProcessor, NO_THINKING)
MINICPMV4_7 = MiniCPMVFamily("minicpmv4_7", ("minicpmv4_7",), MiniCPMV4_7ImageOnlyProcessor, NO_THINKING)
