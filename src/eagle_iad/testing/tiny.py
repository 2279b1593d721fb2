"""Tiny randomly initialised MLLMs built from REAL transformers configs (docs/METHOD.md).

No MLLM weights are reachable here, so tests build small random models of the real architectures
(every family of :mod:`eagle_iad.mllm.families`), with a locally built byte-level tokenizer that carries the family's
special tokens, the family's real chat template and the real processor classes, and save them with
``save_pretrained``. The backend then loads them *by local path*, so the exact code path used with
real checkpoints (config dispatch, processor, chat template, image-token expansion, generation,
attention dispatch) runs in CI in seconds on a CPU.

``python -m eagle_iad.testing.tiny FAMILY OUT`` builds one for a person who wants to try the ``--mllm``
commands on a machine without MLLM weights (docs/MLLM.md, "Trying the CLI without weights"). It says,
and leaves a note in the folder saying, that the model's answers are random noise.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from eagle_iad.atomic import new_file_mode, new_folder_mode
from eagle_iad.mllm.base import RANDOM_MODEL_NOTE

#: Qwen2-VL / Qwen2.5-VL chat template as published with the Instruct checkpoints.
QWEN2_VL_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}Picture {{ image_count.value }}: "
    "{% endif %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

#: llava-hf/llava-1.5 chat template (images first, then text, "USER: ... ASSISTANT:").
LLAVA_CHAT_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] != 'system' %}{{ message['role'].upper() + ': '}}{% endif %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}{{ '<image>\n' }}{% endfor %}"
    "{% if message['role'] != 'assistant' %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}{{ content['text'] + ' '}}"
    "{% endfor %}{% else %}{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}"
    "{{ content['text'] + ' '}}{% endfor %}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}"
)

#: HuggingFaceM4/Idefics3-8B-Llama3 chat template ("User:<image>...<end_of_utterance>\nAssistant:").
IDEFICS3_CHAT_TEMPLATE = (
    "<|begin_of_text|>{% for message in messages %}{{message['role'].capitalize()}}"
    "{% if message['content'][0]['type'] == 'image' %}{{':'}}{% else %}{{': '}}{% endif %}"
    "{% for line in message['content'] %}{% if line['type'] == 'text' %}{{line['text']}}"
    "{% elif line['type'] == 'image' %}{{ '<image>' }}{% endif %}{% endfor %}<end_of_utterance>\n{% endfor %}"
    "{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)

#: HuggingFaceTB/SmolVLM-*-Instruct chat template (Idefics3's, with a ChatML <|im_start|> prefix).
SMOLVLM_CHAT_TEMPLATE = "<|im_start|>" + IDEFICS3_CHAT_TEMPLATE.removeprefix("<|begin_of_text|>").replace(
    "message['role'].capitalize()", "message['role'] | capitalize"
)

#: llava-hf/llava-onevision-qwen2-*-ov-hf chat template (images, then text, in ChatML turns).
LLAVA_ONEVISION_CHAT_TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + ' '}}"
    "{# Render all images first #}{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}"
    "{{ '<image>' }}{% endfor %}"
    "{# Render all video then #}{% for content in message['content'] | selectattr('type', 'equalto', 'video') %}"
    "{{ '<video>' }}{% endfor %}"
    "{# Render all text next #}{% if message['role'] != 'assistant' %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}{{ '\n' + content['text'] }}"
    "{% endfor %}{% else %}{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}"
    "{% generation %}{{ '\n' + content['text'] }}{% endgeneration %}{% endfor %}{% endif %}{{'<|im_end|>'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

#: OpenGVLab/InternVL3-*-hf chat template (ChatML, "<IMG_CONTEXT>\n" per image, items in order).
INTERNVL_CHAT_TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n'}}"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for content in message['content'] %}{% if content['type'] == 'image' %}{{ '<IMG_CONTEXT>\n' }}"
    "{% elif content['type'] == 'video' %}{{ '<video>\n' }}{% elif content['type'] == 'text' %}{{ content['text'] }}"
    "{% endif %}{% endfor %}{% endif %}{{'<|im_end|>\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{'<|im_start|>assistant\n' }}{% endif %}"
)

#: zai-org/GLM-4.1V-9B-Thinking chat template, reduced to what a one-turn image-text prompt renders
#: ("[gMASK]<sop><|user|>\n<|begin_of_image|><|image|><|end_of_image|>...<|assistant|>\n").
GLM4V_CHAT_TEMPLATE = (
    "[gMASK]<sop>{% for message in messages %}<|{{ message['role'] }}|>\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}{% for item in message['content'] %}"
    "{% if item['type'] == 'image' %}<|begin_of_image|><|image|><|end_of_image|>"
    "{% elif item['type'] == 'text' %}{{ item['text'] }}{% endif %}{% endfor %}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)

#: google/gemma-3-*-it chat template, reduced to user turns of images and text ("<start_of_image>" per
#: image, which the processor expands; "<start_of_turn>model\n" to answer).
GEMMA3_CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "<start_of_turn>{{ 'model' if message['role'] == 'assistant' else message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] | trim }}{% else %}"
    "{% for item in message['content'] %}{% if item['type'] == 'image' %}{{ '<start_of_image>' }}"
    "{% elif item['type'] == 'text' %}{{ item['text'] | trim }}{% endif %}{% endfor %}{% endif %}"
    "<end_of_turn>\n{% endfor %}{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}"
)

#: openbmb/MiniCPM-V-4.6 style ChatML: each image is the tokenizer's image token, which the processor
#: expands into the source view and its slices; ``enable_thinking=False`` writes Qwen3.5's empty
#: thinking block, so the answer starts at once.
MINICPMV_CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}{% for item in message['content'] %}"
    "{% if item['type'] == 'image' %}<|image_pad|>{% elif item['type'] == 'text' %}{{ item['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n"
    "{% if enable_thinking is defined and enable_thinking is false %}<think>\n\n</think>\n\n{% endif %}{% endif %}"
)

QWEN_SPECIALS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
]
LLAVA_SPECIALS = ["<unk>", "<s>", "</s>", "<image>", "<pad>"]
IDEFICS3_SPECIALS = [
    "<|begin_of_text|>",
    "<|end_of_text|>",
    "<fake_token_around_image>",
    "<image>",
    "<end_of_utterance>",
    "<global-img>",
    *(f"<row_{i}_col_{j}>" for i in range(1, 7) for j in range(1, 7)),
]
INTERNVL_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<img>", "</img>", "<IMG_CONTEXT>", "<video>"]
SMOLVLM_SPECIALS = [
    "<|im_start|>",
    "<|im_end|>",
    *IDEFICS3_SPECIALS[2:],
]
LLAVA_ONEVISION_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<image>", "<video>"]
GLM4V_SPECIALS = [
    "<|endoftext|>",
    "[gMASK]",
    "<sop>",
    "<|user|>",
    "<|assistant|>",
    "<|system|>",
    "<|begin_of_image|>",
    "<|end_of_image|>",
    "<|image|>",
    "<|begin_of_video|>",
    "<|end_of_video|>",
    "<|video|>",
]
GEMMA3_SPECIALS = [
    "<pad>",
    "<eos>",
    "<bos>",
    "<start_of_turn>",
    "<end_of_turn>",
    "<start_of_image>",
    "<end_of_image>",
    "<image_soft_token>",
]
MINICPMV_ROLES = {
    "image_token": "<|image_pad|>",
    "video_token": "<|video_pad|>",
    "image_start_token": "<image>",
    "image_end_token": "</image>",
    "slice_start_token": "<slice>",
    "slice_end_token": "</slice>",
    "image_id_start_token": "<image_id>",
    "image_id_end_token": "</image_id>",
}
MINICPMV_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", *MINICPMV_ROLES.values()]


def _training_corpus() -> list[str]:
    from dataclasses import asdict

    from eagle_iad.tgps.prompt import ANOMALY_QUESTION, PromptTemplates

    templates = PromptTemplates()
    texts = [value for value in asdict(templates).values() if isinstance(value, str)]
    texts.append(templates.question_list([ANOMALY_QUESTION]))
    texts += ["system\nYou are a helpful assistant.", "user\n", "assistant\n", "USER: ", "ASSISTANT:"]
    texts += ["User:", "Assistant:"]
    return texts * 4


def _byte_tokenizer(specials: list[str], **special_roles: Any) -> Any:
    """A small byte-level BPE trained on the prompt texts, plus the family's special tokens.

    Byte-level, so it encodes any text and decodes it back exactly; trained on the default prompt
    strings so prompts stay short (fast tests) — the merges are irrelevant to what is tested.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=512,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(_training_corpus(), trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, **special_roles)
    tokenizer.add_special_tokens({"additional_special_tokens": specials})
    return tokenizer


