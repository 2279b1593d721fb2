"""MLLM backends: a small protocol, a registry of backends by spec string, CAAS and attention capture.

``load_backend("hf:Qwen/Qwen2.5-VL-7B-Instruct")`` gives an in-process transformers backend;
``generate(items, images, options)`` turns TGPS content items into a :class:`~eagle_iad.mllm.base.Reply`.
"""

from eagle_iad.mllm.base import (
    AttentionCapture,
    Backend,
    BackendSpec,
    GenerateOptions,
    Reply,
    load_backend,
    parse_spec,
    register_backend,
)
from eagle_iad.mllm.caas import CaasSettings, default_caas_layers

__all__ = [
    "AttentionCapture",
    "Backend",
    "BackendSpec",
    "CaasSettings",
    "GenerateOptions",
    "Reply",
    "default_caas_layers",
    "load_backend",
    "parse_spec",
    "register_backend",
]
