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
