"""``eagle serve --log-level``: the engine's own log lines (a served station's) reach stderr at that level."""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import wait_s

from eagle_iad.cli.serve import APP_LOGGER, log_app_to_stderr
from eagle_iad.history.schema import SCHEMA_VERSION


@pytest.fixture(autouse=True)
def _restore_logger() -> object:
    logger = logging.getLogger(APP_LOGGER)
    saved = (list(logger.handlers), logger.level, logger.propagate)
    yield
    logger.handlers[:] = saved[0]
    logger.setLevel(saved[1])
    logger.propagate = saved[2]


def test_a_served_stations_info_lines_are_printed_at_info(capfd: pytest.CaptureFixture[str]) -> None:
    log_app_to_stderr("info")
    logging.getLogger("eagle_iad.station").info("eagle station line-1: sink webhook delivers again")
    assert capfd.readouterr().err == "INFO:     eagle station line-1: sink webhook delivers again\n"


def test_the_level_hides_what_is_below_it_and_a_second_call_prints_each_line_once(
    capfd: pytest.CaptureFixture[str],
) -> None:
    log_app_to_stderr("info")
    log_app_to_stderr("warning")
    station = logging.getLogger("eagle_iad.station")
    station.info("eagle station line-1: intake resumed")
    station.warning("eagle station line-1: a warning")
    assert capfd.readouterr().err == "WARNING:     eagle station line-1: a warning\n"


def test_a_served_stations_warning_lines_are_logged_as_warnings(capfd: pytest.CaptureFixture[str]) -> None:
    from eagle_iad.station.routes import station_log

    log_app_to_stderr("warning")
    station_log("eagle station l1: mono from folder in")
    station_log("eagle station l1: warning: sink webhook is failing: refused")
    station_log("eagle station l1: webhook gave up on record 40e0 after 10 tries")
    station_log("eagle station l1: x.png: not inspected: empty file")
    station_log("eagle station l1: intake resumed")
    # a camera's: its PLC trigger away, parts without a frame, the camera not opened (the line takes no picture)
    plc = "eagle station l1: camera rtsp://cam/1: trigger opc.tcp://plc:4840: "
    station_log(plc + "not connected: cannot connect (Connection refused); trying again every 5 s")
    station_log(plc + "ns=2;s=Parts went from 9 to 12: one frame taken; 2 parts had no frame of their own")
    station_log(plc + "ns=2;s=Parts went from 9 to 11: one frame taken; 1 part had no frame of its own")
    station_log(plc + "connected; ns=2;s=Parts (UInt32: each increase takes a frame) is 15")
    station_log("eagle station l1: camera rtsp://cam/1: cannot be opened; trying again every 5 s")
    assert capfd.readouterr().err == (
        "WARNING:     eagle station l1: warning: sink webhook is failing: refused\n"
        "WARNING:     eagle station l1: webhook gave up on record 40e0 after 10 tries\n"
        "WARNING:     eagle station l1: x.png: not inspected: empty file\n"
        f"WARNING:     {plc}not connected: cannot connect (Connection refused); trying again every 5 s\n"
        f"WARNING:     {plc}ns=2;s=Parts went from 9 to 12: one frame taken; 2 parts had no frame of their own\n"
        f"WARNING:     {plc}ns=2;s=Parts went from 9 to 11: one frame taken; 1 part had no frame of its own\n"
        "WARNING:     eagle station l1: camera rtsp://cam/1: cannot be opened; trying again every 5 s\n"
    )


def test_a_paused_intake_is_a_warning(capfd: pytest.CaptureFixture[str]) -> None:
    """The line stopped taking images (its lock in the history lost, a folder gone): kept by --log-level warning."""
    from eagle_iad.station.routes import station_log

    log_app_to_stderr("warning")
    station_log("eagle station l1: intake paused: this station's lock in the history was lost; retrying every 5 s")
    assert capfd.readouterr().err == (
        "WARNING:     eagle station l1: intake paused: this station's lock in the history was lost; retrying every "
        "5 s\n"
    )


