"""Prometheus metrics, in the text exposition format written by hand (no extra dependency).

Why by hand: four metric families do not justify a client library, and the format is simple and
stable. Counters and a fixed-bucket latency histogram per route template (not per raw path, so a
hostile client cannot blow up the label set), plus gauges read at scrape time (queue depth). A scrape-time
reader that fails (one that needs the history, during an outage) leaves its family out, so the scrape still
answers, with ``eagle_history_up 0``: an alert needs the scrape most when something is down. The history's own
gauge is read first (:meth:`Metrics.history`), and while it finds the history unreachable the readers that need
the history are not tried at all: each would wait for a connection in turn, past a scraper's timeout.
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from collections.abc import Callable

_log = logging.getLogger(__name__)

#: Latency buckets in seconds (an inspection is tens of ms expert-only, seconds with an MLLM).
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


def label(value: str) -> str:
    """A label value escaped for the text format."""
    return _label(value)


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class Metrics:
    """Thread-safe request counters, latency histograms, inspection/CAAS counters and scrape-time gauges."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: dict[tuple[str, str, str], int] = defaultdict(int)
        self._latency: dict[tuple[str, str], list[float]] = {}
        self._inspections = 0
        self._caas = 0
        self._gauges: dict[str, tuple[str, Callable[[], float], bool]] = {}
        self._texts: list[tuple[Callable[[], list[str]], bool]] = []
        self._history: tuple[str, str, Callable[[], tuple[float, bool]]] | None = None

    def gauge(self, name: str, help_text: str, read: Callable[[], float], *, needs_history: bool = False) -> None:
        """Register a gauge whose value is read at scrape time; ``needs_history``: not read while the history's
        gauge (:meth:`history`) finds it unreachable at this scrape."""
        self._gauges[name] = (help_text, read, needs_history)

    def text(self, lines: Callable[[], list[str]], *, needs_history: bool = False) -> None:
        """Register metric families rendered by their owner at scrape time (labelled per station and sink);
        ``needs_history`` as :meth:`gauge`'s."""
        self._texts.append((lines, needs_history))

    def history(self, name: str, help_text: str, probe: Callable[[], tuple[float, bool]]) -> None:
        """Register the history's gauge, read before any other at each scrape: ``probe`` gives its value and
        whether the history answered just now. When it did not, the readers that need the history are left out
        untried, so a scrape during an outage waits for one connection attempt, not one per reader."""
        self._history = (name, help_text, probe)

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        with self._lock:
            self._requests[(method, route, str(status))] += 1
            counts = self._latency.setdefault((method, route), [0.0] * (len(BUCKETS) + 2))
            for i, bound in enumerate(BUCKETS):
                if seconds <= bound:
                    counts[i] += 1
            counts[-2] += 1  # count (+Inf bucket)
            counts[-1] += seconds  # sum

    def observe_inspection(self, caas_applied: bool) -> None:
        with self._lock:
            self._inspections += 1
            self._caas += int(caas_applied)

    def render(self) -> str:
        lines = [
            "# HELP eagle_http_requests_total HTTP requests by method, route template and status.",
            "# TYPE eagle_http_requests_total counter",
        ]
        with self._lock:
            for (method, route, status), count in sorted(self._requests.items()):
                lines.append(
                    f'eagle_http_requests_total{{method="{method}",route="{_label(route)}",status="{status}"}} {count}'
                )
            lines += [
                "# HELP eagle_http_request_duration_seconds Request latency by method and route template.",
                "# TYPE eagle_http_request_duration_seconds histogram",
            ]
            for (method, route), counts in sorted(self._latency.items()):
                labels = f'method="{method}",route="{_label(route)}"'
                for bound, bucket in zip(BUCKETS, counts, strict=False):
                    lines.append(f'eagle_http_request_duration_seconds_bucket{{{labels},le="{bound}"}} {int(bucket)}')
                lines.append(f'eagle_http_request_duration_seconds_bucket{{{labels},le="+Inf"}} {int(counts[-2])}')
                lines.append(f"eagle_http_request_duration_seconds_count{{{labels}}} {int(counts[-2])}")
                lines.append(f"eagle_http_request_duration_seconds_sum{{{labels}}} {counts[-1]:.6f}")
            inspections, caas = self._inspections, self._caas
        lines += [
            "# HELP eagle_inspections_total Inspections answered.",
            "# TYPE eagle_inspections_total counter",
            f"eagle_inspections_total {inspections}",
            "# HELP eagle_caas_applied_total Inspections where CAAS was applied.",
            "# TYPE eagle_caas_applied_total counter",
            f"eagle_caas_applied_total {caas}",
            "# HELP eagle_caas_rate Share of inspections with CAAS applied since start.",
            "# TYPE eagle_caas_rate gauge",
            f"eagle_caas_rate {caas / inspections if inspections else 0.0}",
        ]
        gauges = dict(self._gauges)
        answered = True
        if self._history is not None:
            name, help_text, probe = self._history
            try:
                found, answered = probe()
            except Exception as exc:  # a probe that fails says the history is down, it does not fail the scrape
                _log.debug("metrics: %s not read (%s)", name, exc)
                found, answered = 0.0, False
            gauges[name] = (help_text, lambda: found, False)
        for name, (help_text, read, needs_history) in sorted(gauges.items()):
            if needs_history and not answered:
                continue
            try:
                value = float(read())
            except Exception as exc:  # the history away (an outage): this one is left out, the scrape still answers
                _log.debug("metrics: %s not read (%s)", name, exc)
                continue
            lines += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge", f"{name} {value}"]
        for more, needs_history in self._texts:
            if needs_history and not answered:
                continue
            try:
                lines += more()
            except Exception as exc:  # as above: eagle_history_up says why, the other families still come
                _log.debug("metrics: a family not read (%s)", exc)
        return "\n".join(lines) + "\n"
