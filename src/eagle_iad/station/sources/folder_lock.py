"""One station per hot folder, across processes: a lock on ``.eagle-station.lock`` inside the folder.

Why: two stations on one folder each inspect every image and race to move it, so each part is inspected and
reported twice. A stations file refuses that within itself, and a shared history refuses two runs of one
station name; but two ``eagle station run`` with their own state folders (or a service and a ``station run``),
each with a station of another name, watched the same folder unseen. So a hot folder station takes an exclusive
``flock`` on a lock file in the folder when it starts and drops it when it stops; the second is refused with
who holds it (pid, host, station, state folder), written in the file by the holder.

The lock follows the folder's path, not the folder: a folder removed (or renamed away) and made again under its
path has no lock file, the old one having gone with the old folder. So the station looks before each listing and
each image it takes (:meth:`FolderLock.holds`, one ``stat``) and, finding the lock file there not its own, takes
the lock again on the folder now there before it reads anything; held by another station meanwhile (started on the
new folder), its intake waits, saying who holds it, until that one stops.

The file is removed by its holder at the stop, once its intake thread has ended (a thread finishing an image
past the stop's grace still moves it: see ``Running.close_source``). The folder's listing shows nothing of it
while no station runs; a killed holder leaves it, which is harmless: the lock went with the process. A lock
taken on a file that was removed meanwhile is let go and taken again on the file now there, so two never hold
locks on two files.

Limits: on a local file system the lock is the kernel's. On NFS, Linux turns ``flock`` into a whole-file POSIX
lock held by the server (NFSv4) or its lock manager (NFSv3 ``lockd``/``statd``), so it holds across hosts,
except on a mount with ``nolock`` or ``local_lock=flock``/``all``, where each host sees only its own locks: two
hosts are then not kept apart. A file system that supports no lock at all (``ENOLCK``, ``EOPNOTSUPP``) refuses
the start, saying so, rather than run unguarded. Within one process the folders held are also kept in a table,
so two stations of one process on one folder are refused whatever the file system does (NFS's POSIX-emulated
locks do not tell two locks of one process apart). A folder whose holder in this process was stopped (a station
deleted) but still finishes its last image past the grace is marked so (:meth:`FolderLock.finishing`): a station
started on it meanwhile is refused with :class:`FolderFinishingError` (try again in a moment), not told to stop a
station that no longer exists.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import threading
from pathlib import Path

from eagle_iad.errors import FolderFinishingError, FolderInUseError

#: The lock file inside a hot folder (a dot file: the folder source never takes it for an image).
LOCK_NAME = ".eagle-station.lock"

#: The folders this process holds, by (device, inode).
_held: dict[tuple[int, int], FolderLock] = {}
_held_lock = threading.Lock()


def _holder(station: str, state_dir: Path) -> dict[str, object]:
    return {"pid": os.getpid(), "host": socket.gethostname(), "station": station, "state": str(state_dir)}


def _said(holder: object) -> str:
    """The holder as one clause: ``pid 123 on host, station 'a', state folder /x``."""
    if not isinstance(holder, dict) or not {"pid", "host", "station", "state"} <= set(holder):
        return "a holder that has not said who it is yet (starting, or an earlier version)"
    return f"pid {holder['pid']} on {holder['host']}, station {holder['station']!r}, state folder {holder['state']}"


def _read_holder(fd: int) -> object:
    try:
        return json.loads(os.pread(fd, 4096, 0).decode("utf-8", "replace") or "null")
    except (OSError, ValueError):
        return None


class FolderLock:
    """The lock of one hot folder, held until :meth:`release`."""

    def __init__(self, folder: Path, fd: int, key: tuple[int, int], station: str, said: str) -> None:
        self.folder = folder
        self._fd: int | None = fd
        self._key = key
        #: The station holding it, and the holder as a refusal names it (:func:`_said`).
        self.station = station
        self.said = said
        #: Why its station stopped (``"was deleted"``), while its last image is finished past the grace.
        self.stopped: str | None = None
        info = os.fstat(fd)
        #: The lock file's (device, inode): what :meth:`holds` looks for in the folder.
        self._file = (info.st_dev, info.st_ino)

    def holds(self) -> bool:
        """Whether the lock file now in the folder (at its path) is the one this lock holds: not when the folder
        was removed and made again (the lock file went with the old folder, wherever it was moved), nor when the
        lock file itself was removed. A station must then take the lock again before it takes any image there:
        otherwise a second station started on the new folder would find it free, and both inspect every image."""
        try:
            there = os.stat(self.folder / LOCK_NAME, follow_symlinks=False)
        except OSError:
            return False
        return self._fd is not None and (there.st_dev, there.st_ino) == self._file

    def finishing(self, why: str) -> None:
        """Its station ``why`` (``"was deleted"``) and only finishes the image in hand before it lets the folder go:
        a station started on the folder meanwhile is told to try again in a moment."""
        with _held_lock:
            self.stopped = why

    def release(self) -> None:
        """Remove the lock file and drop the lock (again: nothing)."""
        with _held_lock:
            fd, self._fd = self._fd, None
            if fd is None:
                return
            _held.pop(self._key, None)
            try:
                path = self.folder / LOCK_NAME
                if _same_file(fd, path):
                    path.unlink()
            except OSError:
                pass  # the folder gone or read-only now: the lock goes with the descriptor all the same
            finally:
                os.close(fd)


def _same_file(fd: int, path: Path) -> bool:
    try:
        mine, there = os.fstat(fd), os.stat(path, follow_symlinks=False)
    except OSError:
        return False
    return (mine.st_dev, mine.st_ino) == (there.st_dev, there.st_ino)


def lock_folder(folder: Path, station: str, state_dir: Path) -> FolderLock:
    """Hold ``folder``'s lock for ``station`` (of the state folder ``state_dir``), or :class:`FolderInUseError`
    naming the folder and who holds it."""
    try:
        info = os.stat(folder)
    except OSError as exc:
        raise FolderInUseError(f"station {station!r}: hot folder {folder} cannot be locked ({exc.strerror or exc})"
                               ) from None  # fmt: skip
    key = (info.st_dev, info.st_ino)

    def refused(who: str) -> FolderInUseError:
        return FolderInUseError(f"station {station!r}: hot folder {folder} is taken by another station ({who}); two "
                                "stations on one folder would each inspect every image: stop that one first, or give "
                                "this station its own folder")  # fmt: skip

    with _held_lock:
        if (mine := _held.get(key)) is not None:
            if mine.stopped is not None:
                raise FolderFinishingError(f"station {station!r}: hot folder {folder} is still held by station "
                                           f"{mine.station!r}, which {mine.stopped} and is finishing an image past "
                                           "the shutdown grace; try again in a few seconds")  # fmt: skip
            raise refused(mine.said)
        path = folder / LOCK_NAME
        for _ in range(10):  # a holder removing the file as this one opened it: try the file now there
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644)
            except OSError as exc:
                raise FolderInUseError(f"station {station!r}: hot folder {folder}: its lock file {LOCK_NAME} cannot be "
                                       f"opened ({exc.strerror or exc})") from None  # fmt: skip
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                who = _said(_read_holder(fd))
                os.close(fd)
                raise refused(who) from None
            except OSError as exc:
                os.close(fd)
                why = exc.strerror or str(exc)
                if exc.errno in (errno.ENOLCK, errno.EOPNOTSUPP):
                    why += "; on NFS, the lock manager must run (or the mount must not say nolock)"
                raise FolderInUseError(f"station {station!r}: hot folder {folder} cannot be locked ({why}), so another "
                                       "station on it could not be refused; not started") from None  # fmt: skip
            if _same_file(fd, path):
                break
            os.close(fd)  # locked a file its holder removed meanwhile: take the one there now
        else:
            raise refused("its lock file keeps being replaced")
        holder = _holder(station, state_dir)
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(holder).encode(), 0)
        except OSError:
            pass  # a full disk: the lock holds all the same, a refusal just cannot say who
        lock = _held[key] = FolderLock(folder, fd, key, station, _said(holder))
        return lock
