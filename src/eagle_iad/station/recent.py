"""What happened lately: counts kept per second over a window, for the status warnings that clear by themselves.

Its own module (no import of the station's others) so that a source (sources/folder.py) keeps its counts the same
way as the runner and the status read them.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

from eagle_iad.choices import RECENT_S as RECENT_S  # declared there: /healthz serves it from the service's layer

#: ``(second, count)`` pairs: how many times something happened in each whole second (since the epoch) that saw it.
Seconds = tuple[tuple[int, int], ...]


def within(seconds: Seconds, now: float, window_s: float = RECENT_S) -> int:
    """How many of ``seconds`` happened in the last ``window_s`` before ``now``: a second counts while any of it is
    in the window (a warning of them clears at most 1 s late, never early)."""
    return sum(count for second, count in seconds if second + 1 > now - window_s)


class Recent:
    """How many times something happened since the station started (a file of content already inspected, a file
    the hot folder found it does not take), and when lately: counted per second over the last :data:`RECENT_S`,
    so a warning of them says how many lately and clears once none happened for that long, without a restart.
    Bounded whatever the rate: one pair per second that saw any, those out of the window dropped at each count and
    each look (at most ``RECENT_S + 1`` pairs). The times are the wall clock's (``clock``; a test gives its own):
    ``eagle station status``, another process, compares them with its own. Counted by the intake's thread and
    read by the status' (the service's requests, /metrics), hence the lock."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        #: How many times since the start (the status figures' count; not a warning).
        self.total = 0
        self._seconds: deque[list[int]] = deque()
        self._lock = threading.Lock()

    def add(self, count: int = 1) -> None:
        """``count`` more, in this second (more than one: a source that says only its total, counted when seen)."""
        second = int(self.clock())
        with self._lock:
            self.total += count
            if self._seconds and self._seconds[-1][0] == second:
                self._seconds[-1][1] += count
            else:
                self._seconds.append([second, count])
            self._trim(second)

    def seconds(self) -> Seconds:
        """The ``(second, count)`` pairs still in the window, oldest first (what the intake file keeps)."""
        with self._lock:
            self._trim(self.clock())
            return tuple((second, count) for second, count in self._seconds)

    def count(self) -> int:
        """How many times in the last :data:`RECENT_S`."""
        return within(self.seconds(), self.clock())

    def _trim(self, now: float) -> None:
        while self._seconds and self._seconds[0][0] + 1 <= now - RECENT_S:
            self._seconds.popleft()
