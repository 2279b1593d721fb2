"""Model-family knowledge, one module per family (image-token runs, visual grid, processor loading).

Everything the generic transformers backend must not guess lives here: which token id marks image
tokens, how many tokens each image expands to and on which grid they lie, and how to load the
processor. A family is picked by the checkpoint's ``config.model_type``.

``FAMILIES`` is a :class:`~eagle_iad.registry.Registry`: :func:`register_family` adds one, from this package
or from a plugin module named in ``EAGLE_PLUGINS`` (README, "Adding an MLLM family"), as ``@threshold_rule``
adds a rule, so a family for a new checkpoint needs no change here.
"""

from __future__ import annotations

from typing import TypeVar

from eagle_iad.errors import ConfigError
from eagle_iad.mllm.families.base import Family, ImageTokens, image_token_runs, inherit_checkpoint_layout
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
from eagle_iad.registry import PLUGINS_ENV, Registry

#: Every MLLM family by name, built-in ones first; :func:`register_family` adds one.
FAMILIES: Registry[Family] = Registry("MLLM family")

_F = TypeVar("_F", bound=Family)


def register_family(family: _F) -> _F:
    """Add ``family`` under its name (a later family of the same name replaces it) and return it.

    A family registered later is asked first for a model type, so a plugin's family can also take over a
    checkpoint type a built-in family handles (a variant whose chat template or token layout differs). One
    registered again under a name already there is moved to the front as well (it is the latest), not left
    in the old one's place behind families registered since.
    """
    FAMILIES.remove(family.name)
    FAMILIES.add(family.name, family)
    return family


for _family in (
    QWEN2_5_VL, QWEN2_VL, QWEN3_VL, GLM4V, LLAVA, LLAVA_NEXT, LLAVA_ONEVISION, INTERNVL, IDEFICS3, SMOLVLM, GEMMA3,
    MINICPMV4_6, MINICPMV4_7,
):  # fmt: skip
    register_family(_family)


def family_for(model_type: str) -> Family:
    """The family handling ``model_type`` (``config.model_type`` of the checkpoint), the latest registered first."""
    for name in reversed(FAMILIES.names()):
        family = FAMILIES.get(name)
        if model_type in family.model_types:
            return family
    known = ", ".join(t for name in FAMILIES for t in FAMILIES.get(name).model_types)
    raise ConfigError(
        f"model type {model_type!r} is not supported by the hf backend (supported: {known}; a plugin's family? "
        f"load it with {PLUGINS_ENV}=module)"
    )


__all__ = [
    "FAMILIES",
    "Family",
    "ImageTokens",
    "family_for",
    "image_token_runs",
    "inherit_checkpoint_layout",
    "register_family",
]
