"""Every saved model is a numbered version: listed with what made it, sharing unchanged files by hard link,
and rolled back atomically, from the Python API, the CLI and the service."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from eagle_iad.data import get_layout
from eagle_iad.errors import ConfigError
from eagle_iad.expert import Expert, fit, save
from eagle_iad.expert.store import change_threshold, load, rollback
from eagle_iad.expert.teach import TeachImage, teach
from eagle_iad.expert.versions import disk_use, list_versions
from eagle_iad.file_hash import file_sha256


@pytest.fixture(scope="module")
def cells() -> list[Path]:
    return [s.path for s in get_layout("elpv").samples(None, "mono", "train")[:12]]


@pytest.fixture(scope="module")
def fitted(cells: list[Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("versions") / "mono"
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        save(fit(cells[:10], "mono").model, folder)
    finally:
        torch.set_num_threads(before)
    return folder


@pytest.fixture
def model_dir(fitted: Path, tmp_path: Path) -> Path:
    target = tmp_path / "mono"
    shutil.copytree(fitted, target)  # copies (not links): this test's versions are its own
    return target


def _size(path: Path) -> int:
    return path.stat().st_size


def test_ten_threshold_changes_share_one_tensor_file(model_dir: Path) -> None:
    tensors = _size(model_dir / "tensors.safetensors")
    for number in range(9):
        change_threshold(model_dir, why=f"change {number}", by="ana", tau=100.0 + number)
    listed = list_versions(model_dir)
    assert [v["version"] for v in listed] == list(range(1, 11))
    assert [v["action"] for v in listed] == ["fit"] + ["threshold"] * 9
    assert [v["tau"] for v in listed[1:]] == [100.0 + n for n in range(9)]
    assert [v["current"] for v in listed] == [False] * 9 + [True]
    assert (listed[1]["by"], listed[1]["why"]) == ("ana", "change 0")
    assert listed[0]["bytes_added"] > tensors and all(v["bytes_added"] < 20_000 for v in listed[1:])
    for number in range(1, 11):  # one tensor file on disk, linked from every version and the current model
        assert (model_dir / "versions" / str(number) / "tensors.safetensors").samefile(
            model_dir / "tensors.safetensors"
        )
    # Besides the versions' files, the current model.json: a copy of version 10's (an edit in place must not reach it).
    current = _size(model_dir / "model.json")
    assert disk_use(model_dir) == sum(v["bytes_added"] for v in listed) + current < tensors * 1.05


def test_a_teach_is_a_version_and_a_rollback_puts_the_fit_back(model_dir: Path, cells: list[Path]) -> None:
    fitted_model = load(model_dir)
    taught = teach(model_dir, [TeachImage(p.name, p) for p in cells[10:12]], why="new batch", by="ana").model
    change_threshold(model_dir, why="stricter", by="bo", tau=taught.thresholds.tau * 0.9)
    listed = list_versions(model_dir)
    assert [(v["version"], v["action"]) for v in listed] == [(1, "fit"), (2, "teach"), (3, "threshold")]
    assert listed[1]["images_added"] == [f"taught-1/{n + 1:04d}-{p.name}" for n, p in enumerate(cells[10:12])]
    assert (listed[1]["train_images"], listed[1]["bank_size"]) == (12, taught.bank.shape[0])
    before = disk_use(model_dir)
    _restored, entry = rollback(model_dir, to=1, why="the teach was a mistake", by="cy")
    assert (entry["action"], entry["to"], entry["by"], entry["why"]) == ("rollback", 1, "cy", "the teach was a mistake")
    current = load(model_dir)
    assert torch.equal(current.bank, fitted_model.bank) and current.train_images == fitted_model.train_images
    assert current.thresholds == fitted_model.thresholds and current.history[-1] == entry
    # The teach and the threshold change it undid stay on the record, marked, under their own numbers.
    assert [(e["change"], e["action"], e.get("undone_by")) for e in current.history] == [
        (1, "teach", 3),
        (2, "set", 3),
        (3, "rollback", None),
    ]
    listed = list_versions(model_dir)
    assert (listed[-1]["version"], listed[-1]["action"], listed[-1]["to"], listed[-1]["current"]) == (
        4,
        "rollback",
        1,
        True,
    )
    assert disk_use(model_dir) - before < 20_000  # the fit's tensor file is linked again, not copied
    assert (model_dir / "tensors.safetensors").samefile(model_dir / "versions" / "1" / "tensors.safetensors")
    image = cells[11]  # taught in version 2: the rolled-back model scores it as the fit did
    assert Expert(current).inspect(image).score == pytest.approx(Expert(fitted_model).inspect(image).score, rel=1e-6)
    with pytest.raises(ConfigError, match=r"version 4 is the current model already"):
        rollback(model_dir, to=4, why="x", by="cy")
    with pytest.raises(ConfigError, match=r"no version 9 of .* \(versions: 1\.\.4\)"):
        rollback(model_dir, to=9, why="x", by="cy")
    with pytest.raises(
        ConfigError,
        match=r"change 3 \(version 4\) rolled the model back to an earlier version, "
        "which a threshold restore cannot undo; a rollback to the version before it",
    ):
        change_threshold(model_dir, why="x", by="cy", restore=3)
    with pytest.raises(ConfigError, match=r"change 2 \(version 3\) was undone by change 3, a rollback"):
        change_threshold(model_dir, why="x", by="cy", restore=2)


def test_a_model_saved_before_versions_becomes_version_1(model_dir: Path) -> None:
    shutil.rmtree(model_dir / "versions")
    assert [v["version"] for v in list_versions(model_dir)] == [1]
    change_threshold(model_dir, why="first change", by="ana", tau=99.0)
    assert [(v["version"], v["action"]) for v in list_versions(model_dir)] == [(1, "fit"), (2, "threshold")]


def test_eagle_versions_and_rollback_on_the_command_line(model_dir: Path) -> None:
    change_threshold(model_dir, why="try", by="ana", tau=99.0)

    def eagle(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "eagle_iad.cli", *args], capture_output=True, text=True, timeout=600
        )

    listed = eagle("versions", "--model", str(model_dir), "--json")
    assert listed.returncode == 0, listed.stderr
    assert [v["version"] for v in json.loads(listed.stdout)["versions"]] == [1, 2]
    text = eagle("versions", "--model", str(model_dir)).stdout.splitlines()
    assert text[1].startswith("*   2  ") and "threshold by ana: try  tau 99  10 images" in text[1]
    assert text[-1].startswith("2 versions, ") and text[-1].endswith(" MB on disk (* = current)")
    back = eagle("rollback", "--model", str(model_dir), "--to", "1", "--why", "too strict", "--by", "ana")
    assert back.returncode == 0, back.stderr
    assert json.loads(back.stdout)["previous_tau"] == 99.0
    refused = eagle("rollback", "--model", str(model_dir), "--to", "7", "--why", "x")
    assert refused.returncode == 2
    assert refused.stderr.strip() == f"eagle: error: no version 7 of {model_dir} (versions: 1..3)"


def test_every_change_made_on_the_command_line_says_who_as_the_audit_does(
    cells: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A fit from the command line recorded nobody (version 1 "by –") while an API fit records its key's name;
    each change made here is by ``cli:<login name>``, the actor of the audit rows the CLI writes, and ``--by``,
    anyone's word, is kept marked as given: never a bare name that reads as a keyed user's."""
    import getpass

    from eagle_iad.cli import main

    monkeypatch.setattr(getpass, "getuser", lambda: "ana-os")
    model = tmp_path / "mono"
    fit_args = ["fit", "--layout", "elpv", "--category", "mono", "--limit-train", "4", "--out", str(model), "--quiet"]
    assert main(fit_args) == 0
    assert json.loads((model / "model.json").read_text())["fitted_by"] == "cli:ana-os"
    assert main(["threshold", "--model", str(model), "--tau", "99", "--why", "try"]) == 0
    assert main(["teach", str(cells[10]), "--model", str(model), "--why", "new", "--by", "ana", "--force"]) == 0
    assert main(["rollback", "--model", str(model), "--to", "1", "--why", "back", "--by", "ana-os"]) == 0
    capsys.readouterr()
    by = [(v["action"], v["by"]) for v in list_versions(model)]
    assert by == [("fit", "cli:ana-os"), ("threshold", "cli:ana-os"), ("teach", "cli:ana-os as ana"),
                  ("rollback", "cli:ana-os")]  # fmt: skip
    assert main(["versions", "--model", str(model)]) == 0
    assert " fit by cli:ana-os " in capsys.readouterr().out.splitlines()[0] + " "


