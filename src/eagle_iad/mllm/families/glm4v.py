"""GLM-4V (GLM-4.1V / GLM-4.5V-style ``glm4v`` checkpoints): Qwen2-VL's image layout with its own markers.

GLM-4V's processor and vision merger follow Qwen2-VL's (``qwen2_vl.py``): 14 px patches on an
``image_grid_thw`` grid, 2x2 merged into ``t * h/2 * w/2`` language tokens in row-major order, one
run of ``<|image|>`` between ``<|begin_of_image|>`` and ``<|end_of_image|>`` per image. Its language
model uses a partial rotary embedding (half of each head), which CAAS does not care about: it scales
logits after the keys are rotated.
"""

from __future__ import annotations

from transformers import Glm4vProcessor

from eagle_iad.mllm.families.base import image_only
from eagle_iad.mllm.families.qwen2_vl import QwenVLFamily

Glm4vImageOnlyProcessor = image_only(Glm4vProcessor)

#: GLM-4.1V-Thinking / GLM-4.5V templates reason first unless ``enable_thinking`` is off (an
#: inspection's answer must be its first tokens); templates without the switch ignore it.
GLM4V = QwenVLFamily("glm4v", ("glm4v",), Glm4vImageOnlyProcessor, {"enable_thinking": False})
