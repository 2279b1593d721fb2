"""OpenAI-compatible chat-completions backend (``openai:http://host:port/v1#model-name``).

For MLLMs served by ``eagle serve-mllm``, vLLM, SGLang, TGI or a hosted API. Content items map one to one onto chat
``content`` parts (text, and images as PNG data URLs), in prompt order, in a single user turn —
the same prompt the in-process backend renders through the chat template. Decoding is greedy
(temperature 0).

A remote server gives no access to attention, so CAAS cannot be applied and attention cannot be
captured: a CAAS request is answered with ``caas_applied = False`` and
``metadata["caas_unavailable"] = True`` (never silently claimed), and a capture request is an error.
Only the standard library is used (urllib), so the backend adds no dependency.
"""

from __future__ import annotations

import base64
import io
import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from PIL import Image

from eagle_iad.errors import BackendError, ConfigError
from eagle_iad.mllm.base import RANDOM_MODEL_MARK, BackendSpec, GenerateOptions, Reply, register_backend
from eagle_iad.tgps.prompt import ContentItem, TextItem

API_KEY_ENV = "EAGLE_OPENAI_API_KEY"


def png_data_url(rgb: np.ndarray) -> str:
    """An RGB uint8 array as a ``data:image/png;base64,...`` URL (lossless, so boxes stay crisp)."""
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8)).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


class OpenAIBackend:
    """Chat completions against an OpenAI-compatible server."""

    def __init__(self, base_url: str, model: str, *, api_key: str | None = None, timeout_s: float = 120.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.api_key = (
            api_key if api_key is not None else os.environ.get(API_KEY_ENV) or os.environ.get("OPENAI_API_KEY")
        )
        self.timeout_s = timeout_s

    @property
    def name(self) -> str:
        return f"openai:{self.base_url}#{self.model}"

    def model_entry(self, timeout_s: float) -> dict[str, Any] | None:
        """The server's ``/v1/models`` entry of this model, or None where it lists none under this id.

        Raises :class:`BackendError` when the server cannot be reached (the caller decides what that means).
        """
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        request = urllib.request.Request(f"{self.base_url}/models", headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=timeout_s) as response:
                payload = json.loads(response.read().decode("utf-8"))
        except urllib.error.HTTPError:
            return None  # it answers, but lists no models
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            raise BackendError(f"{self.name}: cannot reach the server: {exc}") from exc
        except (json.JSONDecodeError, UnicodeDecodeError):
            return None
        entries = payload.get("data") if isinstance(payload, dict) else None
        for entry in entries if isinstance(entries, list) else []:
            if isinstance(entry, dict) and entry.get("id") == self.model:
                return entry
        return None

    def _content(self, items: Sequence[ContentItem], images: Mapping[str, np.ndarray]) -> list[dict[str, Any]]:
        parts: list[dict[str, Any]] = []
        for item in items:
            if isinstance(item, TextItem):
                parts.append({"type": "text", "text": item.text})
                continue
            if item.ref not in images:
                raise ConfigError(f"no image supplied for prompt reference {item.ref!r}")
            parts.append({"type": "image_url", "image_url": {"url": png_data_url(images[item.ref])}})
        return parts

    def request_body(
        self, items: Sequence[ContentItem], images: Mapping[str, np.ndarray], options: GenerateOptions
    ) -> dict[str, Any]:
        """The chat-completions JSON body: one user turn, greedy (temperature 0), no EAGLE extension.

        CAAS settings are deliberately not sent: a generic OpenAI server would ignore them, and the
        reply must not look as if they had been applied.
        """
        return {
            "model": self.model,
            "messages": [{"role": "user", "content": self._content(items, images)}],
            "max_tokens": options.max_new_tokens,
            "temperature": 0,
        }

    def generate(
        self, items: Sequence[ContentItem], images: Mapping[str, np.ndarray], options: GenerateOptions
    ) -> Reply:
        if options.capture_attention:
            raise ConfigError("attention capture needs in-process attention; use an hf: backend")
        start = time.perf_counter()
        body = self.request_body(items, images, options)
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        request = urllib.request.Request(
            f"{self.base_url}/chat/completions", data=json.dumps(body).encode("utf-8"), headers=headers, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                payload = json.loads(response.read().decode("utf-8"))
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode("utf-8", "replace")[:300]
            raise BackendError(f"{self.name}: HTTP {exc.code}: {detail}") from exc
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            raise BackendError(f"{self.name}: cannot reach the server: {exc}") from exc
        except json.JSONDecodeError as exc:
            raise BackendError(f"{self.name}: the server did not answer with JSON") from exc
        try:
            text = payload["choices"][0]["message"]["content"] or ""
        except (KeyError, IndexError, TypeError) as exc:
            raise BackendError(f"{self.name}: unexpected response shape: {str(payload)[:300]}") from exc
        total_s = time.perf_counter() - start
        metadata: dict[str, Any] = {"backend": self.name, "usage": payload.get("usage")}
        extension = payload.get("eagle")
        if isinstance(extension, dict) and extension.get(RANDOM_MODEL_MARK) is True:
            metadata[RANDOM_MODEL_MARK] = True  # `eagle serve-mllm` says its model is a tiny random one
        if options.caas is not None:
            metadata["caas_unavailable"] = True
            metadata["caas_note"] = "CAAS needs in-process attention; this answer was generated without it"
        return Reply(
            text=str(text),
            token_ids=[],
            timings={"total_s": total_s},
            caas_applied=False,
            metadata=metadata,
        )


@register_backend("openai")
def _openai_factory(spec: BackendSpec, **options: Any) -> OpenAIBackend:
    if spec.model is None:
        raise ConfigError("openai backend spec needs '#model-name'")
    return OpenAIBackend(spec.target, spec.model, **options)
