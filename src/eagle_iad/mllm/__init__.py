"""MLLM backends: a small protocol, a registry of backends by spec string, CAAS and attention capture.

``load_backend("hf:Qwen/Qwen2.5-VL-7B-Instruct")`` gives an in-process transformers backend;
``generate(items, images, options)`` turns TGPS content items into a :class:`~eagle_iad.mllm.base.Reply`.
"""

from typing import Any

from eagle_iad.errors import ConfigError
from eagle_iad.mllm.base import (
    HYBRID_SCHEME,
    AttentionCapture,
    Backend,
    BackendSpec,
    GenerateOptions,
    Reply,
    hybrid_spec,
    parse_spec,
    register_backend,
    registered_backends,
    served_model_name,
)
from eagle_iad.mllm.caas import CaasSettings, default_caas_layers


def _import_builtin(scheme: str) -> None:
    # Built-in backends register themselves on import; import lazily so that `import eagle_iad`
    # never pulls in transformers. This lives here, not in ``base``, which the backends import.
    if scheme == "hf":
        import eagle_iad.mllm.hf
    elif scheme == "openai":
        import eagle_iad.mllm.openai_compat
    elif scheme == HYBRID_SCHEME:
        import eagle_iad.mllm.hybrid  # noqa: F401


def load_backend(spec: str, **options: Any) -> Backend:
    """Create the backend a spec string names; ``options`` go to its factory (device, dtype, ...)."""
    parsed = parse_spec(spec)
    if parsed.scheme not in registered_backends():
        _import_builtin(parsed.scheme)
    factory = registered_backends().get(parsed.scheme)
    if factory is None:
        known = ", ".join(sorted(set(registered_backends()) | {"hf", "openai", HYBRID_SCHEME}))
        raise ConfigError(f"no MLLM backend registered for {parsed.scheme!r} (known: {known})")
    return factory(parsed, **options)


__all__ = [
    "AttentionCapture",
    "Backend",
    "BackendSpec",
    "CaasSettings",
    "GenerateOptions",
    "Reply",
    "default_caas_layers",
    "hybrid_spec",
    "load_backend",
    "parse_spec",
    "register_backend",
    "registered_backends",
    "served_model_name",
]
