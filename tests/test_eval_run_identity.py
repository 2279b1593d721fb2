"""``eagle eval``'s run bookkeeping: runs that cannot mix models or weights, and data checked before any work.

* a resumed (or re-reported) run is refused when an expert's ``model.json`` or the MLLM's weights
  changed since its records were made; a run written before identities were recorded is resumed with
  a warning, and its report refuses a tau its records were not made with;
* a run stopped before its first record does not block its ``--out``;
* a corrupt test image or a mask of the wrong size stops ``eval`` and ``eval-expert`` before any fit,
  model load or MLLM work, with one error naming every bad file;
* the report says how many defect images have no mask, and a layout that reads none where the data has
  a mask folder is warned about;
* flags a layout ignores are refused.

Experts are fitted once on a few real elpv cells (folder layout) and copied per test; the MLLM is the
tiny random Qwen2.5-VL.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from conftest import TINY_SERVED_MODEL, LiveServer, copy_elpv_cells
from fastapi import FastAPI
from PIL import Image

from eagle_iad.cli import main
from eagle_iad.errors import BackendError, ConfigError
from eagle_iad.eval.identity import folder_fingerprint, mllm_fingerprint
from eagle_iad.eval.runner import MANIFEST, RESULTS, RunStore, Worker, WorkerConfig

pytestmark = pytest.mark.usefixtures("torch_single_thread")


@pytest.fixture(scope="module")
def fitted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(data root, models folder with ``cells`` fitted), made by one expert-only eval."""
    base = tmp_path_factory.mktemp("identity")
    data = copy_elpv_cells(base / "data")
    models = base / "models"
    assert _eval(data, models, base / "first") == 0
    return data, models


def _eval(data: Path, models: Path, out: Path, *extra: str) -> int:
    return main(["eval", "--data", str(data), "--layout", "folder", "--models", str(models),
                 "--conditions", "expert", "--out", str(out), *extra])  # fmt: skip


def _copy(fitted: tuple[Path, Path], tmp_path: Path) -> tuple[Path, Path]:
    data, models = fitted
    shutil.copytree(models, tmp_path / "models")
    return data, tmp_path / "models"


def _threshold(models: Path, tau: float) -> None:
    assert main(["threshold", "--model", str(models / "cells"), "--tau", str(tau), "--why", "test"]) == 0


def _taus(run: Path) -> set[float]:
    return {json.loads(line)["tau"] for line in (run / RESULTS).read_text().splitlines()}


# --- identity: models ----------------------------------------------------------------------------


