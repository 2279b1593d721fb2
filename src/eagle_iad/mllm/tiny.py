"""Tiny randomly initialised MLLMs built from REAL transformers configs (SPEC §6).

No MLLM weights are reachable here, so tests build small random models of the real architectures
(Qwen2.5-VL, Qwen2-VL, LLaVA), with a locally built byte-level tokenizer that carries the family's
special tokens, the family's real chat template and the real processor classes, and save them with
``save_pretrained``. The backend then loads them *by local path*, so the exact code path used with
real checkpoints (config dispatch, processor, chat template, image-token expansion, generation,
attention dispatch) runs in CI in seconds on a CPU.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

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


def _training_corpus() -> list[str]:
    from dataclasses import asdict

    from eagle_iad.tgps.prompt import ANOMALY_QUESTION, PromptTemplates

    templates = PromptTemplates()
    texts = [value for value in asdict(templates).values() if isinstance(value, str)]
    texts.append(templates.question_list([ANOMALY_QUESTION]))
    texts += ["system\nYou are a helpful assistant.", "user\n", "assistant\n", "USER: ", "ASSISTANT:"]
    return texts * 4


def _byte_tokenizer(specials: list[str], **special_roles: str) -> Any:
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


TINY_BUILDERS: dict[str, Callable[..., Path]] = {
    "qwen2_5_vl": build_tiny_qwen2_5_vl,
    "qwen2_vl": build_tiny_qwen2_vl,
    "llava": build_tiny_llava,
}
