"""Stations through the service: ``/v1/stations`` create, list, pause, resume, retry, trigger, delete,
kept across a restart of the service, shown in ``/metrics``, and confined to the data root.

A real ``eagle serve`` app (``create_app`` with the stations extension, as the CLI builds it) on a real
socket, a real hot folder of elpv cells and a real webhook receiver.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar

import pytest
from conftest import LiveServer, wait_s
from test_service import call
from test_station import Receiver, _cells, _drop, model_dir  # noqa: F401  (model_dir: the module's fixture)

from eagle_iad.service import ServiceSettings, create_app
from eagle_iad.station.routes import install as stations
from eagle_iad.station.status import read_intake


def _app(root: Path, models: Path, data_root: Path | None) -> Any:
    settings = ServiceSettings(models_dir=models, state_dir=root / "state", data_root=data_root)
    return create_app(settings, extensions=[stations])


def _post(base: str, path: str, body: Any = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    status, _, answer = call("POST", base + path, body=data if data is not None else b"",
                             content_type="application/json")  # fmt: skip
    return status, answer


def _until(base: str, name: str, done: Any, what: str) -> dict[str, Any]:
    deadline = time.monotonic() + wait_s(120)
    while True:
        status, _, info = call("GET", f"{base}/v1/stations/{name}")
        assert status == 200, info
        if done(info):
            return dict(info)
        assert time.monotonic() < deadline, f"{what}: {info}"
        time.sleep(0.1)


def _body(receiver: Receiver, **extra: Any) -> dict[str, Any]:
    return {
        "name": "line-1",
        "category": "mono",
        "source": {"kind": "folder", "path": "incoming", "settle_s": 0.2, "poll_s": 0.05},
        "sinks": [{"kind": "webhook", "url": f"http://127.0.0.1:{receiver.port}/v"}],
        **extra,
    }


@pytest.fixture
def receiver() -> Any:
    server = Receiver().start()
    yield server
    server.stop()


def _slow_inspections(
    monkeypatch: pytest.MonkeyPatch, gate: threading.Event | None = None
) -> tuple[threading.Event, threading.Event]:
    """Every station inspection takes 4 s more, longer than a 1-s shutdown grace, or (``gate``) waits until the
    test sets it, however slow the machine: set when one starts, and when one ends (what a change or a delete must
    wait for)."""
    import eagle_iad.station.runner as runner_module

    inspecting, done = threading.Event(), threading.Event()
    inspect = runner_module.run_inspection

    def slow(*args: Any, **kwargs: Any) -> Any:
        inspecting.set()
        if gate is None:
            time.sleep(4.0)
        else:
            assert gate.wait(wait_s(300)), "the test never let the inspection go on"
        try:
            return inspect(*args, **kwargs)
        finally:
            done.set()

    monkeypatch.setattr(runner_module, "run_inspection", slow)
    return inspecting, done


def test_a_station_created_through_the_api_runs_pauses_survives_a_restart_and_is_deleted(
    model_dir: Path,  # noqa: F811
    tmp_path: Path,
    receiver: Receiver,
) -> None:
    data = tmp_path / "data"
    (data / "incoming").mkdir(parents=True)
    names = _drop(data / "incoming", _cells(3))
    with LiveServer(_app(tmp_path, model_dir, data)) as live:
        status, info = _post(live.base, "/v1/stations", _body(receiver))
        assert status == 201, info
        assert (info["station"], info["created_by"], info["spec"]["source"]["path"]) == ("line-1", "api", "incoming")
        info = _until(live.base, "line-1", lambda i: i["sinks"]["webhook"]["delivered"] == 3, "three delivered")
        assert (info["inspected"], info["state"], info["backlog"]) == (3, "running", 0)
        status, _, history = call("GET", f"{live.base}/v1/inspections?limit=10")
        records = history["items"][::-1]
        assert [r["image_name"] for r in records] == names and {r["station"] for r in records} == {"line-1"}
        assert receiver.keys() == [r["id"] for r in records]
        # paused: a new image waits; the metrics say so
        status, info = _post(live.base, "/v1/stations/line-1/pause")
        assert status == 200 and info["state"] == "paused"
        _drop(data / "incoming", _cells(5)[3:4])
        time.sleep(1.0)
        assert call("GET", f"{live.base}/v1/stations/line-1")[2]["inspected"] == 3
        metrics = call("GET", f"{live.base}/metrics", raw=True)[2].decode()
        assert 'eagle_station_inspected_total{station="line-1"} 3' in metrics
        assert 'eagle_station_backlog{station="line-1"} 1' in metrics
        assert 'eagle_station_deliveries_pending{station="line-1",sink="webhook"} 0' in metrics
        assert 'eagle_station_oldest_pending_seconds{station="line-1",sink="webhook"} 0' in metrics  # none waits
        # a folder source takes no trigger; a second station of the same name is refused
        status, answer = _post(live.base, "/v1/stations/line-1/trigger")
        assert (status, answer["error"]["message"]) == (409, "station 'line-1''s source (folder) takes no trigger")
        status, answer = _post(live.base, "/v1/stations", _body(receiver))
        assert (status, answer["error"]["code"]) == (409, "station_exists")
    # the service restarts: the station comes back, still paused; resumed, it takes the waiting image
    with LiveServer(_app(tmp_path, model_dir, data)) as live:
        status, _, listed = call("GET", f"{live.base}/v1/stations")
        assert [(s["station"], s["state"], s["backlog"]) for s in listed] == [("line-1", "paused", 1)]
        status, info = _post(live.base, "/v1/stations/line-1/resume")
        assert status == 200 and info["state"] == "running"
        _until(live.base, "line-1", lambda i: i["sinks"]["webhook"]["delivered"] == 4, "the fourth delivered")
        status, _, _ = call("DELETE", f"{live.base}/v1/stations/line-1")
        assert status == 204
        assert call("GET", f"{live.base}/v1/stations/line-1")[0] == 404
        assert call("GET", f"{live.base}/v1/inspections?limit=10")[2]["total"] == 4  # the history stays
    with LiveServer(_app(tmp_path, model_dir, data)) as live:
        assert call("GET", f"{live.base}/v1/stations")[2] == []  # deleted for good


def _patch(base: str, name: str, patch: Any) -> tuple[int, Any]:
    status, _, answer = call("PATCH", f"{base}/v1/stations/{name}", body=json.dumps(patch).encode(),
                             content_type="application/json")  # fmt: skip
    return status, answer


def test_a_kept_station_a_newer_check_refuses_says_how_to_fix_it_and_a_patch_fixes_it_in_place(
    model_dir: Path,  # noqa: F811
    tmp_path: Path,
    receiver: Receiver,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A station kept by an earlier version with ``verify_tls = false`` on an ``http://`` webhook (accepted then,
    refused since) does not start after the upgrade: one line names the station, the sink, the option and the
    exact ``PATCH`` that fixes it; the station is listed as not started (not a 404), cannot be created again under
    its name, and that ``PATCH`` starts it in place, its records and name kept, also after the next restart."""
    data = tmp_path / "data"
    (data / "incoming").mkdir(parents=True)
    url = f"http://127.0.0.1:{receiver.port}/v"
    body = _body(receiver, sinks=[{"kind": "folder", "path": "sorted"}, {"kind": "webhook", "url": url}])
    with LiveServer(_app(tmp_path, model_dir, data)) as live:
        assert _post(live.base, "/v1/stations", body)[0] == 201
        _drop(data / "incoming", _cells(1))
        _until(live.base, "line-1", lambda i: i["sinks"]["webhook"]["delivered"] == 1, "the first delivered")
    db = sqlite3.connect(tmp_path / "state" / "eagle.sqlite3")  # as the earlier version kept it
    try:
        with db:
            spec = json.loads(db.execute("SELECT spec FROM stations WHERE name = 'line-1'").fetchone()[0])
            spec["sinks"][1]["verify_tls"] = False
            db.execute("UPDATE stations SET spec = ? WHERE name = 'line-1'", (json.dumps(spec),))
    finally:
        db.close()
    why = (
        "station 'line-1': sink 2 (webhook): verify_tls = false needs an https:// url (this url is plain http://: "
        "no TLS to verify); remove verify_tls from this sink (over http:// it did nothing), or give it an https:// "
        "url; it was created through /v1/stations and is kept in the history: fix it there, keeping its records "
        "and undelivered verdicts, with curl -X PATCH http://<service>/v1/stations/line-1 -H 'Authorization: "
        "Bearer <engineer key>' -H 'Content-Type: application/json' -d '{\"sinks\": [{}, {\"verify_tls\": null}]}'"
    )
    caplog.set_level(logging.INFO, logger="eagle_iad.station")
    with LiveServer(_app(tmp_path, model_dir, data)) as live:
        said = [r.getMessage() for r in caplog.records if "not started" in r.getMessage()]
        assert said == [f"station 'line-1' was not started: {why}"], said
        status, _, listed = call("GET", f"{live.base}/v1/stations")
        assert status == 200 and [(s["station"], s["state"]) for s in listed] == [("line-1", f"error: not started: "
                                                                                               f"{why}")]  # fmt: skip
        status, answer = _post(live.base, "/v1/stations", body)
        assert (status, answer["error"]["code"]) == (409, "station_exists")
        # still wrong: 400 naming the field, and nothing changed
        status, answer = _patch(live.base, "line-1", {"sinks": [{}, {"verify_tls": None, "timeout_s": 0}]})
        assert status == 400 and answer["error"]["message"].startswith("station 'line-1': sink 2 (webhook): "
                                                                       "timeout_s "), answer  # fmt: skip
        assert call("GET", f"{live.base}/v1/stations/line-1")[2]["state"].startswith("error: not started: ")
        # the patch the line gives: started in place
        status, info = _patch(live.base, "line-1", {"sinks": [{}, {"verify_tls": None}]})
        assert (status, info["state"], info["spec"]["sinks"]) == (200, "running", body["sinks"]), info
        _drop(data / "incoming", _cells(2)[1:])
        info = _until(live.base, "line-1", lambda i: [s["delivered"] for s in i["sinks"].values()] == [2, 2],
                      "the second delivered to both sinks (each courier goes at its own pace)")  # fmt: skip
        assert (info["inspected"], info["sinks"]["folder"]["delivered"]) == (2, 2)
    caplog.clear()
    with LiveServer(_app(tmp_path, model_dir, data)) as live:  # fixed for good
        assert [(s["station"], s["state"]) for s in call("GET", f"{live.base}/v1/stations")[2]] == [
            ("line-1", "running")
        ]
        assert not [r for r in caplog.records if "not started" in r.getMessage()]


