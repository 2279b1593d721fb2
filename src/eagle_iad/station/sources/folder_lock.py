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

Camera frames (see ``camera.py``): a camera station saves each frame in its ``frames`` folder as
``<name_prefix>-<index>.png`` and, at each start, takes the frames it saved and never inspected. Two cameras on
one folder and prefix would interleave their frames and neither start could tell whose were left; a hot folder
on a frames folder would take the frames away as images of its own. So a camera, when it starts, takes two locks
in its frames folder (:func:`lock_frames`): an exclusive one on ``.eagle-camera-<name_prefix>.lock`` (one camera
per folder and prefix; the holder written in it, removed at the stop, as above) and a *shared* one on the
folder's ``.eagle-station.lock``, so cameras of other prefixes share the folder while a hot folder's exclusive
lock is refused (and a camera is refused while a hot folder holds it). A shared holder writes nothing in that file
(several hold it at once): it empties it (what a killed hot folder left there), and a hot folder refused by it
names the cameras from their own lock files, those still held only (a killed camera's file stays, its line in
it). The last shared holder to stop removes the file: it removes it only once it can take the lock exclusively (no
other holder left, in any process), else it just lets it go; a camera or hot folder starting in that moment tries
again, a few times :data:`WAIT_S` apart (:data:`TRIES`), rather than be refused by a camera that is gone.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

from eagle_iad.errors import FolderFinishingError, FolderInUseError

#: The lock file inside a hot folder (a dot file: the folder source never takes it for an image); a camera's frames
#: folder holds it too, shared by its cameras (see the module's doc).
LOCK_NAME = ".eagle-station.lock"
#: The start of a camera's own lock file in its frames folder: ``.eagle-camera-<name_prefix>.lock``.
CAMERA_LOCK = ".eagle-camera-"
#: Tries of a lock refused by a holder that may be just going, :data:`WAIT_S` apart (slept outside the in-process
#: table's lock, so nothing else of the process waits): a camera stopping holds the station lock exclusively for a
#: moment (to remove the file as its last holder), which must refuse neither a camera (taking it shared: it retries
#: whoever holds it) nor a hot folder (taking it exclusively: it retries while the holder found has said nothing, as
#: cameras write nothing there, or is a process of this host that is gone) starting on the folder then. A hot folder
#: holding it refuses a camera, and cameras holding it refuse a hot folder, half a second later.
TRIES = 10
WAIT_S = 0.05

#: The exclusive locks this process holds, by the folder's (device, inode) and the lock file's name.
_held: dict[tuple[int, int, str], FolderLock] = {}
#: The cameras of this process holding a folder's station lock shared, by the folder's (device, inode).
_shared: dict[tuple[int, int], list[FolderLock]] = {}
_held_lock = threading.Lock()


def camera_lock_name(name_prefix: str) -> str:
    """The lock file of the camera saving frames as ``<name_prefix>-*.png`` in a folder."""
    return f"{CAMERA_LOCK}{name_prefix}.lock"


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


