"""Stations run by ``eagle station run`` are seen by every replica sharing their history.

A real ``eagle station run`` process (started, stopped with SIGTERM, killed with SIGKILL) on a history it shares with
a real ``eagle serve`` app on a real socket: an SQLite file both name, and a PostgreSQL database (a server the tests
start). Before: such a station was in no replica's ``GET /v1/stations`` or ``/metrics``, and a killed one could not
be told from a running one anywhere but on its own machine.
"""

from __future__ import annotations

import signal
import socket
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import LiveServer, wait_s
from test_service import call
from test_station import Receiver, Running, _cells, _drop, _stations, _webhook, model_dir  # noqa: F401

from eagle_iad.service import ServiceSettings, create_app
from eagle_iad.station.fleet import NOT_SEEN_AFTER_S
from eagle_iad.station.routes import install as stations_routes


@pytest.fixture
def receiver() -> Any:
    server = Receiver().start()
    yield server
    server.stop()


def _service(tmp_path: Path, models: Path, history: str) -> Any:
    settings = ServiceSettings(models_dir=models, state_dir=tmp_path / "service-state", history=history)
    return create_app(settings, extensions=[stations_routes])


def _listed(base: str, name: str = "line-1") -> dict[str, Any] | None:
    status, _, listed = call("GET", f"{base}/v1/stations")
    assert status == 200, listed
    return next((dict(info) for info in listed if info["station"] == name), None)


def _until(
    base: str, done: Any, what: str, timeout: float = 120, station: Running | None = None
) -> dict[str, Any]:  # fmt: skip
    deadline = time.monotonic() + wait_s(timeout)
    while True:
        info = _listed(base)
        if info is not None and done(info):
            return info
        assert time.monotonic() < deadline, f"{what}: {info}; {'' if station is None else station.log()}"
        time.sleep(0.2)


def _metric(base: str, name: str) -> str | None:
    text = call("GET", f"{base}/metrics", raw=True)[2].decode()
    host = socket.gethostname()
    found = [line for line in text.splitlines() if line.startswith(f'{name}{{station="line-1",host="{host}"}} ')]
    return found[0].rsplit(" ", 1)[1] if found else None


