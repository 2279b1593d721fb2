"""Retiring a category (``DELETE /v1/categories/{name}``): an administrator's act, audited, undoable, refused while
something uses the category, and crash-consistent (the model folder moves whole in one rename).

A real ``eagle serve`` app with its stations on a real socket (conftest's LiveServer), as docs/SERVICE.md says it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import threading
from pathlib import Path
from typing import Any

import pytest
from conftest import LiveServer
from test_access import _keys
from test_service import call, multipart
from test_station import _cells, model_dir  # noqa: F401  (model_dir: models/mono, a small real model)

from eagle_iad.expert import store as expert_store
from eagle_iad.expert.store import RETIRED, change_threshold, is_model_folder, retire_model
from eagle_iad.service import ServiceSettings, create_app
from eagle_iad.station.routes import install as stations


@pytest.fixture
def models(model_dir: Path, tmp_path: Path) -> Path:  # noqa: F811
    """This test's own copy of models/mono (a retirement moves it)."""
    copy = tmp_path / "models"
    shutil.copytree(model_dir, copy)
    change_threshold(copy / "mono", why="a second version", by="eve", tau=50.0)
    return copy


def _app(models: Path, state: Path, data_root: Path | None = None, api_key: str | None = None) -> Any:
    settings = ServiceSettings(models_dir=models, state_dir=state, data_root=data_root, api_key=api_key)
    return create_app(settings, extensions=[stations])


def _inspect(base: str, image: Path, key: str | None = None) -> tuple[int, Any]:
    body, content_type = multipart({"category": "mono"}, [("image", image.name, image.read_bytes(), "image/png")])
    status, _, answer = call("POST", f"{base}/v1/inspect", body=body, content_type=content_type, key=key)
    return status, answer


