"""The hybrid MLLM backend (``--mllm ENGINE --caas-mllm CAAS``) against a real serving engine over HTTP.

The engine is ``eagle serve-mllm``'s app over the tiny random Qwen2.5-VL checkpoint, served by a
real uvicorn on loopback; the CAAS backend is the same checkpoint in process. Greedy decoding makes
the answers comparable exactly: a hybrid run must give the very records an in-process run gives,
with band inspections answered by the CAAS backend and all others by the engine. The vLLM variant
of these checks lives in ``test_vllm_engine.py``.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import copy_elpv_cells, wait_s

from eagle_iad.cli import main
from eagle_iad.errors import ConfigError
from eagle_iad.eval.runner import RESULTS
from eagle_iad.mllm import GenerateOptions, hybrid_spec, load_backend, parse_spec, served_model_name
from eagle_iad.mllm.base import Reply
from eagle_iad.mllm.hybrid import HybridBackend
from eagle_iad.pipeline import CAAS_NOT_APPLIED
from eagle_iad.tgps.prompt import ContentItem

pytestmark = pytest.mark.usefixtures("torch_single_thread")

SERVED = "tiny-qwen"
#: Record fields that must not depend on which backend answered (latency and routing do).
SAME = ("image", "condition", "score", "tau", "s_max", "in_band", "caas_applied", "reply", "answer", "correct")


# --- the spec: composed, parsed, refused ----------------------------------------------------------


def test_hybrid_spec_round_trip_and_refusals() -> None:
    engine, caas = "openai:http://127.0.0.1:8001/v1#qwen2.5-vl", "hf:/models/Qwen2.5-VL-7B-Instruct"
    assert hybrid_spec(engine, None) == engine  # no --caas-mllm: the engine alone, the spec unchanged
    spec = hybrid_spec(engine, caas)
    parsed = parse_spec(spec)
    assert (parsed.scheme, parsed.target, parsed.model) == ("hybrid", engine, caas)
    assert served_model_name(spec) == "qwen2.5-vl"  # clients of `eagle serve` see the engine's model
    with pytest.raises(ConfigError) as err:
        hybrid_spec(engine, "openai:http://127.0.0.1:9/v1#m")
    assert str(err.value) == (
        "--caas-mllm 'openai:http://127.0.0.1:9/v1#m' cannot apply CAAS (it needs in-process attention); give an "
        "in-process backend such as hf:/path/to/model"
    )
    with pytest.raises(ConfigError, match="--mllm must name one backend"):
        hybrid_spec(spec, caas)
    with pytest.raises(ConfigError, match="must be hybrid:"):
        parse_spec("hybrid:not-json")


def test_caas_mllm_without_mllm_is_a_one_line_error(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    image = tmp_path / "x.png"
    from PIL import Image

    Image.new("RGB", (8, 8)).save(image)
    assert main(["inspect", str(image), "--caas-mllm", "hf:/nowhere"]) == 2
    assert capsys.readouterr().err == (
        "eagle: error: --caas-mllm needs --mllm (the serving engine for the inspections outside the band)\n"
    )


class _Recorder:
    """A backend that answers with its own name, so a routing decision is visible in the reply."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.seen: list[GenerateOptions] = []

    def generate(
        self, items: Sequence[ContentItem], images: Mapping[str, np.ndarray], options: GenerateOptions
    ) -> Reply:
        self.seen.append(options)
        return Reply(self.name, [], {"total_s": 0.0}, caas_applied=options.caas is not None and self.name == "caas")


def test_route_is_the_request_s_need_for_in_process_attention() -> None:
    from eagle_iad.mllm import CaasSettings

    engine, caas = _Recorder("engine"), _Recorder("caas")
    hybrid = HybridBackend(engine, caas)
    plain = hybrid.generate([], {}, GenerateOptions())
    band = hybrid.generate([], {}, GenerateOptions(caas=CaasSettings()))
    capture = hybrid.generate([], {}, GenerateOptions(capture_attention=True))
    assert [plain.text, band.text, capture.text] == ["engine", "caas", "caas"]
    assert [r.metadata["route"] for r in (plain, band, capture)] == ["engine", "caas", "caas"]
    assert band.metadata["backend"] == "caas" and band.caas_applied
    assert len(engine.seen) == 1 and len(caas.seen) == 2