def _save(model: torch.nn.Module, processor: Any, out_dir: Path, processor_class: str | None = None) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)  # type: ignore[operator]
    processor.save_pretrained(out_dir)
    if processor_class is not None:
        # The image-only subclass is an implementation detail; the checkpoint names the real class.
        path = out_dir / "processor_config.json"
        data = json.loads(path.read_text(encoding="utf-8"))
        data["processor_class"] = processor_class
        path.write_text(json.dumps(data, indent=2), encoding="utf-8")
    return out_dir


def _heads(hidden: int) -> int:
    """Attention heads for a text width: 4 at the test width 64 (head dim 16), head dim 64 above 256."""
    if hidden % 16:
        raise ValueError(f"hidden size must be a multiple of 16, got {hidden}")
    return 4 if hidden <= 256 else hidden // 64


def _qwen_text(vocab: int, layers: int, hidden: int = 64) -> dict[str, Any]:
    heads = _heads(hidden)
    half = hidden // heads // 2  # M-RoPE sections (t, h, w) split half the head dim, like [16, 24, 24] of 128
    section = [half // 4, half * 3 // 8, half - half // 4 - half * 3 // 8]
    return {
        "vocab_size": vocab,
        "hidden_size": hidden,
        "intermediate_size": 2 * hidden,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "num_key_value_heads": heads // 2,
        "max_position_embeddings": 1024,
        "rope_parameters": {"rope_type": "default", "mrope_section": section, "rope_theta": 10000.0},
        "bos_token_id": 0,
        "eos_token_id": 2,
        "pad_token_id": 0,
    }


def _qwen_processor(processor_cls: Any, tokenizer: Any) -> Any:
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    image_processor = Qwen2VLImageProcessorPil(
        min_pixels=28 * 28, max_pixels=56 * 56 * 2, patch_size=14, merge_size=2, temporal_patch_size=2
    )
    return processor_cls(image_processor=image_processor, tokenizer=tokenizer, chat_template=QWEN2_VL_CHAT_TEMPLATE)


def build_tiny_qwen2_5_vl(out_dir: Path, layers: int = 4, seed: int = 0, hidden: int = 64) -> Path:
    """A 4-layer Qwen2.5-VL (Qwen2_5_VLConfig) with a 2-block vision tower, saved to ``out_dir``.

    ``hidden``/``layers`` make a larger random model of the same architecture (benchmarks, where a
    64-wide model would time nothing but Python overhead).
    """
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    from eagle_iad.mllm.families.qwen2_vl import Qwen25ImageOnlyProcessor

    tokenizer = _byte_tokenizer(QWEN_SPECIALS, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in QWEN_SPECIALS}
    config = Qwen2_5_VLConfig(
        text_config=_qwen_text(len(tokenizer), layers, hidden) | {"eos_token_id": ids["<|im_end|>"]},
        vision_config={
            "depth": 2,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_heads": 2,
            "out_hidden_size": hidden,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "window_size": 56,
            "fullatt_block_indexes": [1],
        },
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
    )
    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration(config).eval()
    return _save(model, _qwen_processor(Qwen25ImageOnlyProcessor, tokenizer), out_dir, "Qwen2_5_VLProcessor")


def build_tiny_qwen2_vl(out_dir: Path, layers: int = 4, seed: int = 0) -> Path:
    """A 4-layer Qwen2-VL (Qwen2VLConfig) with a 2-block vision tower, saved to ``out_dir``."""
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration

    from eagle_iad.mllm.families.qwen2_vl import QwenImageOnlyProcessor

    tokenizer = _byte_tokenizer(QWEN_SPECIALS, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in QWEN_SPECIALS}
    config = Qwen2VLConfig(
        text_config=_qwen_text(len(tokenizer), layers) | {"eos_token_id": ids["<|im_end|>"]},
        vision_config={
            "depth": 2,
            "embed_dim": 32,
            "hidden_size": 64,
            "mlp_ratio": 2,
            "num_heads": 2,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
        },
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
    )
    torch.manual_seed(seed)
    model = Qwen2VLForConditionalGeneration(config).eval()
    return _save(model, _qwen_processor(QwenImageOnlyProcessor, tokenizer), out_dir, "Qwen2VLProcessor")


def build_tiny_llava(out_dir: Path, layers: int = 4, seed: int = 0, image_size: int = 56, hidden: int = 64) -> Path:
    """A 4-layer LLaVA-1.5 (LlavaConfig: CLIP vision + Llama text), 4x4 patch grid for 56 px; ``hidden``: text width."""
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    tokenizer = _byte_tokenizer(LLAVA_SPECIALS, unk_token="<unk>", bos_token="<s>", eos_token="</s>", pad_token="<pad>")
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in LLAVA_SPECIALS}
    config = LlavaConfig(
        vision_config=CLIPVisionConfig(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            image_size=image_size,
            patch_size=14,
            projection_dim=32,
        ),
        text_config=LlamaConfig(
            vocab_size=len(tokenizer),
            hidden_size=hidden,
            intermediate_size=2 * hidden,
            num_hidden_layers=layers,
            num_attention_heads=_heads(hidden),
            num_key_value_heads=_heads(hidden) // 2,
            max_position_embeddings=1024,
            bos_token_id=ids["<s>"],
            eos_token_id=ids["</s>"],
            pad_token_id=ids["<pad>"],
        ),
        image_token_index=ids["<image>"],
        vision_feature_layer=-2,
        vision_feature_select_strategy="default",
    )
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(config).eval()
    image_processor = CLIPImageProcessorPil(
        size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size}
    )
    processor = LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=14,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        chat_template=LLAVA_CHAT_TEMPLATE,
    )
    return _save(model, processor, out_dir)


