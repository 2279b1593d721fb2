"""The MQTT sink against a real Mosquitto broker, with real stations (``eagle station run`` processes).

What must hold: every verdict is published on ``eagle/<station>/<category>/<decision>`` in the order it was
stored, acknowledged by the broker (QoS 1), keyed by its record id; the last one is retained on the
``last`` topic; the status topic says ``online`` while connected and ends ``offline`` (retained) when the
station stops; a broker that is down when the station starts gets every verdict once it is up, and the
station neither crashes nor loses one meanwhile (its start-up probe only warns); a bad option, or a password
the broker refuses at start, is one line naming the field.

Mosquitto is Debian's ``mosquitto`` (``make test-python`` installs it); the broker-backed tests skip,
saying so, only where its binary is missing.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
import test_station
from conftest import LiveServer, wait_s
from paho.mqtt.enums import CallbackAPIVersion
from test_service import call
from test_station import Running, _cells, _drop, _env, _free_port, _history, _run, _stations, _status, assert_refused
from test_station_service import _app, _patch, _post

from eagle_iad.station.parts import NotChecked, Options, StationConfigError
from eagle_iad.station.sinks.mqtt import PROTOCOLS, MqttSink
from eagle_iad.station.status import open_read_only

model_dir = test_station.model_dir  # the module-scoped fixture: a small real model of elpv mono cells

MOSQUITTO = shutil.which("mosquitto") or next(
    (path for path in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if os.access(path, os.X_OK)), None
)
#: Mosquitto's dynamic security plugin, which can bind a user to one client id (Debian ships it with mosquitto).
DYNSEC = next((path for path in ("/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so",
                                 "/usr/lib/aarch64-linux-gnu/mosquitto_dynamic_security.so",
                                 "/usr/lib/mosquitto_dynamic_security.so") if os.path.exists(path)), None)  # fmt: skip
needs_mosquitto = pytest.mark.skipif(MOSQUITTO is None, reason="mosquitto is not installed (apt-get install mosquitto)")


class Broker:
    """A real Mosquitto on ``port`` (127.0.0.1 only), configured in ``folder``; ``persistent`` keeps sessions
    and retained messages across a restart (saved when it stops); ``password_file`` (``mosquitto_passwd``'s)
    admits only its users; ``acl_file`` (mosquitto's) says which topics a client may publish to (a publication
    denied is a PUBACK *not authorized* under MQTT 5: a refusal)."""

    def __init__(
        self, folder: Path, port: int, *, persistent: bool = False, password_file: Path | None = None,
        dynsec: Path | None = None, acl_file: Path | None = None,
    ) -> None:  # fmt: skip
        self.folder = folder
        self.port = port
        self.persistent = persistent
        self.password_file = password_file
        #: The dynamic security plugin's configuration (its clients, each maybe bound to one client id).
        self.dynsec = dynsec
        self.acl_file = acl_file
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Broker:
        assert MOSQUITTO is not None
        self.folder.mkdir(parents=True, exist_ok=True)
        lines = [f"listener {self.port} 127.0.0.1"]
        if self.dynsec is not None:
            lines += ["allow_anonymous false", f"plugin {DYNSEC}", f"plugin_opt_config_file {self.dynsec}"]
        elif self.password_file is None:
            lines.append("allow_anonymous true")
        else:
            lines += ["allow_anonymous false", f"password_file {self.password_file}"]
        if self.acl_file is not None:
            lines.append(f"acl_file {self.acl_file}")
        if self.persistent:
            lines += ["persistence true", f"persistence_location {self.folder}/"]
        else:
            lines.append("persistence false")
        if os.geteuid() == 0:
            lines.append("user root")  # as root it would switch to user mosquitto, who cannot write here
        config = self.folder / "mosquitto.conf"
        config.write_text("\n".join(lines) + "\n")
        with open(self.folder / "mosquitto.log", "ab") as log:
            self.process = subprocess.Popen([MOSQUITTO, "-c", str(config)], stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + wait_s(30)
        while True:
            if self.process.poll() is not None:
                pytest.fail(f"mosquitto exited with {self.process.returncode}:\n{self.log()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"mosquitto did not accept connections on port {self.port}:\n{self.log()}")
                time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=wait_s(30))
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None

    def log(self) -> str:
        path = self.folder / "mosquitto.log"
        return path.read_text(errors="replace") if path.exists() else ""


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    if MOSQUITTO is None:
        pytest.skip("mosquitto is not installed (apt-get install mosquitto)")
    running = Broker(tmp_path / "broker", _free_port()).start()
    yield running
    running.stop()


class Subscriber:
    """A paho client subscribed (QoS 1 unless told) to ``topic``, recording every message it gets.

    ``persistent``: an MQTT 3.1.1 session the broker keeps while it is away (clean_session false), so
    messages published meanwhile are queued for it.
    """

    def __init__(
        self, port: int, client_id: str, *, topic: str = "eagle/#", qos: int = 1, persistent: bool = False
    ) -> None:
        self.messages: list[mqtt.MQTTMessage] = []
        self._lock = threading.Lock()
        subscribed = threading.Event()
        if persistent:
            self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False,
                                      protocol=mqtt.MQTTv311)  # fmt: skip
        else:
            self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)

        def on_message(client: Any, userdata: Any, message: mqtt.MQTTMessage) -> None:
            with self._lock:
                self.messages.append(message)

        self.client.on_message = on_message
        self.client.on_subscribe = lambda *args: subscribed.set()
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.client.subscribe(topic, qos=qos)
        assert subscribed.wait(wait_s(30)), "the broker did not acknowledge the subscription"

    def got(self) -> list[mqtt.MQTTMessage]:
        with self._lock:
            return list(self.messages)

    def wait(self, done: Callable[[list[mqtt.MQTTMessage]], bool], what: str, seconds: float = 60) -> None:
        deadline = time.monotonic() + wait_s(seconds)
        while not done(self.got()):
            assert time.monotonic() < deadline, f"{what}; got {[(m.topic, m.payload[:40]) for m in self.got()]}"
            time.sleep(0.05)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _mqtt(port: int, **extra: Any) -> str:
    options = "".join(f"\n{key} = {json.dumps(value)}" for key, value in extra.items())
    return f"""
[[station.sink]]
kind = "mqtt"
host = "127.0.0.1"
port = {port}{options}
"""


def _verdicts(messages: list[mqtt.MQTTMessage]) -> list[mqtt.MQTTMessage]:
    return [m for m in messages if not m.topic.endswith(("/status", "/last"))]


def _ids(messages: list[mqtt.MQTTMessage]) -> list[str]:
    return [json.loads(m.payload)["record"]["id"] for m in messages]


def _statuses(messages: list[mqtt.MQTTMessage]) -> list[bytes]:
    return [m.payload for m in messages if m.topic == "eagle/line-1/status"]


@needs_mosquitto
def test_every_verdict_is_published_in_order_with_the_last_one_retained(
    model_dir: Path, tmp_path: Path, broker: Broker
) -> None:
    names = _drop(tmp_path / "incoming", _cells(4))
    watcher = Subscriber(broker.port, "eagle-test-watcher")
    try:
        code, log = _run(_stations(tmp_path, model_dir, _mqtt(broker.port)), "run", "--until-idle")
        assert code == 0, log
        history = _history(tmp_path)
        assert [r.image_name for r in history] == names
        watcher.wait(lambda got: _statuses(got)[-1:] == [b"offline"], "the station did not say offline when it ended")
    finally:
        watcher.close()
    got = watcher.got()
    verdicts = _verdicts(got)
    assert [m.topic for m in verdicts] == [f"eagle/line-1/mono/{r.decision or 'undecided'}" for r in history]
    assert _ids(verdicts) == [r.id for r in history]  # each once, in stored order
    assert all(m.qos == 1 for m in verdicts)
    bodies = [json.loads(m.payload) for m in verdicts]  # what the webhook posts: station, record, image, source
    assert [b["record"]["score"] for b in bodies] == [r.score for r in history]
    assert {b["station"] for b in bodies} == {"line-1"}
    assert [b["source"] for b in bodies] == [str(tmp_path / "incoming" / n) for n in names]
    assert [m.properties.UserProperty for m in verdicts] == [[("Idempotency-Key", r.id)] for r in history]
    assert _ids([m for m in got if m.topic == "eagle/line-1/last"]) == [r.id for r in history]
    assert _statuses(got) == [b"online", b"offline"]
    # one who subscribes afterwards gets the retained last verdict and the station's status at once
    late = Subscriber(broker.port, "eagle-test-late", topic="eagle/line-1/+")
    try:
        late.wait(lambda got: len(got) >= 2, "the retained last verdict and status did not arrive")
    finally:
        late.close()
    retained = {m.topic: m for m in late.got()}
    assert set(retained) == {"eagle/line-1/last", "eagle/line-1/status"}
    assert all(m.retain for m in retained.values())
    assert json.loads(retained["eagle/line-1/last"].payload) == bodies[-1]
    assert retained["eagle/line-1/status"].payload == b"offline"


def _mqtt_outbox(work: Path) -> list[tuple[str, str | None]]:
    """The MQTT sink's outbox rows (state, last error), read while the station runs; none before it exists."""
    try:
        db = open_read_only(work / "state" / "eagle.sqlite3")
    except sqlite3.Error:
        return []
    try:
        return [(str(s), e) for s, e in db.execute("SELECT state, last_error FROM outbox WHERE sink = 'mqtt'")]
    except sqlite3.Error:
        return []
    finally:
        db.close()


@needs_mosquitto
def test_a_broker_down_at_start_gets_every_verdict_once_it_is_up(model_dir: Path, tmp_path: Path) -> None:
    port = _free_port()
    broker = Broker(tmp_path / "broker", port, persistent=True)
    # A subscriber's session made in the broker's first life and kept across its restart: the verdicts
    # published before the test's subscriber is back are queued for it, so none can slip past unseen.
    broker.start()
    Subscriber(port, "eagle-test-line", persistent=True).close()
    broker.stop()
    names = _drop(tmp_path / "incoming", _cells(4))
    stations = _stations(tmp_path, model_dir, _mqtt(port, retry_base_s=0.2, retry_max_s=1.0, max_attempts=1000))
    watcher: Subscriber | None = None
    with open(tmp_path / "station.log", "w") as log:
        process = subprocess.Popen([sys.executable, "-m", "eagle_iad.cli", "station", "run", str(stations)],
                                   cwd=tmp_path, env=_env(), stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
    try:
        deadline = time.monotonic() + wait_s(300)
        while not (len(rows := _mqtt_outbox(tmp_path)) == 4 and any(error for _, error in rows)):
            assert process.poll() is None, (tmp_path / "station.log").read_text()
            assert time.monotonic() < deadline, "the station did not inspect 4 images and try to deliver them"
            time.sleep(0.2)
        assert {state for state, _ in rows} == {"pending"}  # nothing delivered, nothing given up
        assert any("Connection refused" in (error or "") for _, error in rows), rows
        # the start-up probe found the broker down: a warning, and the station runs on
        assert (f"eagle station line-1: warning: sink mqtt: mqtt 127.0.0.1:{port}: Connection refused; verdicts "
                "wait in the outbox until it is reachable\n") in (tmp_path / "station.log").read_text()  # fmt: skip
        broker.start()  # the same port, some seconds after the station started
        watcher = Subscriber(port, "eagle-test-line", persistent=True)
        watcher.wait(lambda got: len(_verdicts(got)) >= 4, "the verdicts did not arrive once the broker was up", 120)
        assert process.poll() is None
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=wait_s(60)) == 143, (tmp_path / "station.log").read_text()
        watcher.wait(lambda got: _statuses(got)[-1:] == [b"offline"], "the station did not say offline when stopped")
    finally:
        process.kill()
        process.wait()
        if watcher is not None:
            watcher.close()
        broker.stop()
    history = _history(tmp_path)
    assert [r.image_name for r in history] == names
    assert _ids(_verdicts(watcher.got())) == [r.id for r in history]  # each once, in stored order
    assert {state for state, _ in _mqtt_outbox(tmp_path)} == {"delivered"}
    assert "Traceback" not in (tmp_path / "station.log").read_text()


@needs_mosquitto
def test_a_broker_stopped_mid_run_is_one_line_and_a_status_warning_until_it_is_back(
    model_dir: Path, tmp_path: Path
) -> None:
    port = _free_port()
    broker = Broker(tmp_path / "broker", port).start()
    _drop(tmp_path / "incoming", _cells(1))
    stations = _stations(tmp_path, model_dir, _mqtt(port, retry_base_s=0.1, retry_max_s=0.5, max_attempts=1000))
    station = Running(stations, "--quiet")
    try:
        station.until(lambda: [state for state, _ in _mqtt_outbox(tmp_path)] == ["delivered"], "the first verdict")
        broker.stop()
        _drop(tmp_path / "incoming", _cells(3)[1:])
        station.until(lambda: station.saw("sink mqtt is failing") and len(_mqtt_outbox(tmp_path)) == 3, "a line")
        (warning,) = _status(stations)["warnings"]
        assert warning.startswith("sink mqtt: 2 deliveries (verdicts and refusals) wait, the oldest stored ") and (
            f"; last error: mqtt 127.0.0.1:{port}: " in warning), warning  # fmt: skip
        broker.start()
        station.until(lambda: {state for state, _ in _mqtt_outbox(tmp_path)} == {"delivered"}, "all delivered")
        station.until(lambda: station.saw("sink mqtt delivers again"), "no line saying it delivers again")
        assert _status(stations)["warnings"] == []
        assert station.stop() == 143
    finally:
        station.process.kill()
        broker.stop()
    log = station.log()
    assert log.count("sink mqtt is failing") == 1 and log.count("sink mqtt delivers again") == 1, log
    assert len(_history(tmp_path)) == 3 and "Traceback" not in log


@needs_mosquitto
def test_the_sink_alone_speaks_mqtt_3_1_1_and_fails_cleanly_while_the_broker_is_down(
    tmp_path: Path, broker: Broker
) -> None:
    """The sink without a station: MQTT 3.1.1, QoS 2, a user's topics; a refused connection is a DeliveryError."""
    from eagle_iad.station.parts import DeliveryError

    def sink(port: int) -> MqttSink:
        table = {"kind": "mqtt", "host": "127.0.0.1", "port": port, "protocol": "3.1.1", "qos": 2, "timeout_s": 30,
                 "topic": "plant/{category}/{id}", "last_topic": "plant/{station}/{category}/last",
                 "status_topic": "plant/{station}/alive"}  # fmt: skip
        return MqttSink(Options(table, "test", tmp_path), "line-mqtt")

    payload = {"station": "s1", "record": {"id": "r1", "category": "mono", "decision": None}, "image": "", "source": ""}
    down = sink(_free_port())
    with pytest.raises(DeliveryError, match="Connection refused"):
        down.deliver(payload, "r1")
    down.close()  # never connected: nothing to say, nothing to wait for
    watcher = Subscriber(broker.port, "eagle-test-plant", topic="plant/#", qos=2)
    up = sink(broker.port)
    try:
        up.deliver(payload, "r1")
        up.deliver({**payload, "record": {**payload["record"], "id": "r2", "decision": "normal"}}, "r2")
        up.close()
        watcher.wait(lambda got: len(got) >= 6, "the sink's messages did not arrive")
    finally:
        watcher.close()
    got = watcher.got()  # the status (QoS 1) may overtake QoS 2 flows, so each is in order on its own
    assert [(m.topic, m.qos) for m in got if m.topic != "plant/s1/alive"] == [
        ("plant/mono/r1", 2), ("plant/s1/mono/last", 2), ("plant/mono/r2", 2), ("plant/s1/mono/last", 2),
    ]  # fmt: skip
    assert [(m.payload, m.qos) for m in got if m.topic == "plant/s1/alive"] == [(b"online", 1), (b"offline", 1)]
    assert " as eagle-station-s1-line-mqtt " in broker.log()  # the client id: eagle-station-<station>-<sink name>


@needs_mosquitto
def test_a_probe_while_the_sink_is_connected_does_not_push_it_off(tmp_path: Path, broker: Broker) -> None:
    """A probe (a PATCH looks at the broker while the station runs) connects with a client id of its own: the live
    connection stays (earlier: the same id, so the broker took it over, published its retained last will
    ``offline``, then ``online`` again, and a PUBACK in flight was lost: a verdict sent twice)."""
    where = "stations.toml: station 's1': sink 1 (mqtt)"
    table = {"kind": "mqtt", "host": "127.0.0.1", "port": broker.port, "timeout_s": 30}
    payload = {"station": "s1", "record": {"id": "r1", "category": "mono", "decision": None}, "image": "", "source": ""}
    watcher = Subscriber(broker.port, "eagle-test-watcher", topic="eagle/s1/status")
    live = MqttSink(Options(table, where, tmp_path), "mqtt")
    try:
        live.deliver(payload, "r1")
        watcher.wait(lambda got: [m.payload for m in got] == [b"online"], "the live sink did not say online")
        assert MqttSink(Options(table, where, tmp_path), "mqtt").station_probe() is None
        assert MqttSink(Options(table, where, tmp_path), "mqtt").station_probe() is None
        live.deliver({**payload, "record": {**payload["record"], "id": "r2"}}, "r2")
        live.close()
        watcher.wait(lambda got: len(got) >= 2, "the live sink did not say offline")
    finally:
        watcher.close()
    assert [m.payload for m in watcher.got()] == [b"online", b"offline"], broker.log()  # said once each, at close
    log = broker.log()
    assert log.count(" as eagle-station-s1-mqtt ") == 1, log  # the live client connected once, never taken over
    assert log.count(" as eagle-station-s1-mqtt-probe-") == 2, log


@needs_mosquitto
def test_credentials_the_broker_refuses_stop_the_station_at_start(model_dir: Path, tmp_path: Path) -> None:
    """A broker with a password file: the right password passes the start-up probe (which publishes nothing),
    a wrong one or none is one line naming password_env or username, and ``eagle station run`` exits 2."""
    passwd = shutil.which("mosquitto_passwd")
    if passwd is None:
        pytest.skip("mosquitto_passwd is not installed (it makes the broker's password file)")
    password_file = tmp_path / "passwords"
    subprocess.run([passwd, "-b", "-c", str(password_file), "line", "right-password"], check=True,
                   capture_output=True, timeout=wait_s(60))  # fmt: skip
    password_file.chmod(0o600)
    broker = Broker(tmp_path / "broker", _free_port(), password_file=password_file).start()
    where = "stations.toml: station 'line-1': sink 1 (mqtt)"

    def probe(protocol: str, password: str | None) -> str | None:
        table: dict[str, Any] = {"host": "127.0.0.1", "port": broker.port, "protocol": protocol, "timeout_s": 10}
        if password is not None:
            os.environ["EAGLE_TEST_MQTT_PASSWORD"] = password
            table.update(username="line", password_env="EAGLE_TEST_MQTT_PASSWORD")
        try:
            return MqttSink(Options(table, where, tmp_path), "mqtt").station_probe()
        finally:
            os.environ.pop("EAGLE_TEST_MQTT_PASSWORD", None)

    try:
        for protocol in PROTOCOLS:
            assert probe(protocol, "right-password") is None
            with pytest.raises(StationConfigError) as caught:
                probe(protocol, "wrong")
            assert str(caught.value) == (f"{where}: password_env: mqtt 127.0.0.1:{broker.port} refused the user line: "
                                         "Not authorized (check username, and the password in "
                                         "EAGLE_TEST_MQTT_PASSWORD)")  # fmt: skip
            with pytest.raises(StationConfigError) as caught:
                probe(protocol, None)
            assert str(caught.value) == (f"{where}: username: mqtt 127.0.0.1:{broker.port} refused an anonymous "
                                         "connection: Not authorized (set username and password_env)")  # fmt: skip
        # the whole station: refused before anything runs, with that one line and exit status 2
        names = _drop(tmp_path / "incoming", _cells(1))
        sink = _mqtt(broker.port, username="line", password_env="EAGLE_TEST_MQTT_PASSWORD")
        stations = _stations(tmp_path, model_dir, sink)
        code, out = _run(stations, "run", "--until-idle", env=_env(EAGLE_TEST_MQTT_PASSWORD="wrong"))
        assert (code, out) == (2, f"eagle: error: {stations}: station 'line-1': sink 1 (mqtt): password_env: mqtt "
                                  f"127.0.0.1:{broker.port} refused the user line: Not authorized (check username, "
                                  "and the password in EAGLE_TEST_MQTT_PASSWORD)\n")  # fmt: skip
        assert sorted(p.name for p in (tmp_path / "incoming").iterdir()) == names  # nothing was taken
        # with client_id set: the probe's own id refused alike, then a look as line-1-sink refuses the station
        with_id = sink.replace('kind = "mqtt"', 'kind = "mqtt"\nclient_id = "line-1-sink"')
        assert with_id != sink
        stations = _stations(tmp_path, model_dir, with_id)
        code, out = _run(stations, "run", "--until-idle", env=_env(EAGLE_TEST_MQTT_PASSWORD="wrong"))
        assert (code, out) == (2, f"eagle: error: {stations}: station 'line-1': sink 1 (mqtt): password_env: mqtt "
                                  f"127.0.0.1:{broker.port} refused the user line: Not authorized (check username, "
                                  "and the password in EAGLE_TEST_MQTT_PASSWORD)\n")  # fmt: skip
        assert sorted(p.name for p in (tmp_path / "incoming").iterdir()) == names
    finally:
        broker.stop()


@needs_mosquitto
def test_a_broker_admitting_only_the_sinks_client_id_is_checked_as_that_id_where_none_is_connected(
    model_dir: Path, tmp_path: Path
) -> None:
    """A broker that binds the user to the sink's ``client_id`` (mosquitto's dynamic security) refuses the
    start-up probe's own id with *not authorized*, as it refuses a wrong password: the two cannot be told apart
    from the probe's id. Where no connection as the sink's id is live (a start, a POST) a second look as that id
    tells: a right password starts the station without a warning, a wrong one refuses it naming the field. Where
    one is (a PATCH), that look would push it off: unchanged credentials stay not checked, changed ones are
    refused."""
    import re

    ctrl = shutil.which("mosquitto_ctrl")
    if ctrl is None or DYNSEC is None:
        pytest.skip("mosquitto_ctrl or mosquitto's dynamic security plugin is not installed")
    config = tmp_path / "dynsec.json"
    subprocess.run([ctrl, "dynsec", "init", str(config), "admin", "right-password"], check=True, capture_output=True,
                   timeout=wait_s(60))  # fmt: skip
    security = json.loads(config.read_text())
    admin = security["clients"][0]  # its password's hash, for a user of our own bound to one client id
    security["clients"].append({**admin, "username": "line", "textName": "line 1", "clientid": "line-1-sink",
                                "roles": []})  # fmt: skip
    security["defaultACLAccess"] = dict.fromkeys(("publishClientSend", "publishClientReceive", "subscribe",
                                                  "unsubscribe"), True)  # fmt: skip
    config.write_text(json.dumps(security))
    broker = Broker(tmp_path / "broker", _free_port(), dynsec=config).start()
    where = "stations.toml: station 'line-1': sink 1 (mqtt)"
    said = (rf"mqtt 127\.0\.0\.1:{broker.port} refused the check, connecting as line-1-sink-probe-[0-9a-f]{{8}} \(Not "
            r"authorized\): the credentials, or a broker that admits only client_id line-1-sink, which refuses any "
            r"other id alike \(a check under that id would push the live connection off\)")  # fmt: skip

    def sink(protocol: str, password: str) -> MqttSink:
        table = {"host": "127.0.0.1", "port": broker.port, "protocol": protocol, "timeout_s": 10, "username": "line",
                 "password_env": "EAGLE_TEST_MQTT_PASSWORD", "client_id": "line-1-sink"}  # fmt: skip
        os.environ["EAGLE_TEST_MQTT_PASSWORD"] = password
        try:
            return MqttSink(Options(table, where, tmp_path), "mqtt")
        finally:
            os.environ.pop("EAGLE_TEST_MQTT_PASSWORD", None)

    refused = (f"{where}: password_env: mqtt 127.0.0.1:{broker.port} refused the user line: Not authorized (check "
               "username, and the password in EAGLE_TEST_MQTT_PASSWORD)")  # fmt: skip
    try:
        for protocol in PROTOCOLS:
            right = sink(protocol, "right-password")
            for password in ("right-password", "wrong"):  # alike, as the broker answers both alike
                with pytest.raises(NotChecked) as caught:
                    sink(protocol, password).station_probe()
                assert re.fullmatch(said, str(caught.value)), str(caught.value)
                recheck = caught.value.recheck
                assert recheck is not None
                # no live connection as line-1-sink (a start, a POST): a look as line-1-sink tells
                if password == "right-password":
                    assert recheck(()) is None
                else:
                    with pytest.raises(StationConfigError) as refusal:
                        recheck(())
                    assert str(refusal.value) == refused
                # a PATCH while the station is connected as line-1-sink: not pushed off; changed credentials refused
                with pytest.raises(NotChecked if password == "right-password" else StationConfigError) as live:
                    recheck([right])
                if password == "right-password":
                    assert re.fullmatch(rf"{said}; the credentials are unchanged, and a check as line-1-sink would "
                                        r"push the live connection off", str(live.value)), str(live.value)  # fmt: skip
                else:
                    assert re.fullmatch(rf"{re.escape(where)}: password_env: the changed credentials cannot be checked "
                                        rf"while the station is connected as line-1-sink, since {said}: delete the "
                                        r"station and create it again with them, which checks them as line-1-sink",
                                        str(live.value)), str(live.value)  # fmt: skip
                with pytest.raises(NotChecked):  # another replica's: its live connection not known here
                    recheck(None)
        # the whole station: checked as line-1-sink at start, no warning, and the verdict delivered as line-1-sink
        names = _drop(tmp_path / "incoming", _cells(1))
        options = _mqtt(broker.port, username="line", password_env="EAGLE_TEST_MQTT_PASSWORD", client_id="line-1-sink")
        stations = _stations(tmp_path, model_dir, options)
        code, out = _run(stations, "run", "--until-idle", env=_env(EAGLE_TEST_MQTT_PASSWORD="wrong"))
        assert (code, out) == (2, f"eagle: error: {refused.replace('stations.toml', str(stations), 1)}\n")
        assert sorted(p.name for p in (tmp_path / "incoming").iterdir()) == names  # nothing was taken
        code, out = _run(stations, "run", "--until-idle", env=_env(EAGLE_TEST_MQTT_PASSWORD="right-password"))
        assert code == 0, out
        assert [line for line in out.splitlines() if "warning" in line] == []
        code, out = _run(stations, "status", env=_env(EAGLE_TEST_MQTT_PASSWORD="right-password"))
        assert json.loads(out[out.index("[") :])[0]["sinks"]["mqtt"]["delivered"] == 1, out
        assert " as line-1-sink " in broker.log()
    finally:
        broker.stop()


CONFIG_ERRORS = [
    # (the sink's options, the one line the user gets after "<file>: station 'l': sink 1 (mqtt): ")
    ('host = "b"\ntopic = "eagle/{{station}}/{{line}}"\n',
     "topic 'eagle/{station}/{line}' has the unknown placeholder {line}; use {station}, {category}, {decision}, {id}"),
    ('host = "b"\nstatus_topic = "eagle/{{decision}}"\n',
     "status_topic 'eagle/{decision}' has the unknown placeholder {decision}; use {station}"),
    ('host = "b"\ntopic = "eagle/#"\n', "topic 'eagle/#' has a wildcard (+ or #): a message is published to one topic"),
    ('host = "b"\nqos = 3\n', "qos must be in [0, 2], not 3"),
    ('host = "b"\nusername = "line"\npassword_env = "EAGLE_NOT_SET_ANYWHERE"\n',
     "password_env names EAGLE_NOT_SET_ANYWHERE, which is not set in the environment"),
    ('port = 1883\n', "host is missing"),
    ('host = "mqtt://b"\n', "host 'mqtt://b' is not a host name or address (no scheme, no path)"),
    ('host = "b"\nca_file = "ca.pem"\n', "ca_file needs tls = true"),
    ('host = "b"\nprotocol = "3"\n', "protocol is '3'; choose one of '5', '3.1.1'"),
    ('host = "b"\nhots = 1\n', "unknown option 'hots'"),
]  # fmt: skip


@pytest.mark.parametrize(("options", "message"), CONFIG_ERRORS, ids=[m[:40] for _, m in CONFIG_ERRORS])
def test_a_bad_mqtt_option_is_one_line_naming_the_field(
    model_dir: Path, tmp_path: Path, options: str, message: str
) -> None:
    (tmp_path / "in").mkdir()
    path = tmp_path / "stations.toml"
    path.write_text(f'models = "{model_dir}"\n[[station]]\nname = "l"\ncategory = "mono"\n'
                    f'source = {{ kind = "folder", path = "in" }}\n[[station.sink]]\nkind = "mqtt"\n'
                    + options.format())  # fmt: skip
    assert_refused(path, f"{path}: station 'l': sink 1 (mqtt): {message}", cli=message == CONFIG_ERRORS[0][1])


@needs_mosquitto
def test_a_refused_image_is_published_on_its_refused_topic_and_leaves_the_retained_last_verdict(
    model_dir: Path, tmp_path: Path, broker: Broker
) -> None:
    """A corrupt image after two cells: published once, in order after their verdicts, on
    ``eagle/line-1/mono/refused`` (a subscriber to ``eagle/+/+/anomalous`` does not get it; one to ``eagle/#`` tells it
    by the topic and the body), keyed by its refusal's key; the retained ``last`` topic still holds the last verdict,
    not the refusal."""
    names = _drop(tmp_path / "incoming", _cells(2))
    broken = tmp_path / "incoming" / "broken.png"
    broken.write_bytes(b"not a png at all")
    os.utime(broken, (time.time() - 5, time.time() - 5))  # after the cells
    watcher = Subscriber(broker.port, "eagle-test-watcher")
    try:
        code, log = _run(_stations(tmp_path, model_dir, _mqtt(broker.port), settle_s=0), "run", "--until-idle")
        assert code == 0, log
        watcher.wait(lambda got: _statuses(got)[-1:] == [b"offline"], "the station did not say offline when it ended")
    finally:
        watcher.close()
    history = _history(tmp_path)
    assert [r.image_name for r in history] == names
    got = watcher.got()
    *verdicts, refused = _verdicts(got)
    assert [m.topic for m in verdicts] == [f"eagle/line-1/mono/{r.decision}" for r in history]
    assert _ids(verdicts) == [r.id for r in history]
    body = json.loads(refused.payload)
    key = body["refused"]["id"]
    assert refused.topic == "eagle/line-1/mono/refused" and not refused.retain and refused.qos == 1
    assert body == {
        "event": "refused", "station": "line-1", "image": str(tmp_path / "incoming" / "failed" / "broken.png"),
        "source": str(broken), "refused": {"id": key, "category": "mono", "image_name": "broken.png",
                                           "image_sha256": body["refused"]["image_sha256"],
                                           "reason": "broken.png: not a recognised image format",
                                           "time": body["refused"]["time"]},
    }  # fmt: skip
    assert key.startswith("refused-") and refused.properties.UserProperty == [("Idempotency-Key", key)]
    assert _ids([m for m in got if m.topic == "eagle/line-1/last"]) == [r.id for r in history]  # not the refusal
    late = Subscriber(broker.port, "eagle-test-late", topic="eagle/line-1/last")
    try:
        late.wait(lambda got: len(got) >= 1, "the retained last verdict did not arrive")
    finally:
        late.close()
    assert _ids(late.got()) == [history[-1].id]


def _retained(port: int, topic: str) -> dict[str, bytes]:
    """The retained messages under ``topic`` (a filter) now, by topic: what a screen subscribing now is shown.

    A sentinel retained beside them (``<topic's first level>/~sentinel``) tells when the broker has sent them all:
    Mosquitto sends the retained messages matching a subscription together, at once."""
    root = topic.split("/", 1)[0]
    sentinel = f"{root}/~sentinel"
    publisher = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="eagle-test-sentinel", protocol=mqtt.MQTTv5)
    publisher.connect("127.0.0.1", port)
    publisher.loop_start()
    try:
        publisher.publish(sentinel, b"here", qos=1, retain=True).wait_for_publish(wait_s(30))
        late = Subscriber(port, "eagle-test-late", topic=topic)
        try:
            checker = Subscriber(port, "eagle-test-late-sentinel", topic=sentinel)
            try:
                checker.wait(lambda got: len(got) >= 1, "the sentinel did not arrive")
            finally:
                checker.close()
            time.sleep(0.5)  # the late subscriber's retained messages came with its subscription, before this
            got = {m.topic: m.payload for m in late.got() if m.retain}
        finally:
            late.close()
        publisher.publish(sentinel, b"", qos=1, retain=True).wait_for_publish(wait_s(30))
    finally:
        publisher.disconnect()
        publisher.loop_stop()
    return got