def _seen_then_killed(tmp_path: Path, models: Path, receiver: Receiver, history: str) -> None:
    """A station file's station on ``history``: listed by the service (running, its figures, who runs it), read-only
    there (409 naming the host and what to do instead), ``stopped`` after SIGTERM, ``not seen`` after SIGKILL."""
    stations = _stations(tmp_path, models, _webhook(receiver.port))
    stations.write_text(f'history = "{history}"\n' + stations.read_text())
    host = socket.gethostname()
    with LiveServer(_service(tmp_path, models, history)) as live:
        assert _listed(live.base) is None  # nothing runs yet
        station = Running(stations, "--quiet")
        try:
            _drop(tmp_path / "incoming", _cells(2))
            station.until(lambda: len(receiver.received) == 2, "two verdicts delivered")
            info = _until(live.base, lambda i: i["sinks"]["webhook"]["delivered"] == 2, "the figures published")
            assert (info["state"], info["inspected"], info["backlog"], info["created_by"]) == ("running", 2, 0, "file")
            run_by = info["run_by"]
            assert (run_by["host"], run_by["pid"], run_by["file"]) == (host, station.process.pid, str(stations))
            assert not run_by["silent"] and run_by["stopped"] is None and run_by["heartbeat_age_s"] < NOT_SEEN_AFTER_S
            assert info["last_verdict"]["time_iso"] is not None and info["spec"] is None
            status, _, one = call("GET", f"{live.base}/v1/stations/line-1")
            assert status == 200 and one["run_by"]["pid"] == station.process.pid, one
            assert _metric(live.base, "eagle_station_run_up") == "1"
            assert float(_metric(live.base, "eagle_station_heartbeat_age_seconds") or "inf") < NOT_SEEN_AFTER_S
            # read-only here: each change is refused, naming the host and what to use instead
            for method, path, instead in [
                ("POST", "/pause", "stop eagle station run"), ("POST", "/resume", "stop eagle station run"),
                ("POST", "/retry", f"eagle station retry {stations} --station line-1 on {host}"),
                ("POST", "/trigger", "trigger it in the process that runs it"),
                ("PATCH", "", f"change it in {stations} on {host}"),
                ("DELETE", "", f"remove it from {stations} on {host}"),
            ]:  # fmt: skip
                status, _, answer = call(method, f"{live.base}/v1/stations/line-1{path}", body=b"{}",
                                         content_type="application/json")  # fmt: skip
                assert (status, answer["error"]["code"]) == (409, "station_run_by_file"), (method, path, answer)
                message = answer["error"]["message"]
                assert f"eagle station run {stations} on {host} (pid {station.process.pid})" in message, message
                assert instead in message, message
            status, _, answer = call("POST", f"{live.base}/v1/stations", content_type="application/json",
                                     body=b'{"name": "line-1", "category": "mono", "source": {"kind": "folder", '
                                          b'"path": "x"}}')  # fmt: skip
            assert (status, answer["error"]["code"]) == (409, "station_exists"), answer
            assert station.stop() == 143
        finally:
            station.process.kill()
        info = _until(live.base, lambda i: i["state"].startswith("stopped: "), "the clean stop said")
        assert info["run_by"]["stopped"] is not None and info["warnings"][0].startswith("not running: "), info
        assert _metric(live.base, "eagle_station_run_up") == "0"

        station = Running(stations, "--quiet")  # again, then killed: no stop is written
        try:
            _until(live.base, lambda i: i["state"] == "running" and i["run_by"]["pid"] == station.process.pid,
                   "the second run published")  # fmt: skip
            station.process.send_signal(signal.SIGKILL)
            station.process.wait(wait_s(30))
            killed = time.monotonic()
            info = _until(live.base, lambda i: i["state"].startswith("not seen since "), "a killed runner not seen",
                          NOT_SEEN_AFTER_S + 60)  # fmt: skip
            assert time.monotonic() - killed > NOT_SEEN_AFTER_S - 6  # its last heartbeat was at most 5 s before
        finally:
            station.process.kill()
        assert info["run_by"]["silent"] and info["run_by"]["stopped"] is None, info
        assert f"eagle station run on {host} (pid {station.process.pid}) sent no heartbeat" in info["state"], info
        assert info["warnings"][0].startswith("not seen for "), info
        assert _metric(live.base, "eagle_station_run_up") == "0"
        assert float(_metric(live.base, "eagle_station_heartbeat_age_seconds") or "0") > NOT_SEEN_AFTER_S
        # a killed run's row, once not seen, can be forgotten (its machine may be gone for good): only the row goes
        status, _, answer = call("DELETE", f"{live.base}/v1/stations/line-1")
        assert status == 204, answer
        assert _listed(live.base) is None and _metric(live.base, "eagle_station_run_up") is None


def test_a_stations_file_on_a_shared_sqlite_history_is_listed_read_only_and_a_killed_run_is_not_seen(
    model_dir: Path,  # noqa: F811
    tmp_path: Path,
    receiver: Receiver,
) -> None:
    _seen_then_killed(tmp_path, model_dir, receiver, f"sqlite:///{tmp_path / 'plant.sqlite3'}")


def test_a_stations_file_on_the_plants_postgresql_is_listed_read_only_and_a_killed_run_is_not_seen(
    model_dir: Path,  # noqa: F811
    tmp_path: Path,
    receiver: Receiver,
    postgres: Any,
) -> None:
    _seen_then_killed(tmp_path, model_dir, receiver, postgres.new_database())


