"""One ``eagle serve`` per state folder: an advisory lock held for the life of the process.

Why: a second service on the same folder would clean up the first one's in-flight uploads at start-up
and both would write one history. The lock is ``flock`` on ``<state-dir>/eagle-serve.lock``, held by
an open descriptor, so the kernel drops it when the process ends however it ends (SIGKILL included):
a lock file left behind by a dead process is not locked and is simply taken over. The file holds the
holder's pid, for the message the second service prints.
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
            holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise ConfigError(
                f"another eagle serve (pid {holder}) is using the state folder {self.path.parent}; stop it or "
                "give this one a different --state-dir"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        """Give the lock up (the file stays: removing it could let two processes lock two different files)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
