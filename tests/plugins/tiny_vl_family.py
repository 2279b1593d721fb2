"""An example MLLM family added from outside the package (README, "Adding an MLLM family").

A new checkpoint type, ``eagle_tiny_vl``, that transformers learns here too: its config and model are
Qwen2.5-VL's under another ``model_type`` (how a fine-tuned architecture with its own type is shipped),
so the family reuses the Qwen-VL token layout. ``EAGLE_PLUGINS=tiny_vl_family`` (this folder on
``PYTHONPATH``) makes ``--mllm hf:DIR`` load such a checkpoint. ``inherit_checkpoint_layout`` gives the new
class Qwen2.5-VL's checkpoint key renaming, which transformers finds only by the known class name or type:
without it the decoder's weights would not load (and the load would be refused, naming them).
"""

from __future__ import annotations

from transformers import AutoConfig, AutoModelForImageTextToText, Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

from eagle_iad.mllm.families import inherit_checkpoint_layout, register_family
from eagle_iad.mllm.families.qwen2_vl import Qwen25ImageOnlyProcessor, QwenVLFamily

MODEL_TYPE = "eagle_tiny_vl"


class TinyVLConfig(Qwen2_5_VLConfig):
    model_type = MODEL_TYPE


class TinyVLForConditionalGeneration(Qwen2_5_VLForConditionalGeneration):
    config_class = TinyVLConfig


AutoConfig.register(MODEL_TYPE, TinyVLConfig, exist_ok=True)
AutoModelForImageTextToText.register(TinyVLConfig, TinyVLForConditionalGeneration, exist_ok=True)
inherit_checkpoint_layout(TinyVLForConditionalGeneration)

TINY_VL = register_family(QwenVLFamily("tiny_vl", (MODEL_TYPE,), Qwen25ImageOnlyProcessor))