def test_a_cleanly_stopped_run_can_be_forgotten_and_one_removed_from_its_file_is_forgotten_at_the_next_run(
    model_dir: Path,  # noqa: F811
    tmp_path: Path,
    receiver: Receiver,
) -> None:
    history = f"sqlite:///{tmp_path / 'plant.sqlite3'}"
    stations = _stations(tmp_path, model_dir, _webhook(receiver.port))
    stations.write_text(f'history = "{history}"\n' + stations.read_text())
    (tmp_path / "incoming").mkdir()
    with LiveServer(_service(tmp_path, model_dir, history)) as live:
        for _ in range(2):
            station = Running(stations, "--quiet")
            try:
                _until(live.base, lambda i: i["state"] == "running", "published", station=station)
                assert station.stop() == 143
            finally:
                station.process.kill()
            _until(live.base, lambda i: i["state"].startswith("stopped: "), "the clean stop said")
        status, _, _ = call("DELETE", f"{live.base}/v1/stations/line-1")
        assert status == 204 and _listed(live.base) is None
        # stopped again, then renamed in its file: the next run forgets the old name's row
        station = Running(stations, "--quiet")
        try:
            _until(live.base, lambda i: i["state"] == "running", "published again")
            assert station.stop() == 143
        finally:
            station.process.kill()
        stations.write_text(stations.read_text().replace('name = "line-1"', 'name = "line-2"'))
        station = Running(stations, "--quiet")
        try:
            deadline = time.monotonic() + wait_s(120)
            while _listed(live.base, "line-2") is None or _listed(live.base) is not None:
                assert time.monotonic() < deadline, call("GET", f"{live.base}/v1/stations")[2]
                time.sleep(0.2)
            assert station.stop() == 143
        finally:
            station.process.kill()


class _Source:
    """A source as the figures read it: a description and a backlog."""

    folder = None

    def describe(self) -> str:
        return "folder /line/incoming"

    def backlog(self) -> int:
        return 3


class _Station:
    """What the publisher reads of a running station: its name, state, configuration and intake."""

    def __init__(self, name: str) -> None:
        from eagle_iad.station.config import StationConfig
        from eagle_iad.station.status import Intake

        self.name = name
        self.said = "running"
        self.runner = type("Runner", (), {"config": StationConfig(name, "mono", _Source()), "intake": Intake})()

    def state(self) -> str:
        return self.said


def test_a_change_of_state_is_published_at_once_and_the_heartbeat_is_on_the_databases_clock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The heartbeat is every 5 s, but a station that stops taking images must not look running for that long: a
    change of state is written at its next look (a quarter second). And the runner's clock may be off by an hour
    (a line PC never synchronised): its heartbeat is stamped by the database, so it is judged fresh, not an hour
    old or an hour in the future."""
    import eagle_iad.station.fleet as fleet
    from eagle_iad.service.store import InspectionStore

    store = InspectionStore(tmp_path / "plant.sqlite3")
    station = _Station("line-1")
    manager = type("Manager", (), {"all": lambda self: [station]})()
    real = time.time
    monkeypatch.setattr(fleet.time, "time", lambda: real() + 3600)  # the runner's clock, an hour ahead
    publisher = fleet.Publisher(store, manager, tmp_path / "stations.toml", every_s=3600)
    try:
        publisher.publish()
        publisher.start()
        (run,) = fleet.published(store)
        assert (run.name, run.state(), run.figures["backlog"], run.silent) == ("line-1", "running", 3, False)
        assert abs(run.age) < 5, run.age  # the database's clock, not the runner's
        station.said = "waiting: images cannot be listed: No such file or directory: /line/incoming"
        deadline = time.monotonic() + wait_s(10)
        while fleet.published(store)[0].state() == "running":  # no heartbeat due for an hour: the change is written
            assert time.monotonic() < deadline, "the change of state was not published"
            time.sleep(0.05)
        assert fleet.published(store)[0].state() == station.said
    finally:
        publisher.halt()
    publisher.stopped()
    (run,) = fleet.published(store)
    assert run.state().startswith("stopped: eagle station run on ") and not run.silent
    store.close()


def _published_run(tmp_path: Path, roots: tuple[str, ...] = ()) -> tuple[Any, Any, Any]:
    """A service app on a SQLite history, and a stations file's station ``line-1`` (category mono, its hot folder
    ``/line/incoming`` on the runner's machine) published in it, as ``eagle station run`` there does: (app, the
    runner's store, its publisher). Keys: ``viewer``, ``operator``, ``engineer``, ``admin``."""
    import eagle_iad.station.fleet as fleet
    from eagle_iad.service.keys import Role
    from eagle_iad.service.store import InspectionStore

    history = tmp_path / "plant.sqlite3"
    (tmp_path / "models").mkdir()
    app = _service(tmp_path, tmp_path / "models", f"sqlite:///{history}")
    app.state.keys = {role.name: app.state.service.keys.add(f"{role.name}-key", role) for role in Role}
    store = InspectionStore(history)
    station = _Station("line-1")
    manager = type("Manager", (), {"all": lambda self: [station]})()
    publisher = fleet.Publisher(store, manager, Path("/srv/line-pc/stations.toml"),
                                **({"roots": roots} if roots else {}))  # fmt: skip
    publisher.publish()
    return app, store, publisher