def test_threshold_change_refuses_resume_and_report(
    fitted: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data, models = _copy(fitted, tmp_path)
    run = tmp_path / "run"
    assert _eval(data, models, run) == 0
    manifest = json.loads((run / MANIFEST).read_text())
    old_sha = manifest["identity"]["models"]["cells"]
    before = (run / RESULTS).read_text()
    (tau,) = _taus(run)
    _threshold(models, tau + 1.0)
    capsys.readouterr()
    assert _eval(data, models, run) == 2  # a finished run re-reported: its report would show the new tau
    err = capsys.readouterr().err
    assert "model.json SHA-256" in err and str(models / "cells") in err and f"{run}-2" in err
    assert (run / RESULTS).read_text() == before  # nothing appended
    assert "tau" in json.loads((run / "metrics.json").read_text())["expert"]["cells"]
    # A worker that finds the model changed under a running run refuses it too (the check beside the load).
    worker = Worker(WorkerConfig(conditions=("expert",), models_dir=str(models), mllm=None,
                                 model_sha256={"cells": old_sha}))  # fmt: skip
    with pytest.raises(ConfigError, match="changed since this run started"):
        worker.expert("cells")
    # The model the records were made with put back, it resumes.
    shutil.rmtree(models / "cells")
    shutil.copytree(fitted[1] / "cells", models / "cells")
    assert _eval(data, models, run) == 0


def _run_before_identities(fitted: tuple[Path, Path], tmp_path: Path) -> tuple[Path, Path, Path, dict[str, Any]]:
    """A finished run whose ``run.json`` is made to look written before identities were recorded:
    (data, models, the run folder, that manifest)."""
    data, models = _copy(fitted, tmp_path)
    run = tmp_path / "run"
    assert _eval(data, models, run) == 0
    manifest = json.loads((run / MANIFEST).read_text())
    del manifest["identity"]
    (run / MANIFEST).write_text(json.dumps(manifest))
    return data, models, run, manifest


def test_run_written_before_identities_resumes_with_a_warning_and_refuses_another_tau(
    fitted: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data, models, run, manifest = _run_before_identities(fitted, tmp_path)
    capsys.readouterr()
    assert _eval(data, models, run) == 0
    assert "cannot be checked" in capsys.readouterr().err
    assert "identity" in json.loads((run / MANIFEST).read_text())  # checked from now on

    (run / MANIFEST).write_text(json.dumps(manifest))  # written before identities again
    (tau,) = _taus(run)
    _threshold(models, tau + 2.0)
    written = {p: p.read_bytes() for p in run.rglob("*") if p.is_file() and "report" in p.name}
    assert len(written) >= 3  # report.md, report.html, expert/cells/report.md
    capsys.readouterr()
    assert _eval(data, models, run) == 2
    err = capsys.readouterr().err
    assert f"made at tau {tau:.3f}" in err and f"now has tau {tau + 2.0:.3f}" in err
    assert {p: p.read_bytes() for p in written} == written  # no report rewritten with the new tau


def test_an_interrupted_run_written_before_identities_is_refused_before_any_record_with_another_tau(
    fitted: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data, models, run, _ = _run_before_identities(fitted, tmp_path)
    lines = (run / RESULTS).read_text().splitlines(keepends=True)
    assert len(lines) >= 4
    half = "".join(lines[: len(lines) // 2])
    (run / RESULTS).write_text(half)  # interrupted, before identities were recorded
    (tau,) = _taus(run)
    _threshold(models, tau + 2.0)
    capsys.readouterr()
    assert _eval(data, models, run) == 2
    err = capsys.readouterr().err
    assert f"made at tau {tau:.3f}" in err and f"now has tau {tau + 2.0:.3f}" in err
    assert (run / RESULTS).read_text() == half  # no record made with the new model
    assert "identity" not in json.loads((run / MANIFEST).read_text())  # the new model not recorded as the run's
    # The model the records were made with put back, the run resumes and finishes with one tau.
    shutil.rmtree(models / "cells")
    shutil.copytree(fitted[1] / "cells", models / "cells")
    assert _eval(data, models, run) == 0
    assert len((run / RESULTS).read_text().splitlines()) == len(lines) and _taus(run) == {tau}


def test_a_missing_expert_of_a_run_written_before_identities_is_refused_before_it_is_fitted(
    fitted: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data, models, run, manifest = _run_before_identities(fitted, tmp_path)
    (tau,) = _taus(run)
    n = len((run / RESULTS).read_text().splitlines())
    (run / "fits.json").unlink(missing_ok=True)
    shutil.rmtree(models / "cells")
    capsys.readouterr()
    assert _eval(data, models, run) == 2
    err = capsys.readouterr().err
    assert (
        f"{run} holds {n} records made with expert {models / 'cells'} (tau {tau:.3f}), now missing; a new fit would "
        "be another model (this run was written before eval recorded its models, so only the records' tau tells "
        f"them): restore it to resume, or use a new --out (e.g. {run}-2)"
    ) in err
    assert "fitting" not in err and not (models / "cells").exists() and not (run / "fits.json").exists()
    assert json.loads((run / MANIFEST).read_text()) == manifest  # still unchecked: the old model put back resumes
    shutil.copytree(fitted[1] / "cells", models / "cells")
    assert _eval(data, models, run) == 0


def test_openai_model_not_listed_under_its_id_is_not_refused(live_server: type[LiveServer]) -> None:
    app = FastAPI()

    @app.get("/v1/models")
    def models() -> dict[str, object]:  # Ollama: tags listed, bare names answered
        return {"object": "list", "data": [{"id": "llama3.2:latest", "root": "/models/llama3.2"}]}

    with live_server(app) as server:
        assert mllm_fingerprint(f"openai:{server.base}/v1#llama3.2") is None
        listed = mllm_fingerprint(f"openai:{server.base}/v1#llama3.2:latest")
    assert json.loads(str(listed)) == {"id": "llama3.2:latest", "root": "/models/llama3.2"}


def test_a_missing_expert_of_a_run_with_records_is_refused_before_it_is_fitted(
    fitted: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data, models = _copy(fitted, tmp_path)
    run = tmp_path / "run"
    assert _eval(data, models, run) == 0
    (run / "fits.json").unlink(missing_ok=True)
    shutil.rmtree(models / "cells")
    capsys.readouterr()
    assert _eval(data, models, run) == 2
    err = capsys.readouterr().err
    assert f"made with expert {models / 'cells'}" in err and "now missing" in err and f"{run}-2" in err
    assert "fitting" not in err and not (models / "cells").exists() and not (run / "fits.json").exists()


# --- identity: the MLLM ---------------------------------------------------------------------------


def test_mllm_fingerprint_follows_the_weights(tmp_path: Path) -> None:
    folder = tmp_path / "m"
    folder.mkdir()
    assert folder_fingerprint(folder) is None  # no weights: nothing to identify
    (folder / "config.json").write_text('{"a": 1}')
    (folder / "model.safetensors").write_bytes(b"one")
    first = mllm_fingerprint(f"hf:{folder}")
    assert first is not None and first == folder_fingerprint(folder)
    (folder / "model.safetensors").write_bytes(b"two")  # same size, other weights
    second = mllm_fingerprint(f"hf:{folder}")
    assert second != first
    (folder / "config.json").write_text('{"a": 2}')
    assert mllm_fingerprint(f"hf:{folder}") not in (first, second)
    assert mllm_fingerprint(f"hf:{tmp_path / 'not-there'}") is None  # a hub id that is not cached


def test_an_accelerate_checkpoints_state_beside_bin_weights_is_not_in_the_fingerprint(tmp_path: Path) -> None:
    """Accelerate's ``save_state`` writes the optimizer and scheduler as ``optimizer.bin`` and ``scheduler.bin``
    (beside ``random_states_0.pkl``, ``scaler.pt``, a second model's ``pytorch_model_1.bin``) next to
    ``pytorch_model.bin`` weights: counted as weights, every training step refused a resume as other weights.
    Only the files a loader takes count: the weights (sharded too, with their index); a change of one of them is
    still other weights."""
    folder = tmp_path / "checkpoint-100"
    folder.mkdir()
    (folder / "config.json").write_text('{"a": 1}')
    (folder / "pytorch_model-00001-of-00002.bin").write_bytes(b"first half")
    (folder / "pytorch_model-00002-of-00002.bin").write_bytes(b"second half")
    index = folder / "pytorch_model.bin.index.json"
    index.write_text('{"weight_map": {"a": "pytorch_model-00001-of-00002.bin"}}')
    recorded = folder_fingerprint(folder)
    assert recorded is not None and recorded.startswith("v3:sha256:")
    state = {"optimizer.bin": b"adam 1", "scheduler.bin": b"step 1", "random_states_0.pkl": b"rng 1",
             "scaler.pt": b"scale 1", "pytorch_model_1.bin": b"an EMA copy", "training_args.bin": b"args 1",
             "optimizer.bin.index.json": b"{}"}  # fmt: skip
    for name, content in state.items():  # added
        (folder / name).write_bytes(content)
    assert folder_fingerprint(folder) == recorded
    for name, content in state.items():  # a step later
        (folder / name).write_bytes(b"a step later: " + content)
    assert folder_fingerprint(folder) == recorded
    (folder / "pytorch_model-00002-of-00002.bin").write_bytes(b"second HALF")  # same size, other weights
    changed = folder_fingerprint(folder)
    assert changed is not None and changed != recorded
    index.write_text('{"weight_map": {"a": "pytorch_model-00002-of-00002.bin"}}')
    assert folder_fingerprint(folder) not in (recorded, changed)
    odd = tmp_path / "gptq"  # shards the loaded index lists under names of their own (a quantiser's): weights too
    odd.mkdir()
    (odd / "config.json").write_text('{"a": 1}')
    (odd / "gptq_model-4bit-128g.safetensors").write_bytes(b"int4 weights")
    (odd / "model.safetensors.index.json").write_text('{"weight_map": {"a": "gptq_model-4bit-128g.safetensors"}}')
    listed = folder_fingerprint(odd)
    assert listed is not None
    (odd / "gptq_model-4bit-128g.safetensors").write_bytes(b"int4 WEIGHTS")
    assert folder_fingerprint(odd) not in (None, listed)
    (odd / "model.safetensors.index.json").write_text("[" * 200_000)  # no index a loader could read: not listed
    assert folder_fingerprint(odd) is None  # (a nested one raised RecursionError: review)
    only_state = tmp_path / "state-only"  # an Accelerate state without the model: no weights to identify
    only_state.mkdir()
    for name in ("config.json", "optimizer.bin", "scheduler.bin"):
        (only_state / name).write_bytes((folder / name).read_bytes())
    assert folder_fingerprint(only_state) is None


def test_store_refuses_other_mllm_weights_and_names_them(tmp_path: Path) -> None:
    identity = {"models": {"c": "a" * 64}, "mllm": "sha256:1111"}
    with RunStore(tmp_path, {"k": 1}) as store:
        store.check_identity(identity)
        store.append({"image": "x", "question_id": "q", "condition": "eagle"})
    with RunStore(tmp_path, {"k": 1}) as store:
        store.check_identity(identity)  # unchanged: resumes
        with pytest.raises(ConfigError, match=r"MLLM hf:/w \(weights fingerprint sha256:1111 is now sha256:2222\)"):
            store.check_identity({**identity, "mllm": "sha256:2222"}, {"mllm": "hf:/w"})
        with pytest.raises(ConfigError, match="expert models/c"):
            store.check_identity({**identity, "models": {"c": "b" * 64}})


@pytest.fixture(scope="module")
def tiny_qwen(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from eagle_iad.testing.tiny import build_tiny_qwen2_5_vl

    return build_tiny_qwen2_5_vl(tmp_path_factory.mktemp("identity_tiny") / "qwen")


def test_rebuilt_weights_under_the_same_path_refuse_resume(
    fitted: tuple[Path, Path], tiny_qwen: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from eagle_iad.testing.tiny import build_tiny_qwen2_5_vl

    data, models = _copy(fitted, tmp_path)
    weights = tmp_path / "qwen"
    shutil.copytree(tiny_qwen, weights)
    run = tmp_path / "run"
    args = ["--conditions", "baseline", "--mllm", f"hf:{weights}", "--max-new-tokens", "1", "--limit", "2"]
    assert _eval(data, models, run, *args) == 0
    shutil.rmtree(weights)
    build_tiny_qwen2_5_vl(weights, seed=1)
    capsys.readouterr()
    assert _eval(data, models, run, *args) == 2
    assert "weights fingerprint" in capsys.readouterr().err


def test_a_trainers_files_beside_the_weights_do_not_refuse_a_resume(
    fitted: tuple[Path, Path], tiny_qwen: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A checkpoint folder a training run goes on writing: its optimizer, scheduler, RNG state and training
    arguments change while the model's weights do not, and every ``.bin``/``.pt``/``.pth`` was hashed, so the
    resume was refused as other weights. Only what the model loads counts; its tokenizer does."""
    data, models = _copy(fitted, tmp_path)
    weights = tmp_path / "qwen"
    shutil.copytree(tiny_qwen, weights)
    trainer = {"optimizer.pt": b"adam 1", "scheduler.pt": b"step 1", "rng_state.pth": b"rng 1",
               "training_args.bin": b"args 1"}  # fmt: skip
    for name, content in trainer.items():
        (weights / name).write_bytes(content)
    run = tmp_path / "run"
    args = ["--conditions", "baseline", "--mllm", f"hf:{weights}", "--max-new-tokens", "1", "--limit", "2"]
    assert _eval(data, models, run, *args) == 0
    recorded = json.loads((run / MANIFEST).read_text())["identity"]["mllm"]
    assert recorded == folder_fingerprint(weights)
    for name in trainer:  # the training went on: its own files changed, the model's did not
        (weights / name).write_bytes(b"a step later: " + trainer[name])
    (weights / "pytorch_model.bin").write_bytes(b"a .bin export beside the safetensors: not what is loaded")
    capsys.readouterr()
    assert _eval(data, models, run, *args) == 0, capsys.readouterr().err
    assert folder_fingerprint(weights) == recorded and recorded.startswith("v3:sha256:")
    tokenizer = weights / "tokenizer_config.json"
    tokenizer.write_text(tokenizer.read_text().replace("{", '{"model_max_length_note": "another tokenizer", ', 1))
    assert _eval(data, models, run, *args) == 2
    assert f"(weights fingerprint {recorded} is now {folder_fingerprint(weights)})" in capsys.readouterr().err


def test_a_run_with_an_older_mllm_fingerprint_is_resumed_and_said(tmp_path: Path) -> None:
    """run.json written by an eagle that hashed every weight-like file (fingerprint version 1, ``sha256:…``):
    its fingerprint differs from this one's whatever the weights, so a refusal would say nothing; the resume
    goes on, says why the weights are not checked, and records the new fingerprint, checked from then on."""
    older = {"models": {"c": "a" * 64}, "mllm": "sha256:0123456789abcdef"}
    now = {**older, "mllm": "v3:sha256:fedcba9876543210"}
    with RunStore(tmp_path, {"k": 1}) as store:
        store.check_identity(older)
        store.append({"image": "x", "question_id": "q", "condition": "eagle"})
    warnings: list[str] = []
    with RunStore(tmp_path, {"k": 1}, warnings.append) as store:
        store.check_identity(now, {"mllm": "hf:/w"})
    assert warnings == [
        f"{tmp_path}: its MLLM weights fingerprint sha256:0123456789abcdef was made the way of fingerprint version 1 "
        "(an older eagle-iad's, which hashed other files: a trainer's optimizer.pt, optimizer.bin ... too), this one "
        "v3:sha256:fedcba9876543210 the way of version 3, so they cannot be compared; its 1 record cannot be checked "
        "against the MLLM hf:/w weights; resuming, and checking from now on (use a new --out if the weights changed "
        "since)"
    ]
    assert json.loads((tmp_path / MANIFEST).read_text())["identity"]["mllm"] == now["mllm"]
    with RunStore(tmp_path, {"k": 1}) as store, pytest.raises(ConfigError, match="weights fingerprint v3:sha256:fedc"):
        store.check_identity({**now, "mllm": "v3:sha256:0000000000000000"})
    warnings.clear()  # a run.json of fingerprint version 2 (an Accelerate optimizer.bin counted): said alike
    with RunStore(tmp_path / "v2", {"k": 1}) as store:
        store.check_identity({**older, "mllm": "v2:sha256:0123456789abcdef"})
        store.append({"image": "x", "question_id": "q", "condition": "eagle"})
    with RunStore(tmp_path / "v2", {"k": 1}, warnings.append) as store:
        store.check_identity(now, {"mllm": "hf:/w"})
    assert len(warnings) == 1 and "the way of fingerprint version 2 " in warnings[0], warnings
    assert "this one v3:sha256:fedcba9876543210 the way of version 3, so they cannot be compared" in warnings[0]
    hybrid = json.dumps({"caas": "sha256:0123456789abcdef", "engine": '{"id": "m"}'}, sort_keys=True)
    newer = json.dumps({"caas": "v3:sha256:fedcba9876543210", "engine": '{"id": "m"}'}, sort_keys=True)
    with RunStore(tmp_path / "hybrid", {"k": 1}) as store:
        store.check_identity({**older, "mllm": hybrid})
        store.append({"image": "x", "question_id": "q", "condition": "eagle"})
    warnings.clear()
    with RunStore(tmp_path / "hybrid", {"k": 1}, warnings.append) as store:
        store.check_identity({**older, "mllm": newer})  # a hybrid's folder side of version 1: said, not refused
    assert len(warnings) == 1 and "fingerprint version 1" in warnings[0], warnings


# --- a run stopped before its first record --------------------------------------------------------


def test_a_run_without_records_restarts_with_another_configuration(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    RunStore(tmp_path, {"mllm": "hf:qwen"}).close()  # stopped at its start: run.json, no record
    warnings: list[str] = []
    with RunStore(tmp_path, {"mllm": "hf:Qwen/Qwen2.5-VL-7B-Instruct"}, warnings.append) as store:
        store.append({"image": "x", "question_id": "q", "condition": "eagle"})
    assert "no record" in warnings[0] and "changed: mllm" in warnings[0]
    assert json.loads((tmp_path / MANIFEST).read_text())["config"]["mllm"] == "hf:Qwen/Qwen2.5-VL-7B-Instruct"
    with pytest.raises(ConfigError, match="different configuration"):  # with records it stays refused
        RunStore(tmp_path, {"mllm": "hf:other"})


def test_a_malformed_mllm_spec_writes_no_run(fitted: tuple[Path, Path], tmp_path: Path) -> None:
    data, models = _copy(fitted, tmp_path)
    run = tmp_path / "run"
    assert _eval(data, models, run, "--conditions", "baseline", "--mllm", "qwen") == 2
    assert not (run / MANIFEST).exists()


# --- data checked before any work ------------------------------------------------------------------


def _broken_data(fitted: tuple[Path, Path], tmp_path: Path) -> tuple[Path, Path, Path]:
    """A copy of the cells with one truncated test image and one mask of the wrong size."""
    data = tmp_path / "data"
    shutil.copytree(fitted[0], data)
    cells = data / "cells"
    normal = sorted((cells / "test" / "good").iterdir())[0]
    normal.write_bytes(normal.read_bytes()[:400])  # a header, no pixels
    crack = sorted((cells / "test" / "crack").iterdir())[0]
    (cells / "masks" / "crack").mkdir(parents=True)
    mask = cells / "masks" / "crack" / f"{crack.stem}.png"
    Image.new("L", (40, 40)).save(mask)
    return data, normal, mask


def test_eval_checks_every_image_and_mask_before_fitting(
    fitted: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data, normal, mask = _broken_data(fitted, tmp_path)
    models = tmp_path / "models"
    capsys.readouterr()
    assert _eval(data, models, tmp_path / "run") == 2
    err = capsys.readouterr().err
    assert "2 of the 6 test images cannot be used" in err and str(normal) in err and str(mask) in err
    assert "mask is 40x40" in err
    assert not (models / "cells").exists()  # nothing fitted
    assert not (tmp_path / "run" / MANIFEST).exists()


def test_eval_expert_checks_every_image_and_mask_before_the_model(
    fitted: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data, normal, mask = _broken_data(fitted, tmp_path)
    capsys.readouterr()
    assert main(["eval-expert", "--data", str(data), "--layout", "folder", "--category", "cells",
                 "--model", str(fitted[1] / "cells"), "--out", str(tmp_path / "report")]) == 2  # fmt: skip
    err = capsys.readouterr().err
    assert "2 of the 6 test images cannot be used" in err and str(normal) in err and str(mask) in err
    assert not (tmp_path / "report" / "metrics.json").exists()


def test_a_resume_decodes_only_new_or_changed_files_and_still_refuses_a_corrupted_one(
    fitted: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import eagle_iad.eval.preflight as preflight

    data = tmp_path / "data"
    shutil.copytree(fitted[0], data)
    models = _copy(fitted, tmp_path)[1]
    run = tmp_path / "run"
    decoded: list[str] = []
    real_load_rgb = preflight.load_rgb

    def counting_load_rgb(source: Any, *args: Any, **kwargs: Any) -> Any:
        decoded.append(str(source))
        return real_load_rgb(source, *args, **kwargs)

    monkeypatch.setattr(preflight, "load_rgb", counting_load_rgb)
    assert _eval(data, models, run) == 0
    tests = sorted(str(p) for p in (data / "cells" / "test").rglob("*.png"))
    assert sorted(decoded) == tests  # the first run checks every test image

    decoded.clear()
    assert _eval(data, models, run) == 0
    assert decoded == []  # a resume decodes nothing that did not change
    kept = json.loads((run / "preflight.json").read_text())  # versioned JSON: each file checked good, stamped
    assert kept["format"] == 1 and sorted(row["image"] for row in kept["files"]) == tests

    normal = Path(tests[0])
    normal.write_bytes(normal.read_bytes()[:400])  # corrupted between the runs
    capsys.readouterr()
    assert _eval(data, models, run) == 2
    err = capsys.readouterr().err
    assert decoded == [str(normal)]  # only the changed file is decoded again
    assert f"{normal}: image data is truncated or corrupt" in err  # refused as a first run refuses it
    assert _eval(data, models, tmp_path / "fresh") == 2  # the same message as a run that never checked it
    assert capsys.readouterr().err == err
    decoded.clear()
    assert _eval(data, models, run) == 2  # and again: a refused file is not kept as checked
    assert decoded == [str(normal)] and capsys.readouterr().err == err


# --- masks the layout did not read ----------------------------------------------------------------


def test_report_counts_defects_without_mask_and_warns_of_an_unread_mask_folder(
    fitted: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    shutil.copytree(fitted[0], data)
    (data / "cells" / "ground_truth" / "crack").mkdir(parents=True)  # MVTec-style masks folder layout folder ignores
    models = _copy(fitted, tmp_path)[1]
    run = tmp_path / "run"
    capsys.readouterr()
    assert _eval(data, models, run) == 0
    err = capsys.readouterr().err
    assert "read no mask for any of its 3 defect images" in err and str(data / "cells" / "ground_truth") in err
    assert "is --layout right?" in err
    md = (run / "report.md").read_text()
    assert "anomalous without mask" in md and "3 of 3 defect images have no mask" in md
    assert json.loads((run / "metrics.json").read_text())["expert"]["cells"]["defects_without_mask"] == 3


# --- flags a layout ignores -----------------------------------------------------------------------


def test_flags_the_layout_ignores_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = ["eval", "--layout", "elpv", "--models", str(tmp_path / "models"), "--conditions", "expert",
            "--limit", "1", "--limit-train", "2", "--out", str(tmp_path / "run")]  # fmt: skip
    assert main([*base, "--data", str(tmp_path)]) == 2
    assert "reads --data only as a folder holding its own labels.csv" in capsys.readouterr().err
    assert main([*base, "--mmad-json", str(tmp_path / "mmad.json")]) == 2
    assert "--mmad-json is read only with --layout mmad" in capsys.readouterr().err
    assert not (tmp_path / "models").exists()


def test_openai_fingerprint_is_the_served_model_and_a_down_engine_stops_first(
    tiny_qwen_server: LiveServer, live_server: type[LiveServer], tmp_path: Path
) -> None:
    spec = f"openai:{tiny_qwen_server.base}/v1#{TINY_SERVED_MODEL}"
    assert json.loads(str(mllm_fingerprint(spec))) == {"id": TINY_SERVED_MODEL}
    # Not listed under that id (an Ollama tag, a LiteLLM alias): nothing to compare, not refused.
    assert mllm_fingerprint(f"openai:{tiny_qwen_server.base}/v1#gpt-4o") is None
    with live_server(FastAPI()) as stopped:
        down = f"openai:{stopped.base}/v1#{TINY_SERVED_MODEL}"
    with pytest.raises(BackendError, match="cannot reach the server"):
        mllm_fingerprint(down)
    # An engine that is down stops eval before its run folder is written.
    assert main(["eval", "--layout", "elpv", "--models", str(tmp_path / "m"), "--conditions", "baseline",
                 "--limit", "1", "--mllm", down, "--out", str(tmp_path / "run")]) == 2  # fmt: skip
    assert not (tmp_path / "run" / MANIFEST).exists() and not (tmp_path / "m").exists()