def test_a_running_station_is_changed_in_place_by_a_patch_and_a_refused_change_leaves_it_as_it_was(
    model_dir: Path,  # noqa: F811
    tmp_path: Path,
    receiver: Receiver,
) -> None:
    """``PATCH`` on a running station: a refused change (a bad field, a new name, a body that is not an object, a
    receiver whose certificate fails the start-up check) is a 400 and the station runs on as it was; an accepted
    one restarts it with the change, paused if it was."""
    from test_station import TlsListener, _certificate

    (tmp_path / "data" / "incoming").mkdir(parents=True)
    listener = TlsListener(_certificate(tmp_path, "receiver", "IP:127.0.0.1"))
    untrusted = {"sinks": [{"url": f"https://127.0.0.1:{listener.port}/v"}]}
    with LiveServer(_app(tmp_path, model_dir, tmp_path / "data")) as live:
        assert _post(live.base, "/v1/stations", _body(receiver))[0] == 201
        assert _patch(live.base, "nosuch", {"deadline_s": 3})[0] == 404
        try:
            for patch, says in (
                ({"deadline_s": -1}, "deadline_s"),
                ({"name": "line-2"}, "name: a station's name"),
                ({"sinks": {"kind": "x"}}, "sinks: a list"),
                ({"sink": "junk"}, "station 'line-1': sink: Extra inputs are not permitted"),  # as POST refuses it
                ({"category": 3}, "station 'line-1': category: Input should be a valid string"),
                (untrusted, "failed verification"),
            ):
                status, answer = _patch(live.base, "line-1", patch)
                assert status == 400 and says in answer["error"]["message"], answer
        finally:
            listener.close()
        status, _, info = call("GET", f"{live.base}/v1/stations/line-1")
        assert (info["state"], info["spec"]) == ("running", _body(receiver)), info
        assert _post(live.base, "/v1/stations/line-1/pause")[0] == 200
        status, info = _patch(live.base, "line-1", {"deadline_s": 3, "sinks": [None]})
        assert (status, info["state"], info["sinks"]) == (200, "paused", {}), info
        assert info["spec"] == {**{k: v for k, v in _body(receiver).items() if k != "sinks"}, "deadline_s": 3,
                                "sinks": []}  # fmt: skip


def _received(receiver: Receiver, count: int) -> list[dict[str, Any]]:
    """The bodies the receiver got, once it has ``count`` (it may get more later: the caller says how many)."""
    deadline = time.monotonic() + wait_s(120)
    while len(receiver.received) < count:
        assert time.monotonic() < deadline, receiver.received
        time.sleep(0.1)
    return [dict(got["body"]) for got in receiver.received]


def test_a_station_of_the_service_takes_duplicates_as_a_stations_file_does(
    model_dir: Path,  # noqa: F811
    tmp_path: Path,
    receiver: Receiver,
) -> None:
    """``duplicates`` in ``POST /v1/stations`` and ``PATCH``: the body took no such field (422/400 "Extra inputs"),
    so a station of the service always told repeats to its sinks. Now ``"skip"`` sends nothing for a repeated
    content, a patch back to ``"refuse"`` tells the next repeat as a refusal naming the record, and a choice that
    is not one is refused as the stations file refuses it, naming the field and the choices."""
    incoming = tmp_path / "data" / "incoming"
    incoming.mkdir(parents=True)
    cell = _cells(1)[0]
    with LiveServer(_app(tmp_path, model_dir, tmp_path / "data")) as live:
        status, answer = _post(live.base, "/v1/stations", _body(receiver, duplicates="drop"))
        assert (status, answer["error"]["message"]) == (
            400, "station 'line-1': duplicates is 'drop'; choose one of 'refuse', 'skip'"), answer  # fmt: skip
        status, info = _post(live.base, "/v1/stations", _body(receiver, duplicates="skip"))
        assert status == 201 and info["spec"]["duplicates"] == "skip", info
        for name in ("part-001.png", "part-002.png"):  # a frozen camera: the same image for the next part
            (incoming / name).write_bytes(cell.read_bytes())
            os.utime(incoming / name, (time.time() - 30, time.time() - 30))
            _until(live.base, "line-1", lambda info, n=name: not (incoming / n).exists(), f"{name} taken")
        info = _until(live.base, "line-1", lambda info: info["duplicates"] == 1, "the repeat counted")
        assert info["inspected"] == 1 and any('duplicates = "skip"' in said for said in info["warnings"]), info
        (first,) = _received(receiver, 1)
        time.sleep(1.0)  # the repeat sent nothing, not even late
        assert len(receiver.received) == 1 and first["record"]["image_name"] == "part-001.png"
        status, answer = _patch(live.base, "line-1", {"duplicates": "never"})
        assert (status, answer["error"]["message"]) == (
            400, "station 'line-1': duplicates is 'never'; choose one of 'refuse', 'skip'"), answer  # fmt: skip
        status, info = _patch(live.base, "line-1", {"duplicates": "refuse"})
        assert status == 200 and info["spec"]["duplicates"] == "refuse", info
        (incoming / "part-003.png").write_bytes(cell.read_bytes())
        os.utime(incoming / "part-003.png", (time.time() - 30, time.time() - 30))
        told = _received(receiver, 2)[1]
        assert told["event"] == "refused" and told["refused"]["image_name"] == "part-003.png", told
        assert told["refused"]["repeat_of"] == first["record"]["id"]


def _audit(base: str) -> list[tuple[str, str, Any]]:
    """``(method, path, detail)`` of each audit row, oldest first."""
    status, _, page = call("GET", f"{base}/v1/audit?limit=100")
    assert status == 200, page
    return sorted((row["seq"], row["method"], row["path"], row["detail"]) for row in page["items"])