def _llama_text(vocab: int, layers: int, ids: dict[str, int], bos: str, eos: str, pad: str) -> dict[str, Any]:
    return {
        "model_type": "llama",
        "vocab_size": vocab,
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": layers,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 1024,
        "bos_token_id": ids[bos],
        "eos_token_id": ids[eos],
        "pad_token_id": ids[pad],
    }


def build_tiny_idefics3(out_dir: Path, layers: int = 4, seed: int = 0) -> Path:
    """A 4-layer Idefics3 (Idefics3Config: SigLIP-style vision + Llama text) with image splitting.

    56 px tiles, 14 px patches and scale factor 2 give ``image_seq_len = 4`` (a 2x2 global grid);
    with ``longest_edge = 112`` a 56x84 image is split into 2x2 tiles plus the global view, so one
    image is 5 separate ``<image>`` runs with separators between them.
    """
    from transformers import Idefics3Config, Idefics3ForConditionalGeneration, Idefics3Processor
    from transformers.models.idefics3.image_processing_pil_idefics3 import Idefics3ImageProcessorPil

    return _build_idefics_like(
        out_dir, layers, seed, IDEFICS3_SPECIALS, IDEFICS3_CHAT_TEMPLATE, ("<|begin_of_text|>", "<|end_of_text|>"),
        (Idefics3Config, Idefics3ForConditionalGeneration, Idefics3ImageProcessorPil, Idefics3Processor), None,
    )  # fmt: skip