# --- against eagle serve-mllm over real HTTP ------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_qwen(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("transformers")
    from eagle_iad.testing.tiny import build_tiny_qwen2_5_vl

    return build_tiny_qwen2_5_vl(tmp_path_factory.mktemp("hybrid_tiny") / "qwen")


@pytest.fixture(scope="module")
def cells(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder-layout dataset of real elpv cells: 6 training normals, 3 normal + 3 cracked test cells."""
    return copy_elpv_cells(tmp_path_factory.mktemp("hybrid_cells"))


class DyingBackend:
    """Serves ``after`` replies, then shuts its server down: an engine that dies mid-run."""

    def __init__(self, inner: Any, after: int | None) -> None:
        self.inner = inner
        self.after = after
        self.calls = 0
        self.server: Any = None
        self.model_ref = inner.model_ref  # the checkpoint folder: serve-mllm lists its identity in /v1/models

    @property
    def name(self) -> str:
        return str(self.inner.name)

    def generate(
        self, items: Sequence[ContentItem], images: Mapping[str, np.ndarray], options: GenerateOptions
    ) -> Reply:
        reply: Reply = self.inner.generate(items, images, options)
        self.calls += 1
        if self.after is not None and self.calls >= self.after:
            self.server.should_exit = True  # the reply in flight is still delivered; later ones are refused
        return reply


class Engine:
    """``eagle serve-mllm``'s app on a fixed loopback port (a restart must come back at the same URL)."""

    def __init__(self, backend: Any, port: int = 0) -> None:
        import uvicorn

        from eagle_iad.mllm.server import create_mllm_app

        self.backend = DyingBackend(backend, None)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.port = int(self.sock.getsockname()[1])
        app = create_mllm_app(self.backend, model_name=SERVED)
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
        self.backend.server = self.server
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    @property
    def spec(self) -> str:
        return f"openai:http://127.0.0.1:{self.port}/v1#{SERVED}"

    def __enter__(self) -> Engine:
        import time

        self.thread.start()
        deadline = time.monotonic() + wait_s(30)
        while not self.server.started:
            assert time.monotonic() < deadline and self.thread.is_alive(), "uvicorn did not start"
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=wait_s(20))
        self.sock.close()


@pytest.fixture(scope="module")
def engine_backend(tiny_qwen: Path) -> Any:
    """The engine's model: loaded exactly as ``--mllm hf:`` / ``--caas-mllm hf:`` load it (defaults)."""
    return load_backend(f"hf:{tiny_qwen}")


def _eval(*argv: str) -> int:
    return main(["eval", "--max-new-tokens", "2", *argv])


def _records(run: Path) -> list[dict[str, Any]]:
    rows = [json.loads(line) for line in (run / RESULTS).read_text().splitlines()]
    return sorted(rows, key=lambda r: (r["image"], r["condition"]))