def _gone(holder: object) -> bool:
    """Whether ``holder`` (what a lock file says) may be just going or coming rather than holding it: it said
    nothing (a camera's shared holders write nothing; a station between its lock and its line), or it is a process
    of this host that is no longer running (a killed holder's line, the lock since taken by one not written yet)."""
    if not isinstance(holder, dict) or not {"pid", "host", "station", "state"} <= set(holder):
        return True
    if holder["host"] != socket.gethostname() or not isinstance(holder["pid"], int):
        return False
    try:
        os.kill(holder["pid"], 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False  # another user's: running
    return False


def _cameras_said(folder: Path, key: tuple[int, int]) -> str | None:
    """The camera stations holding their lock files in ``folder`` (each as :func:`_said`), or ``None``: who holds a
    folder's station lock shared, as they write nothing in it. Under :data:`_held_lock`. A killed camera's file
    stays, its line in it: each file is tried (exclusively, let go at once) and only those that cannot be taken are
    named; one of this process is named from the table, never tried (on NFS a lock of this process would not refuse
    the try, and closing the try would drop it)."""
    said = []
    try:
        names = sorted(n for n in os.listdir(folder) if n.startswith(CAMERA_LOCK) and n.endswith(".lock"))
    except OSError:
        return None
    for name in names:
        if (mine := _held.get((*key, name))) is not None:
            said.append(mine.said)
            continue
        try:
            fd = os.open(folder / name, os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW)
        except PermissionError:  # another user's, not writable: an exclusive try may need it open for writing
            try:
                fd = os.open(folder / name, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
            except OSError:
                continue
        except OSError:
            continue  # removed meanwhile: its camera stopped
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                said.append(_said(_read_holder(fd)))  # held: a running camera (or one starting: not said yet)
            except OSError:  # cannot be tried here: named as it says, as before the try
                if isinstance(holder := _read_holder(fd), dict):
                    said.append(_said(holder))
            else:
                fcntl.flock(fd, fcntl.LOCK_UN)  # taken: its camera is gone (killed), whatever its line says
        finally:
            os.close(fd)
    return "; ".join(said) if said else None


class FolderLock:
    """The lock of one hot folder, held until :meth:`release` (or one of a camera's two, see :func:`lock_frames`)."""

    def __init__(
        self, folder: Path, fd: int, key: tuple[int, int], station: str, said: str, *, name: str = LOCK_NAME,
        shared: bool = False,
    ) -> None:  # fmt: skip
        self.folder = folder
        self._fd: int | None = fd
        self._key = key
        #: The lock file's name in the folder, and whether it is held shared (a camera's on :data:`LOCK_NAME`).
        self.name = name
        self.shared = shared
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
            there = os.stat(self.folder / self.name, follow_symlinks=False)
        except OSError:
            return False
        return self._fd is not None and (there.st_dev, there.st_ino) == self._file

    def finishing(self, why: str) -> None:
        """Its station ``why`` (``"was deleted"``) and only finishes the image in hand before it lets the folder go:
        a station started on the folder meanwhile is told to try again in a moment."""
        with _held_lock:
            self.stopped = why

    def release(self) -> None:
        """Remove the lock file and drop the lock (again: nothing). A shared holder removes the file only as its last
        holder: when no other in this process holds it and the lock can be taken exclusively (none elsewhere), so a
        camera never removes the file another still locks (a hot folder started then would lock a new file)."""
        with _held_lock:
            fd, self._fd = self._fd, None
            if fd is None:
                return
            last = True
            if self.shared:
                others = _shared.get(self._key, [])
                if self in others:
                    others.remove(self)
                if not others:
                    _shared.pop(self._key, None)
                last = not others and _exclusive(fd)
            else:
                _held.pop((*self._key, self.name), None)
            try:
                path = self.folder / self.name
                if last and _same_file(fd, path):
                    path.unlink()
            except OSError:
                pass  # the folder gone or read-only now: the lock goes with the descriptor all the same
            finally:
                os.close(fd)


def _exclusive(fd: int) -> bool:
    """Whether a shared lock could be turned exclusive now (no other holder): it is dropped either way."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    return True


def _same_file(fd: int, path: Path) -> bool:
    try:
        mine, there = os.fstat(fd), os.stat(path, follow_symlinks=False)
    except OSError:
        return False
    return (mine.st_dev, mine.st_ino) == (there.st_dev, there.st_ino)


def _key(folder: Path, station: str, what: str) -> tuple[int, int]:
    try:
        info = os.stat(folder)
    except OSError as exc:
        raise FolderInUseError(f"station {station!r}: {what} {folder} cannot be locked ({exc.strerror or exc})"
                               ) from None  # fmt: skip
    return info.st_dev, info.st_ino


def _finishing(station: str, what: str, folder: Path, mine: FolderLock) -> FolderFinishingError:
    return FolderFinishingError(f"station {station!r}: {what} {folder} is still held by station {mine.station!r}, "
                                f"which {mine.stopped} and is finishing an image past the shutdown grace; try again "
                                "in a few seconds")  # fmt: skip


def _take(
    folder: Path, key: tuple[int, int], station: str, state_dir: Path, *, name: str, shared: bool, what: str,
    refused: Callable[[int], FolderInUseError], wait: bool,
) -> FolderLock | None:  # fmt: skip
    """Under :data:`_held_lock`: lock ``folder / name`` (exclusively, or ``shared``) for ``station``, or what
    ``refused`` makes of the lock file held by another (given its descriptor, to read who); with ``wait``, ``None``
    where that holder may be just going (see :data:`TRIES`): the caller sleeps, out of :data:`_held_lock`, and
    tries again."""
    path = folder / name
    for _ in range(10):  # a holder removing the file as this one opened it: try the file now there
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644)
        except OSError as exc:
            raise FolderInUseError(f"station {station!r}: {what} {folder}: its lock file {name} cannot be "
                                   f"opened ({exc.strerror or exc})") from None  # fmt: skip
        try:
            fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                if wait and (shared or _gone(_read_holder(fd))):  # maybe a camera removing the file: a moment
                    return None
                raise refused(fd) from None
            finally:
                os.close(fd)
        except OSError as exc:
            os.close(fd)
            why = exc.strerror or str(exc)
            if exc.errno in (errno.ENOLCK, errno.EOPNOTSUPP):
                why += "; on NFS, the lock manager must run (or the mount must not say nolock)"
            raise FolderInUseError(f"station {station!r}: {what} {folder} cannot be locked ({why}), so another "
                                   "station on it could not be refused; not started") from None  # fmt: skip
        if _same_file(fd, path):
            break
        os.close(fd)  # locked a file its holder removed meanwhile: take the one there now
    else:
        raise refused(-1)
    holder = _holder(station, state_dir)
    try:  # a shared holder writes no holder (several hold it): it empties what a killed exclusive one left
        os.ftruncate(fd, 0)
        if not shared:
            os.pwrite(fd, json.dumps(holder).encode(), 0)
    except OSError:
        pass  # a full disk: the lock holds all the same, a refusal just cannot say who
    return FolderLock(folder, fd, key, station, _said(holder), name=name, shared=shared)


def lock_folder(folder: Path, station: str, state_dir: Path) -> FolderLock:
    """Hold ``folder``'s lock for ``station`` (of the state folder ``state_dir``), or :class:`FolderInUseError`
    naming the folder and who holds it (another hot folder, or cameras saving their frames there)."""
    key = _key(folder, station, "hot folder")

    def refused(who: str) -> FolderInUseError:
        return FolderInUseError(f"station {station!r}: hot folder {folder} is taken by another station ({who}); two "
                                "stations on one folder would each inspect every image: stop that one first, or give "
                                "this station its own folder")  # fmt: skip

    def by_cameras(who: str) -> FolderInUseError:
        return FolderInUseError(f"station {station!r}: hot folder {folder} is where a camera station saves its "
                                f"frames ({who}); this station would take them away as images of its own: stop that "
                                "one first, or give this station its own folder")  # fmt: skip

    def held(fd: int) -> FolderInUseError:
        holder = _read_holder(fd) if fd >= 0 else None
        if holder is None and (cameras := _cameras_said(folder, key)) is not None:  # shared: cameras write nothing
            return by_cameras(cameras)
        return refused(_said(holder) if fd >= 0 else "its lock file keeps being replaced")

    for attempt in range(1, TRIES + 1):
        with _held_lock:  # the table looked at again at each try: a station of this process may have come or gone
            if (mine := _held.get((*key, LOCK_NAME))) is not None:
                if mine.stopped is not None:
                    raise _finishing(station, "hot folder", folder, mine)
                raise refused(mine.said)
            if cameras := _shared.get(key):
                if all(camera.stopped is not None for camera in cameras):
                    raise _finishing(station, "hot folder", folder, cameras[0])
                raise by_cameras("; ".join(camera.said for camera in cameras))
            lock = _take(folder, key, station, state_dir, name=LOCK_NAME, shared=False, what="hot folder",
                         refused=held, wait=attempt < TRIES)  # fmt: skip
            if lock is not None:
                _held[(*key, LOCK_NAME)] = lock
                return lock
        time.sleep(WAIT_S)
    raise AssertionError("unreachable: the last try refuses or locks")


class FramesLock:
    """A camera's two locks on its frames folder (see the module's doc), held until :meth:`release`."""

    def __init__(self, prefix: FolderLock, folder: FolderLock) -> None:
        self.prefix = prefix
        self.folder = folder

    def holds(self) -> bool:
        """Whether both lock files now in the folder are the ones held (:meth:`FolderLock.holds`): not when the
        frames folder was removed and made again under its path, or a lock file removed."""
        return self.prefix.holds() and self.folder.holds()

    def finishing(self, why: str) -> None:
        """Its station ``why`` and finishes its last frame: a station started on the folder meanwhile is told to try
        again in a moment (:meth:`FolderLock.finishing`)."""
        self.prefix.finishing(why)
        self.folder.finishing(why)

    def release(self) -> None:
        """Drop both locks (again: nothing)."""
        self.folder.release()
        self.prefix.release()


def lock_frames(folder: Path, name_prefix: str, station: str, state_dir: Path) -> FramesLock:
    """Hold ``folder`` for the camera ``station`` saving frames as ``<name_prefix>-*.png`` there: another camera with
    that prefix, or a hot folder on it, in any process sharing the file system, is refused
    (:class:`FolderInUseError` naming the folder and who holds it). The folder must exist."""
    what = "camera frames folder"
    key = _key(folder, station, what)
    name = camera_lock_name(name_prefix)

    def by_camera(who: str) -> FolderInUseError:
        return FolderInUseError(f"station {station!r}: {what} {folder} with name_prefix {name_prefix!r} is taken by "
                                f"another camera station ({who}); two cameras saving frames under one name would "
                                "interleave them, and neither start could tell which frames it left: stop that one "
                                "first, or give this station its own name_prefix (or frames folder)")  # fmt: skip

    def by_hot_folder(who: str) -> FolderInUseError:
        return FolderInUseError(f"station {station!r}: {what} {folder} is the hot folder of another station ({who}), "
                                "which would take the frames away as images of its own: stop that one first, or give "
                                "this camera its own frames folder")  # fmt: skip

    def said(fd: int) -> str:
        return _said(_read_holder(fd)) if fd >= 0 else "its lock file keeps being replaced"

    prefix: FolderLock | None = None
    try:
        for attempt in range(1, TRIES + 1):
            with _held_lock:  # the table looked at again at each try: a station of this process may have come or gone
                if prefix is None and (mine := _held.get((*key, name))) is not None:
                    if mine.stopped is not None:
                        raise _finishing(station, f"{what} (name_prefix {name_prefix!r})", folder, mine)
                    raise by_camera(mine.said)
                if (hot := _held.get((*key, LOCK_NAME))) is not None:
                    if hot.stopped is not None:
                        raise _finishing(station, what, folder, hot)
                    raise by_hot_folder(hot.said)
                if prefix is None:
                    prefix = _take(folder, key, station, state_dir, name=name, shared=False, what=what,
                                   refused=lambda fd: by_camera(said(fd)), wait=attempt < TRIES)  # fmt: skip
                    if prefix is not None:
                        _held[(*key, name)] = prefix
                if prefix is not None:
                    shared = _take(folder, key, station, state_dir, name=LOCK_NAME, shared=True, what=what,
                                   refused=lambda fd: by_hot_folder(said(fd)), wait=attempt < TRIES)  # fmt: skip
                    if shared is not None:
                        _shared.setdefault(key, []).append(shared)
                        return FramesLock(prefix, shared)
            time.sleep(WAIT_S)  # its prefix held meanwhile: a camera of that prefix starting now is refused
    except BaseException:
        if prefix is not None:
            prefix.release()  # out of the table, its file removed
        raise
    raise AssertionError("unreachable: the last try refuses or locks")
