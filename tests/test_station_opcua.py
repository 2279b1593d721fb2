"""The OPC UA sink against a real asyncua server started by the test, with real stations (``eagle station run``).

What must hold (issue "On the line": verdict, score, time and record id written to a PLC's server): after a
run the server's variables hold the last verdict; every verdict was written, in stored order, its other
fields first and ``record_id`` last and alone, so a PLC triggered by ``record_id`` reads a complete verdict;
each value has the variable's own data type; a node the server does not have when the station starts is
one line naming the field (``eagle station run`` exits 2, ``POST /v1/stations`` answers 400), and one that
goes away later makes every verdict a dead letter naming the node while the station keeps inspecting; a
server down at start is a warning and gets every verdict once it is up, and one restarted under a live
connection costs no failed try; a bad option is one line naming the field.

The server is asyncua's own, in a thread of the test process with its own event loop, on a free port of
127.0.0.1; every Write request it serves is recorded (its PostWrite callback), in order.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import test_station
from conftest import wait_s
from test_station import _cells, _drop, _env, _free_port, _history, _run, _stations, assert_refused

from eagle_iad.station.parts import DeliveryError, Options, StationConfigError
from eagle_iad.station.status import open_read_only

asyncua = pytest.importorskip("asyncua", reason="asyncua is not installed (pip install 'eagle-iad[opcua]')")

from asyncua import Server, ua  # noqa: E402  (after the asyncua check)
from asyncua.common.callback import CallbackType  # noqa: E402

from eagle_iad.station.sinks.opcua import OpcUaSink  # noqa: E402

model_dir = test_station.model_dir  # the module-scoped fixture: a small real model of elpv mono cells

NAMESPACE = "urn:eagle:test:plc"
#: The line's variables: name -> (built-in type, a data type node other than the built-in one, or None).
VARIABLES: dict[str, tuple[str, int | None]] = {
    "Verdict": ("String", None),
    "Score": ("Double", None),
    "RecordId": ("String", None),
}
NODES = {"decision": "ns=2;s=Verdict", "score": "ns=2;s=Score", "record_id": "ns=2;s=RecordId"}


class PlcServer:
    """A real asyncua server on ``127.0.0.1:port`` with writable ``variables`` in namespace 2 (:data:`NAMESPACE`).

    It runs in its own thread and event loop; :attr:`writes` is every Write request it served, in order, as
    the list of (variable name, value) it carried.
    """

    def __init__(
        self,
        port: int,
        variables: dict[str, tuple[str, int | None]] = VARIABLES,
        initial: dict[str, Any] | None = None,
        refuse_filters: str | None = None,
    ) -> None:
        """``initial``: a variable's value when the server starts (its type's zero, an empty text, 2000-01-01 if
        not given). ``refuse_filters``: a status code's name (``BadMonitoredItemFilterUnsupported``) the server
        answers a monitored item asking for a filter with, as a PLC that takes none; asyncua's own takes any."""
        self.port = port
        self.refuse_filters = refuse_filters
        self.initial = dict(initial or {})
        self.endpoint = f"opc.tcp://127.0.0.1:{port}/eagle/plc"
        self.variables = variables
        self.writes: list[list[tuple[str, Any]]] = []
        #: Every monitored item a client asked it for, in order: (variable name, the filter it asked for or None).
        self.monitors: list[tuple[str, Any]] = []
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: Server | None = None
        self._thread: threading.Thread | None = None
        self._stop: asyncio.Event | None = None

    def start(self) -> PlcServer:
        ready = threading.Event()
        failed: list[BaseException] = []

        async def serve() -> None:
            try:
                server = Server()
                await server.init()
                server.set_endpoint(self.endpoint)
                index = await server.register_namespace(NAMESPACE)
                assert index == 2
                line = await server.nodes.objects.add_object(index, "Line")
                for name, (type_name, data_type) in self.variables.items():
                    variant_type = ua.VariantType[type_name]
                    zero = {"String": "", "DateTime": datetime(2000, 1, 1, tzinfo=UTC), "Boolean": False}
                    initial = self.initial.get(name, zero.get(type_name, 0))
                    variable = await line.add_variable(
                        ua.NodeId(name, index), name, ua.Variant(initial, variant_type), varianttype=variant_type,
                        datatype=None if data_type is None else ua.NodeId(data_type),
                    )  # fmt: skip
                    await variable.set_writable()
                if self.refuse_filters is not None:
                    self._refuse_filters(server, self.refuse_filters)
                server.subscribe_server_callback(CallbackType.PostWrite, self._written)
                server.subscribe_server_callback(CallbackType.ItemSubscriptionCreated, self._monitored)
                self._stop = asyncio.Event()
                async with server:
                    self._server, self._loop = server, asyncio.get_running_loop()
                    ready.set()
                    await self._stop.wait()
            except BaseException as exc:
                failed.append(exc)
                ready.set()
                raise

        self._thread = threading.Thread(target=lambda: asyncio.run(serve()), name="plc-server", daemon=True)
        self._thread.start()
        assert ready.wait(wait_s(60)), "the OPC UA server did not start"
        if failed:
            raise failed[0]
        return self

    @staticmethod
    def _refuse_filters(server: Server, answer: str) -> None:
        """Make ``server`` answer each monitored item that asks for a filter with ``answer`` (the others are
        created as before, in the request's order), in its subscription service: the one place every session's
        CreateMonitoredItems request goes through, so the client's request and its answer are the real ones."""
        service = server.iserver.subscription_service
        create = service.create_monitored_items

        async def refusing(params: ua.CreateMonitoredItemsParameters) -> list[ua.MonitoredItemCreateResult]:
            items = params.ItemsToCreate
            refused = [type(item.RequestedParameters.Filter) is not ua.ExtensionObject for item in items]  # an empty
            # ExtensionObject is no filter on the wire; a filter asked for is decoded to its own type
            params.ItemsToCreate = [item for item, no in zip(items, refused, strict=True) if not no]
            created = iter(await create(params) if params.ItemsToCreate else [])
            params.ItemsToCreate = items  # as asked, for the ItemSubscriptionCreated callback (monitored())
            return [ua.MonitoredItemCreateResult(StatusCode=ua.StatusCode(getattr(ua.StatusCodes, answer)))
                    if no else next(created) for no in refused]  # fmt: skip

        service.create_monitored_items = refusing  # type: ignore[method-assign]

    def _written(self, event: Any, dispatcher: Any) -> None:
        names = {ua.NodeId(name, 2): name for name in self.variables}
        request = [(names[item.NodeId], item.Value.Value.Value) for item in event.request_params.NodesToWrite
                   if item.NodeId in names]  # fmt: skip
        if request:  # the server's own bookkeeping writes (its status, its clock) are not the sink's
            with self._lock:
                self.writes.append(request)

    def _monitored(self, event: Any, dispatcher: Any) -> None:
        names = {ua.NodeId(name, 2): name for name in self.variables}
        with self._lock:
            for item in event.request_params.ItemsToCreate:
                node = item.ItemToMonitor.NodeId
                self.monitors.append((names.get(node, str(node)), item.RequestedParameters.Filter))

    def monitored(self) -> list[tuple[str, Any]]:
        """The monitored items asked for so far, as :attr:`monitors`."""
        with self._lock:
            return list(self.monitors)

    def written(self) -> list[list[tuple[str, Any]]]:
        with self._lock:
            return [list(request) for request in self.writes]

    def values(self) -> dict[str, Any]:
        """Every variable's current value, read in the server's own loop."""
        assert self._loop is not None and self._server is not None
        server = self._server

        async def read() -> dict[str, Any]:
            return {name: await server.get_node(ua.NodeId(name, 2)).read_value() for name in self.variables}

        return asyncio.run_coroutine_threadsafe(read(), self._loop).result(wait_s(30))

    def write(self, name: str, value: Any, status: int | None = None) -> None:
        """Set the variable ``name`` to ``value`` (as its own type), as the PLC's program does, in the server's loop;
        ``status``: the value's status code (its info bits too, such as a queue's overflow), good if not given."""
        assert self._loop is not None and self._server is not None
        server = self._server

        async def write() -> None:
            variable = server.get_node(ua.NodeId(name, 2))
            variant = ua.Variant(value, ua.VariantType[self.variables[name][0]])
            await variable.write_value(variant if status is None else ua.DataValue(variant, ua.StatusCode(status)))

        asyncio.run_coroutine_threadsafe(write(), self._loop).result(wait_s(30))

    def write_burst(self, name: str, values: list[Any]) -> None:
        """Set ``name`` to each of ``values`` in turn within one turn of the server's loop (no publish between): a
        PLC's program toggling a node faster than its server publishes, past the subscription's queue."""
        assert self._loop is not None and self._server is not None
        server = self._server

        async def burst() -> None:
            variable = server.get_node(ua.NodeId(name, 2))
            for value in values:
                await variable.write_value(ua.Variant(value, ua.VariantType[self.variables[name][0]]))

        asyncio.run_coroutine_threadsafe(burst(), self._loop).result(wait_s(30))

    def remove(self, name: str) -> None:
        """Delete the variable ``name`` (a PLC program download that dropped it), in the server's own loop."""
        assert self._loop is not None and self._server is not None
        server = self._server

        async def delete() -> None:
            await server.delete_nodes([server.get_node(ua.NodeId(name, 2))])

        asyncio.run_coroutine_threadsafe(delete(), self._loop).result(wait_s(30))

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(wait_s(60))
            assert not self._thread.is_alive(), "the OPC UA server did not stop"
        self._loop = self._server = self._thread = None


