"""Scratch folders for big temporary work (a fit's features, an export's intermediate graph).

Why not a plain :class:`tempfile.TemporaryDirectory`: its clean-up runs only if the process lives to
run it. A fit killed with SIGKILL (or by the out-of-memory killer) left its ``eagle-fit-*`` folder,
gigabytes for a big training set, and nothing ever removed it. Here every scratch folder is named
``eagle-<kind>-<pid>-<random>`` and holds a lock file that its owner keeps locked
(:func:`fcntl.flock`) for as long as it lives. The kernel drops that lock when the owner dies, however
it dies, so :func:`clean_stale` can tell a leftover (lock free) from a folder in use (lock held)
without trusting the process id, which the system reuses. Every command that creates a scratch
folder first cleans the stale ones in the same place, and ``eagle serve`` does so at start-up.

A folder is created under a hidden name (``.eagle-<kind>-...``), locked, then renamed into place, so
a cleaner never sees a visible folder whose lock is not yet held.

Where: ``--scratch DIR`` (:func:`set_root`), else ``TMPDIR`` (:func:`tempfile.gettempdir`).
Sizes: docs/OPERATIONS.md ("Stopping and scratch space").
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from eagle_iad.errors import ConfigError
from eagle_iad.stops import checkpoint

#: The lock file inside every scratch folder, locked by the owner for its whole life.
LOCK = ".eagle-scratch.lock"
#: ``eagle-<kind>-<pid>-<random>``; a leading dot while the folder is being set up.
_NAME = re.compile(r"(?P<pending>\.?)eagle-(?P<kind>[a-z]+)-(?P<pid>\d+)-\w+")

_root: Path | None = None


def set_root(directory: str | os.PathLike[str] | None) -> None:
    """Put scratch folders in ``directory`` (``--scratch``); None: back to ``TMPDIR``.

    The folder must exist and be writable: a typo fails now, not after the first minutes of a fit.
    """
    global _root
    if directory is None:
        _root = None
        return
    path = Path(directory).expanduser().resolve()
    if not path.is_dir():
        raise ConfigError(f"--scratch {directory}: is not a directory")
    if not os.access(path, os.W_OK | os.X_OK):
        raise ConfigError(f"--scratch {directory}: cannot write there (permission denied)")
    _root = path


def scratch_root() -> Path:
    """Where scratch folders go: the ``--scratch`` folder, else ``TMPDIR`` (or the system default)."""
    return _root if _root is not None else Path(tempfile.gettempdir())


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive
    return True


def clean_stale(root: Path | None = None) -> list[Path]:
    """Remove the scratch folders in ``root`` whose owner is gone; the removed folders.

    A folder whose lock is held belongs to a running process and is never touched; so is one this
    user may not open (another user's). A hidden folder being set up has no lock yet: it is removed
    only when the process in its name is gone (it exists for microseconds, so a reused pid at worst
    keeps a leftover one more time, never removes a live one).
    """
    root = root or scratch_root()
    removed: list[Path] = []
    try:
        entries = list(root.iterdir())
    except OSError:
        return removed
    for entry in entries:
        match = _NAME.fullmatch(entry.name)
        if match is None or entry.is_symlink() or not entry.is_dir():
            continue
        pid = int(match["pid"])
        if match["pending"]:
            # Being set up: its lock may not be held yet (between its creation and the flock), so only a
            # gone owner makes it stale; its lock is never taken here.
            if pid != os.getpid() and not _pid_alive(pid):
                shutil.rmtree(entry, ignore_errors=True)
                removed.append(entry)
            continue
        try:
            fd = os.open(entry / LOCK, os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError:
            # Being set up, or half removed by an owner that was killed while removing it.
            if not _pid_alive(pid):
                shutil.rmtree(entry, ignore_errors=True)
                removed.append(entry)
            continue
        except OSError:
            continue  # not ours to judge (permissions)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    continue  # the owner runs
                raise
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
        finally:
            os.close(fd)
    return removed


@contextmanager
def scratch_folder(kind: str, root: Path | None = None) -> Iterator[Path]:
    """A private, locked ``eagle-<kind>-<pid>-*`` folder under ``root`` (default :func:`scratch_root`).

    Stale folders there are removed first; the folder is removed when the block ends, fails, or is
    stopped by a signal (:class:`eagle_iad.stops.Stopped`). After a SIGKILL the next command's
    :func:`clean_stale` removes it.
    """
    base = root or scratch_root()
    clean_stale(base)
    pending = Path(tempfile.mkdtemp(prefix=f".eagle-{kind}-{os.getpid()}-", dir=base))
    fd = -1
    try:
        fd = os.open(pending / LOCK, os.O_CREAT | os.O_RDWR | os.O_CLOEXEC, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a new file: nobody else holds it
        folder = base / pending.name[1:]
        os.rename(pending, folder)
    except BaseException:
        shutil.rmtree(pending, ignore_errors=True)
        if fd >= 0:
            os.close(fd)
        raise
    try:
        checkpoint(f"scratch {kind}")
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)  # the lock file goes with it; the lock with the close
        os.close(fd)
