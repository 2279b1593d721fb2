"""One ``eagle serve`` per state folder: an advisory lock held for the life of the process.

Why: a second service on the same folder would clean up the first one's in-flight uploads at start-up
and both would write one history. The lock is ``flock`` on ``<state-dir>/eagle-serve.lock``, held by
an open descriptor, so the kernel drops it when the process ends however it ends (SIGKILL included):
a lock file left behind by a dead process is not locked and is simply taken over. The file holds the
holder's pid and command (``eagle serve``, ``eagle station run``: both serve a state folder), for the
message the second one prints: it names what holds the folder, so a station is not taken for a service.
"""

from __future__ import annotations

import os
from pathlib import Path

from eagle_iad.errors import ConfigError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no advisory locks, one service per folder is on the user
    fcntl = None  # type: ignore[assignment]

LOCK_FILE = "eagle-serve.lock"

#: What this process is, written in the lock file for the message a second one prints: the ``eagle``
#: command that runs it (``eagle_iad.cli.main`` says which); a program that builds the app itself is a service.
_holder = "eagle serve"


#: How this process was given its state folder, for the refusal's advice: ``--state-dir`` (``eagle serve``), or
#: what :func:`set_state_knob` says (``eagle station run`` reads ``state =`` from its stations file).
DEFAULT_KNOB = "--state-dir"
_knob = DEFAULT_KNOB


def set_holder(command: str) -> None:
    """Say which command this process runs (``eagle station run``), for the lock file; the state folder's knob is
    ``--state-dir`` again until :func:`set_state_knob` says otherwise (``eagle_iad.cli.main`` calls this first)."""
    global _holder, _knob
    _holder = " ".join(command.split())[:100] or "eagle serve"
    _knob = DEFAULT_KNOB


def set_state_knob(knob: str) -> None:
    """Say where this process's state folder was set (``'state =' in stations.toml``), so a refusal tells to change
    that: a station run given "a different --state-dir" looked for a flag it does not have."""
    global _knob
    _knob = knob


class StateLock:
    """The exclusive lock on a state folder; :meth:`acquire` refuses when a live process holds it."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> None:
        if fcntl is None:  # pragma: no cover
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # held by a live process (a stale file from a dead one is never locked)
            lines = os.read(fd, 256).decode(errors="replace").splitlines()
            os.close(fd)
            pid = lines[0].strip() if lines and lines[0].strip() else "?"
            # a lock written before the command was recorded says only the pid: then any eagle process
            command = lines[1].strip() if len(lines) > 1 and lines[1].strip() else "eagle process"
            raise ConfigError(
                f"another {command} (pid {pid}) is using the state folder {self.path.parent}; stop it or "
                f"give this one a different {_knob}"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n{_holder}\n".encode())
        self._fd = fd

    def release(self) -> None:
        """Give the lock up (the file stays: removing it could let two processes lock two different files)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