def _build_idefics_like(
    out_dir: Path,
    layers: int,
    seed: int,
    specials: list[str],
    chat_template: str,
    bos_pad: tuple[str, str],
    classes: tuple[Any, Any, Any, Any],
    processor_class_name: str | None,
) -> Path:
    """Idefics3 and SmolVLM share the architecture and the tiling; only classes and special tokens differ."""
    config_cls, model_cls, image_processor_cls, processor_cls = classes
    bos, pad = bos_pad
    tokenizer = _byte_tokenizer(specials, bos_token=bos, eos_token="<end_of_utterance>", pad_token=pad)
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in specials}
    config = config_cls(
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "image_size": 56,
            "patch_size": 14,
        },
        text_config=_llama_text(len(tokenizer), layers, ids, bos=bos, eos="<end_of_utterance>", pad=pad),
        scale_factor=2,
        image_token_id=ids["<image>"],
        pad_token_id=ids[pad],
    )
    torch.manual_seed(seed)
    model = model_cls(config).eval()
    image_processor = image_processor_cls(
        size={"longest_edge": 112}, max_image_size={"longest_edge": 56}, do_image_splitting=True
    )
    processor = processor_cls(
        image_processor=image_processor, tokenizer=tokenizer, image_seq_len=4, chat_template=chat_template
    )
    return _save(model, processor, out_dir, processor_class_name)


def build_tiny_llava_next(out_dir: Path, layers: int = 4, seed: int = 0) -> Path:
    """A 4-layer LLaVA-NeXT (LlavaNextConfig: CLIP vision + Llama text, llava-v1.6-vicuna style), anyres.

    56 px CLIP input, 14 px patches: a 4x4 base view (CLS dropped, ``"default"``); pinpoints up to
    112x112 add unpadded tiles with a newline per row. The vicuna checkpoints share LLaVA-1.5's
    chat template (images first, "USER: ... ASSISTANT:").
    """
    from transformers import (
        CLIPVisionConfig,
        LlamaConfig,
        LlavaNextConfig,
        LlavaNextForConditionalGeneration,
        LlavaNextProcessor,
    )
    from transformers.models.llava_next.image_processing_pil_llava_next import LlavaNextImageProcessorPil

    tokenizer = _byte_tokenizer(LLAVA_SPECIALS, unk_token="<unk>", bos_token="<s>", eos_token="</s>", pad_token="<pad>")
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in LLAVA_SPECIALS}
    pinpoints = [[56, 56], [56, 112], [112, 56], [112, 112]]
    config = LlavaNextConfig(
        vision_config=CLIPVisionConfig(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            image_size=56,
            patch_size=14,
            projection_dim=32,
        ),
        text_config=LlamaConfig(
            **{
                key: value
                for key, value in _llama_text(len(tokenizer), layers, ids, bos="<s>", eos="</s>", pad="<pad>").items()
                if key != "model_type"
            }
        ),
        image_token_index=ids["<image>"],
        vision_feature_layer=-2,
        vision_feature_select_strategy="default",
        image_grid_pinpoints=pinpoints,
    )
    torch.manual_seed(seed)
    model = LlavaNextForConditionalGeneration(config).eval()
    image_processor = LlavaNextImageProcessorPil(
        size={"shortest_edge": 56}, crop_size={"height": 56, "width": 56}, image_grid_pinpoints=pinpoints
    )
    processor = LlavaNextProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=14,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        chat_template=LLAVA_CHAT_TEMPLATE,
    )
    return _save(model, processor, out_dir)


