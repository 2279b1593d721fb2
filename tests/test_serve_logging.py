"""``eagle serve --log-level``: the engine's own log lines (a served station's) reach stderr at that level."""

from __future__ import annotations

import logging

import pytest

from eagle_iad.cli.serve import APP_LOGGER, log_app_to_stderr


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
    assert capfd.readouterr().err == (
        "WARNING:     eagle station l1: warning: sink webhook is failing: refused\n"
        "WARNING:     eagle station l1: webhook gave up on record 40e0 after 10 tries\n"
        "WARNING:     eagle station l1: x.png: not inspected: empty file\n"
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