@pytest.fixture(scope="module")
def reference(cells: Path, tiny_qwen: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The in-process run every hybrid run must reproduce (and the fitted expert they share)."""
    import torch

    # One thread like the tests themselves (module fixtures run before ``torch_single_thread``): the
    # expert's float32 scores differ in the last bits between thread counts, and records must be equal.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _reference(cells, tiny_qwen, tmp_path_factory)
    finally:
        torch.set_num_threads(threads)


def _reference(cells: Path, tiny_qwen: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from eagle_iad.expert import ExpertConfig, fit, load_expert, save
    from eagle_iad.expert.store import change_threshold
    from eagle_iad.images import load_rgb

    tmp = tmp_path_factory.mktemp("hybrid_ref")
    models = tmp / "models"
    run = tmp / "run"
    # Six training cells cannot put the largest training score above mean + 3 std (the band would be
    # empty), so tau is set between the test cells' scores: half of them fall in the band.
    train = sorted((cells / "cells" / "train" / "good").iterdir())
    # The pixels' own exposure: the cells' scores were laid out (half in the band) before exposure was the default.
    save(fit(train, "cells", ExpertConfig(seed=0, exposure="none")).model, models / "cells")
    expert = load_expert(models / "cells")
    scores = sorted(expert.inspect(load_rgb(path)).score for path in sorted((cells / "cells" / "test").glob("*/*")))
    tau = (scores[2] + scores[3]) / 2
    assert tau < expert.model.thresholds.s_max
    change_threshold(models / "cells", why="tests: a band through the test cells", by="tests", tau=tau)
    args = ["--data", str(cells), "--layout", "folder", "--models", str(models), "--conditions", "tgps,eagle"]
    assert _eval(*args, "--mllm", f"hf:{tiny_qwen}", "--out", str(run)) == 0
    rows = _records(run)
    assert len(rows) == 12
    band = sum(r["in_band"] for r in rows if r["condition"] == "eagle")
    assert band == 3  # the other three score below tau
    return {"args": args, "models": models, "rows": rows}


def test_hybrid_eval_routes_by_band_dies_mid_run_and_resumes_identically(
    reference: dict[str, Any], tiny_qwen: Path, engine_backend: Any, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    run = tmp_path / "run"
    with Engine(engine_backend) as engine:
        port, spec = engine.port, engine.spec
        engine.backend.after = 3  # the engine answers three inspections, then goes away
        argv = [*reference["args"], "--mllm", spec, "--caas-mllm", f"hf:{tiny_qwen}", "--out", str(run)]
        assert _eval(*argv) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith(f"eagle: error: {spec}: cannot reach the server: ")
    partial = _records(run)
    assert 3 <= len(partial) < 12  # records before the failure are kept, none for the failed inspection
    with Engine(engine_backend, port=port):  # the engine restarts at the same address; the run resumes
        assert _eval(*argv) == 0
    rows = _records(run)
    assert [{k: r[k] for k in SAME} for r in rows] == [{k: r[k] for k in SAME} for r in reference["rows"]]
    assert [r for r in rows if r in partial] == partial  # the records before the failure are kept, not redone
    for row in rows:
        band = row["condition"] == "eagle" and row["in_band"]
        who = row["answered_by"]
        assert who["route"] == ("caas" if band else "engine"), row
        assert who["backend"] == (f"hf:{tiny_qwen}" if band else spec)
        assert row["caas_applied"] == band
        assert who["caas"] == ("applied" if band else "off (condition tgps)" if row["condition"] == "tgps"
                               else "not needed (outside the band)")  # fmt: skip


def test_engine_alone_answers_band_cases_without_caas_and_says_so(
    reference: dict[str, Any], cells: Path, engine_backend: Any
) -> None:
    from eagle_iad.expert import load_expert
    from eagle_iad.mllm import CaasSettings
    from eagle_iad.pipeline import Eagle, EagleConfig

    rows = reference["rows"]
    band = next(r for r in rows if r["condition"] == "eagle" and r["in_band"])
    expert = load_expert(reference["models"] / "cells")
    config = EagleConfig(condition="eagle", caas=CaasSettings(), max_new_tokens=2)
    with Engine(engine_backend) as engine:
        verdict = Eagle(expert, load_backend(engine.spec), config).inspect(band["image"])
    assert verdict.in_band and verdict.caas_applied is False
    assert verdict.answered_by == {"backend": engine.spec, "route": "single", "caas": CAAS_NOT_APPLIED}
    # Without CAAS the engine's answer is the in-process plain answer, not the CAAS one.
    plain = Eagle(expert, engine_backend, EagleConfig(condition="tgps", max_new_tokens=2)).inspect(band["image"])
    assert verdict.reply == plain.reply


def test_inspect_cli_prints_the_route(
    reference: dict[str, Any], tiny_qwen: Path, engine_backend: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = [r for r in reference["rows"] if r["condition"] == "eagle"]
    band = next(r for r in rows if r["in_band"])
    out_of_band = next(r for r in rows if not r["in_band"])
    with Engine(engine_backend) as engine:
        model = str(reference["models"] / "cells")
        code = main(["inspect", band["image"], out_of_band["image"], "--model", model, "--mllm", engine.spec,
                     "--caas-mllm", f"hf:{tiny_qwen}", "--max-new-tokens", "2", "--json"])  # fmt: skip
    assert code == 0
    verdicts = json.loads(capsys.readouterr().out)
    assert [v["answered_by"]["route"] for v in verdicts] == ["caas", "engine"]
    assert [v["reply"] for v in verdicts] == [band["reply"], out_of_band["reply"]]


def test_serve_with_hybrid_routes_each_inspection(reference: dict[str, Any], tiny_qwen: Path, engine_backend: Any,
                                                  tmp_path: Path) -> None:  # fmt: skip
    """``eagle serve --mllm ENGINE --caas-mllm CAAS``: the service's verdicts name the route per inspection."""
    from fastapi.testclient import TestClient

    from eagle_iad.service import ServiceSettings, create_app

    rows = [r for r in reference["rows"] if r["condition"] == "eagle"]
    band = next(r for r in rows if r["in_band"])
    out_of_band = next(r for r in rows if not r["in_band"])
    with Engine(engine_backend) as engine:
        settings = ServiceSettings(models_dir=reference["models"], state_dir=tmp_path / "state",
                                   mllm=hybrid_spec(engine.spec, f"hf:{tiny_qwen}"))  # fmt: skip
        with TestClient(create_app(settings)) as client:
            verdicts = []
            for row in (band, out_of_band):
                files = {"image": (Path(row["image"]).name, Path(row["image"]).read_bytes(), "image/png")}
                response = client.post("/v1/inspect", files=files, data={"category": "cells"})
                assert response.status_code == 200, response.text
                verdicts.append(response.json()["verdict"])
            models = client.get("/v1/models").json()
    assert [v["answered_by"]["route"] for v in verdicts] == ["caas", "engine"]
    assert [v["caas_applied"] for v in verdicts] == [True, False]
    assert models["data"][0]["id"] == SERVED  # chat clients see the engine's model name


@pytest.mark.parametrize("family", ["qwen3_vl", "glm4v", "gemma3", "minicpmv4_6"])
def test_hybrid_route_on_the_newer_families(
    family: str, reference: dict[str, Any], tiny_mllm_dirs: dict[str, Path]
) -> None:
    """The hybrid route with each newer family as both engine and in-process CAAS model: a band case is
    answered in process with CAAS, the other by the engine, each exactly as the in-process backend answers."""
    from eagle_iad.expert import load_expert
    from eagle_iad.mllm import CaasSettings
    from eagle_iad.pipeline import Eagle, EagleConfig

    rows = [r for r in reference["rows"] if r["condition"] == "eagle"]
    cases = [next(r for r in rows if r["in_band"]), next(r for r in rows if not r["in_band"])]
    expert = load_expert(reference["models"] / "cells")
    spec = f"hf:{tiny_mllm_dirs[family]}"
    local = load_backend(spec)
    config = EagleConfig(condition="eagle", caas=CaasSettings(), max_new_tokens=2)
    expected = [Eagle(expert, local, config).inspect(row["image"]) for row in cases]
    with Engine(local) as engine:
        hybrid = load_backend(hybrid_spec(engine.spec, spec))
        verdicts = [Eagle(expert, hybrid, config).inspect(row["image"]) for row in cases]
    assert [v.answered_by["route"] for v in verdicts] == ["caas", "engine"]
    assert [v.caas_applied for v in verdicts] == [True, False] == [e.caas_applied for e in expected]
    assert [v.reply for v in verdicts] == [e.reply for e in expected]


def test_a_tiny_random_caas_model_is_said_as_it_is_alone(
    cells: Path, tiny_qwen: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--caas-mllm hf:<tiny random model>`` warns on stderr as ``--mllm hf:<it>`` does; the hybrid was silent."""
    import shutil

    from eagle_iad.testing.tiny import NOTE_NAME

    noted = tmp_path / "tiny"
    shutil.copytree(tiny_qwen, noted)
    (noted / NOTE_NAME).write_text("a tiny random model\n")
    alone = load_backend(f"hf:{noted}")
    hybrid = load_backend(hybrid_spec("openai:http://127.0.0.1:9/v1#nobody", f"hf:{noted}"))
    assert hybrid.warnings[:-1] == alone.warnings and hybrid.random_test_model is True
    # and the engine nobody listens for cannot be checked to hold the same model: said, not passed over
    assert hybrid.warnings[-1].startswith("cannot check that --mllm openai:http://127.0.0.1:9/v1#nobody and --caas")
    image = str(next((cells / "cells" / "test").glob("*/*")))
    capsys.readouterr()
    # attention capture routes to the CAAS side, so the engine (nothing listens on port 9) is never asked
    code = main(["inspect", image, "--condition", "baseline", "--mllm", "openai:http://127.0.0.1:9/v1#nobody",
                 "--caas-mllm", f"hf:{noted}", "--capture-attention", "--max-new-tokens", "2", "--json"])  # fmt: skip
    out, err = capsys.readouterr()
    assert code == 0 and f"eagle: warning: {noted} is a tiny random test model ({NOTE_NAME})" in err
    (verdict,) = json.loads(out)
    assert verdict["answered_by"]["route"] == "caas" and verdict["metadata"]["random_test_model"] is True


def test_eagle_serve_prints_a_hybrids_load_warnings_as_inspect_does(
    tiny_qwen: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``eagle serve --mllm ENGINE --caas-mllm CAAS`` said nothing of what ``eagle inspect`` (and eval, serve-mllm)
    say as the hybrid loads: here that its engine (nothing listens) cannot be checked to hold the CAAS side's
    model. It prints the backend's load warnings before its banner, each line as ``eagle inspect`` prints it."""
    from test_service import ServeProcess

    from eagle_iad.mllm.hybrid import check_same_model

    engine = "openai:http://127.0.0.1:9/v1#nobody"
    note = check_same_model(engine, f"hf:{tiny_qwen}")
    assert note is not None and note.startswith(f"cannot check that --mllm {engine} and --caas-mllm hf:{tiny_qwen}")
    image = str(next((copy_elpv_cells(tmp_path / "cells") / "cells" / "test").glob("*/*")))
    capsys.readouterr()
    assert main(["inspect", image, "--condition", "baseline", "--mllm", engine, "--caas-mllm", f"hf:{tiny_qwen}",
                 "--capture-attention", "--max-new-tokens", "2", "--json"]) == 0  # fmt: skip
    said = f"eagle: warning: {note}"
    assert said in capsys.readouterr().err.splitlines()
    (tmp_path / "models").mkdir()
    served = ServeProcess(["--models", str(tmp_path / "models"), "--state-dir", str(tmp_path / "state"),
                           "--mllm", engine, "--caas-mllm", f"hf:{tiny_qwen}"])  # fmt: skip
    served.stop()
    err = served.process.communicate(timeout=wait_s(30))[1].splitlines()
    assert err.count(said) == 1, err
    banner = next(i for i, line in enumerate(err) if line.startswith("eagle service on http://127.0.0.1:"))
    assert err.index(said) < banner, err


# --- the two sides must be one model ----------------------------------------------------------------


@pytest.fixture(scope="module")
def other_models(tiny_qwen: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Checkpoints that are not ``tiny_qwen``'s model, one per way to differ, and one that is (a copy)."""
    import shutil

    from eagle_iad.testing.tiny import build_tiny_llava, build_tiny_qwen2_5_vl

    root = tmp_path_factory.mktemp("hybrid_others")
    copy = Path(shutil.copytree(tiny_qwen, root / "copy"))
    config = Path(shutil.copytree(tiny_qwen, root / "config"))
    data = json.loads((config / "config.json").read_text())
    data["text_config"]["rms_norm_eps"] = 1e-3
    (config / "config.json").write_text(json.dumps(data))
    template = Path(shutil.copytree(tiny_qwen, root / "template"))
    jinja = template / "chat_template.jinja"
    jinja.write_text("{# another template #}" + jinja.read_text())
    return {
        "copy": copy,
        "config": config,
        "template": template,
        "seed": build_tiny_qwen2_5_vl(root / "seed", seed=1),
        "llava": build_tiny_llava(root / "llava"),
    }


def test_a_hybrid_of_two_different_models_is_refused_before_any_prompt(
    tiny_qwen: Path, other_models: dict[str, Path], cells: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """docs/MLLM.md, hybrid: both sides hold the same weights, or the band's answers come from another model than
    the rest. Each kind of difference is refused in one line naming both sides and what differs; a copy of the same
    checkpoint elsewhere is the same model."""
    from eagle_iad.mllm.hybrid import check_same_model

    assert check_same_model(f"hf:{tiny_qwen}", f"hf:{other_models['copy']}") is None
    differs = {
        "llava": "model types differ ('llava' vs 'qwen2_5_vl')",
        "config": "architectures differ (config.json: text_config.rms_norm_eps 0.001 vs 1e-05)",
        "template": "tokenizers or chat templates differ (the same prompt would be other token ids)",
        "seed": "weights differ (same architecture and tokenizer: another checkpoint, a fine-tune or another seed)",
    }
    for name, what in differs.items():
        engine, caas = f"hf:{other_models[name]}", f"hf:{tiny_qwen}"
        message = f"--mllm {engine} and --caas-mllm {caas} are not the same model: {what}; a hybrid answers"
        with pytest.raises(ConfigError) as caught:
            check_same_model(engine, caas)
        assert str(caught.value).startswith(message), str(caught.value)
    # Through the command: one line, exit 2, before any model loads or any image is asked about.
    image = sorted((cells / "cells" / "test" / "good").iterdir())[0]
    capsys.readouterr()
    code = main(["inspect", str(image), "--mllm", f"hf:{other_models['seed']}", "--caas-mllm", f"hf:{tiny_qwen}",
                 "--condition", "baseline"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and err.startswith("eagle: error: --mllm hf:"), err
    assert "are not the same model: weights differ" in err
    # eagle eval refuses it before its run folder is written (and before a missing expert is fitted).
    run = cells.parent / "mismatch-run"
    assert _eval("--data", str(cells), "--layout", "folder", "--models", str(cells.parent / "mismatch-models"),
                 "--conditions", "eagle", "--mllm", f"hf:{other_models['llava']}", "--caas-mllm", f"hf:{tiny_qwen}",
                 "--out", str(run)) == 2  # fmt: skip
    assert "are not the same model: model types differ ('llava' vs 'qwen2_5_vl')" in capsys.readouterr().err
    assert not run.exists() and not (cells.parent / "mismatch-models").exists()


def test_the_same_model_in_another_layout_is_accepted_and_an_uncomparable_one_warned(
    tiny_qwen: Path, other_models: dict[str, Path], tmp_path: Path
) -> None:
    """A review's reproductions: a trainer's leftovers beside the weights, a ``pytorch_model.bin`` beside the
    safetensors, or a partial tokenizer download are the same model as a plain copy (the weights compared in the
    format both hold, tokenizer files by the names both have); another seed is still refused in either layout.
    Nothing in common to compare, or an identity of another eagle version, is warned about ("cannot check"),
    never refused."""
    import shutil

    from eagle_iad.mllm.hybrid import check_same_model
    from eagle_iad.mllm.weights import IDENTITY_VERSION

    def layout(name: str, source: Path = tiny_qwen) -> Path:
        return Path(shutil.copytree(source, tmp_path / name))

    trained = layout("trained")
    for leftover in ("training_args.bin", "optimizer.pt", "scheduler.pt", "rng_state_0.pth", "rng_state.pth"):
        (trained / leftover).write_bytes(leftover.encode() * 10)
    both = layout("both")
    (both / "pytorch_model.bin").write_bytes(b"a torch copy of the same weights")
    partial = layout("partial")
    (partial / "tokenizer.json").unlink()  # a download that stopped before the tokenizer's largest file
    full = layout("full")
    (full / "vocab.json").write_text('{"a": 0}')  # the files a full download holds beside them
    (full / "merges.txt").write_text("#version: 0.2\n")
    for folder in (trained, both, partial, full):
        assert check_same_model(f"hf:{folder}", f"hf:{tiny_qwen}") is None, folder.name
        assert check_same_model(f"hf:{tiny_qwen}", f"hf:{folder}") is None, folder.name
    assert check_same_model(f"hf:{trained}", f"hf:{both}") is None
    assert check_same_model(f"hf:{partial}", f"hf:{full}") is None
    # another seed in the two-format layout (and with a trainer's leftovers) is still another model
    seed_both = layout("seed_both", other_models["seed"])
    (seed_both / "pytorch_model.bin").write_bytes(b"a torch copy of the same weights")
    (seed_both / "training_args.bin").write_bytes(b"args")
    with pytest.raises(ConfigError, match=r"are not the same model: weights differ"):
        check_same_model(f"hf:{seed_both}", f"hf:{both}")
    # a partial tokenizer that differs in a file both have is still refused
    template = layout("template_partial", other_models["template"])
    (template / "tokenizer.json").unlink()
    with pytest.raises(ConfigError, match=r"are not the same model: tokenizers or chat templates differ"):
        check_same_model(f"hf:{template}", f"hf:{tiny_qwen}")
    # nothing in common: said, not refused
    only_bin = layout("only_bin")
    for weights in only_bin.glob("*.safetensors"):
        weights.unlink()
    (only_bin / "pytorch_model.bin").write_bytes(b"weights")
    note = check_same_model(f"hf:{only_bin}", f"hf:{tiny_qwen}")
    assert note == (
        f"cannot check that --mllm hf:{only_bin} and --caas-mllm hf:{tiny_qwen} hold the same model (no weight "
        "format in common (.bin vs .safetensors)); a hybrid needs the same weights on both sides, or its band "
        "answers come from another model"
    )
    # an Accelerate checkpoint's state beside .bin weights is no weights: the same model as the plain .bin copy
    accelerate = layout("accelerate", only_bin)
    for leftover in ("optimizer.bin", "scheduler.bin", "random_states_0.pkl", "scaler.pt", "pytorch_model_1.bin"):
        (accelerate / leftover).write_bytes(leftover.encode() * 10)
    assert check_same_model(f"hf:{accelerate}", f"hf:{only_bin}") is None
    (accelerate / "pytorch_model.bin").write_bytes(b"other weights")
    with pytest.raises(ConfigError, match=r"are not the same model: weights differ"):
        check_same_model(f"hf:{accelerate}", f"hf:{only_bin}")
    from eagle_iad.mllm.weights import TOKENIZER_FILES, model_identity

    json_only = layout("tokenizer_json_only")
    for name in TOKENIZER_FILES:
        if name != "tokenizer.json":
            (json_only / name).unlink(missing_ok=True)
    note = check_same_model(f"hf:{json_only}", f"hf:{partial}")
    assert note is not None and "hold the same model (no tokenizer file in common (tokenizer.json vs " in note, note
    # an engine whose identity is of another eagle version (and another seed): said, never refused
    seed = model_identity(other_models["seed"])
    assert seed is not None and seed["version"] == IDENTITY_VERSION
    old = {**seed, "version": IDENTITY_VERSION - 1}
    with _models_server({"object": "list", "data": [{"id": SERVED, "eagle_model": old}]}) as url:
        note = check_same_model(f"openai:{url}#{SERVED}", f"hf:{tiny_qwen}")
    assert (
        note is not None
        and (
            f"hold the same model (their identities are made by different eagle versions (identity version "
            f"{IDENTITY_VERSION - 1} vs {IDENTITY_VERSION}))"
        )
        in note
    ), note


@contextlib.contextmanager
def _models_server(listing: dict[str, Any]) -> Iterator[str]:
    """A real HTTP server answering ``GET /v1/models`` with ``listing`` (an engine of another eagle version)."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    body = json.dumps(listing).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200 if self.path == "/v1/models" else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_a_served_engine_is_checked_against_the_caas_side(
    tiny_qwen: Path, other_models: dict[str, Path], engine_backend: Any
) -> None:
    """``eagle serve-mllm`` lists its model's identity in ``/v1/models``, so ``--mllm openai:<it>`` is checked too; an
    engine that says nothing of its weights (or is down) cannot be checked, which is said, not passed over."""
    from eagle_iad.mllm.hybrid import check_same_model
    from eagle_iad.mllm.weights import SERVED_IDENTITY_KEY, model_identity

    with Engine(engine_backend) as engine:
        from eagle_iad.mllm.openai_compat import OpenAIBackend

        entry = OpenAIBackend(f"http://127.0.0.1:{engine.port}/v1", SERVED).model_entry(10.0)
        assert entry is not None and entry[SERVED_IDENTITY_KEY] == model_identity(tiny_qwen)
        assert check_same_model(engine.spec, f"hf:{tiny_qwen}") is None
        assert check_same_model(engine.spec, f"hf:{other_models['copy']}") is None
        with pytest.raises(ConfigError, match=r"are not the same model: weights differ"):
            check_same_model(engine.spec, f"hf:{other_models['seed']}")
        spec = engine.spec
    note = check_same_model(spec, f"hf:{tiny_qwen}")  # the engine is gone: it cannot be asked
    assert note is not None and note.startswith(f"cannot check that --mllm {spec} and --caas-mllm hf:{tiny_qwen}")
    assert "cannot reach the server" in note