def _fit_returning(model_dir: Path, monkeypatch: pytest.MonkeyPatch, meanwhile: Any = None) -> list[str]:
    """``eagle fit --out model_dir`` on the elpv cells, its fit replaced by the fitted fixture's model (seconds, not
    a minute), after ``meanwhile()`` (a change saved while the fit ran); the command's argument list."""
    from types import SimpleNamespace

    import eagle_iad.expert as expert_package

    fitted_model = load(model_dir / "versions" / "1")

    def fake_fit(*_: Any, **__: Any) -> Any:
        if meanwhile is not None:
            meanwhile()
        return SimpleNamespace(model=fitted_model)

    monkeypatch.setattr(expert_package, "fit", fake_fit)
    return ["fit", "--layout", "elpv", "--category", "mono", "--limit-train", "10", "--out", str(model_dir), "--quiet"]


def test_a_refit_says_it_replaces_taught_images_and_a_tau_set_by_hand(
    model_dir: Path, cells: list[Path], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A refit starts from the training images alone: the taught images and the fixed tau of the model it replaces
    are said (stderr, the JSON's warnings and the fit version's model.json), with the version that keeps them."""
    from eagle_iad.cli import main

    teach(model_dir, [TeachImage(p.name, p) for p in cells[10:12]], why="new batch", by="ana")
    change_threshold(model_dir, why="fewer false alarms", by="ana", tau=95.0)
    assert main(_fit_returning(model_dir, monkeypatch)) == 0
    out, err = capsys.readouterr()
    notice = (
        "this fit replaces version 3, which had 2 taught images and a fixed tau 95; they stay in version 3 "
        "(eagle rollback --to 3)"
    )
    assert f"eagle: warning: {notice}\n" in err
    assert json.loads(out)["warnings"][0] == notice
    assert json.loads((model_dir / "versions" / "4" / "model.json").read_text())["warnings"][0] == notice
    assert [(v["version"], v["action"], v["current"]) for v in list_versions(model_dir)][-1] == (4, "fit", True)
    # The next change's model no longer carries it (it described the fit's save), and a refit of a plain fit is quiet.
    changed = change_threshold(model_dir, why="x", by="ana", tau=96.0)[0]
    assert not any(warning.startswith("this fit") for warning in changed.warnings)
    rollback(model_dir, to=1, why="back to the fit", by="ana")
    assert main(_fit_returning(model_dir, monkeypatch)) == 0
    assert "this fit replaces" not in capsys.readouterr().err


def test_a_fit_of_another_category_says_which_model_it_replaced_and_how_to_get_it_back(
    model_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--category poly --out <a mono model>`` replaced the mono model without a word (a slip of the folder)."""
    import dataclasses
    from types import SimpleNamespace

    import eagle_iad.expert as expert_package
    from eagle_iad.cli import main

    poly = dataclasses.replace(load(model_dir / "versions" / "1"), category="poly")
    monkeypatch.setattr(expert_package, "fit", lambda *_, **__: SimpleNamespace(model=poly))
    argv = ["fit", "--layout", "elpv", "--category", "poly", "--limit-train", "10", "--out", str(model_dir), "--quiet"]
    assert main(argv) == 0
    out, err = capsys.readouterr()
    notice = (
        "this fit replaces version 1, a model of category 'mono' (this fit's is 'poly'); it stays in version 1: "
        f'eagle rollback --model {model_dir} --to 1 --why "..." brings it back'
    )
    assert err.count("this fit replaces") == 1 and f"eagle: warning: {notice}\n" in err
    assert json.loads(out)["warnings"][0] == notice
    assert [(v["version"], v["action"]) for v in list_versions(model_dir)] == [(1, "fit"), (2, "fit")]
    assert main(argv) == 0  # a refit of the same category says nothing
    assert "this fit replaces" not in capsys.readouterr().err


def test_a_fit_refuses_to_replace_a_model_changed_while_it_ran(
    model_dir: Path, cells: list[Path], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A teach saved while a fit runs is kept: the fit saves nothing and says so, as a teach or a threshold change
    refuses a concurrent change (exit 2); into an empty folder, a model appearing meanwhile is kept too."""
    from eagle_iad.cli import main

    def teach_meanwhile() -> None:
        teach(model_dir, [TeachImage(cells[11].name, cells[11])], why="meanwhile", by="bo")

    assert main(_fit_returning(model_dir, monkeypatch, teach_meanwhile)) == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"eagle: error: {model_dir}: the model changed while this fit ran (a threshold change, teach or rollback was "
        "saved meanwhile); the fitted model was not saved, so that change is kept: fit again to replace it"
    )
    assert [(v["version"], v["action"], v["current"]) for v in list_versions(model_dir)] == [
        (1, "fit", False), (2, "teach", True),
    ]  # fmt: skip
    fresh = model_dir.parent / "fresh"
    command = _fit_returning(model_dir, monkeypatch, lambda: shutil.copytree(model_dir, fresh))
    assert main([*command[:-3], "--out", str(fresh), "--quiet"]) == 2
    assert "the model changed while this fit ran" in capsys.readouterr().err
    assert (fresh / "model.json").read_bytes() == (model_dir / "model.json").read_bytes()


def test_the_service_lists_versions_and_rolls_back(model_dir: Path, tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from eagle_iad.service.app import create_app
    from eagle_iad.service.settings import ServiceSettings

    models = tmp_path / "models"
    models.mkdir()
    shutil.move(str(model_dir), models / "mono")
    settings = ServiceSettings(models_dir=models, state_dir=tmp_path / "state")
    with TestClient(create_app(settings)) as client:
        changed = client.post("/v1/categories/mono/threshold", json={"tau": 98.0, "why": "try", "by": "ana"})
        assert changed.status_code == 200, changed.text
        versions = client.get("/v1/categories/mono/versions").json()
        assert [(v["version"], v["action"], v["current"]) for v in versions["versions"]] == [
            (1, "fit", False), (2, "threshold", True),
        ]  # fmt: skip
        assert versions["disk_bytes"] == disk_use(models / "mono")
        back = client.post("/v1/categories/mono/rollback", json={"to": 1, "why": "too strict", "by": "ana"})
        assert back.status_code == 200, back.text
        assert (
            back.json()["tau"] == versions["versions"][0]["tau"] and back.json()["history"][-1]["action"] == "rollback"
        )
        again = client.post("/v1/categories/mono/rollback", json={"to": 3, "why": "x"})
        assert (again.status_code, again.json()["error"]["message"]) == (
            400, "category 'mono': version 3 is the current model already; nothing to roll back",
        )  # fmt: skip
        (models / "mono" / "versions" / "2" / "model.json").write_text("{")  # corrupt: listed apart, no host path
        damaged = client.get("/v1/categories/mono/versions").json()
        assert [v["version"] for v in damaged["versions"]] == [1, 3]
        assert damaged["damaged"] == [
            {"version": 2, "problem": "mono/versions/2/model.json: corrupt manifest (Expecting property name "
             "enclosed in double quotes: line 1 column 2 (char 1))"},
        ]  # fmt: skip
        assert client.get("/v1/categories/nope/versions").status_code == 404


def test_each_inspection_records_the_model_version_that_scored_it(
    model_dir: Path, cells: list[Path], tmp_path: Path
) -> None:
    """Over real HTTP: after a threshold change, a teach and a rollback, the next inspection's record (as
    answered and as stored) names the version each made, the number ``eagle versions`` lists as current."""
    from conftest import LiveServer
    from test_service import call, inspect_request

    from eagle_iad.service.app import create_app
    from eagle_iad.service.settings import ServiceSettings

    models = tmp_path / "models"
    models.mkdir()
    shutil.move(str(model_dir), models / "mono")
    image = cells[11].read_bytes()
    settings = ServiceSettings(models_dir=models, state_dir=tmp_path / "state")
    with LiveServer(create_app(settings)) as live:

        def inspected() -> dict[str, Any]:
            status, _, record = inspect_request(live.base, image)
            assert status == 200, record
            stored = call("GET", f"{live.base}/v1/inspections/{record['id']}")[2]
            assert stored["model_version"] == record["model_version"], (stored, record)
            return dict(record)

        def post(path: str, body: dict[str, Any]) -> None:
            status, _, answer = call("POST", f"{live.base}/v1/categories/mono/{path}", body=json.dumps(body).encode(),
                                     content_type="application/json")  # fmt: skip
            assert status == 200, answer

        first = inspected()
        assert first["model_version"] == 1  # a model saved before versions: version 1, as eagle versions lists it
        post("threshold", {"tau": 98.0, "why": "try"})
        assert inspected()["model_version"] == 2
        label = json.dumps({"label": "normal"}).encode()  # an inspection is taught once labelled normal
        assert call("PUT", f"{live.base}/v1/inspections/{first['id']}/label", body=label,
                    content_type="application/json")[0] == 200  # fmt: skip
        post("teach", {"inspections": [first["id"]], "why": "a good cell"})
        assert inspected()["model_version"] == 3
        post("rollback", {"to": 1, "why": "back to the fit"})
        assert inspected()["model_version"] == 4
        current = [v["version"] for v in list_versions(models / "mono") if v["current"]]
        assert current == [4]


def test_a_version_folder_loaded_as_the_model_is_that_version(model_dir: Path, tmp_path: Path) -> None:
    """``--model models/cat/versions/2``: its inspections record version 2, not the 1 of a model saved before
    versions; another folder in a model's ``versions`` is no known version, and a model that merely lives
    in a folder called ``versions`` is still a model of its own."""
    from eagle_iad.expert import load_versioned
    from eagle_iad.expert.versions import current_version

    change_threshold(model_dir, why="try", by="ana", tau=99.0)
    change_threshold(model_dir, why="again", by="ana", tau=98.0)
    assert current_version(model_dir) == 3
    assert [current_version(model_dir / "versions" / str(n)) for n in (1, 2, 3)] == [1, 2, 3]
    assert load_versioned(model_dir / "versions" / "2")[1] == 2
    shutil.copytree(model_dir / "versions" / "2", model_dir / "versions" / "old")
    assert current_version(model_dir / "versions" / "old") is None
    elsewhere = tmp_path / "versions" / "7"  # not in a model: a model of its own, saved before versions
    shutil.copytree(model_dir / "versions" / "1", elsewhere)
    assert current_version(elsewhere) == 1
    for name in ("\u00b2", "\u0663"):  # digits to str.isdigit, but no version's name: "²" made int() raise, "٣" read 3
        shutil.copytree(model_dir / "versions" / "2", model_dir / "versions" / name)
        assert current_version(model_dir / "versions" / name) is None
    assert [v["version"] for v in list_versions(model_dir)] == [1, 2, 3]
    (model_dir / "model.json").unlink()  # the model's own manifest gone: its versions are still its versions
    assert [current_version(model_dir / "versions" / str(n)) for n in (1, 2, 3)] == [1, 2, 3]


def test_eagle_inspect_json_names_the_model_version_that_scored_it(
    model_dir: Path, cells: list[Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """``eagle inspect --json`` has each verdict's ``model_version``, as the service's records do: the current
    version of the model folder, or the version folder's own number."""
    from eagle_iad.cli import main

    change_threshold(model_dir, why="try", by="ana", tau=99.0)
    for model, number in ((model_dir, 2), (model_dir / "versions" / "1", 1)):
        assert main(["inspect", str(cells[11]), "--model", str(model), "--json", "--quiet"]) == 0
        assert [v["model_version"] for v in json.loads(capsys.readouterr().out)] == [number]


def test_a_second_rollback_to_the_same_version_is_refused(model_dir: Path) -> None:
    """The current model after a rollback is the version's plus a history entry: the same model, not a new one."""
    change_threshold(model_dir, why="try", by="ana", tau=99.0)
    rollback(model_dir, to=1, why="too strict", by="ana")
    with pytest.raises(
        ConfigError,
        match=r"version 1 is the current model already \(the current version, 3, is a copy of it\); "
        r"nothing to roll back$",
    ):
        rollback(model_dir, to=1, why="again", by="ana")
    assert [v["version"] for v in list_versions(model_dir)] == [1, 2, 3]  # no version 4, identical to 3


def test_a_rollback_recovers_a_model_json_edited_in_place_or_destroyed(model_dir: Path) -> None:
    """model.json is a copy of its version's, so an edit in place leaves the version intact to roll back to,
    and a rollback to it is not refused because the current model cannot be loaded."""
    from eagle_iad.errors import ModelFormatError

    change_threshold(model_dir, why="try", by="ana", tau=99.0)
    kept = (model_dir / "versions" / "2" / "model.json").read_bytes()
    with open(model_dir / "model.json", "r+", encoding="utf-8") as edited:  # in place: the same inode
        text = edited.read()
        edited.seek(0)
        edited.write(text.replace('"tau": 99.0', '"tau": 50.0', 1))
    assert (model_dir / "versions" / "2" / "model.json").read_bytes() == kept
    with pytest.raises(ModelFormatError, match="edited by hand"):
        load(model_dir)
    assert [v["current"] for v in list_versions(model_dir)] == [False, False]  # nothing current is intact
    restored, entry = rollback(model_dir, to=2, why="undo my hand edit", by="ana")
    assert restored.thresholds.tau == 99.0 and load(model_dir).thresholds.tau == 99.0
    assert "edited by hand" in entry["before"]["unreadable"] and "tau" not in entry["before"]
    (model_dir / "model.json").write_text("[]")  # destroyed: still a model folder, by its versions
    restored, entry = rollback(model_dir, to=1, why="start again", by="ana")
    assert load(model_dir).thresholds == load(model_dir / "versions" / "1").thresholds
    assert "not an EAGLE-IAD expert model" in entry["before"]["unreadable"]


def test_damaged_versions_are_listed_apart_and_words_shown_escaped(model_dir: Path) -> None:
    import contextlib
    import io

    from eagle_iad.cli import main
    from eagle_iad.expert.versions import read_versions

    def versions() -> list[str]:
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            assert main(["versions", "--model", str(model_dir)]) == 0
        return out.getvalue().splitlines()

    change_threshold(model_dir, why="fake\n*  99  2026-01-01  fit \x1b[31mRED", by="eve\x1b]0;pwned\x07", tau=99.0)
    change_threshold(model_dir, why="next", by="ana", tau=98.0)
    lines = versions()  # who and why are anyone's words: no forged line, no escape sequence reaches the terminal
    assert len(lines) == 4 and "\x1b" not in "".join(lines) and "\x07" not in "".join(lines)
    assert " threshold by eve\\x1b]0;pwned\\x07: fake\\n*  99  2026-01-01  fit \\x1b[31mRED  tau 99 " in lines[1]
    (model_dir / "versions" / "1" / "tensors.safetensors").unlink()  # pruned by hand
    (model_dir / "versions" / "2" / "model.json").write_text("{")  # corrupt
    listed, damaged = read_versions(model_dir)
    assert [v["version"] for v in listed] == [3] and listed[0]["current"]
    assert damaged[0] == {"version": 1, "problem": "No such file or directory (tensors.safetensors)"}
    corrupt = f"{model_dir / 'versions' / '2' / 'model.json'}: corrupt manifest"
    assert damaged[1]["version"] == 2 and damaged[1]["problem"].startswith(corrupt)
    lines = versions()
    assert lines[0] == "!   1  damaged: No such file or directory (tensors.safetensors)"
    assert lines[1].startswith(f"!   2  damaged: {corrupt}")
    assert lines[2].startswith("*   3  ") and "threshold by ana: next  tau 98" in lines[2]
    assert lines[3].startswith("1 versions, 2 damaged (!: cannot be rolled back to), ")


def test_verify_lists_a_version_whose_tensors_do_not_match_and_a_rollback_to_it_is_refused(
    model_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``eagle versions`` only stats files (fast); ``--verify`` reads each tensor file once (a shared one once
    for all its versions, with a bar on stderr when big) and lists one whose SHA-256 is not its manifest's as
    damaged. A rollback to such a version is refused, naming the version, and changes nothing."""
    import os

    from eagle_iad.cli import main
    from eagle_iad.cli import versions as versions_cli
    from eagle_iad.expert.versions import read_versions

    change_threshold(model_dir, why="looser", by="ana", tau=98.0)
    change_threshold(model_dir, why="looser still", by="ana", tau=99.0)
    first = model_dir / "versions" / "1" / "tensors.safetensors"
    changed = bytearray(first.read_bytes())
    changed[-1] ^= 0xFF  # same size, one byte off: a listing by stat cannot tell
    replaced = first.with_name("replaced")
    replaced.write_bytes(bytes(changed))
    os.replace(replaced, first)  # its own file now: versions 2 and 3 keep the intact one
    assert main(["versions", "--model", str(model_dir)]) == 0
    plain = capsys.readouterr()
    assert "damaged" not in plain.out and plain.out.splitlines()[-1].startswith("3 versions, ")  # unchanged
    hashed: list[Path] = []
    monkeypatch.setattr(versions_cli, "PROGRESS_BYTES", 0)  # every file big enough for a bar
    real = versions_cli._hash_with_progress

    def counted(path: Path) -> str:
        hashed.append(path)
        return real(path)

    monkeypatch.setattr(versions_cli, "_hash_with_progress", counted)
    assert main(["versions", "--model", str(model_dir), "--verify"]) == 0
    verified = capsys.readouterr()
    problem = ("tensors.safetensors does not match the SHA-256 its model.json records (changed or cut short since "
               "it was saved); the model cannot be loaded from it")  # fmt: skip
    lines = verified.out.splitlines()
    assert lines[0] == f"!   1  damaged: {problem}"
    assert [line[:5] for line in lines[1:3]] == ["    2", "*   3"]
    assert lines[3].startswith("2 versions, 1 damaged (!: cannot be rolled back to), ")
    assert len(hashed) == 2  # version 1's own file, then the one versions 2 and 3 share: each read once
    assert "eagle versions: hashing 1/tensors.safetensors" in verified.err
    assert main(["versions", "--model", str(model_dir), "--verify", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["damaged"] == [{"version": 1, "problem": problem}]
    assert read_versions(model_dir)[1] == []  # without verify: not read
    before = sorted(p.name for p in (model_dir / "versions").iterdir())
    with pytest.raises(Exception, match=r"version 1 cannot be rolled back to: .*checksum mismatch") as refused:
        rollback(model_dir, to=1, why="back", by="ana")
    assert "eagle versions --verify" in str(refused.value)
    assert sorted(p.name for p in (model_dir / "versions").iterdir()) == before  # nothing saved


def test_verify_compares_a_shared_tensor_file_with_each_versions_own_manifest(model_dir: Path) -> None:
    """Versions 1-3 share one tensor file (a hard link) but 3's manifest records another SHA-256: the file is
    hashed once, and 3 is listed as damaged although 1 and 2, checked first, match."""
    import os

    from eagle_iad.expert.manifest import manifest_checksum
    from eagle_iad.expert.versions import read_versions

    change_threshold(model_dir, why="looser", by="ana", tau=98.0)
    change_threshold(model_dir, why="looser still", by="ana", tau=99.0)
    third = model_dir / "versions" / "3"
    assert (
        os.stat(third / "tensors.safetensors").st_ino
        == os.stat(model_dir / "versions" / "2" / "tensors.safetensors").st_ino
    )
    manifest = json.loads((third / "model.json").read_text())
    manifest["tensors"]["sha256"] = "0" * 64
    manifest["checksum"] = manifest_checksum(manifest)  # sealed as a save seals it: only the hash is wrong
    edited = third / "edited.json"
    edited.write_text(json.dumps(manifest))
    os.replace(edited, third / "model.json")  # its own file: version 2's manifest (and the current one) unchanged
    hashed: list[Path] = []

    def counted(path: Path) -> str:
        hashed.append(path)
        return file_sha256(path)

    listed, damaged = read_versions(model_dir, verify=True, hasher=counted)
    assert [v["version"] for v in listed] == [1, 2] and [d["version"] for d in damaged] == [3], damaged
    assert len(hashed) == 1  # the one file all three share (threshold changes keep the tensors): once


def test_a_listing_of_no_model_is_one_line_not_a_traceback(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from eagle_iad.cli import main

    assert main(["versions", "--model", str(tmp_path / "nowhere")]) == 2
    nowhere = tmp_path / "nowhere"
    assert capsys.readouterr().err == f"eagle: error: {nowhere}: no model directory here (run `eagle fit` first)\n"
    assert main(["versions", "--model", str(tmp_path)]) == 2
    missing = "not an EAGLE-IAD model directory (model.json is missing)"
    assert capsys.readouterr().err == f"eagle: error: {tmp_path}: {missing}\n"


def test_a_change_run_inside_the_model_folder_is_refused_before_any_work(
    model_dir: Path, cells: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    from eagle_iad.expert import teach as teach_module

    monkeypatch.chdir(model_dir)
    monkeypatch.setattr(teach_module, "_decode", lambda *_: pytest.fail("decoded the images before refusing"))
    expected = (
        r"^\.: the model folder is the current directory \(or holds it\), and a change replaces the folder whole; run "
        rf"the command from outside it \(cd {model_dir.parent}, then --model mono\)$"
    )
    with pytest.raises(ConfigError, match=expected):
        teach(".", [TeachImage(cells[11].name, cells[11])], why="x", by="ana")
    with pytest.raises(ConfigError, match=expected):
        change_threshold(".", why="x", by="ana", tau=99.0)
    with pytest.raises(ConfigError, match=expected):
        rollback(".", to=1, why="x", by="ana")


def test_a_change_to_a_kept_version_says_it_is_read_only_and_how_to_go_back_to_it(
    model_dir: Path, cells: list[Path], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--model models/cat/versions/2`` for a teach, threshold change or rollback: a kept version, read-only,
    said so with the two ways on (roll back to it, or change the model), not as a fit's output folder."""
    from eagle_iad.cli import main

    change_threshold(model_dir, why="try", by="ana", tau=99.0)
    monkeypatch.chdir(model_dir.parent)
    commands = (
        ["teach", str(cells[11]), "--model", "mono/versions/2", "--why", "x"],
        ["threshold", "--model", "mono/versions/2", "--tau", "98", "--why", "x"],
        ["rollback", "--model", "mono/versions/2", "--to", "1", "--why", "x"],
    )
    for command in commands:
        assert main(command) == 2
        assert capsys.readouterr().err == (
            "eagle: error: mono/versions/2: is version 2 of the model mono, kept read-only (every change is a new "
            "version); to make it current, eagle rollback --model mono --to 2; to change the model, give --model mono\n"
        )
    assert [v["version"] for v in list_versions(model_dir)] == [1, 2]


def test_a_change_through_a_symbolic_link_says_to_give_the_folder_it_points_to(
    model_dir: Path,
    cells: list[Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A teach, threshold change or rollback of a model folder given as a symbolic link is refused (the change
    replaces the folder whole), naming the folder the link points to, relative to here where it is below; not
    "give the folder itself or a new folder": a new folder fits ``eagle fit --out`` only."""
    from eagle_iad.cli import main

    (tmp_path / "links").mkdir()
    (tmp_path / "links" / "current").symlink_to(model_dir)
    monkeypatch.chdir(tmp_path)
    commands = (
        ["teach", str(cells[11]), "--model", "links/current", "--why", "x"],
        ["threshold", "--model", "links/current", "--tau", "99", "--why", "x"],
        ["rollback", "--model", "links/current", "--to", "1", "--why", "x"],
    )
    for command in commands:
        assert main(command) == 2
        assert capsys.readouterr().err == (
            "eagle: error: links/current: is a symbolic link to mono, and a change replaces the model folder whole; "
            "give the folder it points to (--model mono)\n"
        )
    monkeypatch.chdir(tmp_path / "links")  # the model is not below here: named in full
    assert main(["threshold", "--model", "current", "--tau", "99", "--why", "x"]) == 2
    assert capsys.readouterr().err == (
        f"eagle: error: current: is a symbolic link to {model_dir}, and a change replaces the model folder whole; "
        f"give the folder it points to (--model {model_dir})\n"
    )
    assert [v["version"] for v in list_versions(model_dir)] == [1]  # nothing changed


def test_a_stop_that_waited_for_the_swap_says_the_change_was_saved(
    model_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import signal
    import threading

    from eagle_iad.cli import main
    from eagle_iad.expert import store

    def stop_in_the_swap(step: str) -> None:
        # A Ctrl-C in the middle of the swap (either kind: one exchange, or two renames): it waits for its end.
        if step in ("exchanged", "retired"):
            # to the main thread, where Python runs its handlers (see test_stops.py's _to_main_thread)
            signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGINT)

    monkeypatch.setattr(store, "_step_hook", stop_in_the_swap)
    assert main(["threshold", "--model", str(model_dir), "--tau", "97", "--why", "x", "--by", "ana"]) == 130
    err = capsys.readouterr().err
    assert err == (
        f"eagle: stopped by SIGINT: {model_dir}: the new model was saved just before the stop (eagle versions lists "
        "it); nothing half-written was kept, scratch and staging folders were removed\n"
    )
    assert load(model_dir).thresholds.tau == 97.0 and len(list_versions(model_dir)) == 2


#: The child of the crash test: rolls back a damaged model by two renames (no exchange) and dies between them.
_CRASHING_ROLLBACK = """
import os, signal, sys
from eagle_iad import folder_swap
from eagle_iad.expert import store

def crash(name):
    if name == "retired":
        os.kill(os.getpid(), signal.SIGKILL)

folder_swap.exchange = lambda a, b: False  # the two-rename swap of a filesystem without RENAME_EXCHANGE
store._step_hook = crash
store.rollback(sys.argv[1], to=1, why="recover", by="ana")
sys.exit(3)
"""


def test_a_crash_while_a_rollback_recovers_a_damaged_model_keeps_its_versions(model_dir: Path) -> None:
    """The damaged model retired between the two renames is put back (versions and all), not cleaned away."""
    import signal

    from eagle_iad.expert.store import clean_leftovers

    change_threshold(model_dir, why="try", by="ana", tau=99.0)
    (model_dir / "model.json").write_text("[]")  # destroyed: the rollback is what recovers it
    child = subprocess.run([sys.executable, "-c", _CRASHING_ROLLBACK, str(model_dir)], capture_output=True, text=True,
                           timeout=600)  # fmt: skip
    assert child.returncode == -signal.SIGKILL, child.stderr
    assert not model_dir.exists()  # between the renames: the model folder is under another name
    clean_leftovers(model_dir.parent)  # what the service does at start, and every save first
    assert (model_dir / "model.json").read_text() == "[]"  # the damaged model is back, with its versions
    assert [v["version"] for v in list_versions(model_dir)] == [1, 2]
    rollback(model_dir, to=1, why="recover", by="ana")
    assert load(model_dir).thresholds == load(model_dir / "versions" / "1").thresholds
    assert [p.name for p in model_dir.parent.iterdir()] == ["mono"]  # no leftovers


def test_versions_and_a_rollback_recover_a_model_whose_model_json_was_deleted(model_dir: Path) -> None:
    change_threshold(model_dir, why="try", by="ana", tau=99.0)
    (model_dir / "model.json").unlink()
    assert [(v["version"], v["current"]) for v in list_versions(model_dir)] == [(1, False), (2, False)]
    _restored, entry = rollback(model_dir, to=2, why="model.json was deleted", by="ana")
    assert entry["before"] == {"unreadable": "mono: not an EAGLE-IAD model directory (model.json is missing)"}
    assert load(model_dir).thresholds.tau == 99.0 and list_versions(model_dir)[-1]["current"]


def test_the_service_says_a_missing_tensor_file_and_recovers_by_a_rollback(
    model_dir: Path, cells: list[Path], tmp_path: Path
) -> None:
    """A fitted category whose tensor file is gone is not "no fitted category" (404) but a damaged one (409),
    and a rollback through the service recovers it, its reason kept without the host's path."""
    from fastapi.testclient import TestClient

    from eagle_iad.service.app import create_app
    from eagle_iad.service.settings import ServiceSettings

    models = tmp_path / "models"
    models.mkdir()
    shutil.move(str(model_dir), models / "mono")
    change_threshold(models / "mono", why="try", by="ana", tau=99.0)
    (models / "mono" / "tensors.safetensors").unlink()
    settings = ServiceSettings(models_dir=models, state_dir=tmp_path / "state")
    image = {"image": (cells[0].name, cells[0].read_bytes(), "image/png")}
    with TestClient(create_app(settings)) as client:
        missing = client.post("/v1/inspect", files=image, data={"category": "mono"})
        assert (missing.status_code, missing.json()["error"]["code"]) == (409, "model_invalid")
        assert missing.json()["error"]["message"] == (
            "category 'mono' cannot be loaded: tensors.safetensors is missing (its versions, "
            "GET /v1/categories/mono/versions, can be rolled back to)"
        )
        back = client.post("/v1/categories/mono/rollback", json={"to": 1, "why": "the tensors were deleted"})
        assert back.status_code == 200, back.text
        assert back.json()["history"][-1]["before"] == {"unreadable": "mono: tensors.safetensors is missing"}
        assert str(tmp_path) not in back.text
        assert client.post("/v1/inspect", files=image, data={"category": "mono"}).status_code == 200


def test_the_service_lists_a_category_whose_model_json_was_deleted_and_recovers_it(
    model_dir: Path, tmp_path: Path
) -> None:
    from fastapi.testclient import TestClient

    from eagle_iad.service.app import create_app
    from eagle_iad.service.settings import ServiceSettings

    models = tmp_path / "models"
    models.mkdir()
    shutil.move(str(model_dir), models / "mono")
    (models / "mono" / "model.json").unlink()
    settings = ServiceSettings(models_dir=models, state_dir=tmp_path / "state")
    with TestClient(create_app(settings)) as client:
        reason = "mono: not an EAGLE-IAD model directory (model.json is missing)"
        [listed] = client.get("/v1/categories").json()["categories"]
        assert (listed["name"], listed["error"], listed["tau"]) == ("mono", reason, None)
        detail = client.get("/v1/categories/mono")
        assert (detail.status_code, detail.json()["error"]["code"]) == (409, "model_invalid")
        assert [v["version"] for v in client.get("/v1/categories/mono/versions").json()["versions"]] == [1]
        back = client.post("/v1/categories/mono/rollback", json={"to": 1, "why": "model.json was deleted"})
        assert back.status_code == 200, back.text
        assert back.json()["history"][-1]["before"] == {"unreadable": reason}
        assert client.get("/v1/categories/mono").status_code == 200


def test_change_numbers_are_never_given_twice_and_each_names_its_version(model_dir: Path) -> None:
    """A supervisor follows one numbering: each change names the version it made, and a rollback keeps the
    changes it undid (marked), so the next change does not take the number of one it undid (t-shift F9)."""
    change_threshold(model_dir, why="a", by="ana", tau=100.0)  # change 1, version 2
    change_threshold(model_dir, why="b", by="ana", tau=101.0)  # change 2, version 3
    _, back = rollback(model_dir, to=2, why="b was wrong", by="sam")  # change 3, version 4
    assert (back["change"], back["version"]) == (3, 4)
    _, entry = change_threshold(model_dir, why="c", by="ana", tau=102.0)
    assert (entry["change"], entry["version"]) == (4, 5)  # before: change 2 again, the number of the undone one
    _, again = rollback(model_dir, to=3, why="b was right after all", by="sam")
    history = load(model_dir).history
    assert [(e["change"], e.get("version"), e.get("undone_by")) for e in history] == [
        (1, 2, None),
        (2, 3, None),
        (3, 4, 5),
        (4, 5, 5),
        (5, 6, None),
    ]
    assert again is history[-1] or again == history[-1]
    numbers = [e["change"] for e in history]
    assert len(numbers) == len(set(numbers))
    listed = list_versions(model_dir)
    assert [(v["version"], v["action"]) for v in listed][-1] == (6, "rollback")
    change_threshold(model_dir, why="back to 100", by="ana", restore=2)  # change 2 made version 3
    assert {k: list_versions(model_dir)[-1][k] for k in ("version", "restored", "restored_version")} == {
        "version": 7, "restored": 2, "restored_version": 3
    }  # fmt: skip


def test_a_version_is_timed_when_it_was_saved_not_when_its_preparation_began(
    model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A change's ``at`` is when it took effect, not when its record was first written: a teach scores the
    labelled images for many seconds between the two, and inspections meanwhile carry the previous version (F10)."""
    import time
    from datetime import UTC, datetime

    from eagle_iad.expert import store

    real_check = store.check_replaceable
    reached: list[datetime] = []

    def slow_to_save(directory: Any) -> Any:  # the save begins well after the record was prepared
        time.sleep(1.2)
        reached.append(datetime.now(UTC).replace(microsecond=0))
        return real_check(directory)

    monkeypatch.setattr(store, "check_replaceable", slow_to_save)
    _, entry = change_threshold(model_dir, why="slow", by="ana", tau=100.0)
    assert datetime.fromisoformat(entry["at"]) >= reached[-1]  # the save's own check; before: a second earlier
    assert load(model_dir).history[-1]["at"] == entry["at"] == list_versions(model_dir)[-1]["at"]


def test_the_service_says_what_changed_meanwhile_and_words_refusals_for_an_http_caller(
    model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A change refused because another landed meanwhile names that change, its author, time and version, and
    says what to do over HTTP (t-shift F6); a rollback to the version the current one copies, and a restore of a
    rollback, name no command to run (F14, F9)."""
    import re

    from fastapi.testclient import TestClient

    from eagle_iad.expert import store
    from eagle_iad.service.app import create_app
    from eagle_iad.service.settings import ServiceSettings

    models = tmp_path / "models"
    models.mkdir()
    shutil.move(str(model_dir), models / "mono")
    settings = ServiceSettings(models_dir=models, state_dir=tmp_path / "state")
    real_load = store.load

    def load_while_sam_changes_it(directory: Path) -> Any:
        model = real_load(directory)
        monkeypatch.setattr(store, "load", real_load)
        change_threshold(directory, tau=97.1, why="meanwhile", by="sam")  # lands between the load and the save
        return model

    with TestClient(create_app(settings)) as client:
        monkeypatch.setattr(store, "load", load_while_sam_changes_it)
        refused = client.post("/v1/categories/mono/threshold", json={"tau": 98.0, "why": "mine", "by": "ada"})
        assert (refused.status_code, refused.json()["error"]["code"]) == (409, "model_changed")
        message = refused.json()["error"]["message"]
        assert re.fullmatch(r"category 'mono': version 2 \(threshold set to 97\.1 by sam at \d\d:\d\d:\d\d UTC\) was "
                            r"made while this threshold change was prepared; nothing was changed: send the request "
                            r"again", message), message  # fmt: skip
        assert load(models / "mono").thresholds.tau == 97.1
        back = client.post("/v1/categories/mono/rollback", json={"to": 1, "why": "back", "by": "sam"})
        assert back.status_code == 200, back.text
        again = client.post("/v1/categories/mono/rollback", json={"to": 1, "why": "x"})
        assert again.json()["error"]["message"] == (
            "category 'mono': version 1 is the current model already (the current version, 3, is a copy of it); "
            "nothing to roll back"
        )
        restore = client.post("/v1/categories/mono/threshold", json={"restore": 2, "why": "x"})
        words = restore.json()["error"]["message"]
        assert restore.status_code == 400 and "eagle " not in words, words
        assert "change 2 (version 3) rolled the model back to an earlier version" in words, words


def test_a_teach_refused_as_made_meanwhile_says_so_in_a_teachs_words(tmp_path: Path) -> None:
    """The route's code names the change that lost: a teach is told nothing was taught (t-shift F6)."""
    from eagle_iad.expert.store import ModelChangedError
    from eagle_iad.service.routes_categories import change_refused

    now = "version 9 (threshold set to 97.1 by sam at 04:39:20 UTC)"
    exc = ModelChangedError(f"{tmp_path / 'tire'}: {now} was made while this change was prepared, ...", now)
    error = change_refused("tire", exc, tmp_path / "tire", "not_taught")
    assert (error.status, error.code) == (409, "model_changed")
    assert error.message == (
        "category 'tire': version 9 (threshold set to 97.1 by sam at 04:39:20 UTC) was made while this teach was "
        "prepared; nothing was taught: send the request again"
    )
