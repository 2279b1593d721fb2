"""``eagle serve`` owns its state folder, bounds each upload's cost and answers every error in one shape.

Two real ``eagle serve`` processes check the state-folder lock; the rest runs the same app factory
in-process (no fitted model is needed: each refusal happens before a category is looked up).
"""

from __future__ import annotations

import os
import signal
import struct
import subprocess
import sys
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import LiveServer, wait_s
from expert_fakes import FAKE_CONFIG, FakeExtractor, noise_pngs
from test_service import ServeProcess, call, multipart, png

from eagle_iad.expert import fit, load, save
from eagle_iad.service import ServiceSettings, create_app
from eagle_iad.service.store import Inspection, InspectionStore


def _png_header(width: int, height: int) -> bytes:
    """A tiny PNG whose IHDR claims ``width x height`` 1-bit pixels (the data is a few bytes)."""

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    data = zlib.compress(b"\0" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")


def _error_shape(response: tuple[int, dict[str, str], object], status: int, message: str) -> dict[str, object]:
    code, _, body = response
    assert code == status, body
    assert isinstance(body, dict) and set(body) == {"error"}, body
    error = body["error"]
    assert set(error) == {"message", "type", "code", "param"} and message in error["message"], body
    return dict(error)


def test_second_service_on_one_state_folder_refuses_to_start(tmp_path: Path) -> None:
    models, state = tmp_path / "models", tmp_path / "state"
    models.mkdir()
    args = ["--models", str(models), "--state-dir", str(state), "--log-level", "warning"]
    first = ServeProcess(args)
    try:
        in_flight = state / "uploads" / "job-of-the-first" / "00000.img"  # the first service's work
        in_flight.parent.mkdir(parents=True)
        in_flight.write_bytes(b"training image")
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        env.pop("EAGLE_API_KEY", None)
        second = subprocess.run([sys.executable, "-m", "eagle_iad.cli", "serve", *args, "--port", "0"],
                                capture_output=True, text=True, env=env, timeout=wait_s(300))  # fmt: skip
        assert second.returncode == 2, second.stderr
        assert second.stderr == (
            f"eagle: error: another eagle serve (pid {first.process.pid}) is using the state folder {state}; "
            "stop it or give this one a different --state-dir\n"
        )
        assert in_flight.read_bytes() == b"training image"  # the refused start cleaned nothing up
        assert call("GET", f"{first.base}/healthz")[0] == 200
        first.process.send_signal(signal.SIGKILL)  # dies holding the lock: the file stays, the lock does not
        first.process.wait(timeout=wait_s(60))
        assert (state / "eagle-serve.lock").read_text() == f"{first.process.pid}\neagle serve\n"
        third = ServeProcess(args)  # a stale lock file is taken over
        try:
            assert (state / "eagle-serve.lock").read_text() == f"{third.process.pid}\neagle serve\n"
            assert not in_flight.parent.exists()  # now the owner, its start-up cleaned the dead one's upload
        finally:
            third.stop()
    finally:
        first.stop()


@pytest.fixture
def live(tmp_path: Path) -> Iterator[LiveServer]:
    (tmp_path / "models").mkdir()
    # A console is always mounted (as in a built checkout): its catch-all mount must not turn API
    # answers (405 for a known path with another method, 404 for an unknown one) into console files.
    (tmp_path / "web").mkdir()
    (tmp_path / "web" / "index.html").write_text("<!doctype html><title>console</title>")
    settings = ServiceSettings(models_dir=tmp_path / "models", state_dir=tmp_path / "state", max_pixels=1_000_000,
                               web_dir=tmp_path / "web")  # fmt: skip
    with LiveServer(create_app(settings)) as server:
        yield server


def _inspect(base: str, data: bytes, filename: str = "x.png") -> tuple[int, dict[str, str], object]:
    body, ctype = multipart({"category": "any"}, [("image", filename, data, "image/png")])
    return call("POST", f"{base}/v1/inspect", body=body, content_type=ctype)


def test_oversized_headers_answer_413(live: LiveServer) -> None:
    bomb = _png_header(30_000, 30_000)
    assert len(bomb) < 200
    error = _error_shape(_inspect(live.base, bomb, "bomb.png"), 413, "bomb.png: image is too large")
    assert error["code"] == "too_many_pixels"
    thin = np.zeros((16, 40_000, 3), dtype=np.uint8)
    # Refused for its shape, not its size: its own code, so a console heads it "too elongated", not "too large".
    elongated = _error_shape(
        _inspect(live.base, png(thin), "thin.png"),
        413,
        "thin.png: 40000x16 is too elongated (aspect ratio 2500:1 exceeds the limit of 32:1",
    )
    assert elongated["code"] == "image_too_elongated"
    _error_shape(_inspect(live.base, _png_header(1100, 1000), "many.png"), 413,
                 "many.png: 1100x1000 = 1.1 megapixels exceeds the limit of 1.0 megapixels (the service's --max-pixels "
                 "changes it)")  # fmt: skip


def test_every_error_has_one_shape_and_metrics_name_route_templates(live: LiveServer) -> None:
    files = [("image", f"{i}.png", b"x", "image/png") for i in range(50)]
    body, ctype = multipart({"category": "any"}, files)
    _error_shape(call("POST", f"{live.base}/v1/inspect", body=body, content_type=ctype), 400,
                 "Too many files. Maximum number of files is 1.")  # fmt: skip
    _error_shape(call("GET", f"{live.base}/v1/inspections?limit=many"), 400, "invalid request: query.limit")
    _error_shape(call("GET", f"{live.base}/v1/jobs/abc"), 404, "no job 'abc'")
    _error_shape(call("DELETE", f"{live.base}/v1/inspections"), 405, "method DELETE not allowed")
    _error_shape(call("GET", f"{live.base}/v1/nothing"), 404, "no route /v1/nothing")
    metrics = call("GET", f"{live.base}/metrics", raw=True)[2]
    assert isinstance(metrics, bytes)
    lines = [line for line in metrics.decode().splitlines() if line.startswith("eagle_http_requests_total")]
    assert 'eagle_http_requests_total{method="GET",route="/v1/jobs/{job_id}",status="404"} 1' in lines
    assert 'eagle_http_requests_total{method="POST",route="/v1/inspect",status="400"} 1' in lines
    assert 'eagle_http_requests_total{method="GET",route="/v1/inspections",status="400"} 1' in lines
    assert 'eagle_http_requests_total{method="GET",route="unmatched",status="404"} 1' in lines
    assert 'eagle_http_requests_total{method="DELETE",route="/v1/inspections",status="405"} 1' in lines
    assert not [line for line in lines if 'route="other"' in line]


def test_fit_never_replaces_a_folder_with_user_files(live: LiveServer, tmp_path: Path) -> None:
    folder = tmp_path / "models" / "mine"
    folder.mkdir()
    (folder / "thesis.txt").write_text("three years")
    body, ctype = multipart({}, [("files", "a.png", png(np.zeros((32, 32, 3), np.uint8)), "image/png")])
    error = _error_shape(call("POST", f"{live.base}/v1/categories/mine/fit", body=body, content_type=ctype), 409,
                         "category mine: holds 1 entry and is not an EAGLE-IAD model")  # fmt: skip
    assert error["code"] == "category_not_replaceable" and str(tmp_path) not in str(error["message"])
    assert (folder / "thesis.txt").read_text() == "three years" and sorted(os.listdir(folder)) == ["thesis.txt"]
    assert list((tmp_path / "state" / "uploads").iterdir()) == []


def test_a_replica_starts_without_one_history_query_per_picture_folder(
    tmp_path: Path, postgres: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The start-up's look for pictures without a row asked the history about each folder in turn: one round
    trip per inspection ever kept, which on a plant's PostgreSQL with half a million inspections held a
    restarting replica up for many minutes before it answered. It now asks about them in batches."""
    import time

    from eagle_iad.history.postgresql import _Postgres

    url = postgres.new_database()
    files = tmp_path / "files"
    store = InspectionStore(url)
    old = time.time() - 3600  # older than ORPHAN_AGE_S: every folder is looked at
    try:
        for index in range(1200):
            name = f"{index:032x}"
            (files / name).mkdir(parents=True)
            (files / name / "a_heatmap.png").write_bytes(b"picture")
            if index % 2 == 0:  # half of them stored, half orphans of killed inspections
                store.add(Inspection(id=name, time="t", category="c", image_name="a.png", score=1.0, tau=1.0,
                                     s_max=2.0, decision="normal", in_band=False, answer=None, caas_applied=False,
                                     verdict={}, pictures={}))  # fmt: skip
            os.utime(files / name, (old, old))
    finally:
        store.close()
    statements: list[str] = []
    execute = _Postgres.execute

    def counted(db: Any, sql: str, params: Any = ()) -> Any:
        statements.append(sql)
        return execute(db, sql, params)

    monkeypatch.setattr(_Postgres, "execute", counted)
    models = tmp_path / "models"
    models.mkdir()
    app = create_app(ServiceSettings(models_dir=models, state_dir=tmp_path / "state", history=url, files=files))
    try:
        assert sorted(p.name for p in files.iterdir()) == [f"{i:032x}" for i in range(0, 1200, 2)]
        assert len(statements) < 100, len(statements)
    finally:
        app.state.service.close()


def test_start_up_cleans_what_a_killed_service_left(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A picture folder named by an inspection id (32 hex digits) without a row is an inspection a kill cut
    short, and goes, said in one line with how many and where (they went silently); a folder named otherwise is
    none of the service's and stays, whatever its name (an ASCII one was removed, a non-ASCII one kept)."""
    import logging

    kept, orphan = "0" * 31 + "a", "0" * 31 + "b"
    state = tmp_path / "state"
    store = InspectionStore(state / "eagle.sqlite3")
    store.add(Inspection(id=kept, time="t", category="c", image_name="a.png", score=1.0, tau=1.0, s_max=2.0,
                         decision="normal", in_band=False, answer=None, caas_applied=False, verdict={},
                         pictures={"heatmap": f"/v1/files/{kept}/a_heatmap.png"}))  # fmt: skip
    store.close()
    (state / "files" / kept).mkdir(parents=True)
    (state / "files" / kept / "a_heatmap.png").write_bytes(b"picture")
    (state / "files" / kept / ".a_box.png.x1y2.tmp").write_bytes(b"half")  # a kill during save_png
    (state / "files" / orphan).mkdir()
    (state / "files" / orphan / "b_heatmap.png").write_bytes(b"never stored")  # killed before store.add
    for other in ("notes", "grün", orphan.upper(), orphan + "0"):  # no id of the service's: not its folders
        (state / "files" / other).mkdir()
        (state / "files" / other / "x").write_bytes(b"someone's own")
    models = tmp_path / "models"
    expert = fit(noise_pngs(tmp_path / "train", 3, seed=1), "cat", FAKE_CONFIG, extractor=FakeExtractor())
    save(expert.model, models / "cat")
    os.rename(models / "cat", models / ".cat.old-abcd1234")  # a fit killed between the two renames of its save
    (models / ".cat.tmp-efgh5678").mkdir()  # ... and its half-written staging copy
    (models / ".cat.tmp-efgh5678" / "tensors.safetensors").write_bytes(b"half")
    caplog.set_level(logging.INFO, logger="eagle_iad.service.context")
    app = create_app(ServiceSettings(models_dir=models, state_dir=state))
    try:
        said = [r.getMessage() for r in caplog.records if r.name == "eagle_iad.service.context"]
        assert said == [f"removed 1 picture folder without a history row from {state / 'files'} (inspections a stop "
                        "or a kill cut short before they were stored)"]  # fmt: skip
        left = sorted(str(p.relative_to(state / "files")) for p in (state / "files").rglob("*"))
        others = sorted(("notes", "grün", orphan.upper(), orphan + "0"))
        assert left == sorted([kept, f"{kept}/a_heatmap.png", *others, *(f"{other}/x" for other in others)])
        assert sorted(os.listdir(models)) == ["cat"] and load(models / "cat").category == "cat"
    finally:
        app.state.service.close()


def test_a_station_refused_a_busy_state_folder_is_told_to_change_its_stations_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``eagle station run`` on a state folder a service holds was told to give "a different --state-dir", a flag
    it does not have: its state folder is ``state =`` in its stations file, and the refusal now names that file."""
    from eagle_iad.cli import main
    from eagle_iad.service.lock import StateLock, set_holder

    models = tmp_path / "models"
    expert = fit(noise_pngs(tmp_path / "train", 3, seed=1), "cat", FAKE_CONFIG, extractor=FakeExtractor())
    save(expert.model, models / "cat")
    (tmp_path / "in").mkdir()
    stations = tmp_path / "stations.toml"
    stations.write_text(f'models = "{models}"\nstate = "state"\n[[station]]\nname = "l"\ncategory = "cat"\n'
                        'source = { kind = "folder", path = "in" }\n')  # fmt: skip
    set_holder("eagle serve")  # what an earlier main() in this process ran is no matter here
    held = StateLock(tmp_path / "state")  # an eagle serve on that folder
    held.acquire()
    try:
        assert main(["station", "run", "--until-idle", str(stations)]) == 2
    finally:
        held.release()
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"eagle: error: another eagle serve (pid {os.getpid()}) is using the state folder {tmp_path / 'state'}; "
        f"stop it or give this one a different state folder ('state =' in {stations})"
    )


def test_a_busy_state_folder_names_the_command_that_holds_it(tmp_path: Path) -> None:
    """A station holds its state folder as a service does: the second one's message names a station, not a
    service (the command is recorded in the lock file); a lock file from before that names only the pid."""
    from eagle_iad.errors import ConfigError
    from eagle_iad.service.lock import LOCK_FILE, StateLock, set_holder

    state = tmp_path / "state"
    held = StateLock(state)
    set_holder("eagle station run")
    try:
        held.acquire()
    finally:
        set_holder("eagle serve")
    try:
        assert (state / LOCK_FILE).read_text() == f"{os.getpid()}\neagle station run\n"
        with pytest.raises(ConfigError) as refused:
            StateLock(state).acquire()
        assert str(refused.value) == (f"another eagle station run (pid {os.getpid()}) is using the state folder "
                                      f"{state}; stop it or give this one a different --state-dir")  # fmt: skip
        os.truncate(state / LOCK_FILE, 0)
        (state / LOCK_FILE).write_text("4242\n")  # written by an earlier version: the pid alone
        with pytest.raises(ConfigError) as refused:
            StateLock(state).acquire()
        assert str(refused.value).startswith("another eagle process (pid 4242) is using the state folder")
    finally:
        held.release()