def build_tiny_llava_onevision(out_dir: Path, layers: int = 4, seed: int = 0) -> Path:
    """A 4-layer LLaVA-OneVision (LlavaOnevisionConfig: SigLIP vision + Qwen2 text), anyres tiling.

    56 px vision input with 14 px patches: a 4x4 base view (16 tokens); anyres pinpoints up to
    112x112 give a single 56x84 image base view + unpadded tiles + newlines, and each image of a
    multi-image prompt its base view + one newline (17 tokens), back to back in one run.
    """
    from transformers import LlavaOnevisionConfig, LlavaOnevisionForConditionalGeneration
    from transformers.models.llava_onevision.image_processing_pil_llava_onevision import (
        LlavaOnevisionImageProcessorPil,
    )

    from eagle_iad.mllm.families.llava_next import LlavaOnevisionImageOnlyProcessor

    tokenizer = _byte_tokenizer(LLAVA_ONEVISION_SPECIALS, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in LLAVA_ONEVISION_SPECIALS}
    pinpoints = [[56, 56], [56, 112], [112, 56], [112, 112]]
    config = LlavaOnevisionConfig(
        vision_config={
            "model_type": "siglip_vision_model",
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "image_size": 56,
            "patch_size": 14,
            "vision_use_head": False,
        },
        text_config=_qwen_text(len(tokenizer), layers)
        | {"model_type": "qwen2", "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0}}
        | {"eos_token_id": ids["<|im_end|>"], "pad_token_id": ids["<|endoftext|>"]},
        image_token_index=ids["<image>"],
        video_token_index=ids["<video>"],
        vision_feature_select_strategy="full",
        vision_feature_layer=-1,
        vision_aspect_ratio="anyres_max_9",
        image_grid_pinpoints=pinpoints,
    )
    torch.manual_seed(seed)
    model = LlavaOnevisionForConditionalGeneration(config).eval()
    image_processor = LlavaOnevisionImageProcessorPil(size={"height": 56, "width": 56}, image_grid_pinpoints=pinpoints)
    processor = LlavaOnevisionImageOnlyProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        num_image_tokens=16,
        vision_feature_select_strategy="full",
        chat_template=LLAVA_ONEVISION_CHAT_TEMPLATE,
        vision_aspect_ratio="anyres_max_9",
    )
    return _save(model, processor, out_dir, "LlavaOnevisionProcessor")


def build_tiny_internvl(out_dir: Path, layers: int = 4, seed: int = 0) -> Path:
    """A 4-layer InternVL (InternVLConfig: InternViT-style vision + Qwen2 text), dynamic tiles + thumbnail.

    56 px tiles, 14 px patches and pixel shuffle 0.5 give ``image_seq_length = 4`` (2x2 grid);
    with ``max_patches = 4`` a 56x84 image becomes a tile layout plus the thumbnail, one run.
    """
    from transformers import InternVLConfig, InternVLForConditionalGeneration
    from transformers.models.got_ocr2.image_processing_pil_got_ocr2 import GotOcr2ImageProcessorPil

    from eagle_iad.mllm.families.internvl import InternVLImageOnlyProcessor

    roles = {"start_image_token": "<img>", "end_image_token": "</img>", "context_image_token": "<IMG_CONTEXT>"}
    tokenizer = _byte_tokenizer(
        INTERNVL_SPECIALS,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        extra_special_tokens=roles | {"video_token": "<video>"},
    )
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in INTERNVL_SPECIALS}
    config = InternVLConfig(
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "image_size": [56, 56],
            "patch_size": [14, 14],
        },
        text_config=_qwen_text(len(tokenizer), layers)
        | {"model_type": "qwen2", "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0}}
        | {"eos_token_id": ids["<|im_end|>"], "pad_token_id": ids["<|endoftext|>"]},
        image_token_id=ids["<IMG_CONTEXT>"],
        image_seq_length=4,
        downsample_ratio=0.5,
        vision_feature_layer=-1,
        vision_feature_select_strategy="default",
    )
    torch.manual_seed(seed)
    model = InternVLForConditionalGeneration(config).eval()
    image_processor = GotOcr2ImageProcessorPil(
        size={"height": 56, "width": 56}, crop_to_patches=True, min_patches=1, max_patches=4
    )
    processor = InternVLImageOnlyProcessor(
        image_processor=image_processor, tokenizer=tokenizer, image_seq_length=4, chat_template=INTERNVL_CHAT_TEMPLATE
    )
    return _save(model, processor, out_dir, "InternVLProcessor")


