"""Model-family knowledge, one module per family (image-token runs, visual grid, processor loading).

Everything the generic transformers backend must not guess lives here: which token id marks image
tokens, how many tokens each image expands to and on which grid they lie, and how to load the
processor. A family is picked by the checkpoint's ``config.model_type``.
"""

from __future__ import annotations

from eagle_iad.errors import ConfigError
from eagle_iad.mllm.families.base import Family, ImageTokens, image_token_runs
from eagle_iad.mllm.families.gemma3 import GEMMA3
from eagle_iad.mllm.families.glm4v import GLM4V
from eagle_iad.mllm.families.idefics3 import IDEFICS3
from eagle_iad.mllm.families.internvl import INTERNVL
from eagle_iad.mllm.families.llava import LLAVA
from eagle_iad.mllm.families.llava_next import LLAVA_NEXT, LLAVA_ONEVISION
from eagle_iad.mllm.families.minicpmv import MINICPMV4_6, MINICPMV4_7
from eagle_iad.mllm.families.qwen2_vl import QWEN2_5_VL, QWEN2_VL
from eagle_iad.mllm.families.qwen3_vl import QWEN3_VL
from eagle_iad.mllm.families.smolvlm import SMOLVLM

FAMILIES: tuple[Family, ...] = (
    QWEN2_5_VL, QWEN2_VL, QWEN3_VL, GLM4V, LLAVA, LLAVA_NEXT, LLAVA_ONEVISION, INTERNVL, IDEFICS3, SMOLVLM, GEMMA3,
    MINICPMV4_6, MINICPMV4_7,
)  # fmt: skip


def family_for(model_type: str) -> Family:
    """The family handling ``model_type`` (``config.model_type`` of the checkpoint)."""
    for family in FAMILIES:
        if model_type in family.model_types:
            return family
    known = ", ".join(t for f in FAMILIES for t in f.model_types)
    raise ConfigError(f"model type {model_type!r} is not supported by the hf backend (supported: {known})")


__all__ = ["FAMILIES", "Family", "ImageTokens", "family_for", "image_token_runs"]
