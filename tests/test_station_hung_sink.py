"""A plugin sink whose ``deliver`` does not return: the status and the log say so, naming the sink, while it lasts.

A real station (its model, hot folder, history and courier threads) in this process, with a real plugin sink
registered as ``EAGLE_PLUGINS`` would: its ``deliver`` blocks on an :class:`threading.Event` until the test
releases it. The limit (:data:`~eagle_iad.station.overdue.HUNG_DELIVERY_S`) is lowered so the test waits little;
every wait is generous, and nothing asserts how fast anything went.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
from conftest import wait_s
from test_station import _cells, _drop, _runner, model_dir  # noqa: F401  (model_dir: models/mono, a small real model)

from eagle_iad.station.parts import REQUIRED, SINKS, Options


class BlockingSink:
    """A plugin's sink whose receiver never answers until :attr:`release` is set; it writes what it delivered."""

    kind = "blocking-csv"
    release: ClassVar[threading.Event] = threading.Event()
    #: The keys it was called with, in order, and those whose call returned.
    called: ClassVar[list[str]] = []

    def __init__(self, options: Options, name: str) -> None:
        self.name = name
        self.path = options.path("path", REQUIRED)

    def describe(self) -> str:
        return f"blocking csv {self.path}"

    def deliver(self, payload: dict[str, Any], key: str) -> None:
        self.called.append(key)
        self.release.wait()
        with open(self.path, "a") as handle:
            handle.write(f"{key},{payload['record']['decision']}\n")

    def close(self) -> None:
        pass


@pytest.fixture
def blocking() -> Iterator[type[BlockingSink]]:
    SINKS.add(BlockingSink.kind, BlockingSink)
    BlockingSink.release.clear()
    BlockingSink.called.clear()
    try:
        yield BlockingSink
    finally:
        BlockingSink.release.set()  # a courier still blocked returns, and its thread ends
        SINKS.remove(BlockingSink.kind)


def _until(what: str, check: Callable[[], Any], seconds: float = 120) -> Any:
    deadline = time.monotonic() + wait_s(seconds)
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _warnings(runner: Any, state: Any, intake: Any) -> list[str]:
    from eagle_iad.station.status import open_read_only, station_status

    db = open_read_only(state.settings.history_url)
    try:
        return list(station_status(db, runner.config, intake)["warnings"])
    finally:
        db.close()


def test_a_sink_whose_deliver_does_not_return_is_warned_of_naming_it_and_said_when_it_returns(
    model_dir: Path,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    blocking: type[BlockingSink],
) -> None:
    """Two images, the first one's delivery blocked: once it has not returned for the limit, the log says so once,
    naming the sink, its kind and class, and the record; the status (the service's, from the running process, and
    ``eagle station status``'s, from the state file) warns of it, with the delivery waiting behind it. Released, the
    log says it returned, the warning goes, and both verdicts are delivered in order. Earlier: ``warnings: []``."""
    from eagle_iad.station import overdue
    from eagle_iad.station.status import read_intake

    monkeypatch.setattr(overdue, "HUNG_DELIVERY_S", 0.5)
    _drop(tmp_path / "incoming", _cells(2))
    sinks = '\n[[station.sink]]\nkind = "blocking-csv"\nname = "csv"\npath = "out.csv"\n'
    runner, state, lines = _runner(tmp_path, model_dir, sinks)
    label = f"blocking-csv: {BlockingSink.__module__}.BlockingSink"
    try:
        runner.start()
        runner.step()  # the first look only starts the files' settling time
        time.sleep(0.3)
        _until("both images taken", lambda: [runner.step()] and len(state.store.read("SELECT 1 FROM outbox")) == 2)
        first, second = (row[0] for row in state.store.read("SELECT record_id FROM outbox ORDER BY seq"))
        said = _until("the overdue line", lambda: [line for line in lines if "has not returned" in line])
        assert len(said) == 1 and said[0].startswith(
            f"eagle station line-1: warning: sink 'csv' ({label}): one delivery (record {first}) has not returned for "
        ) and said[0].endswith(" s; the deliveries behind it wait (a sink's deliver must return or raise within its "
                               "own timeout; a line when it returns)"), said  # fmt: skip
        warning = (f"sink 'csv' ({label}): one delivery has not returned for ", "; 1 delivery (a verdict or a "
                   "refusal) waits behind it (its deliver must return or raise within its own timeout)")  # fmt: skip
        for intake in (runner.intake(), read_intake(state.settings.state_dir, "line-1")):  # the service's, the CLI's
            hung = [w for w in _warnings(runner, state, intake) if w.startswith(warning[0])]
            assert len(hung) == 1 and hung[0].endswith(warning[1]), hung
        assert BlockingSink.called == [first]
        blocking.release.set()
        _until("the returned line", lambda: any("returned after" in line for line in lines))
        back = [line for line in lines if "returned after" in line]
        assert len(back) == 1 and back[0].startswith(
            f"eagle station line-1: sink 'csv' ({label}): the delivery of record {first} returned after "
        ) and back[0].endswith(" s (it delivered)"), back  # fmt: skip
        _until("both delivered", lambda: (tmp_path / "out.csv").exists()
               and len((tmp_path / "out.csv").read_text().splitlines()) == 2)  # fmt: skip
        assert [line.split(",")[0] for line in (tmp_path / "out.csv").read_text().splitlines()] == [first, second]
        for intake in (runner.intake(), read_intake(state.settings.state_dir, "line-1")):
            assert intake is not None and intake.hung == ()
            assert not [w for w in _warnings(runner, state, intake) if "has not returned" in w]
        assert sum("has not returned" in line for line in lines) == 1, lines  # said once, not once per look
    finally:
        blocking.release.set()
        runner.stop(wait_s(10))
        runner.close()
        state.close()


