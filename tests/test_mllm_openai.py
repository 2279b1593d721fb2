"""The ``openai:`` backend: request formatting (pure unit) and behaviour against a real ``eagle serve-mllm``.

The server side is the real app (:func:`eagle_iad.mllm.server.create_mllm_app`) on a real uvicorn
socket over loopback; only the failing backend below is a test double, to provoke a server error.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pytest
from conftest import TINY_SERVED_MODEL, LiveServer
from PIL import Image

from eagle_iad.errors import BackendError, ConfigError
from eagle_iad.mllm import CaasSettings, GenerateOptions, Reply, load_backend
from eagle_iad.mllm.openai_compat import OpenAIBackend, png_data_url
from eagle_iad.tgps.prompt import ContentItem, PromptRequest, TextItem, build_prompt

ITEMS = build_prompt(PromptRequest("q.png", "anomalous", boxed_ref="q_box.png"))


def _decode(url: str) -> np.ndarray:
    assert url.startswith("data:image/png;base64,")
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))))


def test_request_body_shape() -> None:
    backend = load_backend("openai:http://127.0.0.1:9/v1#qwen2.5-vl")
    assert isinstance(backend, OpenAIBackend) and backend.name == "openai:http://127.0.0.1:9/v1#qwen2.5-vl"
    query = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    images = {"q.png": query, "q_box.png": query[::-1].copy()}
    body = backend.request_body(ITEMS, images, GenerateOptions(caas=CaasSettings()))
    assert body["model"] == "qwen2.5-vl" and body["temperature"] == 0 and body["max_tokens"] == 128
    assert "eagle" not in body  # CAAS is never requested from a generic server
    (message,) = body["messages"]
    parts = message["content"]
    assert message["role"] == "user"
    assert [p["type"] for p in parts] == ["text" if isinstance(i, TextItem) else "image_url" for i in ITEMS]
    assert parts[0]["text"] == ITEMS[0].text  # type: ignore[union-attr]
    np.testing.assert_array_equal(_decode(parts[3]["image_url"]["url"]), query)
    np.testing.assert_array_equal(_decode(png_data_url(query)), query)  # lossless: boxes stay crisp


def test_reply_and_caas_unavailable(tiny_qwen_server: LiveServer, prompt_images: dict[str, np.ndarray]) -> None:
    backend = load_backend(f"openai:{tiny_qwen_server.base}/v1#{TINY_SERVED_MODEL}")
    reply = backend.generate(ITEMS, prompt_images, GenerateOptions(max_new_tokens=3, caas=CaasSettings()))
    assert isinstance(reply.text, str) and reply.token_ids == []
    assert reply.caas_applied is False and reply.caas_settings is None
    assert reply.metadata["caas_unavailable"] is True and "without it" in reply.metadata["caas_note"]
    assert reply.metadata["usage"]["completion_tokens"] <= 3


class FailingBackend:
    """Test double: a backend whose generation crashes, so the server answers 500."""

    name = "failing"

    def generate(
        self, items: Sequence[ContentItem], images: Mapping[str, np.ndarray], options: GenerateOptions
    ) -> Reply:
        raise RuntimeError("model crashed")


def test_errors(tiny_qwen_server: LiveServer, live_server: type[LiveServer]) -> None:
    from eagle_iad.mllm.server import create_mllm_app

    items = build_prompt(PromptRequest("q"))
    images = {"q": np.zeros((16, 16, 3), dtype=np.uint8)}
    with pytest.raises(BackendError, match=r"HTTP 404: .*'gpt-4o' is not served here"):
        load_backend(f"openai:{tiny_qwen_server.base}/v1#gpt-4o").generate(items, images, GenerateOptions())
    failing_app = create_mllm_app(FailingBackend(), model_name="m")
    with live_server(failing_app) as failing, pytest.raises(BackendError, match=r"HTTP 500: .*model crashed"):
        load_backend(f"openai:{failing.base}/v1#m").generate(items, images, GenerateOptions())
    with pytest.raises(BackendError, match="cannot reach"):
        load_backend("openai:http://127.0.0.1:9/v1#m").generate(items, images, GenerateOptions())
    served = load_backend(f"openai:{tiny_qwen_server.base}/v1#{TINY_SERVED_MODEL}")
    with pytest.raises(ConfigError, match="attention capture"):
        served.generate(items, images, GenerateOptions(capture_attention=True))
    with pytest.raises(ConfigError, match="no image"):
        served.generate(items, {}, GenerateOptions())


def test_api_key(
    hf_backends: Any, live_server: type[LiveServer], monkeypatch: pytest.MonkeyPatch, prompt_images: dict[str, Any]
) -> None:
    from eagle_iad.mllm.server import create_mllm_app

    app = create_mllm_app(hf_backends("qwen2_5_vl"), model_name="m", api_key="secret-token")
    options = GenerateOptions(max_new_tokens=2)
    with live_server(app) as server:
        spec = f"openai:{server.base}/v1#m"
        monkeypatch.setenv("EAGLE_OPENAI_API_KEY", "secret-token")
        assert isinstance(load_backend(spec).generate(ITEMS, prompt_images, options).text, str)
        monkeypatch.setenv("EAGLE_OPENAI_API_KEY", "wrong")
        with pytest.raises(BackendError, match=r"HTTP 401: .*API key"):
            load_backend(spec).generate(ITEMS, prompt_images, options)