@pytest.fixture
def plc() -> Iterator[PlcServer]:
    server = PlcServer(_free_port()).start()
    yield server
    server.stop()


def _opcua(endpoint: str, nodes: dict[str, str] = NODES, **extra: Any) -> str:
    options = "".join(f"\n{key} = {json.dumps(value)}" for key, value in extra.items())
    table = ", ".join(f"{field} = {json.dumps(node)}" for field, node in nodes.items())
    return f"""
[[station.sink]]
kind = "opcua"
endpoint = "{endpoint}"
nodes = {{ {table} }}
timeout_s = 5{options}
"""


def _status(stations: Path) -> dict[str, Any]:
    code, out = _run(stations, "status")
    assert code == 0, out
    return dict(json.loads(out[out.index("[") :])[0])


def _expected_writes(history: list[Any]) -> list[list[tuple[str, Any]]]:
    """Per verdict two requests: the decision and score, then the record id alone."""
    writes: list[list[tuple[str, Any]]] = []
    for record in history:
        writes += [[("Verdict", record.decision or "undecided"), ("Score", record.score)], [("RecordId", record.id)]]
    return writes


def test_every_verdict_is_written_in_order_with_the_record_id_last(
    model_dir: Path, tmp_path: Path, plc: PlcServer
) -> None:
    names = _drop(tmp_path / "incoming", _cells(3))
    stations = _stations(tmp_path, model_dir, _opcua(plc.endpoint))
    code, log = _run(stations, "run", "--until-idle")
    assert code == 0, log
    history = _history(tmp_path)
    assert [r.image_name for r in history] == names
    last = history[-1]
    assert plc.values() == {"Verdict": last.decision, "Score": last.score, "RecordId": last.id}
    # every verdict, in stored order; the record id written after (and apart from) the rest of its verdict
    assert plc.written() == _expected_writes(history)
    assert [value for request in plc.written() for name, value in request if name == "RecordId"] == [
        r.id for r in history
    ]
    status = _status(stations)
    assert status["sinks"]["opcua"]["delivered"] == 3 and status["sinks"]["opcua"]["last_error"] is None
    assert f"opcua {plc.endpoint}: decision -> ns=2;s=Verdict" in log  # the start-up line describes the sink
    assert "Traceback" not in log and "asyncua" not in log  # asyncua's own chatter stays out of the station's log


