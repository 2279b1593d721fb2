"""OpenAI-compatible backend against a local stub server (no network)."""

from __future__ import annotations

import base64
import io
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np
import pytest
from PIL import Image

from eagle_iad.errors import BackendError, ConfigError
from eagle_iad.mllm import CaasSettings, GenerateOptions, load_backend
from eagle_iad.tgps.prompt import PromptRequest, build_prompt

RECEIVED: list[dict[str, Any]] = []


class Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        RECEIVED.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": body})
        if body["model"] == "broken":
            self.send_response(500)
            self.end_headers()
            self.wfile.write(b"model crashed")
            return
        payload = {"choices": [{"message": {"content": "B. No."}}], "usage": {"total_tokens": 7}}
        data = json.dumps(payload).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    httpd.shutdown()


def test_openai_request_shape_and_reply(server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EAGLE_OPENAI_API_KEY", "secret-token")
    backend = load_backend(f"openai:{server}#qwen2.5-vl")
    assert backend.name == f"openai:{server}#qwen2.5-vl"
    query = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    items = build_prompt(PromptRequest("q", "anomalous", boxed_ref="b"))
    RECEIVED.clear()
    reply = backend.generate(items, {"q": query, "b": query[::-1].copy()}, GenerateOptions(caas=CaasSettings()))
    assert reply.text == "B. No." and reply.caas_applied is False and reply.metadata["caas_unavailable"] is True
    (request,) = RECEIVED
    assert request["path"] == "/v1/chat/completions" and request["auth"] == "Bearer secret-token"
    body = request["body"]
    assert body["model"] == "qwen2.5-vl" and body["temperature"] == 0 and body["max_tokens"] == 128
    parts = body["messages"][0]["content"]
    assert [p["type"] for p in parts] == ["text" if hasattr(i, "text") else "image_url" for i in items]
    assert parts[0]["text"] == items[0].text  # type: ignore[union-attr]
    url = parts[3]["image_url"]["url"]
    assert url.startswith("data:image/png;base64,")
    decoded = np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))))
    np.testing.assert_array_equal(decoded, query)


def test_openai_errors(server: str) -> None:
    items = build_prompt(PromptRequest("q"))
    images = {"q": np.zeros((8, 8, 3), dtype=np.uint8)}
    with pytest.raises(BackendError, match="HTTP 500: model crashed"):
        load_backend(f"openai:{server}#broken").generate(items, images, GenerateOptions())
    with pytest.raises(BackendError, match="cannot reach"):
        load_backend("openai:http://127.0.0.1:9/v1#m").generate(items, images, GenerateOptions())
    with pytest.raises(ConfigError, match="attention capture"):
        load_backend(f"openai:{server}#m").generate(items, images, GenerateOptions(capture_attention=True))
    with pytest.raises(ConfigError, match="no image"):
        load_backend(f"openai:{server}#m").generate(items, {}, GenerateOptions())