def _api_body(port: int, **sink: Any) -> dict[str, Any]:
    return {
        "name": "line-1",
        "category": "mono",
        "source": {"kind": "folder", "path": "incoming", "settle_s": 0.2, "poll_s": 0.05},
        "sinks": [{"kind": "mqtt", "host": "127.0.0.1", "port": port, **sink}],
    }


def _payloads(messages: list[mqtt.MQTTMessage]) -> list[bytes]:
    return [m.payload for m in messages]


@needs_mosquitto
def test_the_status_says_online_as_soon_as_the_station_runs_after_a_patch_and_after_a_restart(
    model_dir: Path, tmp_path: Path
) -> None:
    """The tester's case: a station created through the API said nothing on its status topic until its first part,
    and after a ``PATCH`` its retained status stayed ``offline`` (the old run's goodbye) while it ran; after a restart
    of the service with a fresh broker, nothing at all. A SCADA screen alarmed on a working station. Now the sink
    connects as the station starts, with no part delivered at all."""
    port = _free_port()
    broker = Broker(tmp_path / "broker", port).start()
    data = tmp_path / "data"
    (data / "incoming").mkdir(parents=True)
    watcher = Subscriber(port, "eagle-test-watcher", topic="eagle/line-1/status")
    try:
        with LiveServer(_app(tmp_path, model_dir, data)) as live:
            status, info = _post(live.base, "/v1/stations", _api_body(port))
            assert status == 201, info
            watcher.wait(lambda got: _payloads(got) == [b"online"], "no online when the station started")
            status, info = _patch(live.base, "line-1", {"sinks": [{"timeout_s": 20}]})
            assert status == 200, info
            # the old run's goodbye, then the new run's online, with no part delivered
            watcher.wait(lambda got: _payloads(got) == [b"online", b"offline", b"online"], "not online after a PATCH")
            assert _retained(port, "eagle/line-1/status") == {"eagle/line-1/status": b"online"}
        watcher.wait(lambda got: _payloads(got)[-1:] == [b"offline"], "no offline when the service stopped")
        watcher.close()
        broker.stop()
        broker = Broker(tmp_path / "broker-2", port).start()  # a fresh broker: nothing retained, no session
        watcher = Subscriber(port, "eagle-test-watcher", topic="eagle/line-1/status")
        with LiveServer(_app(tmp_path, model_dir, data)):  # the station kept in the history starts again
            watcher.wait(lambda got: _payloads(got) == [b"online"], "no online after a restart of the service")
            assert _retained(port, "eagle/line-1/status") == {"eagle/line-1/status": b"online"}
    finally:
        watcher.close()
        broker.stop()
    assert _history(tmp_path) == []  # not a part: the station said online on its own


