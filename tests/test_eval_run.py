"""``eagle eval`` (docs/METHOD.md §5): metrics by hand, the resumable store, layouts end to end, SIGKILL resume, Ray.

The MLLM is the tiny random Qwen2.5-VL checkpoint (its replies are mostly unparsable, which is
exactly what the unparsable accounting must survive); experts are fitted on a few real elpv cells
or real tire images. Runs stay tiny (a handful of images) so the whole file takes well under 90 s.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import copy_elpv_cells, wait_s
from tire_data import TIRE, needs_tire

from eagle_iad.cli import main
from eagle_iad.data import get_layout
from eagle_iad.errors import ConfigError
from eagle_iad.eval.mllm_metrics import caas_effect, compute_metrics, discrimination, task_accuracy
from eagle_iad.eval.protocol import MMAD_TYPES, limit_items, mmad_items, parse_conditions
from eagle_iad.eval.runner import RESULTS, RunStore

pytestmark = pytest.mark.usefixtures("torch_single_thread")

ALL = "baseline,expert,tgps,eagle,text-only,visual-only"


def _rec(label: int, answer: str, condition: str = "eagle", **extra: Any) -> dict[str, Any]:
    gold = "A" if label == 1 else "B"
    base = {"image": f"{label}{answer}{len(extra)}", "question_id": "anomaly", "condition": condition,
            "category": "c", "label": label, "qtype": "Anomaly Detection", "answer": answer,
            "correct": answer == gold}  # fmt: skip
    return {**base, **extra}


# --- metrics against hand-computed values ------------------------------------------------------


def test_discrimination_by_hand() -> None:
    # 3 normal: B, B, A (acc 2/3); 4 anomalous: A, A, B, unparsable (acc 2/4).
    rows = [_rec(0, "B"), _rec(0, "B"), _rec(0, "A"), _rec(1, "A"), _rec(1, "A"), _rec(1, "B"), _rec(1, "unparsable")]
    d = discrimination(rows)
    assert (d["tp"], d["fp"], d["tn"], d["fn"]) == (2, 1, 2, 2)
    assert d["accuracy"] == pytest.approx((2 / 3 + 2 / 4) / 2)
    assert d["precision"] == pytest.approx(2 / 3)
    assert d["recall"] == pytest.approx(0.5)
    assert d["f1"] == pytest.approx(2 * (2 / 3) * 0.5 / (2 / 3 + 0.5))
    assert d["unparsable"] == 1
    only_normal = discrimination([_rec(0, "B"), _rec(0, "A")])
    assert only_normal["accuracy"] == 0.5 and only_normal["recall"] is None and only_normal["f1"] is None


def test_task_accuracy_and_flip_table_by_hand() -> None:
    other = {**_rec(1, "C", qtype="Defect Classification"), "correct": True}
    acc = task_accuracy([_rec(1, "A"), _rec(0, "A"), other])
    assert acc["Anomaly Detection"] == {"n": 2, "correct": 1, "unparsable": 0, "accuracy": 0.5}
    assert acc["Defect Classification"]["accuracy"] == 1.0
    pairs = [("B", "A", True), ("A", "B", True), ("B", "unparsable", True), ("A", "A", True), ("B", "A", False)]
    records = []
    for index, (before, after, fired) in enumerate(pairs):
        key = {"image": f"i{index}", "label": 1}
        records.append({**_rec(1, before, "tgps"), **key})
        records.append({**_rec(1, after, "eagle", caas_applied=fired), **key})
    effect = caas_effect(records)
    assert effect["n"] == 5 and effect["triggered"] == 4 and effect["trigger_rate"] == 0.8
    assert effect["flips"] == {"wrong_to_right": 1, "right_to_wrong": 1, "changed_still_wrong": 1, "unchanged": 1}
    assert compute_metrics(records, ("tgps", "eagle"))["caas"]["overall"] == effect


def test_conditions_and_limit() -> None:
    assert parse_conditions("eagle,baseline") == ("baseline", "eagle")
    with pytest.raises(ConfigError):
        parse_conditions("eagle,magic")


# --- the store ----------------------------------------------------------------------------------


def test_caas_phase_enters_the_config_hash_only_when_not_the_default() -> None:
    from dataclasses import replace

    from eagle_iad.eval.experiment import ExperimentConfig
    from eagle_iad.eval.runner import config_hash

    base = ExperimentConfig(layout="folder", data="/d", models="/m", conditions=("expert",))
    assert "caas_phase" not in base.as_dict()
    decode = replace(base, caas_phase="decode")
    assert decode.as_dict() == {**base.as_dict(), "caas_phase": "decode"}
    assert config_hash(decode.as_dict()) != config_hash(base.as_dict())


def test_store_truncates_a_torn_line_and_refuses_another_config(tmp_path: Path) -> None:
    store = RunStore(tmp_path, {"a": 1})
    store.append({"image": "x", "question_id": "q", "condition": "eagle"})
    with pytest.raises(ConfigError, match="in use"):
        RunStore(tmp_path, {"a": 1})  # a second run into the same directory at the same time
    store.close()
    with (tmp_path / RESULTS).open("a") as handle:
        handle.write('{"image": "y", "quest')  # a crash mid-append
    with RunStore(tmp_path, {"a": 1}) as again:
        assert again.done == {("x", "q", "eagle")}
    assert (tmp_path / RESULTS).read_text().endswith("}\n")
    with pytest.raises(ConfigError, match="different configuration"):
        RunStore(tmp_path, {"a": 2})


# --- end to end -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_qwen(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from eagle_iad.testing.tiny import build_tiny_qwen2_5_vl

    return build_tiny_qwen2_5_vl(tmp_path_factory.mktemp("eval_tiny") / "qwen")


@pytest.fixture(scope="module")
def cells(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder-layout dataset of real elpv cells: 6 training normals, 3 normal + 3 cracked test cells."""
    return copy_elpv_cells(tmp_path_factory.mktemp("cells_data"))