def _silent(store: Any) -> None:
    """The row's heartbeat made older than the limit: the command killed, its machine gone."""
    with store.transaction() as db:
        db.execute("UPDATE station_runs SET beat = beat - ?", (NOT_SEEN_AFTER_S + 60,))


def test_a_station_not_seen_for_longer_than_the_limit_can_be_forgotten_by_an_engineer_audited(tmp_path: Path) -> None:
    """A killed ``eagle station run`` on a machine gone for good: nobody will remove the station from its file
    there, so its row answered DELETE with 409 for ever and its ``eagle_station_run_up 0`` alerted for ever. Once
    not seen for longer than the limit, an engineer's DELETE forgets the row (only the row), audited; one that
    still heartbeats stays read-only."""
    app, store, _ = _published_run(tmp_path)
    keys = app.state.keys
    try:
        with LiveServer(app) as live:
            url = f"{live.base}/v1/stations/line-1"
            status, _, answer = call("DELETE", url, key=keys["engineer"])
            assert (status, answer["error"]["code"]) == (409, "station_run_by_file"), answer  # alive: read-only
            _silent(store)
            status, _, answer = call("DELETE", url, key=keys["operator"])
            assert status == 403, answer  # an engineer's act
            assert (
                "eagle_station_run_up{" in call("GET", f"{live.base}/metrics", raw=True, key=keys["viewer"])[2].decode()
            )
            status, _, answer = call("DELETE", url, key=keys["engineer"])
            assert status == 204, answer
            assert call("GET", url, key=keys["viewer"])[0] == 404
            assert (
                "eagle_station_run_up{"
                not in call("GET", f"{live.base}/metrics", raw=True, key=keys["viewer"])[2].decode()
            )
            row = call("GET", f"{live.base}/v1/audit", key=keys["admin"])[2]["items"][0]
            assert row["detail"].startswith("forgot line-1 (run by eagle station run /srv/line-pc/stations.toml on "), (
                row
            )
            assert "not seen since " in row["detail"] and "only its row in the listings" in row["detail"], row
            # filed under the station's category (its last heartbeat's), as its other audit rows are
            by_category = call("GET", f"{live.base}/v1/audit?category=mono", key=keys["admin"])[2]["items"]
            assert [r["detail"] for r in by_category[:1]] == [row["detail"]], by_category
    finally:
        store.close()


