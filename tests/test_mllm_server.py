"""``eagle serve-mllm``: the real OpenAI-compatible app served by uvicorn over loopback.

The tiny Qwen2.5-VL checkpoint is served in-process by ``uvicorn.Server`` on a background thread
(the same backend object the in-process comparison uses, so the model is loaded once), and the
``openai:`` backend talks to it over HTTP. Greedy decoding makes the answers comparable exactly.
One test starts the actual ``eagle serve-mllm`` command as a subprocess.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import TINY_SERVED_MODEL, BlockingBackend, LiveServer, wait_s

from eagle_iad.mllm import CaasSettings, GenerateOptions, load_backend
from eagle_iad.mllm.openai_compat import png_data_url
from eagle_iad.tgps.answers import parse_answer
from eagle_iad.tgps.prompt import ANOMALY_QUESTION, ContentItem, PromptRequest, TextItem, build_prompt

pytestmark = pytest.mark.usefixtures("torch_single_thread")

MODEL = TINY_SERVED_MODEL
NEW_TOKENS = 4
ITEMS = build_prompt(PromptRequest("q.png", "anomalous", boxed_ref="q_box.png"))
#: With a template the query is the second image (template first, docs/METHOD.md §2).
ITEMS_TEMPLATE = build_prompt(PromptRequest("q.png", "anomalous", boxed_ref="q_box.png", template_ref="t.png"))


def http(method: str, url: str, body: Any = None, raw: bytes | None = None) -> tuple[int, dict[str, str], Any]:
    """A JSON request with the standard library; returns (status, lower-cased headers, decoded JSON body)."""
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=wait_s(60)) as response:
            return response.status, {k.lower(): v for k, v in response.headers.items()}, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, {k.lower(): v for k, v in exc.headers.items()}, json.loads(exc.read())


def content_parts(items: Sequence[ContentItem], images: Mapping[str, np.ndarray]) -> list[dict[str, Any]]:
    return [
        {"type": "text", "text": item.text}
        if isinstance(item, TextItem)
        else {"type": "image_url", "image_url": {"url": png_data_url(images[item.ref])}}
        for item in items
    ]


def chat(parts: Any, **extra: Any) -> dict[str, Any]:
    return {"model": MODEL, "messages": [{"role": "user", "content": parts}], "max_tokens": NEW_TOKENS, **extra}


@pytest.fixture(scope="module")
def backend(hf_backends: Any) -> Any:
    return hf_backends("qwen2_5_vl")


@pytest.fixture(scope="module")
def live(tiny_qwen_server: LiveServer) -> LiveServer:
    return tiny_qwen_server


def test_openai_backend_against_server_equals_in_process(
    live: LiveServer, backend: Any, prompt_images: dict[str, np.ndarray]
) -> None:
    options = GenerateOptions(max_new_tokens=NEW_TOKENS)
    local = backend.generate(ITEMS, prompt_images, options)
    remote_backend = load_backend(f"openai:{live.base}/v1#{MODEL}")
    remote = remote_backend.generate(ITEMS, prompt_images, options)
    assert remote.text == local.text
    assert parse_answer(remote.text, ANOMALY_QUESTION) == parse_answer(local.text, ANOMALY_QUESTION)
    usage = remote.metadata["usage"]
    assert usage["prompt_tokens"] == local.metadata["prompt_tokens"]
    assert usage["completion_tokens"] == len(local.token_ids)
    # The openai backend cannot do CAAS or capture: it says so instead of pretending.
    caas_reply = remote_backend.generate(ITEMS, prompt_images, GenerateOptions(max_new_tokens=2, caas=CaasSettings()))
    assert caas_reply.caas_applied is False and caas_reply.metadata["caas_unavailable"] is True


def test_caas_through_eagle_extension_equals_in_process(
    live: LiveServer, backend: Any, prompt_images: dict[str, np.ndarray]
) -> None:
    caas = CaasSettings(alpha=5.0, layers=(1, 2))
    local = backend.generate(ITEMS_TEMPLATE, prompt_images, GenerateOptions(max_new_tokens=NEW_TOKENS, caas=caas))
    assert local.caas_applied
    extension = {"caas": {"alpha": 5.0, "layers": [1, 2], "image_index": 1}, "capture_attention": True}
    status, _, body = http(
        "POST",
        f"{live.base}/v1/chat/completions",
        chat(content_parts(ITEMS_TEMPLATE, prompt_images), temperature=0, eagle=extension),
    )
    assert status == 200, body
    assert body["object"] == "chat.completion" and body["model"] == MODEL
    choice = body["choices"][0]
    assert choice["message"] == {"role": "assistant", "content": local.text}
    assert choice["finish_reason"] in ("stop", "length")
    eagle = body["eagle"]
    assert eagle["caas_applied"] is True and eagle["layers_scaled"] == [1, 2] and eagle["query_image_index"] == 1
    assert eagle["caas"]["alpha"] == 5.0 and eagle["caas"]["span"] == local.caas_settings["span"]
    assert eagle["caas"]["phase"] == "all"
    attention = eagle["attention"]
    assert attention is not None and sorted(attention["per_layer"]) == [str(i) for i in range(backend.num_layers)]
    # Disabled CAAS is plain generation, and is reported as not applied.
    plain = backend.generate(ITEMS_TEMPLATE, prompt_images, GenerateOptions(max_new_tokens=NEW_TOKENS))
    extension = {"caas": {"enabled": False, "image_index": 1}}
    status, _, body = http(
        "POST", f"{live.base}/v1/chat/completions", chat(content_parts(ITEMS_TEMPLATE, prompt_images), eagle=extension)
    )
    assert status == 200 and body["choices"][0]["message"]["content"] == plain.text
    assert body["eagle"]["caas_applied"] is False and body["eagle"]["layers_scaled"] == []
    # phase "decode" travels too: the same answer as in process with that phase.
    decode = CaasSettings(alpha=5.0, layers=(1, 2), phase="decode")
    local = backend.generate(ITEMS_TEMPLATE, prompt_images, GenerateOptions(max_new_tokens=NEW_TOKENS, caas=decode))
    extension = {"caas": {"alpha": 5.0, "layers": [1, 2], "phase": "decode", "image_index": 1}}
    status, _, body = http(
        "POST", f"{live.base}/v1/chat/completions", chat(content_parts(ITEMS_TEMPLATE, prompt_images), eagle=extension)
    )
    assert status == 200 and body["choices"][0]["message"]["content"] == local.text
    assert body["eagle"]["caas"]["phase"] == "decode"


def _error(response: tuple[int, dict[str, str], Any], expected_status: int, *needles: str) -> None:
    status, _, body = response
    assert status == expected_status, body
    message = body["error"]["message"]
    assert set(body["error"]) >= {"message", "type", "code"}
    for needle in needles:
        assert needle in message, message


def test_requests_refused_with_clear_errors(live: LiveServer, prompt_images: dict[str, np.ndarray]) -> None:
    url = f"{live.base}/v1/chat/completions"
    good_image = {"type": "image_url", "image_url": {"url": png_data_url(prompt_images["q.png"])}}
    text = {"type": "text", "text": "Is there a defect?"}
    remote = {"type": "image_url", "image_url": {"url": "http://example.com/cat.png"}}
    _error(http("POST", url, chat([text, remote])), 400, "image 0", "not fetched", "data:image/png;base64")
    bad_b64 = {"type": "image_url", "image_url": {"url": "data:image/png;base64,@@not-base64@@"}}
    _error(http("POST", url, chat([text, bad_b64])), 400, "invalid base64")
    not_image = {"type": "image_url", "image_url": {"url": "data:image/png;base64," + base64.b64encode(b"hi").decode()}}
    _error(http("POST", url, chat([text, good_image, not_image])), 400, "image 1", "not a recognised image")
    _error(http("POST", url, chat([text, good_image], temperature=0.7)), 400, "temperature 0.7", "greedy")
    _error(http("POST", url, chat([text], stream=True)), 400, "stream")
    _error(http("POST", url, chat([text], frobnicate=1)), 400, "frobnicate")
    _error(http("POST", url, {**chat([text]), "model": "gpt-4o"}), 404, "gpt-4o", MODEL)
    system = {"role": "system", "content": "be brief"}
    _error(http("POST", url, {**chat([text]), "messages": [system, chat([text])["messages"][0]]}), 400, "one message")
    caas_no_image = chat([text], eagle={"caas": {}})
    _error(http("POST", url, caas_no_image), 400, "need an image")
    bad_index = chat([text, good_image], eagle={"caas": {"image_index": 3}})
    _error(http("POST", url, bad_index), 400, "image_index 3")
    bad_layers = chat([text, good_image], eagle={"caas": {"layers": [99]}})
    _error(http("POST", url, bad_layers), 400, "out of range")
    _error(http("POST", url, raw=b"{not json"), 400, "invalid request")
    audio = {"type": "input_audio", "input_audio": {"data": "", "format": "wav"}}
    _error(http("POST", url, chat([text, audio])), 400, "input_audio", "'text', 'image_url'")
    _error(http("POST", url, chat([text, good_image], eagle={"caas": {"layers": []}})), 400, "layers is empty")
    _error(http("POST", url, chat([text, good_image], eagle={"caas": {"phase": "prefill"}})), 400, "phase", "decode")
    _error(http("POST", url, chat([])), 400, "no content")
    _error(http("POST", url, chat([good_image] * 9)), 400, "9 images", "at most 8")
    url_text = good_image["image_url"]["url"]  # type: ignore[index]
    wrapped = {"type": "image_url", "image_url": {"url": url_text[:60] + "\n" + url_text[60:]}}
    assert http("POST", url, chat([text, wrapped]))[0] == 200  # line-wrapped base64 is still valid


def test_models_and_healthz(live: LiveServer) -> None:
    status, _, body = http("GET", f"{live.base}/v1/models")
    assert status == 200 and [m["id"] for m in body["data"]] == [MODEL]
    assert "random_test_model" not in body["data"][0]  # said only of a tiny random model's folder
    status, _, body = http("GET", f"{live.base}/healthz")
    assert status == 200 and body["status"] == "ok" and body["model"] == MODEL
    _error(http("GET", f"{live.base}/v1/nothing"), 404, "/v1/nothing")


def test_full_queue_answers_429_with_retry_after(live_server: type[LiveServer]) -> None:
    from eagle_iad.mllm.server import create_mllm_app

    fake = BlockingBackend()
    app = create_mllm_app(fake, model_name=MODEL, queue_size=1)
    body = chat([{"type": "text", "text": "hi"}])
    results: list[tuple[int, dict[str, str], Any]] = []
    with live_server(app) as server:
        url = f"{server.base}/v1/chat/completions"
        first = threading.Thread(target=lambda: results.append(http("POST", url, body)))
        first.start()
        assert fake.started.wait(wait_s(10))  # the worker is busy with the first request
        second = threading.Thread(target=lambda: results.append(http("POST", url, body)))
        second.start()
        deadline = time.monotonic() + wait_s(10)
        while app.state.worker.waiting < 1:  # the second request holds the only queue slot
            assert time.monotonic() < deadline
            time.sleep(0.01)
        rejected = http("POST", url, body)
        _error(rejected, 429, "queue is full")
        assert rejected[2]["error"]["type"] == "rate_limit_error" and int(rejected[1]["retry-after"]) >= 1
        fake.release.set()
        first.join(wait_s(10))
        second.join(wait_s(10))
    assert [r[0] for r in results] == [200, 200] and fake.calls == 2
    assert all(r[2]["choices"][0]["message"]["content"] == "A" for r in results)


def test_serve_mllm_cli_options(capsys: pytest.CaptureFixture[str]) -> None:
    from eagle_iad.cli import build_parser, main
    from eagle_iad.mllm import served_model_name

    args = build_parser().parse_args(["serve-mllm", "--mllm", "hf:Qwen/Qwen2.5-VL-7B-Instruct"])
    assert (args.host, args.port, args.queue) == ("127.0.0.1", 8001, 8)  # loopback only by default
    assert served_model_name("hf:Qwen/Qwen2.5-VL-7B-Instruct") == "Qwen/Qwen2.5-VL-7B-Instruct"
    assert served_model_name("openai:http://up:8000/v1#qwen") == "qwen"
    assert main(["serve-mllm", "--mllm", "openai:http://up:8000/v1#qwen", "--device", "cuda"]) == 2
    assert "--device applies to hf: backends only" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        build_parser().parse_args(["inspect", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "no CAAS and no attention capture" in help_text and "caas_unavailable" in help_text


def test_eagle_serve_mllm_command(
    tiny_mllm_dirs: dict[str, Path],
    backend: Any,
    prompt_images: dict[str, np.ndarray],
    mllm_device: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """The real command: load by spec, bind loopback, require the key, answer like the in-process backend.

    The folder served is a tiny random test model (the note ``python -m eagle_iad.testing.tiny`` leaves): the
    command warns at start and tells its clients, in ``/v1/models`` and in each answer, so an ``openai:`` client
    (an eval run, a hybrid's engine) marks its answers as noise too instead of reporting them as a measurement.
    """
    from eagle_iad.eval.identity import random_test_model
    from eagle_iad.testing.tiny import NOTE_NAME

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    model_dir = tmp_path / tiny_mllm_dirs["qwen2_5_vl"].name
    shutil.copytree(tiny_mllm_dirs["qwen2_5_vl"], model_dir)
    (model_dir / NOTE_NAME).write_text("a tiny random model\n")
    command = [sys.executable, "-m", "eagle_iad.cli", "serve-mllm", "--mllm", f"hf:{model_dir}"]
    command += ["--port", str(port), "--queue", "2", "--device", mllm_device, "--log-level", "warning"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "EAGLE_SERVE_API_KEY": "k3y-of-the-tests-16"}
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + wait_s(120)
        while True:
            assert process.poll() is None, process.communicate()[1]
            try:
                status, _, health = http("GET", f"{base}/healthz")
                break
            except (urllib.error.URLError, ConnectionError):
                assert time.monotonic() < deadline, "eagle serve-mllm did not come up"
                time.sleep(0.25)
        assert status == 200 and health["model"] == model_dir.name  # folder name, not the host's path
        assert health["queue_size"] == 2
        assert http("GET", f"{base}/v1/models")[0] == 401  # EAGLE_SERVE_API_KEY is enforced
        monkeypatch.setenv("EAGLE_OPENAI_API_KEY", "k3y-of-the-tests-16")
        options = GenerateOptions(max_new_tokens=NEW_TOKENS)
        spec = f"openai:{base}/v1#{model_dir.name}"
        remote = load_backend(spec).generate(ITEMS, prompt_images, options)
        assert remote.text == backend.generate(ITEMS, prompt_images, options).text
        assert remote.metadata["random_test_model"] is True  # read off the answer's eagle record
        request = urllib.request.Request(f"{base}/v1/models", headers={"Authorization": "Bearer k3y-of-the-tests-16"})
        with urllib.request.urlopen(request, timeout=wait_s(60)) as response:
            (entry,) = json.loads(response.read())["data"]
        assert entry["id"] == model_dir.name and entry["random_test_model"] is True
        assert random_test_model(spec) == spec  # what `eagle eval` marks run.json, metrics and report by
    finally:
        process.terminate()
        _, err = process.communicate(timeout=wait_s(30))
    assert f"eagle: warning: {model_dir} is a tiny random test model ({NOTE_NAME}): its answers are random " in err