def test_a_patch_removing_a_sink_that_still_owes_verdicts_is_refused_unless_they_are_dropped_and_audited(
    model_dir: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    """A sink removed by a ``PATCH`` takes its queue with it: while it still owes verdicts the change is 409
    ``station_undelivered`` naming it (the station as it was, the sink still shown); with ``?discard_pending=true``
    they are dropped, and said in the audit; a sink given its name again is sent none of them. Rows owed to a
    sink the station no longer has (left by an older version) are shown, and not sent to a sink given that name;
    a delete that drops them says how many in its audit row."""
    from test_station import _free_port

    data = tmp_path / "data"
    (data / "incoming").mkdir(parents=True)
    port = _free_port()  # the receiver down
    body = _body(Receiver(port))
    body["sinks"][0].update(retry_base_s=0.05, retry_max_s=0.2)
    with LiveServer(_app(tmp_path, model_dir, data)) as live:
        assert _post(live.base, "/v1/stations", body)[0] == 201
        _drop(data / "incoming", _cells(1))
        _until(live.base, "line-1", lambda i: i["sinks"]["webhook"]["pending"] == 1 and i["inspected"] == 1, "owed")
        time.sleep(1.0)
        # how long the oldest owed delivery waited: in the figures and as a gauge an alert can be set on
        waited = call("GET", f"{live.base}/v1/stations/line-1")[2]["sinks"]["webhook"]["oldest_pending_s"]
        assert 1.0 <= waited < 120, waited
        metrics = call("GET", f"{live.base}/metrics", raw=True)[2].decode()
        (gauge,) = re.findall(r'^eagle_station_oldest_pending_seconds\{station="line-1",sink="webhook"\} (\S+)$',
                              metrics, re.M)  # fmt: skip
        assert float(gauge) >= waited
        assert metrics.count("# TYPE eagle_station_oldest_pending_seconds gauge") == 1
        status, answer = _patch(live.base, "line-1", {"sinks": [None]})
        assert (status, answer["error"]["code"]) == (409, "station_undelivered"), answer
        assert answer["error"]["message"].startswith(
            "station 'line-1': the change removes sinks that still owe 1 delivery (a verdict or a refusal) (sink "
            "'webhook': 1 pending, 0 dead letters); it would drop them."), answer  # fmt: skip
        status, _, info = call("GET", f"{live.base}/v1/stations/line-1")
        assert (info["state"], info["sinks"]["webhook"]["pending"], info["spec"]) == ("running", 1, body), info
        status, info = _patch(live.base, "line-1?discard_pending=true", {"sinks": [None]})
        assert (status, info["sinks"], info["warnings"]) == (200, {}, []), info
        assert _audit(live.base)[-1][1:] == ("PATCH", "/v1/stations/line-1", "changed line-1: ['sinks']; dropped "
                                             "undelivered: sink 'webhook': 1 pending, 0 dead letters")  # fmt: skip
        # the receiver back and a webhook sink added again: it is sent nothing of the one removed
        receiver = Receiver(port).start()
        try:
            again = {"kind": "webhook", "url": f"http://127.0.0.1:{port}/other"}
            status, info = _patch(live.base, "line-1", {"sinks": [again]})
            clean = {"kind": "webhook", "pending": 0, "delivered": 0, "dead_letters": 0, "last_error": None,
                     "oldest_pending_s": None}  # fmt: skip
            assert (status, info["sinks"]["webhook"]) == (200, clean), info
            time.sleep(1.0)
            assert receiver.keys() == []
            # rows owed to a sink the station no longer has (an older version's removal): shown, and a sink given
            # that name is refused unless they are dropped
            with sqlite3.connect(tmp_path / "state" / "eagle.sqlite3") as db:
                db.execute("INSERT INTO outbox (station, sink, record_id, payload) VALUES ('line-1', 'old', 'r', '{}')")
            status, _, info = call("GET", f"{live.base}/v1/stations/line-1")
            assert info["warnings"] == [
                "sink 'old', which this station no longer has, is still owed 1 delivery "
                "(a verdict or a refusal) (1 pending, 0 dead letters); they go nowhere"
            ]
            status, answer = _patch(live.base, "line-1", {"sinks": [{"name": "old"}]})  # renamed to it
            assert (status, answer["error"]["code"]) == (409, "station_undelivered"), answer
            assert "(sink 'old': 1 pending, 0 dead letters)" in answer["error"]["message"], answer
            time.sleep(0.5)
            assert receiver.keys() == []
        finally:
            receiver.stop()
        # a delete that drops them says so in the audit (its recorded path has no query)
        assert call("DELETE", f"{live.base}/v1/stations/line-1?discard_pending=true")[0] == 204
        assert _audit(live.base)[-1][1:] == ("DELETE", "/v1/stations/line-1", "deleted line-1; dropped undelivered: "
                                             "sink 'old': 1 pending, 0 dead letters")  # fmt: skip


def test_rows_owed_to_a_sink_removed_earlier_refuse_no_unrelated_change_but_stay_a_warning_until_dropped(
    model_dir: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    """Rows already owed to a sink the station no longer has (an older version's removal) are not a change's
    doing: a ``PATCH`` of an unrelated field is made (200), the warning still listed and the rows kept; one that
    removes a sink still owing is refused as before, naming only that sink; ``?discard_pending=true`` on an
    unrelated change drops the old rows (said in the audit), the kept sink's queue untouched."""
    from test_station import _free_port

    data = tmp_path / "data"
    (data / "incoming").mkdir(parents=True)
    body = _body(Receiver(_free_port()))  # the receiver down: the webhook keeps owing
    body["sinks"][0].update(retry_base_s=0.05, retry_max_s=0.2)
    warning = ("sink 'old', which this station no longer has, is still owed 1 delivery (a verdict or a refusal) "
               "(1 pending, 0 dead letters); they go nowhere")  # fmt: skip
    with LiveServer(_app(tmp_path, model_dir, data)) as live:
        assert _post(live.base, "/v1/stations", body)[0] == 201
        _drop(data / "incoming", _cells(1))
        _until(live.base, "line-1", lambda i: i["sinks"]["webhook"]["pending"] == 1 and i["inspected"] == 1, "owed")
        with sqlite3.connect(tmp_path / "state" / "eagle.sqlite3") as db:
            db.execute("INSERT INTO outbox (station, sink, record_id, payload) VALUES ('line-1', 'old', 'r', '{}')")
        status, info = _patch(live.base, "line-1", {"deadline_s": 7.5})
        assert status == 200, info
        assert (info["spec"]["deadline_s"], info["sinks"]["webhook"]["pending"]) == (7.5, 1), info
        assert warning in info["warnings"], info
        status, _, info = call("GET", f"{live.base}/v1/stations/line-1")
        assert warning in info["warnings"], info
        # a change that removes a sink still owing is refused all the same, naming that sink only
        status, answer = _patch(live.base, "line-1", {"sinks": [None]})
        assert (status, answer["error"]["code"]) == (409, "station_undelivered"), answer
        assert "(sink 'webhook': 1 pending, 0 dead letters); it would drop them" in answer["error"]["message"]
        assert "'old'" not in answer["error"]["message"], answer
        # an unrelated change with ?discard_pending=true drops the old rows, the webhook's kept
        status, info = _patch(live.base, "line-1?discard_pending=true", {"deadline_s": 8.0})
        assert (status, info["sinks"]["webhook"]["pending"]) == (200, 1), info
        assert not any("no longer has" in said for said in info["warnings"]), info
        assert _audit(live.base)[-1][1:] == ("PATCH", "/v1/stations/line-1", "changed line-1: ['deadline_s']; "
                                             "dropped undelivered: sink 'old': 1 pending, 0 dead letters")  # fmt: skip
        assert call("DELETE", f"{live.base}/v1/stations/line-1?discard_pending=true")[0] == 204


class _ThreadSink(threading.Thread):
    """A plugin sink that is a thread for its own reasons (it has ``start``, ``run`` and no station hook)."""

    kind = "thread-sink"
    calls: ClassVar[list[str]] = []

    def __init__(self, options: Any, name: str) -> None:
        super().__init__(daemon=True)
        self.name, self.max_attempts = name, 0  # Thread's own name, here the sink's

    def describe(self) -> str:
        return "a thread"

    def deliver(self, payload: Any, key: str) -> None:
        self.calls.append("deliver")

    def run(self) -> None:  # only if Thread.start was called
        self.calls.append("run")

    def forget(self) -> None:  # its own forget (not the station's hook)
        self.calls.append("forget")

    def close(self) -> None:
        self.calls.append("close")


class _HookedSink:
    """A plugin sink with the station hooks: ``station_start``/``station_forget``; and one with the older names
    (``start``/``forget``, no thread), which are still called."""

    kind = "hooked-sink"
    calls: ClassVar[list[str]] = []

    def __init__(self, options: Any, name: str) -> None:
        self.name, self.max_attempts = name, 0

    def describe(self) -> str:
        return self.kind

    def deliver(self, payload: Any, key: str) -> None:
        self.calls.append("deliver")

    def station_start(self, station: str, category: str) -> None:
        self.calls.append(f"station_start {station} {category}")

    def station_forget(self) -> None:
        self.calls.append("station_forget")

    def close(self) -> None:
        self.calls.append("close")


class _OlderSink(_HookedSink):
    kind = "older-sink"
    calls: ClassVar[list[str]] = []
    station_start = station_forget = None  # type: ignore[assignment]  # written before the hooks' new names

    def start(self, station: str, category: str) -> None:
        self.calls.append(f"start {station} {category}")

    def forget(self) -> None:
        self.calls.append("forget")


def test_a_plugin_sink_that_is_a_thread_is_not_started_nor_forgotten_by_the_station_and_hooks_are_called(
    model_dir: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    """The station calls a sink's hooks by their own names (``station_start``, ``station_forget``), so a plugin
    sink that is a :class:`threading.Thread` is not started by it (earlier ``getattr(sink, "start")``: the thread
    started with the station's name as its arguments, a ``TypeError`` that stopped the start) nor has its own
    ``forget`` called at a delete. A sink with the hooks gets both; one with the older names (no thread) too."""
    from eagle_iad.station.parts import SINKS

    for sink in (_ThreadSink, _HookedSink, _OlderSink):
        SINKS.add(sink.kind, sink)
        sink.calls.clear()
    data = tmp_path / "data"
    (data / "incoming").mkdir(parents=True)
    body = {
        "name": "line-1",
        "category": "mono",
        "source": {"kind": "folder", "path": "incoming", "settle_s": 0.2, "poll_s": 0.05},
        "sinks": [{"kind": "thread-sink"}, {"kind": "hooked-sink"}, {"kind": "older-sink"}],
    }
    try:
        with LiveServer(_app(tmp_path, model_dir, data)) as live:
            status, info = _post(live.base, "/v1/stations", body)
            assert status == 201, info
            _drop(data / "incoming", _cells(1))
            _until(live.base, "line-1", lambda i: all(s["delivered"] == 1 for s in i["sinks"].values()), "delivered")
            assert call("DELETE", f"{live.base}/v1/stations/line-1")[0] == 204
        assert _ThreadSink.calls == ["deliver", "close"]  # neither run (Thread.start) nor its own forget
        assert _HookedSink.calls[-4:] == ["station_start line-1 mono", "deliver", "station_forget", "close"]
        assert _OlderSink.calls[-4:] == ["start line-1 mono", "deliver", "forget", "close"]
    finally:
        for sink in (_ThreadSink, _HookedSink, _OlderSink):
            SINKS.remove(sink.kind)


def test_a_station_created_with_a_named_key_says_who_created_it_as_the_audit_log_does(
    model_dir: Path,  # noqa: F811
    tmp_path: Path,
    receiver: Receiver,
) -> None:
    """``created_by`` is the name of the key that created the station (kept across a restart), the name the audit
    log records, not ``api`` (which stays for a service without keys: the first test)."""
    import io
    from contextlib import redirect_stdout

    from eagle_iad.cli import main

    out = io.StringIO()
    with redirect_stdout(out):
        assert main(["keys", "add", "eng", "--role", "engineer", "--state-dir", str(tmp_path / "state"),
                     "--create"]) == 0  # fmt: skip
    key = out.getvalue().strip()
    (tmp_path / "data" / "incoming").mkdir(parents=True)
    body = json.dumps(_body(receiver)).encode()
    with LiveServer(_app(tmp_path, model_dir, tmp_path / "data")) as live:
        status, _, info = call("POST", f"{live.base}/v1/stations", body=body, content_type="application/json",
                               key=key)  # fmt: skip
        assert (status, info["created_by"]) == (201, "eng"), info
    with LiveServer(_app(tmp_path, model_dir, tmp_path / "data")) as live:
        status, _, listed = call("GET", f"{live.base}/v1/stations", key=key)
        assert [(s["station"], s["created_by"]) for s in listed] == [("line-1", "eng")], listed


def test_a_patch_while_an_image_is_inspected_never_inspects_it_twice(
    model_dir: Path,  # noqa: F811
    tmp_path: Path,
    receiver: Receiver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An inspection longer than the service's shutdown grace is in flight when a ``PATCH`` comes: the old run is
    not left behind inspecting while the changed one polls the same folder (which took the image again: two
    records, two deliveries). The change is refused (409 ``station_busy``, Retry-After) and the station runs on as
    it was; once the image is done, the same change goes through, and the image was inspected and delivered once."""

    inspecting, _ = _slow_inspections(monkeypatch)
    data = tmp_path / "data"
    (data / "incoming").mkdir(parents=True)
    settings = ServiceSettings(models_dir=model_dir, state_dir=tmp_path / "state", data_root=data, shutdown_grace_s=1)
    with LiveServer(create_app(settings, extensions=[stations])) as live:
        assert _post(live.base, "/v1/stations", _body(receiver))[0] == 201
        _drop(data / "incoming", _cells(1))
        assert inspecting.wait(wait_s(60)), "never inspected"
        status, headers, answer = call("PATCH", f"{live.base}/v1/stations/line-1", content_type="application/json",
                                       body=json.dumps({"deadline_s": 3}).encode())  # fmt: skip
        assert (status, answer["error"]["code"], headers.get("retry-after")) == (409, "station_busy", "2"), answer
        info = _until(live.base, "line-1", lambda i: i["sinks"]["webhook"]["delivered"] == 1, "the image delivered")
        assert (info["state"], info["spec"]) == ("running", _body(receiver)), info
        status, info = _patch(live.base, "line-1", {"deadline_s": 3})  # nothing in hand now: changed
        assert (status, info["spec"]["deadline_s"]) == (200, 3), info
        time.sleep(1.0)
        assert call("GET", f"{live.base}/v1/inspections?limit=10")[2]["total"] == 1
        assert len(receiver.keys()) == 1


def test_a_station_deleted_mid_inspection_is_not_created_again_until_its_old_run_ended(
    model_dir: Path,  # noqa: F811
    tmp_path: Path,
    receiver: Receiver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``DELETE`` waits for the image in hand only up to the shutdown grace (past it: 409 ``station_busy``, the
    station running on, unless ``?discard_pending=true``); a station created again under the name meanwhile
    would find that image still in the folder and inspect it again. It is refused (409
    ``station_busy``) until the old run ended; then it starts, and the image was inspected once."""

    inspecting, done = _slow_inspections(monkeypatch)
    data = tmp_path / "data"
    (data / "incoming").mkdir(parents=True)
    settings = ServiceSettings(models_dir=model_dir, state_dir=tmp_path / "state", data_root=data, shutdown_grace_s=1)
    with LiveServer(create_app(settings, extensions=[stations])) as live:
        assert _post(live.base, "/v1/stations", _body(receiver))[0] == 201
        _drop(data / "incoming", _cells(1))
        assert inspecting.wait(wait_s(60)), "never inspected"
        # the image in hand will owe its sink a verdict: refused unless dropped, the station running on
        status, _, answer = call("DELETE", f"{live.base}/v1/stations/line-1")
        assert (status, answer["error"]["code"]) == (409, "station_busy"), answer
        assert not done.is_set()
        assert call("DELETE", f"{live.base}/v1/stations/line-1?discard_pending=true")[0] == 204
        status, answer = _post(live.base, "/v1/stations", _body(receiver))
        assert (status, answer["error"]["code"]) == (409, "station_busy"), answer
        assert done.wait(wait_s(60))
        deadline = time.monotonic() + wait_s(30)
        while (status := _post(live.base, "/v1/stations", _body(receiver))[0]) == 409:
            assert time.monotonic() < deadline, "never created again"
            time.sleep(0.1)
        assert status == 201
        time.sleep(1.0)
        assert call("GET", f"{live.base}/v1/inspections?limit=10")[2]["total"] == 1


def test_a_hot_folder_stays_locked_until_a_deleted_stations_image_past_the_grace_is_finished(
    model_dir: Path,  # noqa: F811
    tmp_path: Path,
    receiver: Receiver,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A station deleted while its thread finishes an image past the shutdown grace still moves that image out of
    its hot folder: a station of another name created on the folder meanwhile would take the same image and
    inspect it again. The folder stays locked until that thread ended: 409 ``folder_finishing`` with
    ``Retry-After`` (not ``folder_in_use``, whose "stop that one first" names a station no longer there); a thread
    still at it 5 graces after the stop is said in the log, once, naming the station and the image; then the
    other station starts, and the image was inspected once."""
    gate = threading.Event()  # the inspection goes on only once the test has seen the folder still locked
    inspecting, done = _slow_inspections(monkeypatch, gate)
    data = tmp_path / "data"
    incoming = data / "incoming"
    incoming.mkdir(parents=True)
    settings = ServiceSettings(models_dir=model_dir, state_dir=tmp_path / "state", data_root=data, shutdown_grace_s=1)
    caplog.set_level(logging.INFO, logger="eagle_iad.station")
    with LiveServer(create_app(settings, extensions=[stations])) as live:
        assert _post(live.base, "/v1/stations", _body(receiver))[0] == 201
        (name,) = _drop(incoming, _cells(1))
        assert inspecting.wait(wait_s(60)), "never inspected"
        assert call("DELETE", f"{live.base}/v1/stations/line-1?discard_pending=true")[0] == 204
        assert not done.is_set()
        status, headers, answer = call("POST", f"{live.base}/v1/stations", content_type="application/json",
                                       body=json.dumps(_body(receiver, name="line-2")).encode())  # fmt: skip
        said = (
            f"station 'line-2': hot folder {incoming} is still held by station 'line-1', which was deleted and is "
            "finishing an image past the shutdown grace; try again in a few seconds"
        )
        assert (status, answer["error"]["code"], answer["error"]["message"], headers.get("retry-after")) == (
            409, "folder_finishing", said, "2"
        )  # fmt: skip
        late = (
            f"eagle station line-1: warning: it was deleted but is still finishing image {name!r} 5 s after it was "
            f"told to stop (5x the shutdown grace); its hot folder {incoming} stays locked (a station started on it "
            "is refused) until that ends"
        )
        deadline = time.monotonic() + wait_s(60)
        while not (logged := [r for r in caplog.records if "still finishing" in r.getMessage()]):
            assert time.monotonic() < deadline, "a run still finishing its image 5 graces on was never said"
            time.sleep(0.1)
        assert [(r.levelno, r.getMessage()) for r in logged] == [(logging.WARNING, late)]
        gate.set()
        assert done.wait(wait_s(60))
        deadline = time.monotonic() + wait_s(30)
        while (status := _post(live.base, "/v1/stations", _body(receiver, name="line-2"))[0]) == 409:
            assert time.monotonic() < deadline, "the folder was never released"
            time.sleep(0.1)
        assert status == 201
        assert (incoming / "done" / name).exists()
        time.sleep(1.0)
        assert call("GET", f"{live.base}/v1/inspections?limit=10")[2]["total"] == 1
        assert call("GET", f"{live.base}/v1/stations/line-2")[2]["inspected"] == 0
    assert len([r for r in caplog.records if "still finishing" in r.getMessage()]) == 1


def test_a_patch_saves_the_spec_before_the_station_starts_and_puts_it_back_if_the_start_fails(
    model_dir: Path,  # noqa: F811
    tmp_path: Path,
    receiver: Receiver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The changed station starts with its new spec already in the table (a replica's look at the table meanwhile
    must not take it for one changed elsewhere and start the old spec again); a start that fails puts the old spec
    back, and the station runs as it was."""
    from eagle_iad.station.outbox import StationTables
    from eagle_iad.station.parts import StationConfigError
    from eagle_iad.station.runner import StationRunner

    seen: list[dict[str, Any]] = []
    start = StationRunner.start

    def starting(self: Any) -> None:
        kept = {name: spec for name, spec, _ in StationTables(self.state.store).specs()}
        seen.append(kept[self.config.name])
        if kept[self.config.name].get("deadline_s") == 4:
            raise StationConfigError("refused at its start")
        start(self)

    monkeypatch.setattr(StationRunner, "start", starting)
    (tmp_path / "data" / "incoming").mkdir(parents=True)
    app = _app(tmp_path, model_dir, tmp_path / "data")
    with LiveServer(app) as live:
        assert _post(live.base, "/v1/stations", _body(receiver))[0] == 201
        status, info = _patch(live.base, "line-1", {"deadline_s": 3})
        assert status == 200, info
        assert seen[-1] == {**_body(receiver), "deadline_s": 3}
        status, answer = _patch(live.base, "line-1", {"deadline_s": 4})
        assert (status, answer["error"]["message"]) == (400, "refused at its start"), answer
        (kept,) = StationTables(app.state.service.store).specs()
        assert kept[1] == {**_body(receiver), "deadline_s": 3}
        info = call("GET", f"{live.base}/v1/stations/line-1")[2]
        assert (info["state"], info["spec"]["deadline_s"]) == ("running", 3), info


def test_deleting_a_station_removes_the_place_it_owed_its_history(
    model_dir: Path,  # noqa: F811
    tmp_path: Path,
    receiver: Receiver,
) -> None:
    """An owed filing (``<state>/stations/owed/<station>.json``) belongs to the station's run: deleted, the station
    takes it along, so one created again under its name never stores an old run's place."""
    from eagle_iad.station.status import OwedFiling, owed_file, write_owed

    (tmp_path / "data" / "incoming").mkdir(parents=True)
    with LiveServer(_app(tmp_path, model_dir, tmp_path / "data")) as live:
        assert _post(live.base, "/v1/stations", _body(receiver))[0] == 201
        write_owed(tmp_path / "state", "line-1", OwedFiling("ab" * 32, "r1", "done/x.png", True, "done/x.png"))
        assert call("DELETE", f"{live.base}/v1/stations/line-1")[0] == 204
        assert not owed_file(tmp_path / "state", "line-1").exists()


def test_a_deleted_station_is_forgotten_and_one_created_again_under_its_name_starts_clean(
    model_dir: Path,  # noqa: F811
    tmp_path: Path,
    receiver: Receiver,
) -> None:
    """``DELETE`` stops and forgets: refused (409 ``station_undelivered``, naming how many) while its sinks owe
    verdicts, the station running on; with ``?discard_pending=true`` its intake and outbox go, so a new station
    under that name delivers none of the old one's verdicts to its own sinks, counts from zero, and inspects an
    image of the same content again. Its inspections stay in the history."""
    data = tmp_path / "data"
    (data / "incoming").mkdir(parents=True)
    receiver.fail = True  # the old station's receiver is down: its verdict stays pending
    old_sink = {"kind": "webhook", "url": f"http://127.0.0.1:{receiver.port}/old", "max_attempts": 1000}
    with LiveServer(_app(tmp_path, model_dir, data)) as live:
        assert _post(live.base, "/v1/stations", {**_body(receiver), "sinks": [old_sink]})[0] == 201
        _drop(data / "incoming", _cells(1))
        _until(live.base, "line-1", lambda i: i["inspected"] == 1 and i["sinks"]["webhook"]["pending"] == 1,
               "inspected, its verdict pending")  # fmt: skip
        status, _, answer = call("DELETE", f"{live.base}/v1/stations/line-1")
        said = (
            "station 'line-1': its sinks still owe 1 delivery (a verdict or a refusal): 1 pending, 0 dead letters; "
            "deleting it would drop them. Let them be delivered (GET /v1/stations/line-1 shows each sink's pending; "
            "POST /v1/stations/line-1/retry requeues dead letters), or delete it with ?discard_pending=true to drop "
            "them"
        )
        assert (status, answer["error"]["code"], answer["error"]["message"]) == (409, "station_undelivered", said)
        assert call("GET", f"{live.base}/v1/stations/line-1")[2]["state"] == "running"  # left as it was
        assert call("DELETE", f"{live.base}/v1/stations/line-1?discard_pending=true")[0] == 204
        old_record = call("GET", f"{live.base}/v1/inspections?limit=10")[2]["items"][0]["id"]
        # the same name, the same sink name, a receiver that works; an image of the same content
        receiver.fail = False
        receiver.received.clear()
        assert _post(live.base, "/v1/stations", _body(receiver))[0] == 201
        fresh = call("GET", f"{live.base}/v1/stations/line-1")[2]
        assert (fresh["inspected"], fresh["sinks"]["webhook"]["pending"], fresh["last_verdict"]) == (0, 0, None)
        _drop(data / "incoming", _cells(1))
        info = _until(live.base, "line-1", lambda i: i["sinks"]["webhook"]["delivered"] == 1, "delivered")
        time.sleep(1.0)  # an old verdict would have gone by now
        history = call("GET", f"{live.base}/v1/inspections?limit=10")[2]
        assert history["total"] == 2  # the old station's inspection stays; the image was inspected again
        new_record = history["items"][0]["id"]
        assert new_record != old_record and receiver.keys() == [new_record]
        assert (info["inspected"], info["sinks"]["webhook"]["pending"]) == (1, 0)
        cell = _cells(1)[0]
        assert sorted(p.name for p in (data / "incoming" / "done").iterdir()) == sorted(
            [f"0000_{cell.name}", f"0000_{cell.stem}-1{cell.suffix}"])  # fmt: skip
        # nothing owed: deleted at once
        assert call("DELETE", f"{live.base}/v1/stations/line-1")[0] == 204


def test_a_station_created_under_a_name_with_rows_left_over_takes_none_of_them(
    model_dir: Path,  # noqa: F811
    tmp_path: Path,
    receiver: Receiver,
) -> None:
    """Rows an earlier station of the name left (a delete of an earlier version kept them; a run that finished
    its image after its delete) are removed when a station is created under that name: its sinks never get
    them, and an image they say was taken is inspected."""
    data = tmp_path / "data"
    (data / "incoming").mkdir(parents=True)
    with LiveServer(_app(tmp_path, model_dir, data)) as live:
        assert call("GET", f"{live.base}/v1/stations")[2] == []
        cell = _cells(1)[0]
        import hashlib

        digest = hashlib.sha256(cell.read_bytes()).hexdigest()
        db = sqlite3.connect(tmp_path / "state" / "eagle.sqlite3")
        with db:
            db.execute("INSERT INTO station_intake (station, digest, name, state, record_id, reason, moved_to,"
                       " appeared, time) VALUES ('line-1', ?, 'x.png', 'done', 'old-record', NULL, 'done/x.png', 0, 0)",
                       (digest,))  # fmt: skip
            db.execute("INSERT INTO outbox (station, sink, record_id, payload, state, next_try) VALUES"
                       " ('line-1', 'webhook', 'old-record', '{}', 'pending', 0)")  # fmt: skip
        db.close()
        assert _post(live.base, "/v1/stations", _body(receiver))[0] == 201
        _drop(data / "incoming", [cell])
        _until(live.base, "line-1", lambda i: i["sinks"]["webhook"]["delivered"] == 1, "delivered")
        time.sleep(1.0)
        keys = receiver.keys()
        assert "old-record" not in keys and len(keys) == 1
        assert call("GET", f"{live.base}/v1/inspections?limit=10")[2]["total"] == 1


def test_a_pause_and_resume_through_the_api_is_what_the_state_file_says(
    model_dir: Path,  # noqa: F811
    tmp_path: Path,
    receiver: Receiver,
) -> None:
    """``eagle station status`` (another process) reads the station's state file: a station paused through the
    API shows ``paused`` there, also after the service restarts, and ``running`` once resumed."""
    (tmp_path / "data" / "incoming").mkdir(parents=True)
    state = tmp_path / "state"
    with LiveServer(_app(tmp_path, model_dir, tmp_path / "data")) as live:
        assert _post(live.base, "/v1/stations", _body(receiver))[0] == 201
        assert _said(state) == "running"
        assert _post(live.base, "/v1/stations/line-1/pause")[0] == 200
        assert _said(state) == "paused"
    with LiveServer(_app(tmp_path, model_dir, tmp_path / "data")) as live:
        assert _said(state) == "paused"
        assert _post(live.base, "/v1/stations/line-1/resume")[0] == 200
        assert _said(state) == "running"


def _said(state: Path) -> str:
    """The state of ``line-1`` as its state file says, as ``eagle station status`` shows it."""
    intake = read_intake(state, "line-1")
    return "not running" if intake is None else intake.state()


def test_the_status_route_names_a_failing_sink_and_a_hot_folder_gone_instead_of_a_500(
    model_dir: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    """The same warnings as ``eagle station status``: a webhook refusing connections, with its verdicts waiting;
    then the hot folder taken away (unmounted): the status says there is no backlog to see, not a 500."""
    from test_station import _free_port

    data = tmp_path / "data"
    (data / "incoming").mkdir(parents=True)
    _drop(data / "incoming", _cells(2))
    port = _free_port()  # nothing listens there
    body = {
        **_body(Receiver(port)),
        "sinks": [
            {
                "kind": "webhook",
                "url": f"http://127.0.0.1:{port}/v",
                "retry_base_s": 0.05,
                "retry_max_s": 0.2,
                "max_attempts": 1000,
            }
        ],
    }
    with LiveServer(_app(tmp_path, model_dir, data)) as live:
        status, info = _post(live.base, "/v1/stations", body)
        assert status == 201, info
        # (at first the warning of a sink not reached at start; replaced by its failing line once a delivery failed)
        info = _until(live.base, "line-1", lambda i: i["inspected"] == 2 and any(
            w.startswith("sink webhook: 2 deliveries") for w in i["warnings"]), "a warning")  # fmt: skip
        (warning,) = info["warnings"]
        assert warning.startswith("sink webhook: 2 deliveries (verdicts and refusals) wait, the oldest stored ") and (
            warning.endswith(f"; last error: http://127.0.0.1:{port}/v: [Errno 111] Connection refused")
        ), warning  # fmt: skip
        (data / "incoming").rename(data / "unmounted")
        status, _, info = call("GET", f"{live.base}/v1/stations/line-1")
        assert status == 200, info
        # The folder shown relative to the data root, as every path in the API; the intake may also have paused
        # on it already (its own warning), so the warnings are found by what they say, not by their place.
        assert info["backlog"] == 0
        assert "no backlog visible (No such file or directory: incoming); counted as none waiting" in info["warnings"]
        assert call("GET", f"{live.base}/v1/stations")[0] == 200
        metrics = call("GET", f"{live.base}/metrics", raw=True)[2].decode()
        shown = call("GET", f"{live.base}/v1/stations/line-1")[2]["warnings"]
        assert re.search(r'eagle_station_warnings\{station="line-1"\} ([23])', metrics), metrics
        assert 'eagle_station_replaced_total{station="line-1"} 0\n' in metrics, metrics  # no frame lost unseen
        assert len(shown) in (2, 3)


def test_a_sink_not_reached_at_start_is_a_warning_until_its_first_delivery_and_after_a_restart(
    model_dir: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    """A sink whose start-up probe could not reach its receiver is not shown as healthy: the create's answer, the
    status (the console's, through the intake file ``eagle station status``'s) name it, after a restart with the
    receiver still down too, until its first delivery."""
    from test_station import _free_port

    data = tmp_path / "data"
    (data / "incoming").mkdir(parents=True)
    port = _free_port()  # nothing listens there yet
    body = _body(Receiver(port))
    body["sinks"][0].update(retry_base_s=0.05, retry_max_s=0.2)
    said = [f"sink webhook: not reached at start: http://127.0.0.1:{port}/v: Connection refused; verdicts wait in "
            "the outbox until it is reachable"]  # fmt: skip
    with LiveServer(_app(tmp_path, model_dir, data)) as live:
        status, info = _post(live.base, "/v1/stations", body)
        assert (status, info["warnings"], info["state"]) == (201, said, "running"), info
        assert call("GET", f"{live.base}/v1/stations")[2][0]["warnings"] == said
        intake = read_intake(tmp_path / "state", "line-1")
        assert intake is not None
        assert [one[:2] for one in intake.unreached] == [("webhook", f"http://127.0.0.1:{port}/v: Connection refused")]
    with LiveServer(_app(tmp_path, model_dir, data)) as live:  # restarted, the receiver still down
        assert call("GET", f"{live.base}/v1/stations/line-1")[2]["warnings"] == said
        receiver = Receiver(port).start()
        try:
            _drop(data / "incoming", _cells(1))
            info = _until(live.base, "line-1", lambda i: i["sinks"]["webhook"]["delivered"] == 1, "delivered")
            assert info["warnings"] == []
        finally:
            receiver.stop()


def test_a_dead_letter_warning_names_what_requeues_it_in_the_service(
    model_dir: Path,  # noqa: F811
    tmp_path: Path,
    receiver: Receiver,
) -> None:
    """A station of the service is out of ``eagle station retry``'s reach (that reads a stations file): its
    dead-letter warning names the console's Retry and the route, and the route requeues them."""
    receiver.answer = lambda key: 422  # the receiver refuses every verdict: a dead letter at the first try
    data = tmp_path / "data"
    (data / "incoming").mkdir(parents=True)
    _drop(data / "incoming", _cells(1))
    body = _body(receiver)
    body["sinks"][0]["max_attempts"] = 1
    with LiveServer(_app(tmp_path, model_dir, data)) as live:
        assert _post(live.base, "/v1/stations", body)[0] == 201
        info = _until(live.base, "line-1", lambda i: i["sinks"]["webhook"]["dead_letters"] == 1, "a dead letter")
        assert info["warnings"] == ["1 dead letter (the console's Retry on the Stations page, or POST "
                                    "/v1/stations/line-1/retry, requeues them); sink webhook: 1, the last given up "
                                    f"on: HTTP 422 from {body['sinks'][0]['url']}"]  # fmt: skip
        receiver.answer = None
        assert _post(live.base, "/v1/stations/line-1/retry") == (200, {"requeued": 1})
        info = _until(live.base, "line-1", lambda i: i["sinks"]["webhook"]["delivered"] == 1, "delivered")
        assert info["warnings"] == []


BAD_BODIES = [
    ({"source": {"kind": "folder", "path": "../elsewhere"}},
     "station 'line-1': source: path '../elsewhere' is outside the service's data root"),
    ({"source": {"kind": "folder", "path": "/etc"}}, "station 'line-1': source: path '/etc' is outside the service's"),
    ({"category": "nope"}, "station 'line-1': category 'nope' is not fitted in "),
    ({"source": {"kind": "folder", "path": "incoming", "recursive": "yes"}},
     "station 'line-1': source: recursive must be true or false, not 'yes'"),  # read as in a stations file
    ({"sinks": [{"kind": "webhook", "url": "ftp://x/"}]},
     "station 'line-1': sink 1 (webhook): url 'ftp://x/' is not an http:// or https:// URL with a host"),
    ({"name": "a b"}, "station: name 'a b' is not a station name"),
    ({"sinks": [{"kind": "webhook", "url": "http://127.0.0.1:9/", "ca_file": "incoming"}]},
     "station 'line-1': sink 1 (webhook): ca_file needs an https:// url (this url is plain http://"),
    # an API key must not be enough to have the server send one of its variables to the caller's endpoint
    ({"sinks": [{"kind": "webhook", "url": "http://127.0.0.1:9/", "secret_env": "EAGLE_API_KEY"}]},
     "station 'line-1': sink 1 (webhook): secret_env names EAGLE_API_KEY; a station created through the service may "
     "only use variables starting with EAGLE_STATION_"),
]  # fmt: skip


def test_a_bad_station_is_a_400_naming_the_field_and_paths_stay_inside_the_data_root(
    model_dir: Path,  # noqa: F811
    tmp_path: Path,
    receiver: Receiver,
) -> None:
    data = tmp_path / "data"
    (data / "incoming").mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    with LiveServer(_app(tmp_path, model_dir, data)) as live:
        for change, message in BAD_BODIES:
            status, answer = _post(live.base, "/v1/stations", {**_body(receiver), **change})
            assert status == 400 and answer["error"]["message"].startswith(message), (change, answer)
        status, answer = _post(live.base, "/v1/stations", {**_body(receiver), "surprise": 1})
        assert status == 400 and "surprise" in answer["error"]["message"]
        assert call("GET", f"{live.base}/v1/stations")[2] == []
    with LiveServer(_app(tmp_path / "b", model_dir, None)) as live:
        status, answer = _post(live.base, "/v1/stations", _body(receiver))
        assert (status, answer["error"]["message"]) == (
            400, "station 'line-1': source: path names a server path, but this service has no --data-root, so "
                 "stations cannot use server folders")  # fmt: skip


def test_a_recursive_station_may_not_hold_the_service_s_folders_nor_a_folder_sink_of_its_own(
    model_dir: Path,  # noqa: F811
    tmp_path: Path,
    receiver: Receiver,
) -> None:
    """``--data-root`` above the service's state (``/srv`` with ``/srv/state``): a recursive station on the data
    root itself would take and move the stored pictures, and one whose folder sink writes inside its hot folder
    would take the copies again without end. A POST and a PATCH are refused (400) naming both folders, as a
    stations file is; the station, when a PATCH is refused, stays as it was."""
    data = tmp_path / "data"
    (data / "incoming").mkdir(parents=True)
    with LiveServer(_app(data, model_dir, data)) as live:
        whole = {"kind": "folder", "path": ".", "recursive": True}
        status, answer = _post(live.base, "/v1/stations", {**_body(receiver), "source": whole})
        assert (status, answer["error"]["message"]) == (400, (
            f"station 'line-1': source: hot folder {data.resolve()} holds the service's state folder "
            f"{(data / 'state').resolve()} and is taken with its subfolders (recursive = true): the station would "
            "take and move what the service keeps; give the station a folder outside it"))  # fmt: skip
        sink = {"kind": "folder", "path": "incoming/results"}
        body = {**_body(receiver), "source": {"kind": "folder", "path": "incoming", "recursive": True}}
        inside, hot = (data / "incoming" / "results").resolve(), (data / "incoming").resolve()
        looping = (400, (
            f"station 'line-1': sink 'folder' (folder) writes in {inside}, inside hot folder {hot}, which the "
            "station takes with its subfolders (recursive = true): its copies would be taken again, without end; "
            "give the sink a path outside the hot folder"))  # fmt: skip
        status, answer = _post(live.base, "/v1/stations", {**body, "sinks": [sink]})
        assert (status, answer["error"]["message"]) == looping
        assert _post(live.base, "/v1/stations", body)[0] == 201
        status, answer = _patch(live.base, "line-1", {"sinks": [*body["sinks"], sink]})
        assert (status, answer["error"]["message"]) == looping
        info = call("GET", f"{live.base}/v1/stations/line-1")[2]
        assert [s["kind"] for s in info["spec"]["sinks"]] == ["webhook"]


def test_a_stations_credentials_and_host_paths_are_not_shown(model_dir: Path, tmp_path: Path) -> None:  # noqa: F811
    """A viewer reads stations: a webhook's password and query (a signature) and the data root's host path
    are not in any answer (the list, one station, the create and pause answers, the audit log)."""
    data = tmp_path / "data"
    (data / "incoming").mkdir(parents=True)
    secret_url = "https://user:S3cr3tPw@hooks.example/verdicts?sig=abc"
    body = {"name": "line-1", "category": "mono", "source": {"kind": "folder", "path": str(data / "incoming")},
            "sinks": [{"kind": "webhook", "url": secret_url}]}  # fmt: skip
    with LiveServer(_app(tmp_path, model_dir, data)) as live:
        status, created = _post(live.base, "/v1/stations", body)
        assert status == 201, created
        answers = [created, _post(live.base, "/v1/stations/line-1/pause")[1]]
        answers += [call("GET", f"{live.base}/v1/stations{path}")[2] for path in ("", "/line-1")]
        for answer in answers:
            text = json.dumps(answer)
            assert "S3cr3tPw" not in text and "sig=abc" not in text and str(data) not in text, text
        info = answers[-1]
        assert info["spec"]["sinks"] == [{"kind": "webhook", "url": "https://user:***@hooks.example/verdicts?…"}]
        assert info["spec"]["source"]["path"] == "incoming"
        assert info["source"].startswith("folder incoming (")
        audit = json.dumps(call("GET", f"{live.base}/v1/audit")[2])
        assert "S3cr3tPw" not in audit and "sig=abc" not in audit and str(data) not in audit


def test_replicas_sharing_a_history_run_each_station_once_and_take_over_a_stopped_ones(
    model_dir: Path,  # noqa: F811
    tmp_path: Path,
    receiver: Receiver,
    postgres: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Two services on one PostgreSQL history (docs/PLANT.md): the station runs on the replica it was created
    through; the other shows its figures from the shared tables and pauses, resumes and deletes it through
    them; when the first stops, the other takes the station over and delivers what was waiting, and says so in one
    WARNING naming the station and the replica that ran it (it was an INFO line like any start: at
    ``--log-level warning`` an operator never learnt that a replica had gone and its stations moved)."""
    import os
    import socket

    from eagle_iad.station.ownership import SYNC_INTERVAL_S

    caplog.set_level(logging.INFO, logger="eagle_iad.station")

    url = postgres.new_database()
    data = tmp_path / "data"
    (data / "incoming").mkdir(parents=True)

    def replica(name: str) -> Any:
        settings = ServiceSettings(models_dir=model_dir, state_dir=tmp_path / name, data_root=data, history=url,
                                   files=tmp_path / "files")  # fmt: skip
        return LiveServer(create_app(settings, extensions=[stations]))

    with replica("b") as b:
        with replica("a") as a:
            status, info = _post(a.base, "/v1/stations", _body(receiver))
            assert status == 201, info
            status, answer = _post(b.base, "/v1/stations", _body(receiver))
            assert (status, answer["error"]["code"]) == (409, "station_exists")
            status, answer = _post(b.base, "/v1/stations/line-1/trigger")  # only its replica has its source
            assert (status, answer["error"]["code"]) == (409, "station_elsewhere")
            _drop(data / "incoming", _cells(2))
            _until(a.base, "line-1", lambda i: i["sinks"]["webhook"]["delivered"] == 2, "two delivered by a")
            # b shows it too, from the shared tables (one dashboard behind a proxy), all but its backlog
            (seen,) = call("GET", f"{b.base}/v1/stations")[2]
            assert (seen["station"], seen["state"], seen["inspected"]) == ("line-1", "running: on another replica", 2)
            assert seen["sinks"]["webhook"]["delivered"] == 2 and seen["created_by"] == "api"
            assert seen["warnings"] == ["backlog not visible here: the station runs on another replica (its figures "
                                        "are shared)"]  # fmt: skip
            assert call("GET", f"{b.base}/v1/stations/line-1")[2] == seen
            status, paused = _post(b.base, "/v1/stations/line-1/pause")  # through the table: a follows
            assert (status, paused["state"]) == (200, "paused")
            _until(a.base, "line-1", lambda i: i["state"] == "paused", "a paused through b")
            _drop(data / "incoming", _cells(3)[2:3])
            time.sleep(2 * SYNC_INTERVAL_S / 5)
            assert call("GET", f"{a.base}/v1/stations/line-1")[2]["inspected"] == 2
            status, resumed = _post(b.base, "/v1/stations/line-1/resume")
            assert (status, resumed["state"]) == (200, "running: on another replica")
            _until(a.base, "line-1", lambda i: i["state"] == "running", "a resumed through b")
            _until(a.base, "line-1", lambda i: i["sinks"]["webhook"]["delivered"] == 3, "the third delivered by a")
            assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text
        # a stopped: its lock is gone, and b takes the station over at its next look at the table
        _drop(data / "incoming", _cells(4)[3:4])
        deadline = time.monotonic() + wait_s(60)
        while call("GET", f"{b.base}/v1/stations/line-1")[0] != 200:
            assert time.monotonic() < deadline, "b never took the station over"
            time.sleep(0.2)
        info = _until(b.base, "line-1", lambda i: i["sinks"]["webhook"]["delivered"] == 4, "the fourth, by b")
        assert info["inspected"] == 4 and info["created_by"] == "api"
        warned = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
        assert warned == [f"took over station 'line-1' from eagle-iad on {socket.gethostname()}, pid {os.getpid()}: "
                          "its lock there ended (that replica stopped or died, or the database dropped its session); "
                          "it runs here now"], warned  # fmt: skip
        records = call("GET", f"{b.base}/v1/inspections?limit=10")[2]["items"]
        assert len(records) == 4 and len({r["source"] for r in records}) == 4  # each image once, none twice
        assert sorted(receiver.keys()) == sorted(r["id"] for r in records)
        status, _, _ = call("DELETE", f"{b.base}/v1/stations/line-1")
        assert status == 204
        assert call("GET", f"{b.base}/v1/stations")[2] == []


def test_a_replica_refuses_a_change_its_station_would_not_start_with_and_the_owner_keeps_it_running(
    model_dir: Path,  # noqa: F811
    tmp_path: Path,
    receiver: Receiver,
    postgres: Any,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A ``PATCH`` through a replica that does not run the station is checked there as the owner checks it (its
    model, its sinks' start-up checks): a receiver whose certificate fails is a 400 there too, not a stop on the
    owner. A spec in the table the owner cannot start anyway (written by an older replica, a category deleted
    meanwhile) leaves the station running as it was there, its spec written back, in one line; it never runs
    nowhere."""
    from test_station import TlsListener, _certificate

    import eagle_iad.station.ownership as ownership
    from eagle_iad.station.outbox import StationTables

    monkeypatch.setattr(ownership, "SYNC_INTERVAL_S", 3600.0)  # the test says when each replica looks at the table
    url = postgres.new_database()
    data = tmp_path / "data"
    (data / "incoming").mkdir(parents=True)

    def replica(name: str) -> Any:
        settings = ServiceSettings(models_dir=model_dir, state_dir=tmp_path / name, data_root=data, history=url,
                                   files=tmp_path / "files")  # fmt: skip
        return create_app(settings, extensions=[stations])

    app_a, app_b = replica("a"), replica("b")
    listener = TlsListener(_certificate(tmp_path, "receiver", "IP:127.0.0.1"))
    caplog.set_level(logging.INFO, logger="eagle_iad.station")
    with LiveServer(app_a) as a, LiveServer(app_b) as b:
        try:
            assert _post(a.base, "/v1/stations", _body(receiver))[0] == 201
            status, answer = _patch(b.base, "line-1", {"sinks": [{"url": f"https://127.0.0.1:{listener.port}/v"}]})
            assert status == 400 and "failed verification" in answer["error"]["message"], answer
        finally:
            listener.close()
        tables = StationTables(app_b.state.service.store)
        assert [spec for _, spec, _ in tables.specs()] == [_body(receiver)]
        tables.update_spec("line-1", {**_body(receiver), "category": "nosuch"})
        app_a.state.station_ownership.sync()
        info = call("GET", f"{a.base}/v1/stations/line-1")[2]
        assert (info["state"], info["spec"]) == ("running", _body(receiver)), info
        assert [spec for _, spec, _ in tables.specs()] == [_body(receiver)]
        said = [r.getMessage() for r in caplog.records if "does not start here" in r.getMessage()]
        assert len(said) == 1 and said[0].startswith("station 'line-1': the change made through another replica"), said
        _drop(data / "incoming", _cells(1))
        _until(a.base, "line-1", lambda i: i["sinks"]["webhook"]["delivered"] == 1, "delivered by a, as it was")


def test_a_change_through_another_replica_waits_for_the_image_in_hand_and_keeps_the_lock(
    model_dir: Path,  # noqa: F811
    tmp_path: Path,
    receiver: Receiver,
    postgres: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The replica running a station changed through another one restarts it in place: while an inspection longer
    than its shutdown grace is in flight it runs on as it was (and keeps the station's lock: no replica takes the
    station meanwhile), and once the image is done the next look at the table starts the change; the image was
    inspected once."""

    import eagle_iad.station.ownership as ownership
    from eagle_iad.history import open_backend
    from eagle_iad.station.outbox import station_lock

    inspecting, done = _slow_inspections(monkeypatch)
    monkeypatch.setattr(ownership, "SYNC_INTERVAL_S", 3600.0)
    url = postgres.new_database()
    data = tmp_path / "data"
    (data / "incoming").mkdir(parents=True)

    def replica(name: str) -> Any:
        settings = ServiceSettings(models_dir=model_dir, state_dir=tmp_path / name, data_root=data, history=url,
                                   files=tmp_path / "files", shutdown_grace_s=1)  # fmt: skip
        return create_app(settings, extensions=[stations])

    app_a = replica("a")
    with LiveServer(app_a) as a, LiveServer(replica("b")) as b:
        assert _post(a.base, "/v1/stations", _body(receiver))[0] == 201
        _drop(data / "incoming", _cells(1))
        assert inspecting.wait(wait_s(60)), "never inspected"
        status, info = _patch(b.base, "line-1", {"deadline_s": 3})
        assert status == 200, info
        app_a.state.station_ownership.sync()  # the image is in hand: a runs on as it was
        assert call("GET", f"{a.base}/v1/stations/line-1")[2]["spec"] == _body(receiver)
        assert open_backend(url).try_lock(station_lock("line-1")) is None  # a holds the lock all the while
        assert done.wait(wait_s(60))
        _until(a.base, "line-1", lambda i: i["sinks"]["webhook"]["delivered"] == 1, "the image delivered")
        app_a.state.station_ownership.sync()
        info = call("GET", f"{a.base}/v1/stations/line-1")[2]
        assert (info["state"], info["spec"]["deadline_s"]) == ("running", 3), info
        assert call("GET", f"{a.base}/v1/inspections?limit=10")[2]["total"] == 1
        assert len(receiver.keys()) == 1


def test_a_station_that_runs_nowhere_is_listed_as_not_started_while_another_replica_holds_its_lock(
    model_dir: Path,  # noqa: F811
    tmp_path: Path,
    receiver: Receiver,
    postgres: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A kept station no replica can start: a replica whose look at the table finds its lock held by another one
    (trying it in turn) still lists it as not started, with why, not as "running: on another replica"."""
    from datetime import UTC, datetime

    import eagle_iad.station.ownership as ownership
    from eagle_iad.history import open_backend
    from eagle_iad.station.outbox import StationTables, station_lock

    monkeypatch.setattr(ownership, "SYNC_INTERVAL_S", 3600.0)
    url = postgres.new_database()
    (tmp_path / "data" / "incoming").mkdir(parents=True)
    settings = ServiceSettings(models_dir=model_dir, state_dir=tmp_path / "b", data_root=tmp_path / "data",
                               history=url, files=tmp_path / "files")  # fmt: skip
    app = create_app(settings, extensions=[stations])
    with LiveServer(app) as b:
        StationTables(app.state.service.store).save_spec("line-1", {**_body(receiver), "category": "nosuch"},
                                                         datetime.now(UTC).isoformat())  # fmt: skip
        app.state.station_ownership.sync()
        (seen,) = call("GET", f"{b.base}/v1/stations")[2]
        assert seen["state"].startswith("error: not started: station 'line-1': category "), seen
        lease = open_backend(url).try_lock(station_lock("line-1"))  # another replica, trying it now
        assert lease is not None
        try:
            app.state.station_ownership.sync()
            (again,) = call("GET", f"{b.base}/v1/stations")[2]
            assert again["state"] == seen["state"], again
            assert call("GET", f"{b.base}/v1/stations/line-1")[2]["state"] == seen["state"]
            status, answer = _post(b.base, "/v1/stations/line-1/trigger")
            assert (status, answer["error"]["code"]) == (409, "station_not_started"), answer
        finally:
            lease.release()


@contextmanager
def _one_inspected(models: Path, tmp_path: Path, receiver: Receiver, url: str) -> Iterator[tuple[Any, Path]]:
    """A service on the shared history ``url`` whose station ``line-1`` (created through the API) has inspected
    one image: the live server and the data root."""
    data = tmp_path / "data"
    (data / "incoming").mkdir(parents=True)
    settings = ServiceSettings(models_dir=models, state_dir=tmp_path / "a", data_root=data, history=url,
                               files=tmp_path / "files")  # fmt: skip
    with LiveServer(create_app(settings, extensions=[stations])) as a:
        status, info = _post(a.base, "/v1/stations", _body(receiver))
        assert status == 201, info
        _drop(data / "incoming", _cells(1))
        _until(a.base, "line-1", lambda i: i["inspected"] == 1, "the first image")
        yield a, data


def test_a_replica_whose_station_lock_the_database_dropped_takes_no_further_image(
    model_dir: Path,  # noqa: F811
    tmp_path: Path,
    receiver: Receiver,
    postgres: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A database restart (or failover) ends every replica's station locks at once; another replica may take a
    station's lock at its next look at the table, while the replica running it notices only at its own next
    look (up to SYNC_INTERVAL_S later). Both took the same images meanwhile: each inspected and delivered twice.
    A station now checks that it still holds its lock before each image, and takes none once it does not."""
    import eagle_iad.station.ownership as ownership
    from eagle_iad.history import open_backend
    from eagle_iad.station.outbox import station_lock

    monkeypatch.setattr(ownership, "SYNC_INTERVAL_S", 3600.0)  # no look at the table during the test
    url = postgres.new_database()
    with _one_inspected(model_dir, tmp_path, receiver, url) as (a, data):
        admin = open_backend(url).connect()
        try:  # as a restart does: the server ends the session holding the station's lock
            ended = admin.execute("SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory'")
            assert [row[0] for row in ended.fetchall()] == [True]
            other = None
            deadline = time.monotonic() + wait_s(30)
            while (other := open_backend(url).try_lock(station_lock("line-1"))) is None:  # another replica's
                assert time.monotonic() < deadline, "the ended session's lock was never released"
                time.sleep(0.05)
            try:
                _drop(data / "incoming", _cells(3)[1:])
                time.sleep(wait_s(3))
                assert call("GET", f"{a.base}/v1/stations/line-1")[2]["inspected"] == 1
                left = sorted(p.name for p in (data / "incoming").glob("*.png"))  # for the replica holding the lock
                assert len(left) == 2, left
                info = call("GET", f"{a.base}/v1/stations/line-1")[2]
                assert info["state"].startswith("waiting: this station's lock in the history was lost"), info
            finally:
                other.release()
        finally:
            admin.close()


def test_stations_answer_503_while_a_shared_history_is_away_and_reuse_the_services_connection(
    model_dir: Path,  # noqa: F811
    tmp_path: Path,
    receiver: Receiver,
    postgres: Any,
) -> None:
    """``GET /v1/stations`` opened a new connection to the history for every station it listed, each through a
    backend that had never connected: a server refusing new connections (at max_connections) read as a wrong
    URL, 400 ``invalid_option`` with the server's name and its error in the answer, though the service's own
    connection worked. The figures now come through that connection; with the database away, the same 503
    ``history_unavailable`` (with Retry-After) as every other route."""
    url = postgres.new_database()
    database = url.rsplit("/", 1)[1]
    with _one_inspected(model_dir, tmp_path, receiver, url) as (a, _):
        with postgres.connect("postgres") as admin:
            admin.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS false')  # as a server at max_connections
            try:
                status, _, listed = call("GET", f"{a.base}/v1/stations")  # the service's connection is still there
                assert status == 200 and [i["inspected"] for i in listed] == [1], listed
                assert call("GET", f"{a.base}/v1/stations/line-1")[0] == 200
                admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (database,))
                status, headers, answer = call("GET", f"{a.base}/v1/stations")
                assert (status, answer["error"]["code"]) == (503, "history_unavailable"), answer
                assert "retry-after" in headers and "127.0.0.1" not in json.dumps(answer), answer
            finally:
                admin.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true')
        deadline = time.monotonic() + wait_s(30)
        while call("GET", f"{a.base}/v1/stations")[0] != 200:  # the next request connects again
            assert time.monotonic() < deadline, "the stations never answered again"
            time.sleep(0.2)


def test_a_hot_folder_another_station_takes_is_refused_and_a_kept_station_on_it_listed_not_started(
    model_dir: Path,  # noqa: F811
    tmp_path: Path,
    receiver: Receiver,
) -> None:
    """One station per hot folder: a second one created on it (another name) is 409 ``folder_in_use`` naming the
    holder; a kept station whose folder another process holds (an ``eagle station run``) is not started at the
    service's start, listed as such with that reason."""
    import os
    import socket
    import subprocess
    import sys

    data = tmp_path / "data"
    incoming = data / "incoming"
    incoming.mkdir(parents=True)
    state = tmp_path / "state"
    with LiveServer(_app(tmp_path, model_dir, data)) as live:
        assert _post(live.base, "/v1/stations", _body(receiver))[0] == 201
        status, answer = _post(live.base, "/v1/stations", _body(receiver, name="line-2"))
        assert (status, answer["error"]["code"], answer["error"]["message"]) == (409, "folder_in_use", (
            f"station 'line-2': hot folder {incoming} is taken by another station (pid {os.getpid()} on "
            f"{socket.gethostname()}, station 'line-1', state folder {state}); two stations on one folder would each "
            "inspect every image: stop that one first, or give this station its own folder"))  # fmt: skip
        assert [s["station"] for s in call("GET", f"{live.base}/v1/stations")[2]] == ["line-1"]
    assert not (incoming / ".eagle-station.lock").exists()  # released with the service's stop
    # another process takes the folder; the service starts again: its kept station is not started, and says why
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from pathlib import Path; from eagle_iad.station.sources.folder_lock import lock_folder; "
        f"lock_folder(Path({str(incoming)!r}), 'other', Path('/srv/other-state')); print('held', flush=True); "
        "sys.stdin.read()")], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        with LiveServer(_app(tmp_path, model_dir, data)) as live:
            listed = call("GET", f"{live.base}/v1/stations")[2]
            said = (
                f"error: not started: station 'line-1': hot folder incoming is taken by another station (pid "
                f"{holder.pid} on {socket.gethostname()}, station 'other', state folder /srv/other-state)"
            )
            assert [(s["station"], s["state"].split(";")[0]) for s in listed] == [("line-1", said)]
    finally:
        holder.communicate("", timeout=wait_s(30))


def test_a_stale_not_started_row_of_a_station_running_here_is_cleared_at_the_next_sync(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A ``station_faults`` row left by another replica's failed start, whose clear failed when this replica started
    the station (the history away a moment: :meth:`StationOwnership.started` goes on), is cleared at the next sync
    (earlier: kept, so every other replica answered 409 station_not_started for a station that runs)."""
    import threading
    from types import SimpleNamespace

    from eagle_iad.service.store import InspectionStore
    from eagle_iad.station.outbox import StationTables
    from eagle_iad.station.ownership import StationOwnership

    class Manager:
        def __init__(self) -> None:
            self.runs: dict[str, Any] = {}

        def all(self) -> list[Any]:
            return list(self.runs.values())

        def get(self, name: str) -> Any:
            return self.runs.get(name)

        def add(self, config: Any, *, spec: dict[str, Any], paused: bool, owns: Any) -> None:
            self.runs[config.name] = SimpleNamespace(name=config.name, spec=spec, user_paused=paused)

    store = InspectionStore(tmp_path / "eagle.sqlite3")
    try:
        tables = StationTables(store)
        tables.save_spec("line-1", {"name": "line-1"}, "2026-12-06T00:00:00+00:00")
        tables.set_fault("line-1", "FileNotFoundError: a folder gone", "2026-12-06T00:00:00+00:00")  # another replica
        settings = SimpleNamespace(state_dir=tmp_path / "state", shutdown_grace_s=1.0)
        state = SimpleNamespace(store=store, settings=settings, stopping=threading.Event())
        manager = Manager()
        configure = lambda spec: SimpleNamespace(name=spec["name"])  # noqa: E731
        ownership = StationOwnership(state, manager, configure)  # type: ignore[arg-type]
        real, refused = StationTables.clear_fault, [1, 2]  # the history away for the first sync

        def clear_fault(self: StationTables, name: str) -> None:
            if refused:
                refused.pop()
                raise sqlite3.OperationalError("database is locked")
            real(self, name)

        monkeypatch.setattr(StationTables, "clear_fault", clear_fault)
        ownership.sync()
        assert list(manager.runs) == ["line-1"] and ownership.not_started == {}
        assert tables.faults() == {"line-1": "FileNotFoundError: a folder gone"}  # the clears in that sync failed
        ownership.sync()  # the history back
        assert tables.faults() == {}
        assert ownership.why_not_started("line-1") is None  # what another replica answers: it runs (somewhere)
    finally:
        store.close()


def test_a_pause_and_a_resume_say_in_the_audit_log_what_they_changed_and_why(
    model_dir: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    """A pause's and a resume's audit rows name the station, the state it left (or that nothing changed) and the
    optional ``why``: rows with an empty detail told an admin reading the log nothing but the route."""
    data = tmp_path / "data"
    (data / "incoming").mkdir(parents=True)
    body = {"name": "line-1", "category": "mono", "source": {"kind": "folder", "path": "incoming"}}
    with LiveServer(_app(tmp_path, model_dir, data)) as live:
        assert _post(live.base, "/v1/stations", body)[0] == 201
        assert _post(live.base, "/v1/stations/line-1/pause", {"why": "jam at the conveyor"})[0] == 200
        assert _post(live.base, "/v1/stations/line-1/pause")[0] == 200  # no body: no why
        assert _post(live.base, "/v1/stations/line-1/resume", {"why": None})[0] == 200
        refused = _post(live.base, "/v1/stations/line-1/pause", {"why": "x" * 501})
        assert refused[0] == 400, refused
        assert _post(live.base, "/v1/stations/line-1/pause", {"reason": "typo"})[0] == 400  # an unknown field
        rows = call("GET", f"{live.base}/v1/audit")[2]["items"][::-1]
        # A station's rows are of the category it inspects: its path does not name one, so the audit by category
        # listed none of them (create, change, pause, resume, delete).
        assert _patch(live.base, "line-1", {"deadline_s": 5})[0] == 200
        assert call("DELETE", f"{live.base}/v1/stations/line-1")[0] == 204
        mono = call("GET", f"{live.base}/v1/audit?category=mono")[2]["items"][::-1]
        other = call("GET", f"{live.base}/v1/audit?category=tire")[2]
    assert [(r["route"], r["path"], r["detail"]) for r in rows[1:]] == [
        ("/v1/stations/{name}/pause", "/v1/stations/line-1/pause", "paused line-1 (was running): jam at the conveyor"),
        ("/v1/stations/{name}/pause", "/v1/stations/line-1/pause", "paused line-1 (already paused: no change)"),
        ("/v1/stations/{name}/resume", "/v1/stations/line-1/resume", "resumed line-1 (was paused)"),
    ]  # fmt: skip
    assert [(r["method"], r["path"]) for r in mono] == [
        ("POST", "/v1/stations"),
        *[("POST", f"/v1/stations/line-1/{verb}") for verb in ("pause", "pause", "resume")],
        ("PATCH", "/v1/stations/line-1"),
        ("DELETE", "/v1/stations/line-1"),
    ], mono
    assert other["total"] == 0, other


def test_a_change_of_category_says_the_old_one_in_its_audit_detail() -> None:
    """The row of a change is filed under the category after it (``?category=`` of the new one lists it); the
    detail keeps the one before, so the old category's engineer reading the whole log sees where it went."""
    from eagle_iad.station.routes import _changed_detail

    assert _changed_detail("line-1", {"category": "tire"}, {}, ("mono", "tire")) == (
        "changed line-1: ['category']; category mono -> tire"
    )
    assert _changed_detail("line-1", {"deadline_s": 5}, {}, ("mono", "mono")) == "changed line-1: ['deadline_s']"