def test_a_viewer_sees_no_path_of_the_machine_that_runs_a_stations_file(tmp_path: Path) -> None:
    """``run_by.file`` and the figures of a station run elsewhere showed that machine's paths to every viewer,
    though the service's own stations show folders relative to the data root. The runner publishes its figures
    relative to its own folders; a viewer (and an operator) sees the stations file by its name only, in
    ``run_by``, the warnings and the 409s; an engineer, who goes there to change it, sees its path."""
    app, store, _ = _published_run(tmp_path, roots=("/line",))
    keys = app.state.keys
    try:
        with LiveServer(app) as live:
            _silent(store)  # its warning names the file too
            for role in ("viewer", "operator"):
                (listed,) = call("GET", f"{live.base}/v1/stations", key=keys[role])[2]
                one = call("GET", f"{live.base}/v1/stations/line-1", key=keys[role])[2]
                for shown in (listed, one):
                    assert shown["run_by"]["file"] == "stations.toml", shown
                    assert shown["source"] == "folder incoming", shown
                    assert "/srv/" not in str(shown) and "/line/" not in str(shown), shown
                    assert "(pid " in shown["warnings"][0] and "stations.toml" in shown["warnings"][0], shown
            status, _, answer = call("POST", f"{live.base}/v1/stations/line-1/pause", key=keys["operator"])
            assert (status, answer["error"]["code"]) == (409, "station_run_by_file"), answer
            assert "/srv/" not in answer["error"]["message"] and "stations.toml" in answer["error"]["message"]
            one = call("GET", f"{live.base}/v1/stations/line-1", key=keys["engineer"])[2]
            assert one["run_by"]["file"] == "/srv/line-pc/stations.toml" and one["source"] == "folder incoming", one
            status, _, answer = call("POST", f"{live.base}/v1/stations/line-1/pause", key=keys["engineer"])
            assert status == 409 and "eagle station run /srv/line-pc/stations.toml on " in answer["error"]["message"]
    finally:
        store.close()


def test_the_station_gauges_stay_in_the_scrape_while_the_history_is_busy_not_down(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A long query, export or prune holding the history's connection made ``/metrics`` leave out every family
    that reads the history (the station gauges, the CAAS rate), which broke ``absent()`` alerts and ``for:``
    windows. Busy is not down: they are read (waiting for the connection); only an unreachable history skips them."""
    app, store, _ = _published_run(tmp_path)
    keys = app.state.keys
    try:
        with LiveServer(app) as live:
            service = app.state.service
            for health, up, kept in (("busy", "1.0", True), ("unavailable: unreachable", "0.0", False)):
                monkeypatch.setattr(service.store, "health", lambda wait_s=1.0, seen_by="", said=health: said)
                text = call("GET", f"{live.base}/metrics", raw=True, key=keys["viewer"])[2].decode()
                assert f"\neagle_history_up {up}\n" in text, (health, text)
                for family in ("eagle_station_run_up{", "eagle_station_heartbeat_age_seconds{",
                               "\neagle_history_caas_rate "):  # fmt: skip
                    assert (family in text) == kept, (health, family, text)
    finally:
        store.close()


def test_a_heartbeat_written_after_the_clean_stop_does_not_undo_it(tmp_path: Path) -> None:
    """``halt`` waits at most 30 s for the heartbeat thread; a write blocked longer (a slow history) could land
    after ``stopped`` and show the station running, then not seen, instead of stopped. The stop wins: a row this
    very process marked stopped is not written again by it; the next run of the file (another process) is."""
    import eagle_iad.station.fleet as fleet

    _, store, publisher = _published_run(tmp_path)
    try:
        publisher.stopped()
        publisher._write("line-1", "running", {"category": "mono"})  # the heartbeat that was still in flight
        (run,) = fleet.published(store)
        assert run.stopped is not None and run.state().startswith("stopped: "), run
        again = fleet.Publisher(store, publisher.manager, Path("/srv/line-pc/stations.toml"))
        again.started = publisher.started + 1  # the next run, even under the same pid
        again.publish()
        (run,) = fleet.published(store)
        assert run.stopped is None and run.state() == "running", run
    finally:
        store.close()