@needs_mosquitto
def test_verdicts_queued_while_the_broker_was_away_go_as_soon_as_the_sink_is_connected_again(
    model_dir: Path, tmp_path: Path
) -> None:
    """The tester's case: the broker back, the station said ``online`` at once, but its queued verdicts went only at
    the end of the courier's backoff (39 s later). Here that backoff is long past doubt: the head's next try is set
    between 30 and 60 minutes away (``retry_base_s`` 3600) by a run that found the broker down; the next run (paho
    reconnecting from one second up) finds the broker back some seconds after it started. The connection wakes the
    courier, which tries the head at once: every verdict goes, once each, in order, none refused."""
    port = _free_port()
    broker = Broker(tmp_path / "broker", port)
    names = _drop(tmp_path / "incoming", _cells(3))
    stations = _stations(tmp_path, model_dir, _mqtt(port, retry_base_s=3600, retry_max_s=3600))
    first = Running(stations, "--quiet")
    try:
        first.until(lambda: len(rows := _mqtt_outbox(tmp_path)) == 3 and any(error for _, error in rows),
                    "the station did not inspect 3 images and try the first")  # fmt: skip
        assert first.stop() == 143
    finally:
        first.process.kill()
    tried = _attempts_and_next(tmp_path)
    assert tried[0][0] == 1 and tried[0][1] > time.time() + 1500, tried  # the head: its next try half an hour away
    stations = _stations(tmp_path, model_dir, _mqtt(port, retry_base_s=1, retry_max_s=3600))
    station = Running(stations, "--quiet")
    watcher: Subscriber | None = None
    try:
        station.until(lambda: station.saw("Connection refused; verdicts wait in the outbox"), "the probe's warning")
        broker.start()
        watcher = Subscriber(port, "eagle-test-watcher")
        # the outbox, not the watcher, says they went: a reconnection that quick can publish them before the
        # watcher's own subscription is made (verdicts are not retained), which is this test passing, not failing
        station.until(lambda: {state for state, _ in _mqtt_outbox(tmp_path)} == {"delivered"},
                      "the queued verdicts did not go once the broker was up", 120)  # fmt: skip
        assert station.stop() == 143
    finally:
        station.process.kill()
        if watcher is not None:
            watcher.close()
        broker.stop()
    history = _history(tmp_path)
    assert [r.image_name for r in history] == names
    # no try failed in this run (the head's one failed try was the first run's), none refused, in stored order
    assert [(tries, refusals) for tries, _, refusals in _attempts_and_next(tmp_path)] == [(1, 0), (0, 0), (0, 0)]
    assert [record for record, _ in _delivered(tmp_path)] == [r.id for r in history]
    seen = _ids(_verdicts(watcher.got()))
    assert seen == [r.id for r in history][len(history) - len(seen) :]  # what the watcher saw: the last, in order
    assert "Traceback" not in first.log() + station.log()