def test_a_node_missing_on_the_server_is_refused_at_start_with_one_line(
    model_dir: Path, tmp_path: Path, plc: PlcServer
) -> None:
    """The start-up probe reads the nodes: one the server does not have stops ``eagle station run`` before any
    of its stations takes an image (a sound one declared first included), with one line naming the field."""
    names = _drop(tmp_path / "incoming", _cells(1))
    (tmp_path / "incoming-2").mkdir()
    nodes = {"decision": "ns=2;s=Verdict", "record_id": "ns=2;s=Nope"}
    stations = _stations(tmp_path, model_dir, "")
    with open(stations, "a") as file:
        file.write('[[station]]\nname = "line-2"\ncategory = "mono"\n'
                   'source = { kind = "folder", path = "incoming-2" }\n' + _opcua(plc.endpoint, nodes))  # fmt: skip
    code, out = _run(stations, "run", "--until-idle")
    assert (code, out) == (2, f"eagle: error: {stations}: station 'line-2': sink 1 (opcua): nodes.record_id: node "
                              f"ns=2;s=Nope does not exist on {plc.endpoint}\n")  # fmt: skip
    assert sorted(p.name for p in (tmp_path / "incoming").iterdir()) == names  # line-1 took nothing either
    assert plc.written() == []


def test_a_node_missing_on_the_server_is_a_400_through_the_service(
    model_dir: Path, tmp_path: Path, plc: PlcServer
) -> None:
    from conftest import LiveServer
    from test_service import call
    from test_station_service import _app, _post

    data = tmp_path / "data"
    (data / "incoming").mkdir(parents=True)
    body = {"name": "line-1", "category": "mono", "source": {"kind": "folder", "path": "incoming"},
            "sinks": [{"kind": "opcua", "endpoint": plc.endpoint, "nodes": {"decision": "ns=2;s=Nope"},
                       "timeout_s": 5}]}  # fmt: skip
    with LiveServer(_app(tmp_path, model_dir, data)) as live:
        status, answer = _post(live.base, "/v1/stations", body)
        assert (status, answer["error"]["message"]) == (
            400, f"station 'line-1': sink 1 (opcua): nodes.decision: node ns=2;s=Nope does not exist on {plc.endpoint}"
        ), answer  # fmt: skip
        assert call("GET", f"{live.base}/v1/stations")[2] == []  # not created, not kept