def test_an_outbox_that_cannot_read_the_history_is_one_warning_per_outage(capfd: pytest.CaptureFixture[str]) -> None:
    """A sink's courier retries its outbox every second while the history is away: one warning when it starts
    (it was an INFO line a second per sink, hidden by --log-level warning and burying the rest), the tries after
    it at debug, one line when the history is back."""
    from types import SimpleNamespace
    from typing import Any, cast

    from eagle_iad.errors import HistoryUnavailableError
    from eagle_iad.station.routes import station_log
    from eagle_iad.station.runner import Courier

    log_app_to_stderr("info")
    tries = [0]

    class Tables:
        def head(self, station: str, sink: str) -> None:
            tries[0] += 1
            if tries[0] <= 3:
                raise HistoryUnavailableError("history postgresql://db/eagle: cannot connect (refused)")
            courier.halt.set()

    sink = SimpleNamespace(sink=SimpleNamespace(name="webhook"))
    courier = Courier(cast(Any, Tables()), "l1", cast(Any, sink), station_log)
    courier.halt.wait = lambda timeout=None: False  # type: ignore[method-assign]  # no second between tries
    courier.wake.wait = lambda timeout=None: False  # type: ignore[method-assign]
    courier.run()
    assert capfd.readouterr().err == (
        "WARNING:     eagle station l1: warning: webhook: outbox: HistoryUnavailableError: history "
        "postgresql://db/eagle: cannot connect (refused); retrying every 1 s (said again when it works)\n"
        "INFO:     eagle station l1: webhook: outbox: history available again (after 3 failed tries)\n"
    )


#: A line led by ``--log-timestamps``' time: ISO 8601, local time with its UTC offset, to the millisecond.
STAMPED = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d (.*)$")


def _unstamped(text: str) -> list[str]:
    """Each line of ``text`` without its time; a line without one fails."""
    lines = []
    for line in text.splitlines():
        found = STAMPED.match(line)
        assert found is not None, f"no time at the start of {line!r}"
        lines.append(found.group(1))
    return lines


def test_log_timestamps_lead_the_engines_lines_with_their_time(capfd: pytest.CaptureFixture[str]) -> None:
    before = datetime.now().astimezone()
    log_app_to_stderr("info", timestamps=True)
    logging.getLogger("eagle_iad.station").warning("eagle station line-1: intake paused: folder gone")
    err = capfd.readouterr().err
    assert _unstamped(err) == ["WARNING:     eagle station line-1: intake paused: folder gone"]
    when = datetime.fromisoformat(err.split(" ", 1)[0])
    assert before - timedelta(seconds=1) <= when <= datetime.now().astimezone()


def test_eagle_serve_log_timestamps_on_every_log_line(tmp_path: Path) -> None:
    """``eagle serve --log-timestamps``: the banner, uvicorn's own lines (stderr) and its access log (stdout) each
    start with their time (a log kept in a file had no time at all); only the one-line exit message after the log
    is bare."""
    from test_service import call, free_port

    models = tmp_path / "models"
    models.mkdir()
    port = free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("EAGLE_API_KEY", None)
    process = subprocess.Popen([sys.executable, "-m", "eagle_iad.cli", "serve", "--models", str(models),
                                "--state-dir", str(tmp_path / "state"), "--port", str(port), "--log-timestamps"],
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        deadline = time.monotonic() + wait_s(90)
        while True:
            assert process.poll() is None, process.communicate()[1]
            try:
                if call("GET", f"http://127.0.0.1:{port}/healthz")[0] == 200:
                    break
            except (urllib.error.URLError, ConnectionError):
                pass
            assert time.monotonic() < deadline, "eagle serve did not come up"
            time.sleep(0.2)
    finally:
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=wait_s(60))
    *logged, last = err.splitlines()
    assert last.startswith("eagle: stopped by SIGTERM: ")
    lines = _unstamped("\n".join(logged))
    # the history's creation is said as it is opened, before the banner (a migration must be said before serving)
    created = f": created at schema {SCHEMA_VERSION}"
    assert lines[0].startswith("INFO:     history ") and lines[0].endswith(created), lines
    assert lines[1].startswith(f"eagle service on http://127.0.0.1:{port} (history: sqlite:"), lines
    assert "INFO:     Application startup complete." in lines, lines
    assert any('"GET /healthz HTTP/1.1" 200' in line for line in _unstamped(out)), out  # uvicorn's access log


def test_eagle_station_run_log_timestamps(
    monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """``eagle station run --log-timestamps``: the station's lines and the engine's warnings (printed bare by
    Python without it) each start with their time."""
    import eagle_iad.station.config as config
    import eagle_iad.station.runner as runner
    from eagle_iad.cli import main

    def run(stations: Any, *, until_idle: bool, quiet: bool, log: Any) -> None:
        log("eagle station line-1: mono from folder in")
        logging.getLogger("eagle_iad.station").warning("station 'line-1': its lock in the history was lost")

    monkeypatch.setattr(config, "read_stations", lambda path: None)
    monkeypatch.setattr(runner, "run_stations", run)
    assert main(["station", "run", "--log-timestamps", str(tmp_path / "stations.toml")]) == 0
    assert _unstamped(capfd.readouterr().err) == [
        "eagle station line-1: mono from folder in",
        "station 'line-1': its lock in the history was lost",
    ]