def _delivered(work: Path) -> list[tuple[str, float]]:
    """The MQTT sink's delivered rows in the order they were delivered: (record id, when)."""
    db = open_read_only(work / "state" / "eagle.sqlite3")
    try:
        query = "SELECT record_id, delivered FROM outbox WHERE sink = 'mqtt' AND state = 'delivered' ORDER BY delivered"
        return [(str(r), float(d)) for r, d in db.execute(query)]
    finally:
        db.close()


def _attempts_and_next(work: Path) -> list[tuple[int, float, int]]:
    """The MQTT sink's outbox rows, in order: (tries, next try, refusals)."""
    db = open_read_only(work / "state" / "eagle.sqlite3")
    try:
        query = "SELECT attempts, next_try, refusals FROM outbox WHERE sink = 'mqtt' ORDER BY seq"
        return [(int(a), float(n), int(r)) for a, n, r in db.execute(query)]
    finally:
        db.close()


@needs_mosquitto
def test_a_deleted_station_clears_its_retained_status_and_last_verdict_and_a_stop_keeps_them(
    model_dir: Path, tmp_path: Path, broker: Broker
) -> None:
    """After ``DELETE /v1/stations/{name}`` the broker kept ``eagle/line-1/last`` and ``eagle/line-1/status`` for
    good: a screen showed a station that is gone. The sink now clears both (an empty retained message) when the
    station is deleted, and says no ``offline`` after; a stop of the service keeps them (the station comes back)."""
    data = tmp_path / "data"
    (data / "incoming").mkdir(parents=True)
    _drop(data / "incoming", _cells(1))
    watcher = Subscriber(broker.port, "eagle-test-watcher", topic="eagle/line-1/#")
    try:
        with LiveServer(_app(tmp_path, model_dir, data)) as live:
            status, info = _post(live.base, "/v1/stations", _api_body(broker.port))
            assert status == 201, info
            watcher.wait(lambda got: any(m.topic == "eagle/line-1/last" for m in got), "the verdict did not arrive")
        retained = _retained(broker.port, "eagle/line-1/#")  # stopped: its last verdict and offline stay
        assert set(retained) == {"eagle/line-1/last", "eagle/line-1/status"} and retained["eagle/line-1/status"] \
            == b"offline", retained  # fmt: skip
        with LiveServer(_app(tmp_path, model_dir, data)) as live:
            watcher.wait(lambda got: _statuses(got)[-1:] == [b"online"], "not online again after the restart")
            assert call("DELETE", f"{live.base}/v1/stations/line-1")[0] == 204
            watcher.wait(lambda got: _statuses(got)[-1:] == [b""], "the status was not cleared")
            assert _retained(broker.port, "eagle/line-1/#") == {}
    finally:
        watcher.close()
    got = watcher.got()
    assert _statuses(got) == [b"online", b"offline", b"online", b""], _statuses(got)  # no offline after the clearing
    assert [m.payload for m in got if m.topic == "eagle/line-1/last"][1:] == [b""]