def test_a_node_gone_after_start_ends_in_dead_letters_naming_it(model_dir: Path, tmp_path: Path) -> None:
    """The node is there when the station starts (the probe passes) and gone before the first verdict (a PLC
    program download): every verdict becomes a dead letter naming the node, and the station keeps inspecting."""
    plc = PlcServer(_free_port(), {**VARIABLES, "Missing": ("String", None)}).start()
    (tmp_path / "incoming").mkdir()
    nodes = {"decision": "ns=2;s=Verdict", "record_id": "ns=2;s=Missing"}
    stations = _stations(tmp_path, model_dir, _opcua(plc.endpoint, nodes, max_attempts=2, retry_base_s=0.05))
    log_path = tmp_path / "station.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen([sys.executable, "-m", "eagle_iad.cli", "station", "run", "--quiet",
                                    str(stations)], cwd=tmp_path, env=_env(), stdout=log,
                                   stderr=subprocess.STDOUT)  # fmt: skip
    try:
        deadline = time.monotonic() + wait_s(300)
        while f"-> opcua {plc.endpoint}" not in log_path.read_text():  # started: the probe passed
            assert process.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, "the station did not start"
            time.sleep(0.1)
        plc.remove("Missing")
        names = _drop(tmp_path / "incoming", _cells(3))
        while not (len(rows := _outbox(tmp_path)) == 3 and {state for state, _ in rows} == {"dead"}):
            assert process.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, f"the verdicts did not end as dead letters: {rows}"
            time.sleep(0.2)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=wait_s(60)) == 143, log_path.read_text()
    finally:
        process.kill()
        process.wait()
        try:
            written = plc.written()
        finally:
            plc.stop()
    log = log_path.read_text()
    assert [r.image_name for r in _history(tmp_path)] == names  # the station kept inspecting
    expected = f"node ns=2;s=Missing does not exist on {plc.endpoint}"
    assert log.count("gave up on record") == 3 and f"after 2 tries ({expected})" in log, log
    status = _status(stations)
    assert status["sinks"]["opcua"]["dead_letters"] == 3
    assert status["sinks"]["opcua"]["last_error"] == expected
    assert written == []  # nothing of a verdict is written while one of its nodes is missing


def _outbox(work: Path) -> list[tuple[str, str | None]]:
    """The OPC UA sink's outbox rows (state, last error), read while the station runs; none before it exists."""
    try:
        db = open_read_only(work / "state" / "eagle.sqlite3")
    except sqlite3.Error:
        return []
    try:
        return [(str(s), e) for s, e in db.execute("SELECT state, last_error FROM outbox WHERE sink = 'opcua'")]
    except sqlite3.Error:
        return []
    finally:
        db.close()


