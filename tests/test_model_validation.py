"""A saved model's numbers are checked at load, hand edits are refused, and ``eagle threshold`` records changes.

The model is fitted with the weight-free fake backbone (tests/expert_fakes.py); everything else is the
real store. Messages are compared exactly, since they are what a user reads.
"""

from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
from expert_fakes import FAKE_CONFIG, FakeExtractor, noise_pngs

from eagle_iad.cli import main
from eagle_iad.errors import ConfigError, ModelFormatError
from eagle_iad.expert import fit, load, save
from eagle_iad.expert.manifest import SCHEMA_VERSION, manifest_checksum, read_manifest
from eagle_iad.expert.store import change_threshold

DATA = Path(__file__).resolve().parent / "data"


@pytest.fixture(scope="module")
def fitted_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("validation")
    expert = fit(noise_pngs(root / "train", 4, seed=3), "cat", FAKE_CONFIG, extractor=FakeExtractor())
    return save(expert.model, root / "model")


@pytest.fixture
def model_dir(fitted_dir: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(fitted_dir, tmp_path / "model"))


def _manifest(directory: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((directory / "model.json").read_text())
    return data


def _write(directory: Path, data: dict[str, Any], sign: bool) -> None:
    """Write ``data`` as the manifest; ``sign``: with a matching checksum (to reach the number checks)."""
    if sign:
        data["checksum"] = manifest_checksum(data)
    (directory / "model.json").write_text(json.dumps(data))


def _as_schema_2(directory: Path) -> None:
    """The manifest exactly as eagle-iad wrote it before schema 3: no checksum, no history."""
    data = _manifest(directory)
    data["schema_version"] = 2
    del data["checksum"], data["history"]
    _write(directory, data, sign=False)


def test_a_save_carries_schema_4_a_checksum_and_an_empty_history(model_dir: Path) -> None:
    data = _manifest(model_dir)
    assert data["schema_version"] == SCHEMA_VERSION == 12
    assert data["history"] == [] and data["checksum"] == manifest_checksum(data)
    assert data["checksum"].startswith("sha256:") and len(data["checksum"]) == 7 + 64
    assert load(model_dir).history == []


def test_a_schema_7_model_reads_and_shows_the_settings_it_was_saved_without(
    model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A model saved before exposure (schema 7) and before native_up_to / coreset_points: the load and
    ``eagle info`` both read what their absence meant (the pixels' own exposure, every image at ``size``)."""
    data = _manifest(model_dir)
    data["schema_version"] = 7
    for name in ("exposure", "native_up_to", "coreset_points"):
        del data["config"][name]
    _write(model_dir, data, sign=True)
    config = load(model_dir).config
    assert (config.exposure, config.native_up_to, config.coreset_points) == ("none", 0, 0)
    assert main(["info", "--model", str(model_dir)]) == 0
    shown = json.loads(capsys.readouterr().out)["config"]
    assert (shown["exposure"], shown["native_up_to"], shown["coreset_points"]) == ("none", 0, 0)


def test_a_hand_edited_tau_is_refused_with_the_command_to_use(model_dir: Path) -> None:
    data = _manifest(model_dir)
    data["thresholds"]["tau"] = 500.0
    _write(model_dir, data, sign=False)
    expected = (
        f"{model_dir / 'model.json'}: was edited by hand (its checksum does not match its fields); undo the edit, "
        f"roll back to a version (eagle versions --model {model_dir} lists them) or refit. To change the threshold, "
        f"use: eagle threshold --model {model_dir} --tau VALUE --why TEXT"
    )
    with pytest.raises(ModelFormatError) as info:
        load(model_dir)
    assert str(info.value) == expected
    with pytest.raises(ModelFormatError) as info:
        read_manifest(model_dir)  # what `eagle info` and the service's category listing read
    assert str(info.value) == expected


def test_reformatting_the_manifest_is_not_an_edit(model_dir: Path) -> None:
    data = _manifest(model_dir)
    (model_dir / "model.json").write_text(json.dumps(data, indent=7, sort_keys=True))
    assert load(model_dir).thresholds.tau == data["thresholds"]["tau"]


@pytest.mark.parametrize("field", ["calibration", "config", "training", "history", "category", "grid"])
def test_every_checked_field_is_covered(model_dir: Path, field: str) -> None:
    data = _manifest(model_dir)
    changes: dict[str, Any] = {
        "calibration": lambda d: d["calibration"].update(map_tau=d["calibration"]["map_tau"] * 2),
        "config": lambda d: d["config"].update(sigma=2.0),
        "training": lambda d: d["training"]["images"].reverse(),
        "history": lambda d: d.update(history=[{"before": d["thresholds"]}]),
        "category": lambda d: d.update(category="other"),
        "grid": lambda d: d.update(grid=list(d["grid"])),  # unchanged value: must still load
    }
    changes[field](data)
    _write(model_dir, data, sign=False)
    if field == "grid":
        load(model_dir)
        return
    with pytest.raises(ModelFormatError, match="was edited by hand"):
        load(model_dir)


def test_schema_3_without_a_checksum_is_refused(model_dir: Path) -> None:
    data = _manifest(model_dir)
    del data["checksum"]
    _write(model_dir, data, sign=False)
    with pytest.raises(ModelFormatError) as info:
        load(model_dir)
    assert str(info.value) == (
        f"{model_dir / 'model.json'}: checksum is missing; the manifest was edited by hand or is incomplete"
    )


def test_a_schema_2_manifest_loads_without_a_checksum(model_dir: Path) -> None:
    before = load(model_dir)
    _as_schema_2(model_dir)
    model = load(model_dir)
    assert model.thresholds == before.thresholds and model.history == []
    assert torch.equal(model.bank, before.bank)


@pytest.mark.parametrize("schema", [2, 3])
def test_s_max_must_be_the_largest_training_score(model_dir: Path, schema: int) -> None:
    if schema == 2:
        _as_schema_2(model_dir)
    data = _manifest(model_dir)
    largest = max(data["training"]["scores"])
    data["thresholds"]["s_max"] = largest + 1.0
    _write(model_dir, data, sign=schema == 3)
    with pytest.raises(ModelFormatError) as info:
        load(model_dir)
    assert str(info.value) == (
        f"{model_dir / 'model.json'}: thresholds.s_max is {largest + 1.0!r} but the largest training score is "
        f"{largest!r}; s_max must be the largest training score (refit the model)"
    )


@pytest.mark.parametrize("bad", [math.nan, -0.25, math.inf])
def test_training_scores_must_be_finite_and_non_negative(model_dir: Path, bad: float) -> None:
    data = _manifest(model_dir)
    data["training"]["scores"][0] = bad
    _write(model_dir, data, sign=True)
    with pytest.raises(ModelFormatError) as info:
        load(model_dir)
    assert str(info.value) == (
        f"{model_dir / 'model.json'}: training.scores must be finite numbers >= 0 (one per training image)"
    )


def test_an_unknown_rule_is_refused(model_dir: Path) -> None:
    data = _manifest(model_dir)
    data["thresholds"]["rule"] = "vibes"
    _write(model_dir, data, sign=True)
    with pytest.raises(ModelFormatError) as info:
        load(model_dir)
    assert str(info.value) == (
        f"{model_dir / 'model.json'}: thresholds.rule is 'vibes'; known rules: ksigma, mad, quantile, evt, fixed "
        "(a plugin's rule? load it with EAGLE_PLUGINS=module)"
    )


def test_an_unknown_preprocessing_is_refused(model_dir: Path) -> None:
    """A model made with a plugin's mode, loaded without the plugin: refused by name, like a rule."""
    data = _manifest(model_dir)
    data["config"]["preprocess"] = "gray"
    _write(model_dir, data, sign=True)
    with pytest.raises(ModelFormatError) as info:
        load(model_dir)
    assert str(info.value) == (
        f"{model_dir / 'model.json'}: config.preprocess is 'gray'; known modes: resize, scale, tile, center-crop "
        "(a plugin's mode? load it with EAGLE_PLUGINS=module)"
    )


@pytest.mark.parametrize(("value", "shown"), [("high", "'high'"), (None, "None"), (True, "True")])
def test_a_threshold_that_is_not_a_number_is_refused_by_info(
    model_dir: Path, value: Any, shown: str, capsys: pytest.CaptureFixture[str]
) -> None:
    data = _manifest(model_dir)
    data["thresholds"]["tau"] = value
    _write(model_dir, data, sign=True)
    assert main(["info", "--model", str(model_dir)]) == 2
    assert capsys.readouterr().err == (
        f"eagle: error: {model_dir / 'model.json'}: thresholds.tau is {shown}; it must be a finite number >= 0\n"
    )


def test_a_bank_of_the_wrong_width_is_refused(model_dir: Path) -> None:
    from safetensors.torch import load_file, save_file

    from eagle_iad.file_hash import file_sha256

    tensors = load_file(str(model_dir / "tensors.safetensors"))
    tensors["bank"] = tensors["bank"][:, :-1].contiguous()
    save_file(tensors, str(model_dir / "tensors.safetensors"))
    data = _manifest(model_dir)
    data["tensors"]["sha256"] = file_sha256(model_dir / "tensors.safetensors")
    _write(model_dir, data, sign=True)
    with pytest.raises(ModelFormatError, match=r"bank shape \(\d+, 31\) does not match target_dim 32"):
        load(model_dir)


# --- eagle threshold ------------------------------------------------------------------------------


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_threshold_set_records_who_when_why_and_the_old_value(
    model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fitted = load(model_dir)
    old = fitted.thresholds
    code, out, err = _cli(capsys, "threshold", "--model", str(model_dir), "--tau", "2.5", "--why", "line 3 too strict",
                          "--by", "ana")  # fmt: skip
    # The model's warnings for its new state, as a fit prints them: four images are too few for a trusted tau.
    from eagle_iad.cli.db import os_user
    from eagle_iad.expert.model_warnings import fit_warnings

    warned = fit_warnings(4, fitted.train_scores, load(model_dir).thresholds)
    assert len(warned) == 1 and warned[0].startswith("only 4 training images: ")
    assert (code, err) == (0, f"eagle: warning: {warned[0]}\n")
    assert json.loads(out) == {"model": str(model_dir), "change": 1, "version": 2, "tau": 2.5, "previous_tau": old.tau,
                               "rule": "fixed", "warnings": warned}  # fmt: skip
    model = load(model_dir)  # loads: the change went through the recorded path, checksum included
    assert (model.thresholds.tau, model.thresholds.rule, model.thresholds.s_max) == (2.5, "fixed", old.s_max)
    assert model.thresholds.params == {"value": 2.5}
    [entry] = model.history
    assert {k: entry[k] for k in ("change", "version", "by", "why", "action")} == {
        "change": 1, "version": 2, "by": f"cli:{os_user()} as ana", "why": "line 3 too strict", "action": "set"
    }  # fmt: skip
    assert entry["before"] == old.to_dict() and entry["after"] == model.thresholds.to_dict()
    assert entry["at"].endswith("+00:00") and len(entry["at"]) == 25
    # everything but the thresholds and the record is the fit's
    assert torch.equal(model.bank, fitted.bank) and model.calibration == fitted.calibration
    assert model.train_scores.tolist() == fitted.train_scores.tolist()
    assert sorted(p.name for p in model_dir.parent.iterdir()) == ["model"]  # no staging left behind


def test_threshold_restore_puts_the_fitted_value_back_on_the_record(
    model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fitted = load(model_dir).thresholds
    change_threshold(model_dir, tau=3.0, why="first", by="ana")
    change_threshold(model_dir, tau=4.0, why="second", by="ben")
    code, out, _ = _cli(capsys, "threshold", "--model", str(model_dir), "--restore", "1", "--why", "back to fit")
    assert code == 0 and json.loads(out)["tau"] == fitted.tau and json.loads(out)["previous_tau"] == 4.0
    model = load(model_dir)
    assert model.thresholds == fitted  # rule and parameters too: ksigma with k = 3
    assert [(e["change"], e["action"], e["after"]["tau"]) for e in model.history] == [
        (1, "set", 3.0), (2, "set", 4.0), (3, "restore", fitted.tau)
    ]  # fmt: skip
    assert model.history[2]["restored"] == 1 and model.history[2]["by"]  # the login name by default
    code, out, _ = _cli(capsys, "threshold", "--model", str(model_dir))
    shown = json.loads(out)
    assert code == 0 and shown["thresholds"] == fitted.to_dict() and len(shown["history"]) == 3


def test_a_tau_above_s_max_is_allowed_and_empties_the_band(model_dir: Path) -> None:
    s_max = load(model_dir).thresholds.s_max
    change_threshold(model_dir, tau=s_max * 2, why="no CAAS on this line", by="ana")
    thresholds = load(model_dir).thresholds
    assert not any(thresholds.in_band(s_max * f) for f in (0.5, 1.0, 1.5, 1.99, 2.0, 3.0))


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--tau", "1"], "--why is required: say why the threshold changes (it is kept in the model's history)"),
        (["--tau", "1", "--why", "  "], "--why must say why the threshold changes (it is kept in the model's history)"),
        (["--tau", "nan", "--why", "x"], "--tau must be a finite number >= 0, got nan"),
        (["--tau", "-1", "--why", "x"], "--tau must be a finite number >= 0, got -1.0"),
        (["--tau", "inf", "--why", "x"], "--tau must be a finite number >= 0, got inf"),
        (["--tau", "1", "--restore", "1", "--why", "x"], "give either --tau VALUE or --restore N"),
        (["--restore", "1", "--why", "x"], "--restore 1: no such change in {model} (changes: none yet)"),
    ],
)
def test_threshold_refuses_bad_requests_and_leaves_the_model(
    model_dir: Path, argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    before = (model_dir / "model.json").read_bytes()
    code, out, err = _cli(capsys, "threshold", "--model", str(model_dir), *argv)
    assert (code, out, err) == (2, "", f"eagle: error: {message.format(model=model_dir)}\n")
    assert (model_dir / "model.json").read_bytes() == before


def test_threshold_refuses_a_change_to_the_current_value(model_dir: Path) -> None:
    change_threshold(model_dir, tau=2.0, why="x", by="ana")
    with pytest.raises(ConfigError, match=r"tau is already 2\.0 with rule 'fixed'; nothing to change"):
        change_threshold(model_dir, tau=2.0, why="again", by="ana")


def test_threshold_refuses_a_hand_edited_model(model_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = _manifest(model_dir)
    data["thresholds"]["tau"] = 500.0
    _write(model_dir, data, sign=False)
    code, _, err = _cli(capsys, "threshold", "--model", str(model_dir), "--tau", "1", "--why", "x")
    assert code == 2 and "was edited by hand" in err and err.count("\n") == 1
    assert _manifest(model_dir)["thresholds"]["tau"] == 500.0


def test_threshold_on_a_schema_1_model_writes_schema_4_that_inspects_the_same(tmp_path: Path) -> None:
    """tests/data/schema1 (the paper's centre crop, no calibration) keeps its settings when re-saved."""
    shutil.copytree(DATA / "schema1" / "model", tmp_path / "model")
    old = load(tmp_path / "model")
    change_threshold(tmp_path / "model", tau=1.5, why="station A", by="ana")
    data = _manifest(tmp_path / "model")
    assert data["schema_version"] == SCHEMA_VERSION and data["history"][0]["before"] == old.thresholds.to_dict()
    assert data["training"]["references"] is None  # a re-save does not invent reference pictures
    new = load(tmp_path / "model")
    assert new.config == old.config and new.calibration is None and new.thresholds.tau == 1.5
    assert (new.config.preprocess, new.config.region_rule) == ("center-crop", "paper")
    change_threshold(tmp_path / "model", restore=1, why="undo", by="ana")
    assert load(tmp_path / "model").thresholds == old.thresholds


def test_a_change_made_meanwhile_is_not_overwritten(model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two stations change one model at once: the later save refuses instead of dropping the other's record."""
    from eagle_iad.expert import store

    real_load = store.load

    def load_while_another_station_changes(directory: Path) -> Any:
        model = real_load(directory)
        monkeypatch.setattr(store, "load", real_load)
        change_threshold(directory, tau=7.0, why="other station", by="ben")  # lands between our load and save
        return model

    monkeypatch.setattr(store, "load", load_while_another_station_changes)
    with pytest.raises(ConfigError) as info:
        change_threshold(model_dir, tau=3.0, why="mine", by="ana")
    # What changed, by whom and which version is current (t-shift F6), and what to do.
    assert re.fullmatch(
        re.escape(f"{model_dir}: version 2 (threshold set to 7 by ben at ") + r"\d\d:\d\d:\d\d UTC\) was made while "
        r"this change was prepared, so the model changed while it ran and nothing was saved: run the command again",
        str(info.value),
    ), str(info.value)
    model = load(model_dir)
    assert model.thresholds.tau == 7.0 and [e["by"] for e in model.history] == ["ben"]


def test_the_service_names_a_hand_edited_model_with_commands_that_work_from_anywhere(
    fitted_dir: Path, tmp_path: Path
) -> None:
    """The service's answer hides host paths, yet the commands it suggests keep a path that works from any
    folder (``<models>/elpv-mono``, said what it is), not the bare category (which only works from inside
    the models folder)."""
    from fastapi.testclient import TestClient

    from eagle_iad.service import ServiceSettings, create_app

    models = tmp_path / "models"
    model = Path(shutil.copytree(fitted_dir, models / "elpv-mono"))
    data = _manifest(model)
    data["thresholds"]["tau"] = 500.0
    _write(model, data, sign=False)
    with TestClient(create_app(ServiceSettings(models_dir=models, state_dir=tmp_path / "state"))) as client:
        answer = client.get("/v1/categories/elpv-mono")
    assert answer.status_code == 409
    assert answer.json()["error"]["message"] == (
        "category 'elpv-mono' cannot be read: elpv-mono/model.json: was edited by hand (its checksum does not match "
        "its fields); undo the edit, roll back to a version (eagle versions --model <models>/elpv-mono lists them) "
        "or refit. To change the threshold, use: eagle threshold --model <models>/elpv-mono --tau VALUE --why TEXT "
        "(<models>: the service's --models folder)"
    )
    assert str(tmp_path) not in answer.text