@needs_mosquitto
def test_a_sink_whose_first_delivery_found_the_broker_down_still_reconnects_and_wakes_once_started(
    tmp_path: Path,
) -> None:
    """A delivery that connected first (the broker down) leaves a client with no network thread; the station's
    start must still start it: else it never reconnects by itself, says no ``online`` and wakes no courier when
    the broker is back, and a delete clears no ``last`` topic (no category known)."""
    from eagle_iad.station.parts import DeliveryError

    port = _free_port()
    sink = MqttSink(Options({"kind": "mqtt", "host": "127.0.0.1", "port": port, "timeout_s": 3}, "sink", tmp_path), "m")
    woken = threading.Event()
    sink.when_connected(woken.set)
    payload = {"station": "line-1", "record": {"id": "r1", "category": "mono", "decision": None}, "image": "",
               "source": ""}  # fmt: skip
    broker: Broker | None = None
    try:
        with pytest.raises(DeliveryError, match="Connection refused"):
            sink.deliver(payload, "r1")  # the courier's try, before the station started the sink
        sink.station_start("line-1", "mono")
        broker = Broker(tmp_path / "broker", port)
        broker.start()
        assert woken.wait(wait_s(60)), "the sink did not reconnect by itself once the broker was up"
        watcher = Subscriber(port, "eagle-test-watcher")
        try:
            watcher.wait(lambda got: _statuses(got) == [b"online"], "no retained online")
        finally:
            watcher.close()
    finally:
        sink.close()
        if broker is not None:
            broker.stop()