def build_tiny_smolvlm(out_dir: Path, layers: int = 4, seed: int = 0) -> Path:
    """A 4-layer SmolVLM (SmolVLMConfig), same tiling as :func:`build_tiny_idefics3` (needs ``num2words``)."""
    from transformers import SmolVLMConfig, SmolVLMForConditionalGeneration
    from transformers.models.smolvlm.image_processing_pil_smolvlm import SmolVLMImageProcessorPil

    from eagle_iad.mllm.families.smolvlm import SmolVLMImageOnlyProcessor

    return _build_idefics_like(
        out_dir, layers, seed, SMOLVLM_SPECIALS, SMOLVLM_CHAT_TEMPLATE, ("<|im_start|>", "<|im_end|>"),
        (SmolVLMConfig, SmolVLMForConditionalGeneration, SmolVLMImageProcessorPil, SmolVLMImageOnlyProcessor),
        "SmolVLMProcessor",
    )  # fmt: skip


def build_tiny_qwen3_vl(out_dir: Path, layers: int = 4, seed: int = 0, hidden: int = 64) -> Path:
    """A 4-layer Qwen3-VL (Qwen3VLConfig: 16 px patches, deepstack into decoder layers 0 and 1).

    A 56x84 query resizes to 64x96 (multiples of 32), a 4x6 patch grid merged to 2x3 = 6 tokens.
    """
    from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    from eagle_iad.mllm.families.qwen3_vl import Qwen3VLImageOnlyProcessor

    tokenizer = _byte_tokenizer(QWEN_SPECIALS, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in QWEN_SPECIALS}
    text = _qwen_text(len(tokenizer), layers, hidden)
    text["rope_parameters"] |= {"mrope_interleaved": True}
    config = Qwen3VLConfig(
        text_config=text | {"head_dim": hidden // _heads(hidden), "eos_token_id": ids["<|im_end|>"]},
        vision_config={
            "depth": 2,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_heads": 2,
            "out_hidden_size": hidden,
            "patch_size": 16,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "num_position_embeddings": 16,
            "deepstack_visual_indexes": [0, 1],
        },
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
    )
    torch.manual_seed(seed)
    model = Qwen3VLForConditionalGeneration(config).eval()
    image_processor = Qwen2VLImageProcessorPil(
        min_pixels=32 * 32, max_pixels=64 * 96, patch_size=16, merge_size=2, temporal_patch_size=2
    )
    processor = Qwen3VLImageOnlyProcessor(
        image_processor=image_processor, tokenizer=tokenizer, chat_template=QWEN2_VL_CHAT_TEMPLATE
    )
    return _save(model, processor, out_dir, "Qwen3VLProcessor")


def build_tiny_glm4v(out_dir: Path, layers: int = 4, seed: int = 0) -> Path:
    """A 4-layer GLM-4V (Glm4vConfig: Qwen2-VL-style vision, GLM text with half-head M-RoPE).

    The processor's pixel limits count both temporal frames of a still image (``2 * h * w``), so a
    56x84 query keeps its size: a 4x6 patch grid merged to 2x3 = 6 tokens.
    """
    from transformers import Glm4vConfig, Glm4vForConditionalGeneration
    from transformers.models.glm4v.image_processing_pil_glm4v import Glm4vImageProcessorPil

    from eagle_iad.mllm.families.glm4v import Glm4vImageOnlyProcessor

    tokenizer = _byte_tokenizer(GLM4V_SPECIALS, eos_token="<|user|>", pad_token="<|endoftext|>")
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in GLM4V_SPECIALS}
    config = Glm4vConfig(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": layers,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "max_position_embeddings": 1024,
            # head dim 16, half rotary: 8 rotated dims = 4 frequencies split (t, h, w) as [8, 12, 12] of 32.
            "rope_parameters": {
                "rope_type": "default",
                "mrope_section": [1, 1, 2],
                "rope_theta": 10000.0,
                "partial_rotary_factor": 0.5,
            },
            "eos_token_id": ids["<|user|>"],
            "pad_token_id": ids["<|endoftext|>"],
        },
        vision_config={
            "depth": 2,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_heads": 2,
            "out_hidden_size": 64,
            "image_size": 28,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
        },
        image_token_id=ids["<|image|>"],
        video_token_id=ids["<|video|>"],
        image_start_token_id=ids["<|begin_of_image|>"],
        image_end_token_id=ids["<|end_of_image|>"],
        video_start_token_id=ids["<|begin_of_video|>"],
        video_end_token_id=ids["<|end_of_video|>"],
    )
    torch.manual_seed(seed)
    model = Glm4vForConditionalGeneration(config).eval()
    image_processor = Glm4vImageProcessorPil(
        size={"shortest_edge": 2 * 28 * 28, "longest_edge": 2 * 56 * 84},
        patch_size=14,
        merge_size=2,
        temporal_patch_size=2,
    )
    processor = Glm4vImageOnlyProcessor(
        image_processor=image_processor, tokenizer=tokenizer, chat_template=GLM4V_CHAT_TEMPLATE
    )
    return _save(model, processor, out_dir, "Glm4vProcessor")