def test_a_server_down_at_start_gets_every_verdict_once_it_is_up(model_dir: Path, tmp_path: Path) -> None:
    plc = PlcServer(_free_port())
    names = _drop(tmp_path / "incoming", _cells(3))
    sink = _opcua(plc.endpoint, retry_base_s=0.2, retry_max_s=1.0, max_attempts=1000)
    stations = _stations(tmp_path, model_dir, sink)
    with open(tmp_path / "station.log", "w") as log:
        process = subprocess.Popen([sys.executable, "-m", "eagle_iad.cli", "station", "run", "--until-idle",
                                    str(stations)], cwd=tmp_path, env=_env(), stdout=log,
                                   stderr=subprocess.STDOUT)  # fmt: skip
    try:
        deadline = time.monotonic() + wait_s(300)
        while not (len(rows := _outbox(tmp_path)) == 3 and any(error for _, error in rows)):
            assert process.poll() is None, (tmp_path / "station.log").read_text()
            assert time.monotonic() < deadline, "the station did not inspect 3 images and try to deliver them"
            time.sleep(0.2)
        assert {state for state, _ in rows} == {"pending"}  # nothing delivered, nothing given up
        assert any(f"{plc.endpoint}: cannot connect (Connection refused)" == error for _, error in rows), rows
        # the start-up probe found the server down: a warning, and the station runs on
        assert (
            f"eagle station line-1: warning: sink opcua: {plc.endpoint}: cannot connect (Connection refused); "
            "verdicts wait in the outbox until it is reachable\n"
        ) in (tmp_path / "station.log").read_text()
        plc.start()  # the same port, some seconds after the station started
        assert process.wait(timeout=wait_s(300)) == 0, (tmp_path / "station.log").read_text()
    finally:
        process.kill()
        process.wait()
        try:
            written = plc.written()
        finally:
            plc.stop()
    history = _history(tmp_path)
    assert [r.image_name for r in history] == names
    assert written == _expected_writes(history)  # each once, in stored order
    assert {state for state, _ in _outbox(tmp_path)} == {"delivered"}
    assert "Traceback" not in (tmp_path / "station.log").read_text()
    assert "asyncua" not in (tmp_path / "station.log").read_text()


def _sink(endpoint: str, nodes: dict[str, str], **extra: Any) -> OpcUaSink:
    table = {"kind": "opcua", "endpoint": endpoint, "nodes": nodes, "timeout_s": 10, **extra}
    return OpcUaSink(Options(table, "test", Path.cwd()), "opcua")


PAYLOAD = {
    "station": "line-1",
    "record": {"id": "r1", "decision": "anomalous", "score": 1.25, "tau": 0.5, "time": "2026-01-02T03:04:05.678+00:00"},
    "image": "/line/done/0001.png",
    "source": "/line/incoming/0001.png",
}


def _sink_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("eagle-opcua-")]


