"""Stopped is not crashed: SIGTERM and SIGINT end a command through its normal clean-up.

Python's default SIGTERM action ends the process at once: no ``finally`` runs, so a fit stopped by
a service manager (``systemctl stop``, ``docker stop``, a batch scheduler's time limit) left its
scratch folder and staging copies behind. :func:`stop_on_signals` (installed once, by the CLI's
``main``, around every command) turns both signals into :class:`Stopped`, an exception raised in
the main thread wherever it happens to be, so context managers and ``finally`` blocks remove scratch
and staging folders, and the previous model and reports stay as they were. ``main`` then prints one
line (``eagle: stopped by SIGTERM: <what>; ...``) and exits with the shell's convention, 128 + the
signal number (130 for SIGINT, 143 for SIGTERM).

:class:`Stopped` subclasses :class:`KeyboardInterrupt`, so code that catches ``Exception`` lets it
through, and clean-up written for Ctrl-C covers SIGTERM too. A second signal while the first one's
clean-up runs is ignored, so the clean-up finishes (SIGKILL still ends the process; the next
command then removes the stale scratch, see :mod:`eagle_iad.scratch`).

:func:`checkpoint` is a test hook: with ``EAGLE_TEST_PAUSE=<name>`` the process announces on stderr
that it reached the named point and waits there, so a test can signal it at a known stage instead of
after a guessed sleep.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

#: The signals that stop a command cleanly.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
#: Environment variable naming the :func:`checkpoint` a test wants the process to pause at.
PAUSE_ENV = "EAGLE_TEST_PAUSE"
#: The line a paused process writes to stderr (followed by the checkpoint's name).
PAUSED = "eagle: test pause at "
#: Longest pause at a checkpoint: a test that never signals does not leave the process hanging.
PAUSE_LIMIT_S = 600.0


class Stopped(KeyboardInterrupt):
    """The command was stopped by ``signum``; ``what`` says what was stopped (filled in by the CLI)."""

    def __init__(self, signum: int, what: str = "") -> None:
        super().__init__(signum)
        self.signum = signum
        self.what = what

    @property
    def signal_name(self) -> str:
        """``SIGTERM``, ``SIGINT``, ..."""
        return signal.Signals(self.signum).name

    @property
    def exit_status(self) -> int:
        """The shell's convention for a process ended by a signal: 128 + its number (130, 143)."""
        return 128 + self.signum


@contextmanager
def stop_on_signals() -> Iterator[None]:
    """Within the block, SIGINT and SIGTERM raise :class:`Stopped` in the main thread (once).

    The previous handlers are restored afterwards (tests run the CLI in-process). Outside the main
    thread, where Python cannot install handlers, the block runs unchanged.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    fired: list[int] = []

    def handler(signum: int, _frame: FrameType | None) -> None:
        if fired:
            return  # the first stop's clean-up is running: let it finish
        fired.append(signum)
        if _deferring:
            _deferred.append(signum)  # raised when the uninterruptible step ends (see :func:`uninterrupted`)
            return
        raise Stopped(signum)

    previous = {sig: signal.signal(sig, handler) for sig in STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
        _deferred.clear()


_deferring: list[bool] = []
_deferred: list[int] = []


@contextmanager
def uninterrupted() -> Iterator[None]:
    """A step a stop must not cut in two (publishing a report's files): a signal that arrives meanwhile
    raises :class:`Stopped` when the block ends. Main thread only, like the handlers."""
    _deferring.append(True)
    try:
        yield
    except BaseException as exc:
        _deferring.pop()
        # the step failed meanwhile: the stop asked for still stops (its clean-up is what runs next), not
        # the error alone, which a caller might catch and go on after (later signals being ignored)
        if not _deferring and _deferred and not isinstance(exc, Stopped):
            raise Stopped(_deferred.pop()) from exc
        raise
    _deferring.pop()
    if not _deferring and _deferred:
        raise Stopped(_deferred.pop())


_paused: set[str] = set()


def checkpoint(name: str) -> None:
    """Test hook: pause here (once per process) when ``EAGLE_TEST_PAUSE`` names this point. Inside
    :func:`uninterrupted` the pause ends when a signal arrives (deferred: raised as the block ends)."""
    if os.environ.get(PAUSE_ENV) != name or name in _paused:
        return
    _paused.add(name)
    print(f"{PAUSED}{name}", file=sys.stderr, flush=True)
    deadline = time.monotonic() + PAUSE_LIMIT_S
    while time.monotonic() < deadline and not _deferred:
        time.sleep(0.05)  # a signal's handler raises out of here (or, deferred, ends the loop)