def build_tiny_gemma3(out_dir: Path, layers: int = 4, seed: int = 0, sliding_window: int = 32) -> Path:
    """A 4-layer Gemma 3 (Gemma3Config: SigLIP vision, Gemma 3 text with sliding/full layers alternating).

    56 px SigLIP input, 14 px patches: a 4x4 patch grid pooled to ``mm_tokens_per_image = 4`` (2x2).
    The sliding window (32 keys) is shorter than the test prompts, so decoding evicts image keys
    from the sliding layers' caches: the case CAAS must shift its span for.
    """
    from transformers import Gemma3Config, Gemma3ForConditionalGeneration, Gemma3Processor
    from transformers.models.gemma3.image_processing_pil_gemma3 import Gemma3ImageProcessorPil

    roles = {"boi_token": "<start_of_image>", "eoi_token": "<end_of_image>", "image_token": "<image_soft_token>"}
    tokenizer = _byte_tokenizer(
        GEMMA3_SPECIALS, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>", extra_special_tokens=roles
    )
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in GEMMA3_SPECIALS}
    config = Gemma3Config(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": layers,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "head_dim": 16,
            "query_pre_attn_scalar": 16,
            "max_position_embeddings": 1024,
            "sliding_window": sliding_window,
            "sliding_window_pattern": 2,
            "eos_token_id": [ids["<eos>"], ids["<end_of_turn>"]],
            "pad_token_id": ids["<pad>"],
            "bos_token_id": ids["<bos>"],
        },
        vision_config={
            "model_type": "siglip_vision_model",
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "image_size": 56,
            "patch_size": 14,
            "vision_use_head": False,
        },
        mm_tokens_per_image=4,
        boi_token_index=ids["<start_of_image>"],
        eoi_token_index=ids["<end_of_image>"],
        image_token_index=ids["<image_soft_token>"],
    )
    torch.manual_seed(seed)
    model = Gemma3ForConditionalGeneration(config).eval()
    image_processor = Gemma3ImageProcessorPil(size={"height": 56, "width": 56})
    processor = Gemma3Processor(
        image_processor=image_processor, tokenizer=tokenizer, chat_template=GEMMA3_CHAT_TEMPLATE, image_seq_length=4
    )
    return _save(model, processor, out_dir)


def _build_minicpmv(out_dir: Path, layers: int, seed: int, version: str) -> Path:
    """MiniCPM-V 4.6 and 4.7 share the vision tower, the slicing and the Qwen3.5 hybrid text model."""
    import transformers
    from transformers.models.minicpmv4_6.image_processing_pil_minicpmv4_6 import MiniCPMV4_6ImageProcessorPil

    from eagle_iad.mllm.families import minicpmv

    config_cls = getattr(transformers, f"MiniCPMV{version}Config")
    model_cls = getattr(transformers, f"MiniCPMV{version}ForConditionalGeneration")
    processor_cls = getattr(minicpmv, f"MiniCPMV{version}ImageOnlyProcessor")
    tokenizer = _byte_tokenizer(
        MINICPMV_SPECIALS, eos_token="<|im_end|>", pad_token="<|endoftext|>", extra_special_tokens=MINICPMV_ROLES
    )
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in MINICPMV_SPECIALS}
    markers = {}
    if version == "4_7":  # 4.7's canvas M-RoPE places each view by its markers' ids
        markers = {
            f"{name}_id": ids[MINICPMV_ROLES[f"{name}_token"]]
            for name in ("image_start", "image_end", "slice_start", "slice_end")
        }
    config = config_cls(
        text_config={
            "model_type": "qwen3_5_text",
            "vocab_size": len(tokenizer),
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": layers,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "head_dim": 16,
            "max_position_embeddings": 1024,
            "linear_key_head_dim": 16,
            "linear_value_head_dim": 16,
            "linear_num_key_heads": 2,
            "linear_num_value_heads": 4,
            # Qwen3.5's pattern (three linear-attention layers per attention layer), at depth 4: every other.
            "layer_types": ["linear_attention", "full_attention"] * (layers // 2),
            "eos_token_id": ids["<|im_end|>"],
            "pad_token_id": ids["<|endoftext|>"],
        },
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "image_size": 56,
            "patch_size": 7,
        },
        insert_layer_id=0,
        image_size=56,
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        **markers,
    )
    torch.manual_seed(seed)
    model = model_cls(config).eval()
    # 7 px patches at a 56 px scale: the source view is 8x8 patches = 2x2 tokens ("16x"); a 56x84
    # image adds a 1x2 row of 8x8-patch slices.
    image_processor = MiniCPMV4_6ImageProcessorPil(scale_resolution=56, max_slice_nums=4, patch_size=7)
    processor = processor_cls(
        image_processor=image_processor, tokenizer=tokenizer, chat_template=MINICPMV_CHAT_TEMPLATE
    )
    return _save(model, processor, out_dir, f"MiniCPMV{version}Processor")


