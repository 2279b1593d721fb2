"""A sink's delivery that does not return: seen in the status and the log while it lasts.

Why: a courier calls its sink's ``deliver`` and waits for it (rows go in order, one at a time), and the station
cannot cut a call short. A plugin sink whose ``deliver`` blocks (a lock never released, a socket read with no
timeout) held its queue with nothing said: the status showed only ``pending`` growing and ``warnings: []``. Each
courier's :class:`DeliveryWatch` says, once a delivery has been in progress for :data:`HUNG_DELIVERY_S`, one line
in the log and a status warning naming the sink, its kind (and class, for a plugin's) and for how long; and one
line when the call returns.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

#: Seconds one call of a sink's ``deliver`` may take before the status warns that it has not returned (and the log
#: says so, once). Longer than the built-in sinks' own timeouts (a webhook's ``timeout_s``, 10 s by default), so
#: only a delivery that does not keep to one is warned of.
HUNG_DELIVERY_S = 30.0
#: Seconds past a sink's own bound on one delivery (its ``delivery_bound_s``) before the watch says it has not
#: returned: a built-in sink set to wait long (a PLC's acknowledgement up to an hour, a webhook's ``timeout_s`` up to
#: 600 s) keeps to its bound, and is not warned of for doing what it was told.
BOUND_MARGIN_S = 5.0


def delivery_limit(sink: object) -> float:
    """Seconds one of ``sink``'s deliveries may take before it is said overdue: :data:`HUNG_DELIVERY_S`, or its own
    bound (``delivery_bound_s``: the most its ``deliver`` waits by its options) and :data:`BOUND_MARGIN_S` where
    that is longer. A plugin sink may declare the bound too; without one, :data:`HUNG_DELIVERY_S`."""
    bound = getattr(sink, "delivery_bound_s", None)
    own = float(bound) + BOUND_MARGIN_S if isinstance(bound, int | float) and bound > 0 else 0.0
    return max(HUNG_DELIVERY_S, own)  # read at each look: a test may lower HUNG_DELIVERY_S


def sink_label(sink: object) -> str:
    """How a warning names a sink's kind: ``webhook``, or for a plugin's class ``csvlog: my_plugin.CsvLog`` (the
    kind alone does not say which code to look at)."""
    kind = type(sink)
    said = str(getattr(sink, "kind", kind.__name__))
    return said if kind.__module__.startswith("eagle_iad.") else f"{said}: {kind.__module__}.{kind.__qualname__}"


class DeliveryWatch:
    """Watches one courier's delivery in progress (see the module's docstring); its thread, started at the first
    delivery, waits on a condition, so it costs nothing while deliveries return in time."""

    def __init__(self, station: str, sink: object, log: Callable[[str], None], changed: Callable[[], None]) -> None:
        """``changed``: called (in the watch's thread, or the courier's) when :meth:`overdue` changes, so the state
        file that ``eagle station status`` reads says it."""
        self.station = station
        self.name = str(getattr(sink, "name", "?"))
        self.label = sink_label(sink)
        self._sink = sink
        self.log = log
        self.changed = changed
        self._cond = threading.Condition()
        self._record: str | None = None
        #: When the delivery in progress began: monotonic (for the limit) and seconds since the epoch (the status').
        self._began = 0.0
        self._began_at = 0.0
        #: Whether the delivery in progress was said to be overdue.
        self._said = False
        self._closed = False
        self._thread: threading.Thread | None = None
        #: Held while a line is said: the line of a return never comes before the one saying it was overdue.
        self._saying = threading.Lock()

    @contextmanager
    def delivering(self, record_id: str) -> Iterator[None]:
        """Around one call of ``deliver`` (of the row ``record_id``): an exception goes through, said as how it
        returned."""
        with self._cond:
            self._record, self._began, self._began_at, self._said = record_id, time.monotonic(), time.time(), False
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=f"eagle-watch-{self.station}-{self.name}",
                                                daemon=True)  # fmt: skip
                self._thread.start()
            self._cond.notify()
        outcome = "it delivered"
        try:
            yield
        except BaseException as exc:
            outcome = f"it raised {type(exc).__name__}: {exc}"
            raise
        finally:
            with self._saying, self._cond:
                said, took = self._said, time.monotonic() - self._began
                self._record, self._said = None, False
                self._cond.notify()
                if said:
                    self.log(f"eagle station {self.station}: sink {self.name!r} ({self.label}): the delivery of "
                             f"record {record_id} returned after {took:.0f} s ({outcome})")  # fmt: skip
            if said:
                self.changed()

    def overdue(self) -> tuple[str, str, float] | None:
        """``(sink, label, began)`` while a delivery said to be overdue has not returned (``began``: seconds since the
        epoch), else ``None``."""
        with self._cond:
            return (self.name, self.label, self._began_at) if self._record is not None and self._said else None

    def in_progress(self) -> tuple[str, float] | None:
        """``(record, seconds)`` of the delivery in progress, overdue or not, or ``None``."""
        with self._cond:
            return None if self._record is None else (self._record, time.monotonic() - self._began)

    def close(self) -> None:
        """The courier ended: the watch's thread ends too."""
        with self._cond:
            self._closed = True
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._closed and (self._record is None or self._said):
                    self._cond.wait()
                if self._closed:
                    return
                left = self._began + delivery_limit(self._sink) - time.monotonic()
                if left > 0:
                    self._cond.wait(left)
                    continue
            with self._saying:  # its line before the one of its return, which waits for this
                with self._cond:
                    # returned meanwhile (another delivery maybe begun, not overdue yet): nothing to say
                    early = time.monotonic() - self._began < delivery_limit(self._sink)
                    if self._record is None or self._said or early:
                        continue
                    self._said, record, took = True, self._record, time.monotonic() - self._began
                self.log(f"eagle station {self.station}: warning: sink {self.name!r} ({self.label}): one delivery "
                         f"(record {record}) has not returned for {took:.0f} s; the deliveries behind it wait "
                         "(a sink's deliver must return or raise within its own timeout; a line when it "
                         "returns)")  # fmt: skip
                self.changed()
