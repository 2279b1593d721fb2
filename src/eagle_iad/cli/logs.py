"""``--log-timestamps``: each log line of ``eagle serve``, ``eagle serve-mllm`` and ``eagle station run`` led by
its time (docs/OPERATIONS.md, "Logs").

Why an option, off by default: under journald or ``docker logs -t`` every line already has its time, and a
second one is noise; but a log kept in a file (``nohup``, a redirect, ``docker`` without ``-t``) had none, so
the time of an outage could not be read from it. Why ISO 8601 in local time with its UTC offset, to the
millisecond: one form that sorts, that a person reads without a converter and that a log tool parses
unambiguously on a machine in any time zone.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from datetime import datetime

#: The loggers uvicorn configures for ``eagle serve`` (its own lines and the access log).
UVICORN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access")


def stamp(when: float | None = None) -> str:
    """``when`` (seconds since the epoch; ``None``: now) as a log line's time: ``2026-12-07T01:47:46.123+00:00``."""
    moment = datetime.now() if when is None else datetime.fromtimestamp(when)
    return moment.astimezone().isoformat(timespec="milliseconds")


class Timestamped(logging.Formatter):
    """Another formatter's line (uvicorn's coloured one included), led by :func:`stamp` of the record's time."""

    def __init__(self, inner: logging.Formatter | None) -> None:
        super().__init__()
        self.inner = inner or logging.Formatter()

    def format(self, record: logging.LogRecord) -> str:
        return f"{stamp(record.created)} {self.inner.format(record)}"


def stamp_handlers(names: Iterable[str]) -> None:
    """Lead every line the handlers of the loggers ``names`` write with its time (once: a handler already
    stamped is left)."""
    for name in names:
        for handler in logging.getLogger(name).handlers:
            if not isinstance(handler.formatter, Timestamped):
                handler.setFormatter(Timestamped(handler.formatter))


def stamped(log: Callable[[str], None]) -> Callable[[str], None]:
    """``log`` (a function writing one line, as ``eagle station run``'s) with each line led by its time."""

    def line(text: str) -> None:
        log(f"{stamp()} {text}")

    return line