def test_the_sink_alone_writes_each_variable_as_its_own_type_and_survives_restarts() -> None:
    """No station: the values as the variables' types, ``nsu=`` ids, a refused or mistyped node, a server that
    is down and one restarted under a live connection, and a clean close."""
    variables = {
        "Verdict": ("LocalizedText", None),
        "Flag": ("Int16", None),  # anomalous as 0 / 1
        "Level": ("Float", None),  # score as a float32
        "Limit": ("String", None),  # tau as text
        "When": ("DateTime", 294),  # UtcTime, a subtype of DateTime: time as a date
        "Station": ("String", None),
        "Image": ("String", None),
        "RecordId": ("String", None),
    }
    plc = PlcServer(_free_port(), variables)
    nodes = {"record_id": "ns=2;s=RecordId", "decision": "ns=2;s=Verdict", "anomalous": f"nsu={NAMESPACE};s=Flag",
             "score": "ns=2;s=Level", "tau": "ns=2;s=Limit", "time": "ns=2;s=When", "station": "ns=2;s=Station",
             "image": "ns=2;s=Image"}  # fmt: skip
    sink = _sink(plc.endpoint, nodes)
    assert not _sink_threads()  # nothing runs or connects before the first delivery
    assert sink.station_probe() == f"{plc.endpoint}: cannot connect (Connection refused)"  # down: only a warning
    with pytest.raises(DeliveryError, match=r"cannot connect \(Connection refused\)$"):
        sink.deliver(PAYLOAD, "r1")
    plc.start()
    try:
        assert sink.station_probe() is None  # every node there, every data type one its field can be written as
        assert plc.written() == []  # the probe reads, never writes
        sink.deliver(PAYLOAD, "r1")
        first, last = plc.written()
        assert [name for name, _ in first] == ["Verdict", "Flag", "Level", "Limit", "When", "Station", "Image"]
        assert last == [("RecordId", "r1")]  # written last, alone, though the file named it first
        values = dict(first)
        assert values["Verdict"] == ua.LocalizedText("anomalous")
        assert values["Flag"] == 1 and isinstance(values["Flag"], int)
        assert values["Level"] == 1.25 and values["Limit"] == "0.5"
        assert values["When"] == datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
        assert (values["Station"], values["Image"]) == ("line-1", "/line/done/0001.png")
        # the server restarted (a PLC's power cycle) between two verdicts: the same try reconnects
        plc.stop()
        plc.start()
        undecided = {**PAYLOAD, "record": {**PAYLOAD["record"], "decision": None, "score": None}}
        sink.deliver(undecided, "r2")
        first, last = plc.written()[-2:]
        assert dict(first)["Verdict"] == ua.LocalizedText("undecided") and dict(first)["Flag"] == 0
        assert math.isnan(dict(first)["Level"]) and last == [("RecordId", "r2")]
        # a variable whose type the field cannot be written as, and a node the server does not have
        mistyped = _sink(plc.endpoint, {"score": "ns=2;s=When"})
        with pytest.raises(DeliveryError) as caught:
            mistyped.deliver(PAYLOAD, "r3")
        assert str(caught.value) == (f"node ns=2;s=When on {plc.endpoint} holds DateTime; score cannot be written "
                                     "as DateTime (it takes Double, Float, LocalizedText, String)")  # fmt: skip
        with pytest.raises(StationConfigError) as refused:  # at start-up the same is one line naming the field
            mistyped.station_probe()
        assert str(refused.value) == f"test: nodes.score: {caught.value}"
        missing = _sink(plc.endpoint, {"decision": "ns=7;i=4242"})
        with pytest.raises(DeliveryError, match=rf"^node ns=7;i=4242 does not exist on {plc.endpoint}$"):
            missing.deliver(PAYLOAD, "r3")
        unknown = _sink(plc.endpoint, {"decision": "nsu=urn:not:here;s=Verdict"})
        with pytest.raises(DeliveryError, match="the namespace urn:not:here is not on"):
            unknown.deliver(PAYLOAD, "r3")
        with pytest.raises(StationConfigError, match=r"^test: nodes\.decision: node nsu=urn:not:here;s=Verdict: the "
                                                     "namespace urn:not:here is not on"):  # fmt: skip
            unknown.station_probe()
        assert not [t.name for t in threading.enumerate() if t.name.startswith("eagle-probe-")]  # probes joined
        for each in (sink, mistyped, missing, unknown):
            each.close()
        assert not _sink_threads()  # close stopped every sink's event loop
        with pytest.raises(DeliveryError, match="the sink is closing"):
            sink.deliver(PAYLOAD, "r4")
    finally:
        plc.stop()


CONFIG_ERRORS = [
    # (the sink's options, the one line the user gets after "<file>: station 'l': sink 1 (opcua): ")
    ('nodes = {{ decision = "ns=2;s=V" }}\n', "endpoint is missing"),
    ('endpoint = "http://plc:4840/"\nnodes = {{ decision = "ns=2;s=V" }}\n',
     "endpoint 'http://plc:4840/' is not an opc.tcp://host:port/... endpoint"),
    ('endpoint = "opc.tcp://plc:port/"\nnodes = {{ decision = "ns=2;s=V" }}\n',
     "endpoint 'opc.tcp://plc:port/' has a port that is not a number from 0 to 65535"),
    ('endpoint = "opc.tcp://line:secret@plc:4840/"\nnodes = {{ decision = "ns=2;s=V" }}\n',
     "endpoint has a user in it; use username and password_env (the password stays out of the file)"),
    ('endpoint = "opc.tcp://plc:4840/"\n', "nodes is missing"),
    ('endpoint = "opc.tcp://plc:4840/"\nnodes = "ns=2;s=V"\n',
     "nodes must be a table of field = node id, not 'ns=2;s=V'"),
    ('endpoint = "opc.tcp://plc:4840/"\nnodes = {{}}\n',
     "nodes is empty; map at least one of decision, anomalous, score, tau, time, record_id, image, station, reason, "
     "image_name, model_version, sequence, ack to a node id"),
    ('endpoint = "opc.tcp://plc:4840/"\nnodes = {{ verdict = "ns=2;s=V" }}\n',
     "nodes.verdict is not a field the sink writes; use decision, anomalous, score, tau, time, record_id, image, "
     "station, reason, image_name, model_version, sequence, ack"),
    ('endpoint = "opc.tcp://plc:4840/"\nnodes = {{ score = "ns=2;x=Score" }}\n',
     "nodes.score 'ns=2;x=Score' is not an OPC UA node id; write e.g. 'ns=2;s=Verdict', 'ns=3;i=1001' or "
     "'nsu=urn:plc;s=Verdict'"),
    ('endpoint = "opc.tcp://plc:4840/"\nnodes = {{ score = 3 }}\n',
     "nodes.score must be a node id such as 'ns=2;s=Verdict', not 3"),
    ('endpoint = "opc.tcp://plc:4840/"\nnodes = {{ decision = "ns=2;s=V", score = "ns=2;s=V" }}\n',
     "nodes.score 'ns=2;s=V' is the node nodes.decision already names"),
    ('endpoint = "opc.tcp://plc:4840/"\nnodes = {{ decision = "ns=2;s=V" }}\nusername = "line"\n'
     'password_env = "EAGLE_NOT_SET_ANYWHERE"\n',
     "password_env names EAGLE_NOT_SET_ANYWHERE, which is not set in the environment"),
    ('endpoint = "opc.tcp://plc:4840/"\nnodes = {{ decision = "ns=2;s=V" }}\npassword_env = "HOME"\n',
     "password_env needs username (OPC UA sends a password only with a user name)"),
    ('endpoint = "opc.tcp://plc:4840/"\nnodes = {{ decision = "ns=2;s=V" }}\ntimeout_s = 0\n',
     "timeout_s must be in (0, 600], not 0"),
    ('endpoint = "opc.tcp://plc:4840/"\nnodes = {{ decision = "ns=2;s=V" }}\ntimout_s = 5\n',
     "unknown option 'timout_s'"),
]  # fmt: skip


