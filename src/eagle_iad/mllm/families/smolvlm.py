"""SmolVLM (``smolvlm``): Idefics3's tiling and ids (``idefics3.py``), its own processor class.

One image is the tiles plus the global view, exactly as Idefics3 writes them, so the span and the
grid come from :class:`~eagle_iad.mllm.families.idefics3.Idefics3Family`. What differs is loading:
SmolVLM's processor declares a video processor that needs torchvision, so without torchvision its
image-only subclass is loaded (:func:`~eagle_iad.mllm.families.base.image_only`), and that subclass
renders the chat template with the generic method: SmolVLM's override only adds the video
processor's frame-sampling defaults (``num_frames``, ``fps``), which need the absent video
processor. SmolVLM's processor imports ``num2words`` (the ``smolvlm`` extra). Small enough
(256M-2.2B) to answer on a CPU.
"""

from __future__ import annotations

from typing import Any

from transformers import SmolVLMProcessor

from eagle_iad.mllm.families.base import image_only
from eagle_iad.mllm.families.idefics3 import Idefics3Family


def _generic_chat_template(self: Any, conversation: Any, chat_template: str | None = None, **kwargs: Any) -> Any:
    """The generic template rendering, without the video processor's frame-sampling defaults."""
    from transformers.processing_utils import ProcessorMixin

    return ProcessorMixin.apply_chat_template(self, conversation, chat_template, **kwargs)


SmolVLMImageOnlyProcessor = image_only(SmolVLMProcessor, apply_chat_template=_generic_chat_template)

SMOLVLM = Idefics3Family("smolvlm", ("smolvlm",), SmolVLMImageOnlyProcessor)