@needs_mosquitto
def test_a_delete_fences_off_a_delivery_still_in_flight_and_a_reconnection_before_the_close(tmp_path: Path) -> None:
    """A station deleted while its courier still delivers past the stop's grace: the sink cleared ``last`` and the
    status, then the courier's try went on and published its verdict on ``last``, retained, again: a screen showed
    the deleted station's last part for good. A reconnection between the clearing and the close alike said
    ``online`` again (retained, and no ``offline`` after it). Now the delete fences the sink off first: a try still
    in flight publishes nothing (a failed try, its row going with the station), a reconnection says nothing, and
    nothing of the station stays retained."""
    from eagle_iad.station.parts import DeliveryError

    port = _free_port()
    broker = Broker(tmp_path / "broker", port, persistent=True).start()  # keeps what is retained across a restart
    table = {"kind": "mqtt", "host": "127.0.0.1", "port": port, "timeout_s": 10, "retry_base_s": 1, "retry_max_s": 1}
    sink = MqttSink(Options(table, "sink", tmp_path), "mqtt")
    connected = threading.Event()
    sink.when_connected(connected.set)

    def payload(record_id: str) -> dict[str, Any]:
        return {"station": "line-1", "record": {"id": record_id, "category": "mono", "decision": "normal"},
                "image": "", "source": ""}  # fmt: skip

    try:
        sink.station_start("line-1", "mono")
        assert connected.wait(wait_s(30)), "the sink did not connect"
        sink.deliver(payload("r1"), "r1")
        assert set(_retained(port, "eagle/line-1/#")) == {"eagle/line-1/last", "eagle/line-1/status"}
        # the courier's next try, held between its connection and its publications (a delivery past the grace)
        reached, release = threading.Event(), threading.Event()
        properties = sink._properties

        def held(key: str) -> Any:
            reached.set()
            release.wait(wait_s(30))
            return properties(key)

        sink._properties = held  # type: ignore[method-assign]
        failed: list[BaseException] = []

        def courier() -> None:
            try:
                sink.deliver(payload("r2"), "r2")
            except BaseException as exc:  # what the try ended with is the test's
                failed.append(exc)

        thread = threading.Thread(target=courier, daemon=True)
        thread.start()
        assert reached.wait(wait_s(30)), "the courier's try did not start"
        sink.station_forget()
        release.set()
        thread.join(wait_s(30))
        assert not thread.is_alive()
        assert len(failed) == 1 and isinstance(failed[0], DeliveryError), failed
        assert "deleted" in str(failed[0]), failed
        assert _retained(port, "eagle/line-1/#") == {}, "the try in flight published after the delete cleared"
        # the broker restarted before the close: the sink reconnects, and says nothing on the status topic
        connected.clear()
        broker.stop()
        broker.start()
        assert connected.wait(wait_s(30)), "the sink did not reconnect"
        sink.close()
        assert _retained(port, "eagle/line-1/#") == {}, "a reconnection after the delete said online again"
    finally:
        sink.close()
        broker.stop()


