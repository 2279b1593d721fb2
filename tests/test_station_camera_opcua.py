"""A camera's frame triggered by a PLC over OPC UA (``trigger = "opcua"``), against a real asyncua server started
by the test on a free port and a real video file as the camera.

What must hold (brief "a camera frame triggered by the PLC over OPC UA"): each rising edge of a Boolean node takes
exactly one frame, and each increase of an integer node (a part counter) one frame (an increase by k > 1: one
frame, and the log says k - 1 parts had none); the value read at connect is never a trigger; a PLC that is down
at start or stops does not stop the station: the status says the trigger is not connected (naming the endpoint and
why), it reconnects every ``reconnect_s`` and triggers again, and what changed meanwhile is not taken; a node the
server does not have, or of another type, is one line naming the node and the endpoint (at start when the PLC can
be reached, a warning otherwise); ``eagle station run`` takes such a camera (it needs no HTTP route).

Waits are generous and nothing is timed: the video file plays at its own pace (5 frames a second) while the
camera waits for triggers, so each trigger's frame comes within a fifth of a second on an idle machine.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import test_station
from conftest import wait_s
from test_station import _env, _free_port, _history, _run

from eagle_iad.station.parts import Options, StationConfigError

cv2 = pytest.importorskip("cv2", reason="OpenCV is not installed (pip install 'eagle-iad[camera]')")
asyncua = pytest.importorskip("asyncua", reason="asyncua is not installed (pip install 'eagle-iad[opcua]')")

from test_station_camera import _camera, _camera_stations, _drain, _frames, _video  # noqa: E402
from test_station_opcua import PlcServer  # noqa: E402

from eagle_iad.station.sources.camera import Camera  # noqa: E402

model_dir = test_station.model_dir  # the module-scoped fixture: a small real model of elpv mono cells

#: The PLC's variables: a part-present bit, a part counter, and a text (no trigger).
VARIABLES: dict[str, tuple[str, int | None]] = {
    "PartPresent": ("Boolean", None),
    "Parts": ("UInt32", None),
    "Label": ("String", None),
}
#: Frames a second of the video files: a file waiting for triggers plays at its own pace.
FPS = 5.0


def _clip(work: Path, seconds: float = 600) -> Path:
    """A video of real elpv cells (64 px) lasting ``seconds`` at :data:`FPS`: longer than any test here, so the
    file does not end (and finish the source) while a trigger is still to come."""
    return _video(work / "clip.avi", _frames(int(seconds * FPS), size=64), fps=FPS)


@pytest.fixture
def plc() -> Iterator[PlcServer]:
    server = PlcServer(_free_port(), VARIABLES, {"PartPresent": True, "Parts": 7}).start()
    yield server
    server.stop()


def _until(what: str, check: Callable[[], Any], seconds: float = 60) -> Any:
    """Wait (generously) until ``check()`` is true; its value."""
    deadline = time.monotonic() + wait_s(seconds)
    while True:
        found = check()
        if found:
            return found
        assert time.monotonic() < deadline, f"waited {wait_s(seconds):g} s for {what}"
        time.sleep(0.05)


def _plc_camera(work: Path, endpoint: str, node: str, **extra: Any) -> tuple[Camera, list[str]]:
    camera = _camera(work, url="clip.avi", trigger="opcua", trigger_endpoint=endpoint, trigger_node=node,
                     reconnect_s=0.3, **extra)  # fmt: skip
    lines: list[str] = []
    camera.log = lines.append
    return camera, lines


def _none_for_a_while(camera: Camera, seconds: float = 1.5) -> None:
    """No frame is taken in ``seconds`` (the file's frames flow meanwhile: 5 a second)."""
    time.sleep(seconds)
    assert list(camera.poll()) == []


def _connected(camera: Camera) -> None:
    assert camera.plc is not None
    _until("the trigger to connect", lambda: camera.plc is not None and camera.plc._connected)


def test_each_rising_edge_of_a_boolean_takes_one_frame_and_the_value_at_connect_none(
    tmp_path: Path, plc: PlcServer
) -> None:
    _clip(tmp_path)
    camera, lines = _plc_camera(tmp_path, plc.endpoint, "ns=2;s=PartPresent")
    try:
        unknown = "a frame on each rising edge (a Boolean) or increase (a counter) of ns=2;s=PartPresent at "
        assert unknown + plc.endpoint in camera.describe()  # the type is read at the start-up look, not from the file
        camera.station_probe()
        assert f"(a frame on each rising edge of ns=2;s=PartPresent at {plc.endpoint}, saved in" in camera.describe()
        assert list(camera.poll()) == []  # starts the reader and the trigger
        _connected(camera)
        assert camera.station_warning() is None
        assert lines == [f"eagle station: camera {tmp_path / 'clip.avi'}: trigger {plc.endpoint}: connected; "
                         "ns=2;s=PartPresent (Boolean: each rising edge takes a frame) is True"]  # fmt: skip
        _none_for_a_while(camera)  # true at connect: no part arrived, no frame
        names = []
        for _ in range(3):
            plc.write("PartPresent", False)
            plc.write("PartPresent", True)  # a pulse as short as two writes: the subscription sees both
            names += [arrival.name for arrival in _drain(camera, until=1)]
        plc.write("PartPresent", False)  # a falling edge takes nothing
        _none_for_a_while(camera)
        assert len(names) == 3 and len(set(names)) == 3, names
        assert sorted(p.name for p in (tmp_path / "frames").glob("*.png")) == sorted(names)
        assert camera.plc is not None and camera.plc.triggers == 3
    finally:
        camera.close()
    assert camera.plc is not None and camera.plc._thread is not None and not camera.plc._thread.is_alive()


def test_the_trigger_asks_the_server_to_report_each_change_of_value_or_status(tmp_path: Path, plc: PlcServer) -> None:
    """A monitored item without a filter leaves the server its default trigger and deadband, which a server may set
    so that a quick false -> true -> false (or a counter's step) is not reported. The trigger asks for
    ``DataChangeTrigger.StatusValue`` with no deadband on a Boolean as on a counter: each change of the value (or
    of its status) is reported, and a new timestamp alone is not (a PLC rewriting true would read as a lost edge)."""
    from asyncua import ua

    _clip(tmp_path)
    for node in ("PartPresent", "Parts"):
        camera, _ = _plc_camera(tmp_path, plc.endpoint, f"ns=2;s={node}")
        try:
            camera.station_probe()
            list(camera.poll())
            _connected(camera)
        finally:
            camera.close()
    asked = plc.monitored()
    assert [name for name, _ in asked] == ["PartPresent", "Parts"], asked
    for name, found in asked:
        assert type(found).__name__ == "DataChangeFilter", (name, found)  # not an empty ExtensionObject: no filter
        assert (found.Trigger, found.DeadbandType, found.DeadbandValue) == (ua.DataChangeTrigger.StatusValue, 0, 0)


@pytest.mark.parametrize(
    "answer", ["BadMonitoredItemFilterUnsupported", "BadFilterNotAllowed", "BadMonitoredItemFilterInvalid"]
)
def test_a_server_refusing_the_filter_is_watched_without_one_and_said_once(tmp_path: Path, answer: str) -> None:
    """A PLC whose server takes no filter on a monitored item answers the item with a Bad code (filters are
    optional in OPC UA); the trigger then asks again for the same node without a filter (the server's default,
    StatusValue by the specification), says so in one line, and takes a frame on each rising edge as before.
    A reconnection to the same server does not say it again."""
    _clip(tmp_path)
    plc = PlcServer(_free_port(), VARIABLES, {"PartPresent": True}, refuse_filters=answer).start()
    camera, lines = _plc_camera(tmp_path, plc.endpoint, "ns=2;s=PartPresent")
    prefix = f"eagle station: camera {tmp_path / 'clip.avi'}: trigger {plc.endpoint}: "
    refused = (
        prefix + "the server refused the filter asking for each change of value or status of "
        f"ns=2;s=PartPresent ({answer}); watching it without one, at the server's default (usually the same)"
    )
    connected = prefix + "connected; ns=2;s=PartPresent (Boolean: each rising edge takes a frame) is True"
    try:
        camera.station_probe()
        assert list(camera.poll()) == []
        _connected(camera)
        assert camera.station_warning() is None
        assert lines == [refused, connected]
        asked = plc.monitored()
        assert [name for name, _ in asked] == ["PartPresent", "PartPresent"], asked
        kinds = [type(found).__name__ for _, found in asked]
        assert kinds == ["DataChangeFilter", "ExtensionObject"], asked  # asked again with an empty one: no filter
        for _ in range(2):
            plc.write("PartPresent", False)
            plc.write("PartPresent", True)
            assert len(_drain(camera, until=1)) == 1
        plc.stop()
        _until("the loss said", lambda: any("not connected: the connection was lost" in line for line in lines))
        plc.start()
        _until("the trigger to reconnect", lambda: camera.station_warning() is None)
        assert lines.count(refused) == 1, lines
        assert [name for name, _ in plc.monitored()] == ["PartPresent"] * 4  # asked again with, then without
        plc.write("PartPresent", False)
        plc.write("PartPresent", True)
        assert len(_drain(camera, until=1)) == 1
        assert camera.plc is not None and camera.plc.triggers == 3
    finally:
        camera.close()
        plc.stop()


def test_each_increase_of_a_counter_takes_one_frame_and_a_jump_says_the_parts_missed(
    tmp_path: Path, plc: PlcServer
) -> None:
    _clip(tmp_path)
    camera, lines = _plc_camera(tmp_path, plc.endpoint, "ns=2;s=Parts")
    prefix = f"eagle station: camera {tmp_path / 'clip.avi'}: trigger {plc.endpoint}: "
    try:
        camera.station_probe()
        assert f"a frame on each increase of counter ns=2;s=Parts at {plc.endpoint}" in camera.describe()
        list(camera.poll())
        _connected(camera)
        _none_for_a_while(camera)  # 7 at connect: no frame
        taken = []
        for value in (8, 9):  # +1 twice: two frames
            plc.write("Parts", value)
            taken += _drain(camera, until=1)
        assert len(taken) == 2
        plc.write("Parts", 12)  # +3: one frame, two parts said to have none
        taken += _drain(camera, until=1)
        plc.write("Parts", 0)  # reset: no frame
        _none_for_a_while(camera)
        plc.write("Parts", 1)
        taken += _drain(camera, until=1)
        plc.write("Parts", 2**32 - 2)  # near the UInt32's end (a jump: one frame)
        taken += _drain(camera, until=1)
        for value in (2**32 - 1, 0):  # +1, then the wrap to 0: the next part, not a reset (one frame each)
            plc.write("Parts", value)
            taken += _drain(camera, until=1)
        _none_for_a_while(camera, 0.5)
        assert len(taken) == 7 and len({a.name for a in taken}) == 7
        assert camera.describe().endswith(f"; {2 + 2**32 - 4} PLC parts without a frame so far (the log says which)")
        assert lines == [
            prefix + "connected; ns=2;s=Parts (UInt32: each increase takes a frame) is 7",
            prefix + "ns=2;s=Parts went from 9 to 12: one frame taken; 2 parts had no frame of their own",
            prefix + "ns=2;s=Parts went back from 12 to 0 (a reset): no frame; counting on from there",
            prefix + f"ns=2;s=Parts went from 1 to {2**32 - 2}: one frame taken; {2**32 - 4} parts had no frame of "
            "their own",
        ], lines
    finally:
        camera.close()


def test_a_plc_restarted_is_said_then_reconnected_and_what_changed_meanwhile_is_not_taken(
    tmp_path: Path, plc: PlcServer
) -> None:
    _clip(tmp_path)
    camera, lines = _plc_camera(tmp_path, plc.endpoint, "ns=2;s=Parts")
    prefix = f"eagle station: camera {tmp_path / 'clip.avi'}: trigger {plc.endpoint}: "
    try:
        list(camera.poll())
        _connected(camera)
        plc.write("Parts", 8)
        assert len(_drain(camera, until=1)) == 1
        plc.stop()
        warning = _until("the status to say the trigger is not connected", camera.station_warning)
        assert warning.startswith(f"trigger {plc.endpoint} not connected since ")
        assert warning.endswith("; trying again every 0.3 s; no frame is taken meanwhile")
        _until("the log to say so", lambda: any("not connected:" in line for line in lines))
        assert lines[1].startswith(prefix + "not connected: "), lines
        _until("a failed reconnection", lambda: "cannot connect (Connection refused)" in str(camera.station_warning()))
        _none_for_a_while(camera, 0.5)
        plc.initial["Parts"] = 15  # seven parts counted while the station could not see them
        plc.start()
        _until("the trigger to reconnect", lambda: camera.station_warning() is None)
        assert lines[-1] == prefix + "connected; ns=2;s=Parts (UInt32: each increase takes a frame) is 15; it was 8 " \
                                     "when the connection was lost", lines  # fmt: skip
        _none_for_a_while(camera)  # not invented: no frame for the parts counted meanwhile
        plc.write("Parts", 16)  # triggers again
        assert len(_drain(camera, until=1)) == 1
        assert camera.plc is not None and camera.plc.triggers == 2
        plc.stop()  # lost again: said again
        _until("the second loss said", lambda: sum(prefix + "not connected: the connection was lost" in line
                                                   for line in lines) == 2)  # fmt: skip
    finally:
        camera.close()


def test_a_node_missing_or_of_another_type_is_one_line_naming_node_and_endpoint(tmp_path: Path) -> None:
    port = _free_port()
    _clip(tmp_path, seconds=60)
    missing, _ = _plc_camera(tmp_path, f"opc.tcp://127.0.0.1:{port}/eagle/plc", "ns=2;s=Nope")
    server = PlcServer(port, VARIABLES)
    try:
        missing.station_probe()  # the PLC is down: no error at start, the trigger says so and tries again
        list(missing.poll())
        _until("the warning", lambda: "cannot connect (Connection refused)" in str(missing.station_warning()))
        server.start()  # found once it is up: a warning naming the node, tried again
        warning = _until(
            "the node's warning",
            lambda: "does not exist" in str(missing.station_warning()) and missing.station_warning(),
        )
        assert f": trigger_node ns=2;s=Nope does not exist on {server.endpoint}; trying again every 0.3 s" in warning
        with pytest.raises(StationConfigError) as caught:  # the PLC up at start: the station is refused
            missing.station_probe()
        assert str(caught.value) == f"test: source: trigger_node ns=2;s=Nope does not exist on {server.endpoint}"
        typed, _ = _plc_camera(tmp_path, server.endpoint, "ns=2;s=Label")
        with pytest.raises(StationConfigError) as caught:
            typed.station_probe()
        assert str(caught.value) == (f"test: source: trigger_node ns=2;s=Label on {server.endpoint} holds String; a "
                                     "trigger node must be a Boolean (a part-present bit: each rising edge takes a "
                                     "frame) or an integer (a part counter: each increase takes a frame)")  # fmt: skip
        typed.close()
    finally:
        missing.close()
        server.stop()


TRIGGER_ERRORS = [
    # (the camera's options beyond url = "clip.avi", the one line after "test: source: ")
    ({"trigger": "opcua", "trigger_node": "ns=2;s=P"}, "trigger_endpoint is missing"),
    ({"trigger": "opcua", "trigger_endpoint": "opc.tcp://plc:4840"}, "trigger_node is missing"),
    ({"trigger": "opcua", "trigger_endpoint": "http://plc:4840/", "trigger_node": "ns=2;s=P"},
     "trigger_endpoint 'http://plc:4840/' is not an opc.tcp://host:port/... endpoint"),
    ({"trigger": "opcua", "trigger_endpoint": "opc.tcp://u:pw@plc:4840", "trigger_node": "ns=2;s=P"},
     "trigger_endpoint has a user in it; use username and password_env (the password stays out of the file)"),
    ({"trigger": "opcua", "trigger_endpoint": "opc.tcp://plc:4840", "trigger_node": "ns=2;x=P"},
     "trigger_node 'ns=2;x=P' is not an OPC UA node id; write e.g. 'ns=2;s=Verdict', 'ns=3;i=1001' or "
     "'nsu=urn:plc;s=Verdict'"),
    ({"trigger": "opcua", "trigger_endpoint": "opc.tcp://plc:4840", "trigger_node": "ns=2;s=P",
      "password_env": "EAGLE_TEST_SECRET"},
     "password_env needs username (OPC UA sends a password only with a user name)"),
    ({"every_ms": 100, "trigger_endpoint": "opc.tcp://plc:4840"},
     "trigger_endpoint is an option of trigger = \"opcua\" (a frame on a PLC's signal), which this camera does not "
     "have"),
    ({"trigger": "plc"}, "trigger is 'plc'; choose one of 'http', 'opcua'"),
]  # fmt: skip


@pytest.mark.parametrize(("table", "message"), TRIGGER_ERRORS, ids=[m[:40] for _, m in TRIGGER_ERRORS])
def test_a_bad_trigger_option_is_one_line_naming_it(tmp_path: Path, table: dict[str, Any], message: str) -> None:
    _video(tmp_path / "clip.avi", _frames(2, size=32))
    with pytest.raises(StationConfigError) as caught:
        Camera(Options({"kind": "camera", "url": "clip.avi", **table}, "test: source", tmp_path))
    assert str(caught.value) == f"test: source: {message}"


def _status(stations: Path) -> dict[str, Any]:
    code, out = _run(stations, "status")
    assert code == 0, out
    return dict(json.loads(out[out.index("[") :])[0])


def test_eagle_station_run_takes_a_frame_on_each_plc_signal_and_says_when_the_plc_is_away(
    model_dir: Path, tmp_path: Path
) -> None:
    """The PLC is down when the station starts: it runs, and ``eagle station status`` says the trigger is not
    connected; once the PLC is up, three rising edges are three inspections, exactly."""
    _clip(tmp_path)
    port = _free_port()
    server = PlcServer(port, VARIABLES, {"PartPresent": True})
    endpoint = server.endpoint
    source = f'url = "clip.avi", trigger = "opcua", trigger_endpoint = "{endpoint}", trigger_node = ' \
             '"ns=2;s=PartPresent", reconnect_s = 0.3'  # fmt: skip
    stations = _camera_stations(tmp_path, model_dir, source)
    process = subprocess.Popen([sys.executable, "-m", "eagle_iad.cli", "station", "run", str(stations)],
                               cwd=tmp_path, env=_env(), stderr=subprocess.PIPE, text=True)  # fmt: skip
    frames = tmp_path / "frames"
    try:
        status = _until("the status to say the trigger is not connected", lambda: (found := _status(stations))
                        and any("cannot connect" in w and "trying again" in w for w in found.get("warnings", ()))
                        and found)  # fmt: skip
        # Between the start-up look (which found the PLC down) and the intake's first look for an image (the
        # station still starting), the trigger is not watching yet and says it is "tried again once
        # the station takes images": the state asserted here is the one once the station takes images.
        (warning,) = [w for w in status["warnings"] if w.startswith("source: ")]
        assert warning.startswith(f"source: trigger {endpoint} not connected since ")
        assert status["state"] == "waiting: " + warning[len("source: ") :]  # takes no image: not "running"
        assert warning.endswith(": cannot connect (Connection refused); trying again every 0.3 s; no frame is taken "
                                "meanwhile")  # fmt: skip
        assert f"a frame on each rising edge (a Boolean) or increase (a counter) of ns=2;s=PartPresent at {endpoint}" \
            in status["source"]  # fmt: skip
        server.start()
        _until("the status to clear", lambda: not any(w.startswith("source: ") for w in _status(stations)["warnings"]))
        assert process.poll() is None and not list(frames.glob("*.png"))  # true at connect: no frame
        for count in (1, 2, 3):
            server.write("PartPresent", False)
            server.write("PartPresent", True)
            _until(f"frame {count}", lambda: len(list(frames.glob("*.png"))) == count, seconds=120)  # noqa: B023
        _until("3 verdicts", lambda: len(_history(tmp_path)) == 3, seconds=120)
        time.sleep(1.5)  # no further frame comes
        process.send_signal(signal.SIGTERM)
        _, log = process.communicate(timeout=wait_s(60))
    finally:
        process.kill()
        process.communicate()
        server.stop()
    assert process.returncode == 143, log
    history = _history(tmp_path)
    assert len(history) == 3 and len(list(frames.glob("*.png"))) == 3, log
    assert all(str(r.source).startswith(f"{tmp_path / 'clip.avi'} frame ") for r in history)
    camera = f"eagle station line-1: camera {tmp_path / 'clip.avi'}: trigger {endpoint}: "  # the station named
    assert f"{camera}not connected: cannot connect (Connection refused)" in log
    assert f"{camera}connected; ns=2;s=PartPresent (Boolean: each rising edge takes a frame) is True" in log
    assert "Traceback" not in log


def test_a_missing_trigger_node_stops_eagle_station_run_with_one_line(
    model_dir: Path, tmp_path: Path, plc: PlcServer
) -> None:
    _clip(tmp_path, seconds=10)
    source = f'url = "clip.avi", trigger = "opcua", trigger_endpoint = "{plc.endpoint}", trigger_node = "ns=2;s=Nope"'
    stations = _camera_stations(tmp_path, model_dir, source)
    code, out = _run(stations, "run", "--until-idle")
    assert (code, out) == (2, f"eagle: error: {stations}: station 'line-1': source: trigger_node ns=2;s=Nope does not "
                              f"exist on {plc.endpoint}\n"), out  # fmt: skip


def test_the_service_takes_a_plc_triggered_camera_and_its_status_says_when_the_plc_is_away(
    model_dir: Path, tmp_path: Path
) -> None:
    """``POST /v1/stations``: a node the PLC does not have is a 400 naming it; a sound one is created, its
    ``source`` names the rule, a counter's increase is an inspection, and a PLC stopped is a warning of the
    station's ``GET`` until it is back."""
    from conftest import LiveServer
    from test_service import call
    from test_station_service import _app, _post

    data = tmp_path / "data"
    data.mkdir()
    _clip(data)
    server = PlcServer(_free_port(), VARIABLES, {"Parts": 3}).start()
    source = {"kind": "camera", "url": "clip.avi", "trigger": "opcua", "trigger_endpoint": server.endpoint,
              "trigger_node": "ns=2;s=Nope", "reconnect_s": 0.3, "frames": "frames"}  # fmt: skip
    body = {"name": "line-1", "category": "mono", "source": source, "sinks": [{"kind": "folder", "path": "sorted"}]}
    try:
        with LiveServer(_app(tmp_path, model_dir, data)) as live:
            status, answer = _post(live.base, "/v1/stations", body)
            assert (status, answer["error"]["message"]) == (
                400, f"station 'line-1': source: trigger_node ns=2;s=Nope does not exist on {server.endpoint}"
            ), answer  # fmt: skip
            source["trigger_node"] = "ns=2;s=Parts"
            status, answer = _post(live.base, "/v1/stations", body)
            assert status == 201, answer

            def station() -> dict[str, Any]:
                return dict(call("GET", f"{live.base}/v1/stations/line-1")[2])

            assert f"a frame on each increase of counter ns=2;s=Parts at {server.endpoint}" in station()["source"]
            _until("the trigger to connect", lambda: not any(w.startswith("source: ") for w in station()["warnings"]))
            assert station()["state"] == "running"
            server.write("Parts", 4)
            _until("the inspection", lambda: station()["inspected"] == 1, seconds=120)
            server.stop()
            warning = _until("the warning", lambda: [w for w in station()["warnings"] if " since " in w])
            assert warning[0].startswith(f"source: trigger {server.endpoint} not connected since "), warning
            # it takes no image meanwhile: waiting for its PLC, as a hot folder that cannot take images waits
            state = station()["state"]
            assert state.startswith(f"waiting: trigger {server.endpoint} not connected since "), state
            server.start()
            _until("the warning to clear", lambda: not any(w.startswith("source: ") for w in station()["warnings"]))
            assert station()["state"] == "running"
            server.write("Parts", 5)  # 3 again after the restart (its initial value): an increase
            _until("the second inspection", lambda: station()["inspected"] == 2, seconds=120)
            assert station()["inspected"] == 2
    finally:
        server.stop()


@pytest.fixture
def silent_plc() -> Iterator[str]:
    """The endpoint of a PLC that takes the connection and never answers (a hung PLC, or a firewall that lets the
    handshake through): a socket that listens and never accepts, so every request to it runs to its timeout."""
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    try:
        yield f"opc.tcp://127.0.0.1:{listener.getsockname()[1]}/eagle/plc"
    finally:
        listener.close()


def test_a_plc_that_does_not_answer_is_a_warning_of_the_station_created_not_a_request_held(
    model_dir: Path, tmp_path: Path, silent_plc: str
) -> None:
    """``POST /v1/stations`` looked at the PLC for the request timeout (10 s) before it answered, holding the
    service's lock on station changes, when the PLC did not answer. The start-up look waits :data:`PROBE_S` (a PLC
    on the line's network answers in milliseconds); the station is created and its status says at once that the
    PLC was not reached (as a sink not reached at start), not that it is connecting."""
    from conftest import LiveServer
    from test_service import call
    from test_station_service import _app, _post

    from eagle_iad.station.sources.opcua_trigger import PROBE_S

    data = tmp_path / "data"
    data.mkdir()
    _clip(data)
    source = {"kind": "camera", "url": "clip.avi", "trigger": "opcua", "trigger_endpoint": silent_plc,
              "trigger_node": "ns=2;s=Parts", "reconnect_s": 0.3, "frames": "frames"}  # fmt: skip
    body = {"name": "line-1", "category": "mono", "source": source, "sinks": [{"kind": "folder", "path": "sorted"}]}
    with LiveServer(_app(tmp_path, model_dir, data)) as live:
        status, answer = _post(live.base, "/v1/stations", body)
        assert status == 201, answer
        (warning,) = [w for w in answer["warnings"] if w.startswith("source: ")]
        assert warning.startswith(f"source: trigger {silent_plc} not connected since "), warning
        assert f": cannot connect (no answer within {PROBE_S:g} s); " in warning, warning
        status, _, info = call("GET", f"{live.base}/v1/stations/line-1")
        assert status == 200 and any(f"no answer within {PROBE_S:g} s" in w for w in info["warnings"]), info


def test_a_paused_station_is_not_said_to_be_connecting_to_its_plc(tmp_path: Path, plc: PlcServer) -> None:
    """A station paused before its first image (created paused by a change, or kept paused over a restart) does not
    open its camera nor its PLC: its status said ``not connected yet (connecting)`` for as long as it stayed paused.
    Nothing is connecting: it says nothing (its state says paused), or, where the start-up look could not reach the
    PLC, that, and that it is tried again once the station takes images."""
    _clip(tmp_path, seconds=60)
    reached, _ = _plc_camera(tmp_path, plc.endpoint, "ns=2;s=Parts")
    away, _ = _plc_camera(tmp_path, f"opc.tcp://127.0.0.1:{_free_port()}/eagle/plc", "ns=2;s=Parts")
    try:
        reached.station_probe()
        assert reached.station_warning() is None
        away.station_probe()
        warning = away.station_warning()
        assert warning is not None and warning.startswith(f"trigger {away.plc and away.plc.endpoint} not connected "
                                                          "since "), warning  # fmt: skip
        assert warning.endswith(": cannot connect (Connection refused); tried again once the station takes images")
        list(reached.poll())  # resumed: its first poll watches the PLC
        _connected(reached)
        assert reached.station_warning() is None
        list(away.poll())
        _until("the trigger's own try", lambda: "trying again every 0.3 s" in str(away.station_warning()))
    finally:
        reached.close()
        away.close()


def test_a_station_changed_while_paused_is_not_said_to_be_connecting(
    model_dir: Path, tmp_path: Path, plc: PlcServer
) -> None:
    """The service's view of the same: a paused station changed (``PATCH``) starts paused, its new camera never
    polled; its ``GET`` said ``not connected yet (connecting)`` for as long as it stayed paused."""
    from conftest import LiveServer
    from test_service import call
    from test_station_service import _app, _patch, _post

    data = tmp_path / "data"
    data.mkdir()
    _clip(data)
    source = {"kind": "camera", "url": "clip.avi", "trigger": "opcua", "trigger_endpoint": plc.endpoint,
              "trigger_node": "ns=2;s=Parts", "reconnect_s": 0.3, "frames": "frames"}  # fmt: skip
    body = {"name": "line-1", "category": "mono", "source": source, "sinks": [{"kind": "folder", "path": "sorted"}]}
    with LiveServer(_app(tmp_path, model_dir, data)) as live:
        assert _post(live.base, "/v1/stations", body)[0] == 201
        assert _post(live.base, "/v1/stations/line-1/pause")[0] == 200
        status, answer = _patch(live.base, "line-1", {"source": {"reconnect_s": 0.5}})
        assert status == 200, answer
        for shown in (answer, call("GET", f"{live.base}/v1/stations/line-1")[2]):
            assert shown["state"] == "paused", shown
            assert not [w for w in shown["warnings"] if w.startswith("source: ")], shown


def test_boolean_edges_the_server_dropped_are_said_and_counted_as_a_counters_jump(
    tmp_path: Path, plc: PlcServer
) -> None:
    """A part-present bit toggling faster than the PLC's server publishes (more changes than the subscription's
    queue of :data:`QUEUE_SIZE`): the server drops the oldest, and the bit came false again after false, or true
    after true. Those edges vanished silently while a counter's jump says its parts missed; now the same value twice
    (same status) is said in the log, true again takes its frame (the false before it was lost), false again counts
    a part without a frame, and the count is in the status' source line, beside the counter's missed parts."""
    from eagle_iad.station.sources.opcua_trigger import OVERFLOW, QUEUE_SIZE

    _clip(tmp_path)
    plc.write("PartPresent", False)
    camera, lines = _plc_camera(tmp_path, plc.endpoint, "ns=2;s=PartPresent")
    prefix = f"eagle station: camera {tmp_path / 'clip.avi'}: trigger {plc.endpoint}: "
    try:
        camera.station_probe()
        list(camera.poll())
        _connected(camera)
        assert camera.plc is not None
        plc.write("PartPresent", True)  # one part the ordinary way: the subscription's first value is behind us
        plc.write("PartPresent", False)
        _until(
            "the first part", lambda: camera.plc is not None and camera.plc.triggers == 1 and camera.plc._last is False
        )
        assert len(_drain(camera, until=1)) == 1
        toggles = [i % 2 == 0 for i in range(2 * QUEUE_SIZE + 1)]  # true, false, ..., true: 101 rising edges
        plc.write_burst("PartPresent", toggles)  # the server keeps the last 100: false, true, ..., true
        _until("the burst taken", lambda: camera.plc is not None and camera.plc.triggers == 51)
        time.sleep(0.5)
        assert (camera.plc.triggers, camera.plc.missed) == (51, 1)
        said = [line for line in lines if "twice in a row" in line]
        assert said == [prefix + f"ns=2;s=PartPresent was false twice in a row: the server dropped the changes between "
                        f"(more than {QUEUE_SIZE} between two publishes); at least 1 part had no frame of its own (1 "
                        "so far)"], lines  # fmt: skip
        assert camera.describe().endswith("; 1 PLC part without a frame so far (the log says which)"), camera.describe()
        plc.write_burst("PartPresent", [False, True] * QUEUE_SIZE + [False])  # kept: true (again), false, ..., false
        _until("true again taken", lambda: camera.plc is not None and camera.plc.triggers == 51 + QUEUE_SIZE // 2)
        time.sleep(0.5)
        assert (camera.plc.triggers, camera.plc.missed) == (51 + QUEUE_SIZE // 2, 1)  # its true taken as an edge
        # A server that flags the first value after those it dropped (OPC UA's Overflow bit): an even number lost,
        # which no repeated value shows, is said and counted too (at least one rising edge among them).
        plc.write("PartPresent", True, status=OVERFLOW)
        _until("the overflow said", lambda: camera.plc is not None and camera.plc.missed == 2)
        assert camera.plc.triggers == 52 + QUEUE_SIZE // 2
        assert lines[-1] == prefix + (f"ns=2;s=PartPresent: the server dropped changes before this one (its queue "
                                      f"overflowed: more than {QUEUE_SIZE} between two publishes); at least 1 part "
                                      "had no frame of its own (2 so far)"), lines  # fmt: skip
        said = [line for line in lines if "twice in a row" in line]
        assert said[1:] == [prefix + f"ns=2;s=PartPresent was true twice in a row: the server dropped the changes "
                            f"between (more than {QUEUE_SIZE} between two publishes); taken as a rising edge (one "
                            "frame); parts among the changes dropped had no frame of their own"], lines  # fmt: skip
    finally:
        camera.close()