def test_a_stop_past_its_grace_with_a_deliver_that_does_not_return_says_so_and_keeps_the_delivery_owed(
    model_dir: Path,  # noqa: F811
    tmp_path: Path,
    blocking: type[BlockingSink],
) -> None:
    """A stop does not wait for a deliver that does not return (past its grace): it says so, naming the sink and the
    record, and the delivery stays pending in the outbox for the next run."""
    _drop(tmp_path / "incoming", _cells(1))
    sinks = '\n[[station.sink]]\nkind = "blocking-csv"\nname = "csv"\npath = "out.csv"\n'
    runner, state, lines = _runner(tmp_path, model_dir, sinks)
    try:
        runner.start()
        runner.step()
        time.sleep(0.3)
        _until("the delivery called", lambda: [runner.step()] and BlockingSink.called)
        (record,) = BlockingSink.called
        runner.stop(0.2)
        said = [line for line in lines if "stop's grace" in line]
        assert len(said) == 1 and said[0].startswith(
            f"eagle station line-1: warning: sink 'csv' (blocking-csv: {BlockingSink.__module__}.BlockingSink): its "
            f"delivery of record {record} has not returned after "
        ) and said[0].endswith(" s and the stop's grace is over; the stop does not wait for it: the delivery stays "
                               "owed in the outbox and goes again (same key) when the station next runs, unless it "
                               "returns first"), lines  # fmt: skip
        assert state.store.read("SELECT record_id, state FROM outbox") == [(record, "pending")]
    finally:
        blocking.release.set()
        for courier in runner.couriers:  # its deliver returns now: let it end before the history closes
            courier.join(wait_s(30))
        runner.close()
        state.close()


def test_a_built_in_sink_set_to_wait_long_is_not_said_overdue_within_its_own_bound(tmp_path: Path) -> None:
    """A PLC may acknowledge after 40 s where ``ack_timeout_s`` allows an hour, a webhook may answer within its
    ``timeout_s`` of 600 s: the watch's limit is the sink's own bound and a margin where that is longer than
    HUNG_DELIVERY_S, so a sink doing what it was told is not warned of at every delivery (review). A sink with no
    bound (a plugin's, unless it declares ``delivery_bound_s``) keeps HUNG_DELIVERY_S."""
    from eagle_iad.station.overdue import BOUND_MARGIN_S, HUNG_DELIVERY_S, delivery_limit
    from eagle_iad.station.sinks.mqtt import MqttSink
    from eagle_iad.station.sinks.opcua import OpcUaSink
    from eagle_iad.station.sinks.webhook import WebhookSink

    def webhook(**extra: Any) -> WebhookSink:
        return WebhookSink(Options({"kind": "webhook", "url": "http://127.0.0.1:9/v", **extra}, "test", tmp_path), "w")

    assert delivery_limit(webhook()) == HUNG_DELIVERY_S == 30.0  # 10 s twice, and the margin: under 30 s
    assert delivery_limit(webhook(timeout_s=100)) == 2 * 100 + BOUND_MARGIN_S
    mqtt = MqttSink(Options({"kind": "mqtt", "host": "127.0.0.1", "timeout_s": 30}, "test", tmp_path), "m")
    assert delivery_limit(mqtt) == 3 * 30 + BOUND_MARGIN_S
    nodes = {"decision": "ns=2;s=Verdict", "sequence": "ns=2;s=Seq", "ack": "ns=2;s=Ack"}
    table = {"kind": "opcua", "endpoint": "opc.tcp://127.0.0.1:4840", "nodes": nodes, "timeout_s": 2,
             "ack_timeout_s": 3600}  # fmt: skip
    plc = OpcUaSink(Options(table, "test", tmp_path), "o")
    assert delivery_limit(plc) == 10 * 2 + 5 + 0 + 3600 + BOUND_MARGIN_S == plc.delivery_bound_s + BOUND_MARGIN_S

    class Plugin:
        kind = "csvlog"

    assert delivery_limit(Plugin()) == HUNG_DELIVERY_S
    Plugin.delivery_bound_s = 120.0  # type: ignore[attr-defined]
    assert delivery_limit(Plugin()) == 120.0 + BOUND_MARGIN_S