def test_an_admin_retires_a_category_audited_its_history_kept_and_moving_it_back_undoes_it(
    models: Path, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    keys = _keys(state)
    cell = _cells(1)[0]
    with LiveServer(_app(models, state)) as live:
        assert _inspect(live.base, cell, keys["operator"])[0] == 200
        status, _, answer = call("DELETE", f"{live.base}/v1/categories/mono", key=keys["engineer"])
        assert (status, answer["error"]["code"]) == (403, "forbidden")  # an engineer fits; only an admin retires
        assert is_model_folder(models / "mono")
        status, _, answer = call("DELETE", f"{live.base}/v1/categories/mono", key=keys["admin"])
        assert status == 200, answer
        [retired] = list((models / RETIRED).iterdir())
        assert answer["retired_to"] == f"{RETIRED}/{retired.name}" and retired.name.startswith("mono-")
        assert answer["inspections_kept"] == 1 and str(tmp_path) not in json.dumps(answer)
        assert not os.path.lexists(models / "mono")
        # the whole folder moved: both versions, the current model
        assert sorted(p.name for p in (retired / "versions").iterdir()) == ["1", "2"] and is_model_folder(retired)
        # gone at once for every route, cache or not; the history keeps its inspections
        status, again = _inspect(live.base, cell, keys["operator"])
        assert (status, again["error"]["code"], again["error"]["message"]) == (
            404, "category_not_found", "no fitted category 'mono'")  # fmt: skip
        assert call("GET", f"{live.base}/v1/categories", key=keys["viewer"])[2]["categories"] == []
        assert call("GET", f"{live.base}/v1/inspections?category=mono", key=keys["viewer"])[2]["total"] == 1
        status, _, answer = call("DELETE", f"{live.base}/v1/categories/mono", key=keys["admin"])
        assert (status, answer["error"]["code"]) == (404, "category_not_found")
        rows = call("GET", f"{live.base}/v1/audit", key=keys["admin"])[2]["items"]
        row = rows[0]
        assert (row["actor"], row["role"], row["method"], row["path"], row["status"]) == (
            "ada", "admin", "DELETE", "/v1/categories/mono", 200)  # fmt: skip
        assert row["detail"] == f"retired mono: moved to {RETIRED}/{retired.name}; 1 inspection(s) kept in the history"
        # undo, as the manual says: move the folder back under its name
        os.rename(retired, models / "mono")
        assert _inspect(live.base, cell, keys["operator"])[0] == 200


def _post(base: str, path: str, body: Any) -> tuple[int, Any]:
    status, _, answer = call("POST", base + path, body=json.dumps(body).encode(), content_type="application/json")
    return status, answer


def test_a_retirement_is_refused_naming_the_station_that_uses_the_category_here_or_in_the_history(
    models: Path, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    (data / "incoming").mkdir(parents=True)
    app = _app(models, tmp_path / "state", data_root=data)
    body = {"name": "line-1", "category": "mono", "sinks": [{"kind": "folder", "path": "out"}],
            "source": {"kind": "folder", "path": "incoming", "settle_s": 0.2, "poll_s": 0.05}}  # fmt: skip
    with LiveServer(app) as live:
        assert _post(live.base, "/v1/stations", body)[0] == 201
        status, _, answer = call("DELETE", f"{live.base}/v1/categories/mono")
        assert (status, answer["error"]["code"]) == (409, "category_in_use")
        assert answer["error"]["message"].startswith(
            "category 'mono' is in use by station 'line-1' (runs on this service): delete those stations"
        )
        # kept in the shared history but not run here (another replica's): refused all the same
        app.state.stations.remove("line-1", 5.0)
        status, _, answer = call("DELETE", f"{live.base}/v1/categories/mono")
        assert status == 409 and "station 'line-1' (kept in the history" in answer["error"]["message"]
        assert is_model_folder(models / "mono")
        assert call("DELETE", f"{live.base}/v1/stations/line-1")[0] == 204
        status, _, answer = call("DELETE", f"{live.base}/v1/categories/mono")
        assert status == 200, answer


def test_a_retirement_is_refused_while_a_fit_or_a_teach_of_the_category_runs(
    models: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from eagle_iad.service import jobs as jobs_module
    from eagle_iad.service import routes_teach

    release, fitting, teaching = threading.Event(), threading.Event(), threading.Event()

    def slow_fit(*args: Any, **kwargs: Any) -> Any:
        fitting.set()
        assert release.wait(60)
        raise expert_store.ConfigError("stopped by the test")

    def slow_teach(*args: Any, **kwargs: Any) -> Any:
        teaching.set()
        assert release.wait(60)
        raise expert_store.ConfigError("stopped by the test; nothing was taught")

    monkeypatch.setattr(jobs_module, "fit", slow_fit)
    monkeypatch.setattr(routes_teach, "teach", slow_teach)
    data = tmp_path / "data"
    (data / "normal").mkdir(parents=True)
    for cell in _cells(4):
        shutil.copy(cell, data / "normal" / cell.name)
    with LiveServer(_app(models, tmp_path / "state", data_root=data)) as live:
        status, started = _post(live.base, "/v1/categories/mono/fit", {"folder": "normal"})
        assert status == 202, started
        job = started["job"]["id"]
        assert fitting.wait(60)
        status, _, answer = call("DELETE", f"{live.base}/v1/categories/mono")
        assert (status, answer["error"]["code"]) == (409, "category_in_use")
        assert answer["error"]["message"] == (
            f"category 'mono' is in use: fit job {job} is queued or running on this service; wait for it to end "
            "(or for its failure), then retire it"
        )
        answers: list[Any] = []
        teach = threading.Thread(target=lambda: answers.append(
            _post(live.base, "/v1/categories/mono/teach", {"folder": "normal", "why": "normal"})))  # fmt: skip
        teach.start()
        assert teaching.wait(60)
        status, _, answer = call("DELETE", f"{live.base}/v1/categories/mono")
        assert status == 409 and "a teach of it is in progress on this service" in answer["error"]["message"]
        release.set()
        teach.join(60)
        assert answers and answers[0][0] == 400
        while call("GET", f"{live.base}/v1/jobs/{job}")[2]["state"] not in ("succeeded", "failed"):
            threading.Event().wait(0.1)
        status, _, answer = call("DELETE", f"{live.base}/v1/categories/mono")
        assert status == 200, answer
        assert not os.path.lexists(models / "mono")


@pytest.mark.skipif(not hasattr(os, "fork"), reason="simulates the crash with fork + SIGKILL (POSIX)")
@pytest.mark.parametrize("step", ["retiring", "moved"])
def test_a_sigkill_during_a_retirement_leaves_the_category_whole_in_one_place(
    models: Path, step: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Killed before or after the rename: the model is complete at its name or complete in .retired, never half."""
    files = sorted(p.relative_to(models / "mono") for p in (models / "mono").rglob("*"))

    def die(name: str) -> None:
        if name == step:
            os.kill(os.getpid(), signal.SIGKILL)

    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child dies
        expert_store._step_hook = die
        try:
            retire_model(models / "mono")
        finally:
            os._exit(3)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, status
    retired = list((models / RETIRED).iterdir())
    if step == "retiring":
        assert retired == [] and sorted(p.relative_to(models / "mono") for p in (models / "mono").rglob("*")) == files
    else:
        [moved] = retired
        assert not os.path.lexists(models / "mono")
        assert sorted(p.relative_to(moved) for p in moved.rglob("*")) == files
        os.rename(moved, models / "mono")  # the undo
    assert expert_store.load(models / "mono").thresholds.tau == 50.0


def test_a_change_prepared_before_a_retirement_does_not_bring_the_category_back(models: Path) -> None:
    """A save that read the model before the retirement finds no model after it: refused as a concurrent
    change, so the category stays retired (a replica's threshold change racing an admin's retirement)."""
    fingerprint = expert_store.model_fingerprint(models / "mono")
    model = expert_store.load(models / "mono")
    retire_model(models / "mono")
    with pytest.raises(expert_store.ModelChangedError):
        expert_store.save(model, models / "mono", replacing=fingerprint)
    assert not os.path.lexists(models / "mono")
    with pytest.raises(expert_store.ConfigError, match="is not a fitted model folder; nothing was retired"):
        retire_model(models / "mono")


def test_eagle_retire_refuses_while_the_service_runs_and_retires_audited_once_it_is_stopped(
    models: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from eagle_iad.cli import main
    from eagle_iad.cli.db import os_user

    state = models.parent / "eagle-service"  # the default beside --models, as eagle serve uses it
    data = tmp_path / "data"
    (data / "incoming").mkdir(parents=True)
    body = {"name": "line-1", "category": "mono", "sinks": [{"kind": "folder", "path": "out"}],
            "source": {"kind": "folder", "path": "incoming", "settle_s": 0.2, "poll_s": 0.05}}  # fmt: skip
    with LiveServer(_app(models, state, data_root=data)) as live:
        assert _post(live.base, "/v1/stations", body)[0] == 201
        assert main(["retire", "mono", "--models", str(models)]) == 2
        assert "retire the category through it instead: DELETE /v1/categories/mono" in capsys.readouterr().err
    assert main(["retire", "mono", "--models", str(models)]) == 2  # stopped, but its kept station uses it
    assert "category 'mono' is in use by station 'line-1' (kept in the history)" in capsys.readouterr().err
    with LiveServer(_app(models, state, data_root=data)) as live:
        assert call("DELETE", f"{live.base}/v1/stations/line-1")[0] == 204
    capsys.readouterr()
    assert main(["retire", "mono", "--models", str(models)]) == 0
    answer = json.loads(capsys.readouterr().out)
    [retired] = list((models / RETIRED).iterdir())
    assert answer["retired_to"] == f"{RETIRED}/{retired.name}" and not os.path.lexists(models / "mono")
    with LiveServer(_app(models, state)) as live:
        [row] = [r for r in call("GET", f"{live.base}/v1/audit")[2]["items"] if r["method"] == "DELETE"
                 and r["route"] == "/v1/categories/{name}"]  # fmt: skip
    assert (row["actor"], row["role"], row["path"]) == (f"cli:{os_user()}", "admin", "/v1/categories/mono")
    assert row["detail"].endswith("0 inspection(s) kept in the history (eagle retire)")


def test_a_retirement_is_refused_while_a_stations_file_run_on_another_machine_uses_the_category(
    models: Path, tmp_path: Path
) -> None:
    """A line PC's ``eagle station run`` on the same history scores its images with the category: retiring it from
    a replica would leave that station failing. While its row in ``station_runs`` is heard from, the retirement is
    refused naming its host and file; a stopped one's row does not hold the category."""
    from eagle_iad.service.store import InspectionStore
    from eagle_iad.station.config import StationConfig
    from eagle_iad.station.fleet import Publisher
    from eagle_iad.station.status import Intake

    class Source:
        folder = None

        def describe(self) -> str:
            return "folder /line/incoming"

        def backlog(self) -> int:
            return 0

    class Station:
        name = "line-9"
        runner = type("Runner", (), {"config": StationConfig("line-9", "mono", Source()), "intake": Intake})()

        def state(self) -> str:
            return "running"

    history = tmp_path / "plant.sqlite3"
    settings = ServiceSettings(models_dir=models, state_dir=tmp_path / "state", history=f"sqlite:///{history}")
    store = InspectionStore(history)
    publisher = Publisher(store, type("Manager", (), {"all": lambda self: [Station()]})(), Path("/srv/pc/st.toml"))
    try:
        with LiveServer(create_app(settings, extensions=[stations])) as live:
            publisher.publish()
            status, _, answer = call("DELETE", f"{live.base}/v1/categories/mono")
            assert (status, answer["error"]["code"]) == (409, "category_in_use"), answer
            assert "station 'line-9' (run by eagle station run /srv/pc/st.toml on " in answer["error"]["message"]
            assert is_model_folder(models / "mono")
            publisher.stopped()
            status, _, answer = call("DELETE", f"{live.base}/v1/categories/mono")
            assert status == 200, answer
    finally:
        store.close()