def _refusals(work: Path) -> list[int]:
    """The refusals of each of the MQTT sink's outbox rows, in order; none while the history is not made yet."""
    try:
        return [refusals for _, _, refusals in _attempts_and_next(work)]
    except sqlite3.OperationalError:  # the station is still creating its history
        return []


@needs_mosquitto
def test_a_restart_waits_out_the_backoff_of_a_verdict_the_broker_refused(model_dir: Path, tmp_path: Path) -> None:
    """A verdict the broker refused (a PUBACK *not authorized*: its ACL denies the verdict's topic) waits out its
    backoff after a restart of the station too. The restart's connection is a reconnection, which wakes the courier
    and cuts a backoff short; whether the last try was refused was the courier's memory, so each restart tried such a
    row at once, one refusal more towards its dead letter. It is read from the outbox row (``last_refused``, and its
    ``next_try``): the restarted station connects, says ``online``, and leaves the row as the first run left it."""
    acl = tmp_path / "acl"
    acl.write_text("topic readwrite eagle/line-1/status\ntopic readwrite eagle/line-1/last\ntopic read #\n")
    port = _free_port()
    broker = Broker(tmp_path / "broker", port, acl_file=acl).start()
    _drop(tmp_path / "incoming", _cells(1))
    stations = _stations(tmp_path, model_dir, _mqtt(port, retry_base_s=3600, retry_max_s=3600))
    watcher = Subscriber(port, "eagle-test-watcher", topic="eagle/line-1/status")
    try:
        first = Running(stations, "--quiet")
        try:
            first.until(lambda: _refusals(tmp_path) == [1], "the verdict was not refused")
            assert first.stop() == 143
        finally:
            first.process.kill()
        (tried,) = _attempts_and_next(tmp_path)
        assert tried[0] == 1 and tried[1] > time.time() + 1500, tried  # its next try half an hour away or more
        assert "Not authorized" in first.log(), first.log()
        second = Running(stations, "--quiet")
        try:
            watcher.wait(lambda got: _payloads(got) == [b"online", b"offline", b"online"], "no online at the restart")
            time.sleep(3)  # the connection woke the courier at once; it looks at its queue once a second besides
            assert _attempts_and_next(tmp_path) == [tried], "the refused verdict was tried again at the restart"
            assert second.stop() == 143
        finally:
            second.process.kill()
    finally:
        watcher.close()
        broker.stop()