def build_tiny_minicpmv4_6(out_dir: Path, layers: int = 4, seed: int = 0) -> Path:
    """A 4-layer MiniCPM-V 4.6 (MiniCPMV4_6Config: SigLIP-style vision with window merger, Qwen3.5 text)."""
    return _build_minicpmv(out_dir, layers, seed, "4_6")


def build_tiny_minicpmv4_7(out_dir: Path, layers: int = 4, seed: int = 0) -> Path:
    """A 4-layer MiniCPM-V 4.7 (MiniCPMV4_7Config: 4.6's parts with canvas M-RoPE)."""
    return _build_minicpmv(out_dir, layers, seed, "4_7")


TINY_BUILDERS: dict[str, Callable[..., Path]] = {
    "qwen2_5_vl": build_tiny_qwen2_5_vl,
    "qwen2_vl": build_tiny_qwen2_vl,
    "llava": build_tiny_llava,
    "idefics3": build_tiny_idefics3,
    "smolvlm": build_tiny_smolvlm,
    "llava_next": build_tiny_llava_next,
    "llava_onevision": build_tiny_llava_onevision,
    "internvl": build_tiny_internvl,
    "qwen3_vl": build_tiny_qwen3_vl,
    "glm4v": build_tiny_glm4v,
    "gemma3": build_tiny_gemma3,
    "minicpmv4_6": build_tiny_minicpmv4_6,
    "minicpmv4_7": build_tiny_minicpmv4_7,
}


#: The note :func:`main` leaves in every folder it builds: the folder's own warning, whoever finds it; the
#: hf backend finds it too, and says so on load and in each reply (``random_test_model``).
NOTE_NAME = RANDOM_MODEL_NOTE
NOISE_WARNING = (
    "This is a TINY RANDOM {family} model built by eagle_iad.testing.tiny: its weights are random, so its "
    "answers are random noise. It exists to try the eagle commands and the MLLM code paths without real "
    "weights (and for tests); never read its answers as a verdict on an image."
)


def follow_umask(folder: Path) -> None:
    """Give every file and folder under ``folder`` (and itself) the mode the umask gives a new one, as every eagle
    output has (:mod:`eagle_iad.atomic`).

    Why: safetensors writes ``model.safetensors`` through a temporary file (0600) while the rest came out 0644, so
    one user's model could not be loaded by another whom the umask lets read the folder.
    """
    folder.chmod(new_folder_mode())
    for path in folder.rglob("*"):
        path.chmod(new_folder_mode() if path.is_dir() else new_file_mode())


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m eagle_iad.testing.tiny FAMILY OUT``: build one tiny random model into a new folder.

    Refuses a folder that holds anything (``save_pretrained`` would write over a real checkpoint's
    files) and builds into a sibling folder first, so ``OUT`` is either complete or absent.
    """
    parser = argparse.ArgumentParser(
        prog="python -m eagle_iad.testing.tiny",
        description="Build a tiny randomly initialised MLLM of a real architecture, to try "
        "'eagle inspect/eval/attention --mllm hf:OUT' without weights. Its answers are random noise.",
    )
    parser.add_argument("family", choices=sorted(TINY_BUILDERS), help="architecture (transformers model type)")
    parser.add_argument("out", type=Path, help="new (or empty) folder to write the model into")
    parser.add_argument("--seed", type=int, default=0, help="weight initialisation seed (default 0)")
    parser.add_argument("--layers", type=int, default=4, help="decoder layers (default 4)")
    args = parser.parse_args(argv)
    out: Path = args.out
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        print(f"tiny: error: {out} exists and is not an empty folder; give a new folder", file=sys.stderr)
        return 2
    if args.layers < 2:
        print("tiny: error: --layers must be at least 2", file=sys.stderr)
        return 2
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        TINY_BUILDERS[args.family](staging / "model", layers=args.layers, seed=args.seed)
        warning = NOISE_WARNING.format(family=args.family)
        (staging / "model" / NOTE_NAME).write_text(warning + "\n", encoding="utf-8")
        follow_umask(staging / "model")
        if out.exists():
            out.rmdir()  # empty, checked above
        (staging / "model").rename(out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    print(f"wrote a tiny random {args.family} model to {out}")
    print(f"WARNING: {warning}")
    print(f"try: eagle inspect IMAGE.png --model MODEL --mllm hf:{out.resolve()} --max-new-tokens 4")
    return 0


if __name__ == "__main__":
    sys.exit(main())
