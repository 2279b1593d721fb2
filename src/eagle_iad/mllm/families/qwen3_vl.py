"""Qwen3-VL: Qwen2.5-VL's image layout with 16 px patches; "deepstack" features at the same positions.

What one image becomes in the input ids is Qwen2-VL's (``qwen2_vl.py``): one ``<|image_pad|>`` run
between ``<|vision_start|>`` and ``<|vision_end|>``, ``t * h/2 * w/2`` tokens on the merged
``image_grid_thw`` grid in row-major order; only the patch is 16 px instead of 14. Qwen3-VL also
adds intermediate vision-layer features ("deepstack") to the first decoder layers' hidden states
at exactly these positions, which changes nothing about where the image's tokens are, and its
language model (Qwen3: RMS-normed queries and keys) goes through the attention-function API, so
CAAS scales the normed, rotated keys' logits like any other family's.
"""

from __future__ import annotations

from transformers import Qwen3VLProcessor

from eagle_iad.mllm.families.base import image_only
from eagle_iad.mllm.families.qwen2_vl import QwenVLFamily

Qwen3VLImageOnlyProcessor = image_only(Qwen3VLProcessor)

#: Qwen3-VL's Thinking checkpoints reason first unless ``enable_thinking`` is off; Instruct ignores it.
QWEN3_VL = QwenVLFamily("qwen3_vl", ("qwen3_vl",), Qwen3VLImageOnlyProcessor, {"enable_thinking": False})