@pytest.mark.parametrize(("options", "message"), CONFIG_ERRORS, ids=[m[:40] for _, m in CONFIG_ERRORS])
def test_a_bad_opcua_option_is_one_line_naming_the_field(
    model_dir: Path, tmp_path: Path, options: str, message: str
) -> None:
    (tmp_path / "in").mkdir()
    path = tmp_path / "stations.toml"
    path.write_text(f'models = "{model_dir}"\n[[station]]\nname = "l"\ncategory = "mono"\n'
                    f'source = {{ kind = "folder", path = "in" }}\n[[station.sink]]\nkind = "opcua"\n'
                    + options.format())  # fmt: skip
    assert_refused(path, f"{path}: station 'l': sink 1 (opcua): {message}", cli=message == CONFIG_ERRORS[0][1])


def test_a_refused_image_is_written_as_refused_with_its_reason_and_its_key_last(
    model_dir: Path, tmp_path: Path
) -> None:
    """A corrupt image after a cell: the same two Write requests as a verdict, in order after it: ``refused`` with
    the reason (a ``reason`` node; a verdict writes ``""`` there) and a NaN score, then the refusal's key alone."""
    plc = PlcServer(_free_port(), {**VARIABLES, "Reason": ("String", None)}).start()
    try:
        (name,) = _drop(tmp_path / "incoming", _cells(1))
        broken = tmp_path / "incoming" / "broken.png"
        broken.write_bytes(b"not a png at all")
        os.utime(broken, (time.time() - 5, time.time() - 5))  # after the cell
        nodes = {**NODES, "reason": "ns=2;s=Reason"}
        stations = _stations(tmp_path, model_dir, _opcua(plc.endpoint, nodes), settle_s=0)
        code, log = _run(stations, "run", "--until-idle")
        assert code == 0, log
        (record,) = _history(tmp_path)
        writes, values = plc.written(), plc.values()
    finally:
        plc.stop()
    reason = "broken.png: not a recognised image format"
    key = values["RecordId"]
    assert key.startswith("refused-") and record.image_name == name
    assert writes[:2] == [[("Verdict", record.decision), ("Score", record.score), ("Reason", "")],
                          [("RecordId", record.id)]]  # fmt: skip
    (verdict, score, said), last = writes[2], writes[3]
    assert verdict == ("Verdict", "refused") and said == ("Reason", reason) and last == [("RecordId", key)]
    assert score[0] == "Score" and math.isnan(score[1]) and len(writes) == 4
    assert values["Verdict"] == "refused" and values["Reason"] == reason