class _Sent:
    """What a fake client's ``publish`` gives: sent, acknowledged at once."""

    rc, mid = mqtt.MQTT_ERR_SUCCESS, 0

    def wait_for_publish(self, timeout: float | None = None) -> None:
        return None

    def is_published(self) -> bool:
        return True


def test_a_close_while_a_try_holds_the_fence_and_paho_reconnects_does_not_hang(tmp_path: Path) -> None:
    """Three threads: a courier's try inside the delete's fence (publishing), :meth:`close` ending paho's thread,
    and that thread handling a reconnection (``_on_connect`` takes the fence to say ``online``). ``close`` held the
    sink's main lock while it waited for paho's thread, the courier took that lock inside the fence, and paho's
    thread waited for the fence: a station's stop or delete hung for good. Made deterministic with a fake client
    whose calls wait for each other; now ``close`` holds no lock while it waits, and every thread ends."""
    sink = MqttSink(Options({"kind": "mqtt", "host": "127.0.0.1", "port": 1, "timeout_s": 3}, "sink", tmp_path), "m")
    in_fence = threading.Event()

    def closed() -> None:
        """Until :meth:`close` has marked the sink closed (under its main lock, which it then held to the end)."""
        deadline = time.monotonic() + wait_s(10)
        while not sink._closed and time.monotonic() < deadline:
            time.sleep(0.005)

    published: list[str] = []
    ended: list[str] = []

    class Client:
        def publish(self, topic: str, payload: bytes, **_: Any) -> _Sent:
            published.append(topic)
            if topic == "eagle/line-1/mono/normal":  # the courier's first publication, inside the fence
                in_fence.set()
                closed()  # close began: the try goes on within the fence
            return _Sent()

        def disconnect(self) -> None:
            pass

        def loop_stop(self) -> None:
            """paho's thread, asked to end, is handling a CONNACK first: its callback runs, then it ends."""
            reason = mqtt.ReasonCode(mqtt.PacketTypes.CONNACK, identifier=0)
            paho = threading.Thread(target=sink._on_connect, args=(self, None, None, reason, None), daemon=True)
            paho.start()
            paho.join()

    sink._client, sink._running, sink._up, sink._station = Client(), True, True, "line-1"  # type: ignore[assignment]
    payload = {"station": "line-1", "record": {"id": "r1", "category": "mono", "decision": "normal"}, "image": "",
               "source": ""}  # fmt: skip
    courier = threading.Thread(target=lambda: (sink.deliver(payload, "r1"), ended.append("courier")), daemon=True)
    courier.start()
    assert in_fence.wait(wait_s(10)), "the courier's try did not reach its publication"
    closing = threading.Thread(target=lambda: (sink.close(), ended.append("close")), daemon=True)
    closing.start()
    closing.join(wait_s(10))
    courier.join(wait_s(10))
    assert not closing.is_alive() and not courier.is_alive(), "deadlock: close, the courier and paho's thread"
    assert sorted(ended) == ["close", "courier"]
    # the verdict and its retained last went out, then the offline goodbye and the reconnection's online
    assert published[:2] == ["eagle/line-1/mono/normal", "eagle/line-1/last"], published
    assert sorted(published[2:]) == ["eagle/line-1/status", "eagle/line-1/status"], published


@needs_mosquitto
def test_a_frame_a_killed_camera_station_left_saved_is_published_once_at_the_next_start(
    model_dir: Path, tmp_path: Path, broker: Broker
) -> None:
    """A camera frame saved, the station killed before it stored anything of it (the frame left in ``frames/`` as
    the camera leaves it, after three frames inspected): the next start publishes it, once, before the new run's
    frames, and the folder sink files it once; the frames inspected before are not taken again."""
    cv2 = pytest.importorskip("cv2", reason="OpenCV is not installed (pip install 'eagle-iad[camera]')")
    from test_station_camera import _frames, _video

    frames = _frames(30, size=64)
    _video(tmp_path / "line.avi", frames)
    stations = tmp_path / "stations.toml"
    stations.write_text(f"""models = "{model_dir}"
state = "state"

[[station]]
name = "line-1"
category = "mono"
source = {{ kind = "camera", url = "line.avi", every_n_frames = 10 }}

[[station.sink]]
kind = "folder"
path = "sorted"
{_mqtt(broker.port)}""")
    watcher = Subscriber(broker.port, "eagle-test-watcher")
    try:
        code, log = _run(stations, "run", "--until-idle")
        assert code == 0 and len(_history(tmp_path)) == 3, log
        left = tmp_path / "frames" / "frame-00000030.png"  # saved as the camera saves one, then the kill
        left.write_bytes(cv2.imencode(".png", cv2.cvtColor(frames[5], cv2.COLOR_RGB2BGR))[1].tobytes())
        code, log = _run(stations, "run", "--until-idle")
        assert code == 0 and "1 frame saved before this start and never inspected, taken first: " \
            "frame-00000030.png" in log, log  # fmt: skip
        history = _history(tmp_path)
        assert [r.image_name for r in history][3:5] == ["frame-00000030.png", "frame-00000000-1.png"], log
        assert len(history) == 7
        watcher.wait(lambda got: len(_verdicts(got)) >= 7 and _statuses(got)[-1:] == [b"offline"],
                     "the second run's verdicts were not all published")  # fmt: skip
        time.sleep(1)  # a repeat would come now
    finally:
        watcher.close()
    assert _ids(_verdicts(watcher.got())) == [r.id for r in history]  # each once, the frame left first
    copies = sorted(p.name for p in (tmp_path / "sorted").rglob("*.png"))
    assert copies == sorted(f"{r.id}_{r.image_name}" for r in history)