def _eval(*argv: str) -> int:
    return main(["eval", "--max-new-tokens", "2", *argv])


def test_folder_layout_end_to_end(cells: Path, tiny_qwen: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    args = ["--data", str(cells), "--layout", "folder", "--models", str(tmp_path / "models"),
            "--mllm", f"hf:{tiny_qwen}", "--conditions", ALL, "--attention", "--out", str(run)]  # fmt: skip
    assert _eval(*args) == 0
    assert (tmp_path / "models" / "cells" / "model.json").exists()  # fitted because it was missing
    rows = [json.loads(line) for line in (run / RESULTS).read_text().splitlines()]
    assert len(rows) == 6 * 6
    for row in rows:
        for key in ("category", "label", "score", "tau", "s_max", "in_band", "caas_applied", "reply", "answer",
                    "correct", "latency_s"):  # fmt: skip
            assert key in row
        assert (row["score"] is None) == (row["condition"] == "baseline")
    metrics = json.loads((run / "metrics.json").read_text())
    for condition in ALL.split(","):
        assert metrics["mllm"]["conditions"][condition]["per_class"]["cells"]["anomaly"]["n"] == 6
    assert metrics["expert"]["cells"]["image_auroc"] is not None
    md = (run / "report.md").read_text()
    assert "NOT measured" in md and "86.40" in md
    assert "attention.png" in md and (run / "attention.png").exists()
    assert (run / "expert" / "cells" / "histogram.png").exists()
    assert "<table>" in (run / "report.html").read_text()
    # A checkpoint without the tiny model's note is not marked a random test model anywhere.
    assert "random_test_model" not in metrics and "random_test_model" not in (run / "run.json").read_text()
    assert not any("random_test_model" in row for row in rows) and "random test model" not in md
    # Rerunning is a no-op resume; a changed configuration is refused.
    before = (run / RESULTS).read_text()
    assert _eval(*args) == 0
    assert (run / RESULTS).read_text() == before
    assert _eval(*args[:-2], "--shots", "1", "--out", str(run)) == 2


def test_a_run_answered_by_a_random_test_model_is_marked_not_a_measurement(
    cells: Path, tiny_qwen: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import shutil

    from eagle_iad.testing.tiny import NOTE_NAME

    tiny = tmp_path / "tiny"
    shutil.copytree(tiny_qwen, tiny)
    (tiny / NOTE_NAME).write_text("a tiny random model\n")  # what `python -m eagle_iad.testing.tiny` leaves
    run = tmp_path / "run"
    args = ["--data", str(cells), "--layout", "folder", "--models", str(tmp_path / "models"), "--mllm", f"hf:{tiny}",
            "--conditions", "baseline,expert", "--limit", "2", "--attention", "--out", str(run)]  # fmt: skip
    capsys.readouterr()
    assert _eval(*args) == 0
    err = capsys.readouterr().err
    assert f"eagle: warning: {tiny} is a tiny random test model ({NOTE_NAME}): its answers are random noise" in err
    assert json.loads((run / "run.json").read_text())["random_test_model"] is True
    rows = [json.loads(line) for line in (run / RESULTS).read_text().splitlines()]
    assert {row["condition"] for row in rows} == {"baseline", "expert"}
    for row in rows:  # the MLLM's answers are marked; the expert's own decision is not the random model's
        assert row.get("random_test_model", False) is (row["condition"] == "baseline")
    assert json.loads((run / "metrics.json").read_text())["random_test_model"] is True
    banner = "Answers from a random test model: not a measurement."
    assert (run / "report.md").read_text().splitlines()[2] == f"**{banner} The MLLM is a tiny random test model " \
        "(built by python -m eagle_iad.testing.tiny): its answers are random noise, so the MLLM numbers below " \
        "measure nothing.**"  # fmt: skip
    assert f"<p><strong>{banner}" in (run / "report.html").read_text()
    from PIL import Image

    from eagle_iad.mllm.attention import RANDOM_CAPTION

    with Image.open(run / "attention.png") as im:  # captioned as `eagle attention`'s pictures are
        assert im.text.get("Description") == RANDOM_CAPTION
    # A resume (here: a re-report) keeps the marks.
    assert _eval(*args) == 0
    assert json.loads((run / "metrics.json").read_text())["random_test_model"] is True


def test_a_model_folder_without_tokenizer_is_refused_before_the_run_folder_is_written(
    cells: Path, tiny_qwen: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Found at load, not at the first prompt (a traceback, and run.json/preflight.json left behind)."""
    import shutil

    bare = tmp_path / "bare"
    shutil.copytree(tiny_qwen, bare)
    (bare / "tokenizer.json").unlink()
    (bare / "tokenizer_config.json").unlink()
    run = tmp_path / "run"
    capsys.readouterr()
    assert _eval("--data", str(cells), "--layout", "folder", "--models", str(tmp_path / "models"), "--mllm",
                 f"hf:{bare}", "--conditions", "baseline", "--limit", "2", "--out", str(run)) == 2  # fmt: skip
    err = capsys.readouterr().err
    assert err == (
        f"eagle: error: cannot load MLLM {str(bare)!r}: its tokenizer does not know the image token '<|image_pad|>' "
        "(id 5): the folder lacks tokenizer.json and tokenizer_config.json; no prompt could place an image\n"
    )
    assert not run.exists() and not (tmp_path / "models").exists()


@needs_tire
def test_mvtec_layout_end_to_end(tiny_qwen: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert _eval("--data", str(TIRE), "--layout", "mvtec", "--models", str(tmp_path / "models"),
                 "--mllm", f"hf:{tiny_qwen}", "--conditions", "baseline,expert,eagle", "--limit", "2",
                 "--limit-train", "4", "--shots", "1", "--caas-phase", "decode", "--out", str(run)) == 0  # fmt: skip
    # A non-default CAAS phase is part of the run's configuration (the default is left out, so runs made
    # before the option existed keep their hash and resume).
    assert json.loads((run / "run.json").read_text())["config"]["caas_phase"] == "decode"
    metrics = json.loads((run / "metrics.json").read_text())
    anomaly = metrics["mllm"]["conditions"]["expert"]["overall"]["anomaly"]
    assert (anomaly["n_normal"], anomaly["n_anomalous"]) == (1, 1)
    assert metrics["expert"]["tire"]["pixel_auroc"] is not None
    boxes = metrics["expert"]["tire"]["boxes"]
    assert boxes["n_anomalous_with_mask"] == 1 and boxes["n_normal"] == 1
    assert metrics["expert_boxes"] == boxes  # one class: pooled equals per class
    assert "Expert boxes and maps per class" in (run / "report.md").read_text()
    assert (run / "expert" / "tire" / "boxes_grid.png").exists()
    # each 1-shot MLLM answer names its template (the category's first training image); the expert's has none
    template = str(get_layout("mvtec").samples(Path(TIRE).resolve(), "tire", "train")[0].path)  # --data resolved
    rows = [json.loads(line) for line in (run / "results.jsonl").read_text().splitlines()]
    assert {(r["condition"], r.get("template")) for r in rows} == {
        ("baseline", template), ("eagle", template), ("expert", None)
    }  # fmt: skip


def _write_mmad(path: Path) -> None:
    """A small mmad.json over tire images with all seven MMAD question types on one anomalous image."""
    templates = ["tire/train/good/000.png", "tire/train/good/001.png", "tire/train/good/002.png"]
    yes_no = {"A": "Yes.", "B": "No."}
    conversation = [{"Question": "Is there any defect in the object?", "Answer": "A", "Options": yes_no,
                     "type": "Anomaly Detection"}]  # fmt: skip
    for qtype in MMAD_TYPES[1:]:
        conversation.append({"Question": f"{qtype}?", "Answer": "B", "Options": {"A": "x", "B": "y", "C": "z"},
                             "type": qtype})  # fmt: skip
    data = {
        "tire/test/cut/000.png": {"mask_path": "tire/ground_truth/cut/000_mask.png", "conversation": conversation,
                                  "similar_templates": templates[:2], "random_templates": templates[2:]},
        "tire/test/good/000.png": {"mask_path": None, "similar_templates": templates[:2], "random_templates": [],
                                   "conversation": [{**conversation[0], "Answer": "B"}]},
    }  # fmt: skip
    path.write_text(json.dumps(data))


@needs_tire
def test_mmad_json_all_seven_tasks(tiny_qwen: Path, tmp_path: Path) -> None:
    mmad = tmp_path / "mmad.json"
    _write_mmad(mmad)
    assert len(mmad_items(mmad, TIRE)) == 2  # the anomaly question only by default
    items = mmad_items(mmad, TIRE, "all")
    assert {i.qtype for i in items} == set(MMAD_TYPES) and len(items) == 8
    assert {i.label for i in items} == {0, 1} and all(i.category == "tire" for i in items)
    assert len(limit_items(items, 1)) == 1  # one image per category, the normal first
    run = tmp_path / "run"
    assert _eval("--data", str(TIRE), "--layout", "mmad", "--mmad-json", str(mmad), "--tasks", "all",
                 "--models", str(tmp_path / "models"), "--mllm", f"hf:{tiny_qwen}",
                 "--conditions", "baseline,expert,tgps", "--out", str(run)) == 0  # fmt: skip
    metrics = json.loads((run / "metrics.json").read_text())
    tasks = metrics["mllm"]["conditions"]["baseline"]["overall"]["tasks"]
    assert set(tasks) == set(MMAD_TYPES)
    assert metrics["mllm"]["conditions"]["expert"]["overall"]["tasks"].keys() == {"Anomaly Detection"}
    assert metrics["n_records"] == 8 + 2 + 8


# --- crash and resume -----------------------------------------------------------------------------


def _cli(args: list[str]) -> subprocess.Popen[bytes]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    code = "import sys; from eagle_iad.cli import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.Popen([sys.executable, "-c", code, *args], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)  # fmt: skip


def test_sigkill_midway_then_resume_gives_identical_metrics(cells: Path, tiny_qwen: Path, tmp_path: Path) -> None:
    models = tmp_path / "models"
    common = ["eval", "--data", str(cells), "--layout", "folder", "--models", str(models), "--mllm", f"hf:{tiny_qwen}",
              "--conditions", "baseline,expert,tgps,eagle,text-only", "--max-new-tokens", "4"]  # fmt: skip
    assert _cli([*common, "--out", str(tmp_path / "reference")]).wait(timeout=wait_s(120)) == 0
    crashed = tmp_path / "crashed"
    proc = _cli([*common, "--out", str(crashed)])
    results = crashed / RESULTS
    deadline = time.monotonic() + wait_s(120)
    while time.monotonic() < deadline and proc.poll() is None:
        if results.exists() and results.read_bytes().count(b"\n") >= 3:
            break
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=wait_s(30)) == -signal.SIGKILL, "the run finished before it could be killed"
    partial = results.read_bytes().count(b"\n")
    assert 3 <= partial < 30
    with results.open("a") as handle:
        handle.write('{"image": "torn')  # as if the kill had landed mid-write
    assert _cli([*common, "--out", str(crashed)]).wait(timeout=wait_s(120)) == 0
    assert (crashed / "metrics.json").read_text() == (tmp_path / "reference" / "metrics.json").read_text()
    keys = [tuple(json.loads(line)[k] for k in ("image", "question_id", "condition")) for line in results.open()]
    assert len(keys) == len(set(keys)) == 30


# --- Ray ------------------------------------------------------------------------------------------


#: The Ray half of the test below, in a Python of its own. ``ray.init`` takes over SIGSEGV, SIGABRT, SIGBUS and SIGTERM,
#: ``ray.shutdown`` leaves them at the default action (pytest's faulthandler gone: a later crash says nothing) and
#: Ray's gRPC threads running, for the whole rest of the run (CI: a silent "Segmentation fault" after 1,672 tests;
#: at that point of a local run Ray's gcs_client_io_service and gRPC threads were still alive in the test process).
RAY_RUN = """
import json, sys
from pathlib import Path
sys.path.insert(0, sys.argv[1])
import ray
from conftest import start_ray
from eagle_iad.eval.executors import RayExecutor
from eagle_iad.eval.experiment import ExperimentConfig, run_experiment
options = json.loads(sys.argv[2])
config = ExperimentConfig(**{**options, "conditions": tuple(options["conditions"])})
start_ray(ray, num_cpus=2, include_dashboard=False, log_to_driver=False)
try:
    run_experiment(config, Path(sys.argv[3]), RayExecutor(num_workers=2, chunk=2))
finally:
    ray.shutdown()
"""


def test_ray_executor_gives_the_same_records(cells: Path, tiny_qwen: Path, tmp_path: Path) -> None:
    pytest.importorskip("ray", reason="Ray is an optional extra: pip install 'eagle-iad[ray]'")
    from eagle_iad.eval.experiment import ExperimentConfig, run_experiment

    conditions = ("baseline", "expert", "eagle")
    options = {"layout": "folder", "data": str(cells), "models": str(tmp_path / "models"), "max_new_tokens": 2,
               "mllm": f"hf:{tiny_qwen}"}  # fmt: skip
    local = run_experiment(ExperimentConfig(**options, conditions=conditions), tmp_path / "local")
    options["conditions"] = list(conditions)
    ran = subprocess.run([sys.executable, "-c", RAY_RUN, str(Path(__file__).parent), json.dumps(options),
                          str(tmp_path / "ray")], env={**os.environ, "HF_HUB_OFFLINE": "1"}, capture_output=True,
                         text=True, timeout=wait_s(900))  # fmt: skip
    assert ran.returncode == 0, ran.stderr[-4000:]

    def strip(path: Path) -> set[str]:
        rows = [json.loads(line) for line in path.read_text().splitlines()]
        return {json.dumps({k: v for k, v in row.items() if k != "latency_s"}, sort_keys=True) for row in rows}

    assert strip(tmp_path / "local" / RESULTS) == strip(tmp_path / "ray" / RESULTS)
    assert json.loads(json.dumps(local)) == json.loads((tmp_path / "ray" / "metrics.json").read_text())


def test_attention_curves_mark_sliding_window_layers(
    cells: Path, tiny_mllm_dirs: dict[str, Path], tmp_path: Path
) -> None:
    """``eagle eval --attention`` with Gemma 3 (tiny: layers 0 and 2 slide, window 32): each record names the
    sliding layers and attention.png marks them with the note (its PNG Description), as ``eagle attention`` does;
    their mean share of 0 is the window, not a finding. A model without such layers has neither."""
    from PIL import Image

    from eagle_iad.mllm.attention import sliding_window_note

    run = tmp_path / "run"
    assert _eval("--data", str(cells), "--layout", "folder", "--models", str(tmp_path / "models"), "--limit", "2",
                 "--mllm", f"hf:{tiny_mllm_dirs['gemma3']}", "--conditions", "baseline", "--attention",
                 "--out", str(run)) == 0  # fmt: skip
    rows = [json.loads(line) for line in (run / RESULTS).read_text().splitlines()]
    # the image starts 42 positions before the answer: beyond the window of 32 (as in eagle attention's baseline)
    expected = {"layers": [0, 2], "window": 32, "distance": 42}
    assert len(rows) == 2 and all(row["sliding_window"] == expected for row in rows)
    with Image.open(run / "attention.png") as im:
        assert im.text["Description"] == sliding_window_note([0, 2], 32)
    plain = tmp_path / "plain"
    assert _eval("--data", str(cells), "--layout", "folder", "--models", str(tmp_path / "models"), "--limit", "2",
                 "--mllm", f"hf:{tiny_mllm_dirs['qwen2_5_vl']}", "--conditions", "baseline", "--attention",
                 "--out", str(plain)) == 0  # fmt: skip
    assert not any("sliding_window" in line for line in (plain / RESULTS).read_text().splitlines())
    with Image.open(plain / "attention.png") as im:
        assert "Description" not in im.text