def test_a_plc_acknowledging_each_sequence_gets_every_verdict_one_at_a_time() -> None:
    """The handshake (finding 2 of the line's tester): ``image_name`` and ``model_version`` are written with the
    verdict, ``sequence`` last and alone, and the next verdict waits until the PLC wrote that sequence to ``ack``;
    a PLC that does not is a failed try after ``ack_timeout_s``, and the retry, once the PLC took it late, writes
    nothing again. Without the handshake a backlog is written as fast as the server takes it and a PLC scanning
    every 10-100 ms sees only some verdicts."""
    variables = {
        "Verdict": ("String", None),
        "ImageName": ("String", None),
        "ModelVersion": ("Int32", None),
        "RecordId": ("String", None),
        "Seq": ("UInt32", None),
        "Ack": ("UInt32", None),
    }
    plc = PlcServer(_free_port(), variables).start()
    nodes = {"decision": "ns=2;s=Verdict", "image_name": "ns=2;s=ImageName", "model_version": "ns=2;s=ModelVersion",
             "record_id": "ns=2;s=RecordId", "sequence": "ns=2;s=Seq", "ack": "ns=2;s=Ack"}  # fmt: skip
    sink = _sink(plc.endpoint, nodes, ack_timeout_s=0.5)
    assert plc._loop is not None and plc._server is not None
    loop, server = plc._loop, plc._server

    def payload(n: int) -> dict[str, Any]:
        record = {**PAYLOAD["record"], "id": f"r{n}", "image_name": f"part-{n}.png", "model_version": 3}
        return {**PAYLOAD, "record": record}

    def acknowledge(value: int) -> None:  # what the PLC's program does once it took a verdict
        async def write() -> None:
            await server.get_node(ua.NodeId("Ack", 2)).write_value(ua.Variant(value, ua.VariantType.UInt32))

        asyncio.run_coroutine_threadsafe(write(), loop).result(wait_s(30))  # recorded by the server's callback

    try:
        assert sink.station_probe() is None
        with pytest.raises(DeliveryError, match=r"did not acknowledge sequence 1 \(record r1\) within 0.5 s: "
                                                r"nodes.ack ns=2;s=Ack holds 0$"):  # fmt: skip
            sink.deliver(payload(1), "r1")
        assert plc.written() == [[("Verdict", "anomalous"), ("ImageName", "part-1.png"), ("ModelVersion", 3)],
                                 [("RecordId", "r1")], [("Seq", 1)]]  # fmt: skip
        acknowledge(1)  # late: the retry finds it taken and writes nothing again
        sink.deliver(payload(1), "r1")
        assert len(plc.written()) == 4
        # a PLC acknowledging each sequence a while after it changed: each verdict written only after the last ack
        stop = threading.Event()

        def plc_program() -> None:
            seen = 1
            while not stop.is_set():
                current = plc.values()["Seq"]
                if current != seen:
                    time.sleep(0.05)
                    acknowledge(current)
                    seen = current
                time.sleep(0.01)

        program = threading.Thread(target=plc_program, daemon=True)
        program.start()
        for n in range(2, 6):
            sink.deliver(payload(n), f"r{n}")
        stop.set()
        program.join(wait_s(30))
        tail = plc.written()[4:]
        expected: list[list[tuple[str, Any]]] = []
        for n in range(2, 6):
            expected += [[("Verdict", "anomalous"), ("ImageName", f"part-{n}.png"), ("ModelVersion", 3)],
                         [("RecordId", f"r{n}")], [("Seq", n)], [("Ack", n)]]  # fmt: skip
        assert tail == expected
    finally:
        sink.close()
        plc.stop()


def test_min_interval_s_spaces_the_verdicts_and_the_handshake_options_are_checked(tmp_path: Path) -> None:
    plc = PlcServer(_free_port()).start()
    try:
        sink = _sink(plc.endpoint, NODES, min_interval_s=0.3)
        started = time.monotonic()
        for n in range(3):
            sink.deliver(PAYLOAD, f"r{n}")
        assert time.monotonic() - started >= 0.6  # two gaps of at least min_interval_s
        assert [w for w in plc.written() if w[0][0] == "RecordId"] == [[("RecordId", f"r{n}")] for n in range(3)]
        sink.close()
    finally:
        plc.stop()
    with pytest.raises(StationConfigError, match=r"^test: nodes.ack needs nodes.sequence"):
        _sink("opc.tcp://127.0.0.1:4840", {**NODES, "ack": "ns=2;s=Ack"})
    with pytest.raises(StationConfigError, match=r"^test: ack_timeout_s needs nodes.ack"):
        _sink("opc.tcp://127.0.0.1:4840", NODES, ack_timeout_s=5)
    with pytest.raises(StationConfigError, match=r"^test: nodes maps only the handshake"):
        _sink("opc.tcp://127.0.0.1:4840", {"sequence": "ns=2;s=Seq"})
