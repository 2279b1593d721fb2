"""The hot folder: images dropped into a folder are inspected once complete, then moved or marked.

Complete means unchanged (size and modification time) for ``settle_s`` seconds of the station's own clock,
as successive polls see it: a camera or copy still writing keeps changing them. The file's modification
time is compared only with itself, never with the station's clock, so a writer on another machine whose
clock is behind (NFS, SMB) is not read half-way, nor one whose clock is ahead held back. A writer that
writes ``.name.tmp`` or ``name.part`` and renames is never read half-way, because names starting with a
dot or ending in ``.tmp``/``.part`` are not taken.
Oldest first (modification time, then name), found by listing the folder: a backlog of thousands is
stat-ed, never loaded, and each image is read only when its turn comes.

What becomes of a file (``after``): ``move`` (default) puts it in ``done/`` or ``failed/`` inside the
folder (with ``<name>.reason.txt`` beside a failed one); ``sidecar`` leaves it in place and writes
``<name>.eagle.json`` beside it (the record id and decision, or the reason), which also marks it as
taken; a name too long for that gets ``<stem cut>~<hash of the name>.eagle.json`` (see :func:`sidecar_name`).
A sidecar describes one file (its size and modification time; a refusal of a file that could not be read, its mode
and ctime too): another file under the name, or the same file made readable, is a new arrival. An image replaced
while inspected keeps no sidecar of the old verdict: in either mode the bytes inspected go to ``done/`` (``failed/``)
with their verdict (in sidecar mode with a sidecar describing that copy), and the new file is taken next.
A move never replaces a file: a name already in ``done/`` gets ``-1``, ``-2``, ... Symbolic
links are not followed (a link could make the station read, then move, a file outside the folder).
A file the polls saw replaced under its name by another (another inode) before it was handed over is lost, never
inspected (a writer renaming frames onto one name faster than ``settle_s``): it cannot be inspected any more, but it
is counted and said (:meth:`HotFolder.replaced`), not lost silently. The folder's lock is held on the folder at the
path, whichever it is now (:meth:`HotFolder._keep_lock`): one removed and made again is locked again before any image
of it is taken.

Subfolders (``recursive = true``): images in the folder's subfolders are taken too, up to :data:`MAX_DEPTH` levels down,
each named by its path relative to the folder with ``/`` (``2026-12-07/cam1/part-0001.png``): that name is the key of
everything the station keeps of it (when it settled, its intake row, its verdict's ``image_name``), so two files of one
base name in two subfolders are two images. A file put away goes to the same relative path under ``done/``
(``failed/``), its folders made as needed (a symbolic link among them is refused: the move would leave the folder); a
folder named ``done`` or ``failed`` at any depth (a station's filed images), a folder sink's and the service's folders
(:meth:`HotFolder.keep_out`), hidden folders and folders with a writer's temporary name (``batch.tmp``) are never
entered, and a symbolic link to a folder is not followed (a link to a parent would be a loop; one elsewhere would make
the station move files outside the folder). A folder deeper than :data:`MAX_DEPTH` is said once, as any file not taken.
The folders a camera leaves behind, emptied by the moves, are left alone: the camera may write into them again.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import stat
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, BinaryIO, ClassVar

from eagle_iad.atomic import atomic_write_text, new_file_mode, sync_folder
from eagle_iad.choices import IMAGE_SUFFIXES  # what a hot folder takes (any case): what every folder listing takes
from eagle_iad.errors import FolderInUseError
from eagle_iad.naming import NAME_MAX, fit_name
from eagle_iad.ranges import Range
from eagle_iad.station.parts import REQUIRED, SOURCES, Arrival, NotPutAside, Options, Settled
from eagle_iad.station.recent import Recent, Seconds
from eagle_iad.station.sources.folder_lock import CAMERA_LOCK, LOCK_NAME, FolderLock, lock_folder

#: Names a writer uses while a file is not complete yet.
PARTIAL_SUFFIXES = (".tmp", ".part", ".partial", ".crdownload")
SIDECAR_SUFFIX = ".eagle.json"
REASON_SUFFIX = ".reason.txt"
#: Seconds a file the station does not take (``cam2.gif``, a subfolder) stays unchanged before it is said (a
#: warning line and the status): a writer's hidden temporary name, renamed at once, is never said.
IGNORED_AFTER_S = 10.0
#: Bytes an atomic write adds to a name for its temporary file (``.<name>.`` and 8 random characters).
ATOMIC_RESERVE = 10
#: NAME_MAX bytes a name in failed/ leaves free: its ``.reason.txt``, written atomically (a 10-byte temporary name).
REASON_RESERVE = len(REASON_SUFFIX) + ATOMIC_RESERVE
#: Where refused images go, in a hot folder (and a camera's frames folder), each with its ``.reason.txt``.
FAILED = "failed"
AFTER = ("move", "sidecar")
SETTLE_S = Range(0.0, 3600.0)
#: A settled file that cannot be decoded as an image may be one whose writer stalled longer than ``settle_s``
#: half-way (a truncated PNG): it is left in the folder and tried again each time it settles again, and refused
#: (``failed/``) only once it stayed unchanged and undecodable for this many ``settle_s`` (at once with
#: ``settle_s`` 0: a writer that renames complete files into the folder).
UNDECODABLE_SETTLES = 10
#: Seconds without a file replaced before it settled after which the next one is said in the log again: one warning
#: line per burst of them (a writer renaming every frame onto one name), the rest counted (:meth:`HotFolder.replaced`).
REPLACED_QUIET_S = 60.0
POLL_S = Range(0.01, 60.0)
#: How many levels of subfolders ``recursive = true`` takes images from (``a/b/c/d/e/f/g/h/x.png`` is taken, a folder
#: below ``h`` is said once as not taken): deep enough for any camera's or copy job's dated folders, and a bound on
#: what one poll lists. The record keeps the whole relative name (see ``StationRunner``'s use of ``upload_name``).
MAX_DEPTH = 8
#: Why a subfolder holding a station's lock file is not entered: another station's hot folder (one running, or a
#: killed one's lock file left behind), whose images that station takes; two would inspect each twice.
ANOTHER_STATION = (f"another station's hot folder (it holds {LOCK_NAME}); not entered: that station takes its "
                   "images (a lock file a killed station left behind can be removed)")  # fmt: skip
#: Why a subfolder holding a station's lock file and a camera's (``.eagle-camera-<name_prefix>.lock``) is not
#: entered: a camera station's frames folder (one running, or a killed one's lock files left behind), whose frames that
#: camera inspects itself (and takes again at its next start); said apart from :data:`ANOTHER_STATION`, as the same
#: lock file is found in both.
CAMERA_FRAMES = (f"a camera station's frames folder (it holds {LOCK_NAME} and {CAMERA_LOCK}<name_prefix>.lock); not "
                 "entered: that camera inspects its frames itself (lock files a killed station left behind can be "
                 "removed)")  # fmt: skip
#: Why ``recursive`` does not enter a subfolder named ``done`` or ``failed`` (at any depth): a station on that
#: subfolder (stopped now: its lock file gone) filed its images there; taking them would inspect and move them again.
FILED = "a station's filed images (a folder named done or failed is never entered)"
#: ``max_file_mb``: 0 (the default) takes the largest an uncompressed image within the pixel limit can be
#: (``runner.uncompressed_limit``).
MAX_FILE_MB = Range(0.0, 1024.0 * 1024.0)
MIB = 1024 * 1024


def numbered(name: str, n: int, reserve: int = 0) -> str:
    """``name`` (``n`` 0), else ``<stem>-<n><suffix>``; the stem cut so the name leaves ``reserve`` bytes of
    NAME_MAX free (a 255-byte name arriving twice must still get a ``-1``, its suffix kept)."""
    if n == 0 and len(os.fsencode(name)) <= NAME_MAX - reserve:
        return name
    stem, suffix = os.path.splitext(name)
    return fit_name(stem, f"{f'-{n}' if n else ''}{suffix}", NAME_MAX - reserve)


def reserve_in(folder: Path) -> int:
    """NAME_MAX bytes an image's name leaves free in ``folder`` for a file named after it: in ``failed/``, its
    ``.reason.txt`` (:data:`REASON_RESERVE`); elsewhere (``done/``, whose sidecars shorten their own names: see
    :func:`sidecar_name`) none. The one answer for putting an image there (its :func:`numbered` names) and for
    looking for it again (:meth:`HotFolder.filed_at`), so a long name is looked for under the name it went to."""
    return REASON_RESERVE if folder.name == FAILED else 0


def first_free(folder: Path, name: str, reserve: int | None = None) -> Path:
    """The first of ``name``, ``name-1``, ... (see :func:`numbered`, :func:`reserve_in`) not taken in ``folder``:
    where :func:`move_new` will put an image named ``name`` there, unless another takes it meanwhile. ``reserve``:
    the bytes to leave free (default: :func:`reserve_in` of ``folder``; a subfolder of ``failed/`` says its own)."""
    n, reserve = 0, reserve_in(folder) if reserve is None else reserve
    while os.path.lexists(target := folder / numbered(name, n, reserve)):
        n += 1
    return target


def named_after(candidate: str, name: str, reserve: int = 0) -> bool:
    """Whether ``candidate`` is ``name`` or one of its :func:`numbered` names (``<stem>-<n><suffix>``)."""
    stem = os.path.splitext(candidate)[0]
    number = stem.rpartition("-")[2]
    if number.isascii() and number.isdigit() and numbered(name, int(number), reserve) == candidate:
        return True
    return numbered(name, 0, reserve) == candidate


def sidecar_name(name: str) -> str:
    """The sidecar of image ``name``: ``<name>.eagle.json`` where that fits NAME_MAX with its atomic write's
    temporary name, else the stem cut and ``~`` plus 16 hex digits of the full name's SHA-256 added (a 245-byte
    name would otherwise make even a look at its sidecar fail with "File name too long"). The shortened name
    still maps to one image, and never to another image's plain sidecar (``~<hex>`` is no image suffix)."""
    plain = name + SIDECAR_SUFFIX
    if len(os.fsencode(plain)) <= NAME_MAX - ATOMIC_RESERVE:
        return plain
    tag = hashlib.sha256(os.fsencode(name)).hexdigest()[:16]
    return fit_name(name, f"~{tag}{SIDECAR_SUFFIX}", NAME_MAX - ATOMIC_RESERVE)


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def identity(info: os.stat_result) -> tuple[int, int, int, int]:
    """What tells one file from another put under the same name: device, inode, size, modification time."""
    return (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns)


def look(info: os.stat_result) -> Settled:
    """What a sidecar and :attr:`Arrival.settled` keep of a file's stat."""
    return Settled(info.st_size, info.st_mtime_ns, info.st_ctime_ns, info.st_mode, info.st_ino)


#: What a sidecar says of the file it describes (see :func:`described`), in that order.
MARK_FIELDS = ("size", "mtime_ns", "mode", "ctime_ns")


def described(info: Settled, fields: int) -> tuple[int, ...]:
    """The first ``fields`` of what a sidecar says of the file it describes, taken from ``info``: size and
    modification time (2), plus mode and ctime (4) for a refusal of a file that could not be read."""
    return (info.size, info.mtime_ns, info.mode, info.ctime_ns)[:fields]


def make_folders(folder: Path, root: Path) -> None:
    """Make ``folder`` and the folders between it and ``root`` (``done/2026-12-07/cam1`` in the hot folder) that are
    missing, each new one's parent synced (best effort, as :func:`sync_folder`): the station syncs the folder an
    image was moved into before its deliveries are due, which makes the image's name durable only if the folder's
    own name is. ``root`` itself is never made: a hot folder gone (unmounted) raises, as a listing would. A
    folder outside ``root`` (a place an earlier run stored, the hot folder moved since) is made as :func:`move_new`
    would make it."""
    if not folder.is_relative_to(root):
        folder.mkdir(exist_ok=True)
        return
    here = root
    for part in folder.relative_to(root).parts:
        here = here / part
        try:
            here.mkdir()
        except FileExistsError:
            # there already; a file there: the move into it says so. A symbolic link (even to a folder) is refused
            # now: the image would be moved through it, outside the hot folder
            if os.path.islink(here):
                raise NotADirectoryError(errno.ENOTDIR, f"{here} is a symbolic link, not a folder") from None
            continue
        with contextlib.suppress(OSError):  # a file system that cannot sync it: as durable as it makes it
            sync_folder(here.parent)


def move_new(source: Path, folder: Path, name: str | None = None, reserve: int | None = None) -> Path:
    """Move ``source`` into ``folder`` under ``name`` (default: its own), or ``name-1``, ``name-2``, ... if
    taken; never replace. Each leaves the bytes of NAME_MAX the folder needs for a file named after it
    (``reserve``, default :func:`reserve_in`)."""
    folder.mkdir(exist_ok=True)
    name = source.name if name is None else name
    reserve = reserve_in(folder) if reserve is None else reserve
    for n in range(100_000):
        target = folder / numbered(name, n, reserve)
        try:
            # fails if target exists: no race can make it replace a file; a link refused is moved, not its target
            os.link(source, target, follow_symlinks=False)
        except FileExistsError:
            continue
        except OSError:  # a file system without hard links: check, then rename
            if target.exists():
                continue
            os.rename(source, target)
            return target
        os.unlink(source)
        return target
    raise OSError(f"{folder}: no free name for {name}")


class FolderTakenError(OSError):
    """The hot folder was replaced under its path (removed and made again) and another station holds the lock of
    the folder now there: this station takes no image from it (the intake waits, saying so) until that one stops.
    An :class:`OSError`, as the listing's errors are, so the intake pauses on it and tries again."""

    def __init__(self, message: str) -> None:
        super().__init__(errno.EBUSY, message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class NotAFileError(OSError):
    """The image's name holds a symbolic link or something not a regular file (a FIFO, a device)."""


def open_regular(path: Path) -> BinaryIO:
    """The regular file at ``path``, opened to read: a symbolic link is not followed (:class:`NotAFileError`, as it
    would make the station read a file outside the folder) and a FIFO not waited on (opened without blocking,
    then refused: a read would wait for a writer forever)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise NotAFileError(exc.errno, "a symbolic link, not followed") from None
        raise
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise NotAFileError(errno.EINVAL, "not a regular file")
        return open(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _same_bytes(path: Path, data: bytes) -> bool:
    """Whether the regular file at ``path`` (not following a link) holds exactly ``data``."""
    try:
        with open_regular(path) as handle:
            return handle.read(len(data) + 1) == data
    except (FileNotFoundError, NotAFileError):
        return False


#: The errors that say a name holds nothing (ENOENT, ENOTDIR); any other (EACCES, EIO, ESTALE) says nothing of it.
ABSENT = (errno.ENOENT, errno.ENOTDIR)


def _digest_of(path: Path) -> str | None:
    """The SHA-256 of the regular file at ``path`` (not following a link), or ``None`` where there is none (nothing
    under that name, or a link or other file that is not a regular one). Any other error (EACCES, EIO, ESTALE, a
    dropped NFS mount) is raised: whether the file is there is unknown, not "not there"."""
    try:
        with open_regular(path) as handle:
            digest = hashlib.sha256()
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
            return digest.hexdigest()
    except NotAFileError:
        return None
    except OSError as exc:
        if exc.errno in ABSENT:
            return None
        raise


def _locked_why(folder: str) -> str:
    """Why a subfolder holding a station's lock file is not entered: a camera's frames folder where a camera's lock
    file is beside it (:data:`CAMERA_FRAMES`), else another station's hot folder (:data:`ANOTHER_STATION`). Looked
    for once per lock file (its inode remembered, see ``HotFolder._locked``): one listing of that subfolder."""
    try:
        with os.scandir(folder) as entries:
            if any(e.name.startswith(CAMERA_LOCK) and e.name.endswith(".lock") for e in entries):
                return CAMERA_FRAMES
    except OSError:
        pass  # unreadable: the hot folder's reading, as before it was told apart
    return ANOTHER_STATION


def _ignored_why(entry: os.DirEntry[str], top: bool = True) -> str | None:
    """Why the station does not take ``entry`` of its folder (``top``: of the hot folder itself, not of a
    subfolder), for the integrator to see (a camera writing ``.gif`` or into subfolders sends nothing, and the
    backlog stays 0); ``None`` for what belongs there untaken: the station's own ``done/`` and ``failed/``, its lock
    and sidecars, a writer's temporary names (hidden, ``.tmp``), hidden files and folders that are no images
    (``.DS_Store``, ``.snapshot``). A folder it enters (``recursive``) is not asked about."""
    name, lower = entry.name, entry.name.lower()
    # by name first: sidecars and reasons can be most of a folder, and where the file system gives no entry type
    # (some NFS and CIFS mounts) each is_dir is a stat at every poll
    if lower.endswith((*PARTIAL_SUFFIXES, SIDECAR_SUFFIX, REASON_SUFFIX)):
        return None
    if name.startswith(".") and not lower.endswith(IMAGE_SUFFIXES):
        return None
    try:
        folder = entry.is_dir(follow_symlinks=False)
    except OSError:
        return None
    if name.startswith("."):
        return None if folder else "hidden (its name starts with a dot)"
    if folder:
        if top and name in ("done", FAILED):
            return None
        return "a folder (the station takes no image from subfolders unless the source says recursive = true)"
    with contextlib.suppress(OSError):
        if entry.is_symlink() and entry.is_dir(follow_symlinks=True):
            return "a symbolic link to a folder (not followed: it could lead outside the folder, or back into it)"
    if lower.endswith(IMAGE_SUFFIXES):
        return "not a regular file (symbolic links are not followed)"
    suffix = os.path.splitext(name)[1]
    took = " ".join(IMAGE_SUFFIXES)
    return f"suffix {suffix} not taken (only {took})" if suffix else f"no suffix (only {took} are taken)"


class HotFolder:
    """A :class:`~eagle_iad.station.parts.Source` over one folder (with ``recursive``, its subfolders too)."""

    kind: ClassVar[str] = "folder"
    dedupe = True

    def __init__(self, options: Options) -> None:
        self.folder: Path = options.path("path", REQUIRED)
        self.after: str = options.text("after", "move", AFTER)
        self.settle_s = options.number("settle_s", 1.0, SETTLE_S)
        self.poll_s = options.number("poll_s", 0.2, POLL_S)
        #: Whether images in subfolders are taken (up to :data:`MAX_DEPTH` levels), named by their relative path.
        self.recursive: bool = options.flag("recursive", False)
        max_mb = options.number("max_file_mb", 0.0, MAX_FILE_MB)
        #: The most bytes an image file may have: larger ones are refused unread (``None``: the service's upload
        #: limit, ``--max-upload-mb``, which the station applies: see ``StationRunner._byte_limit``).
        self.max_bytes: int | None = int(max_mb * MIB) if max_mb else None
        # (read for the status only: a folder gone is what its backlog's warning says, not a reason to answer nothing)
        if not self.folder.is_dir() and not options.looking:
            raise options.error("path", f"{self.folder} is not a folder")
        if not options.looking and not os.access(self.folder, os.R_OK | os.X_OK | os.W_OK):
            raise options.error("path", f"{self.folder} cannot be read and written by this user")
        self.done = self.folder / "done"
        #: The deliveries wait until the image is put away (see Source.moves_files): moved, maybe to ``-1``, or
        #: in sidecar mode left where it is (its planned place) once its sidecar is written, so a sink is never
        #: told of an image whose ``.eagle.json`` is not there (a crash before it, a full disk).
        self.moves_files = True
        self.failed = self.folder / FAILED
        #: Subfolders ``recursive`` never enters, by their path relative to the hot folder, each with why (a folder
        #: sink's path, the service's state, pictures or models folder): what the station or the service writes
        #: there would be taken again (see :meth:`keep_out`).
        self._kept_out: dict[str, str] = {}
        #: Subfolders holding a station's lock file: name -> (that file's inode, why not entered: see
        #: :func:`_locked_why`), so a busy one (said only once unchanged) is not listed again every poll.
        self._locked: dict[str, tuple[int, str]] = {}
        #: When the station first saw each name (its clock, seconds since the epoch): the arrival's ``appeared``.
        self._first_seen: dict[str, float] = {}
        #: Per name, the (size, mtime_ns) the polls saw last and since when (monotonic) they have been the same.
        self._unchanged: dict[str, tuple[tuple[int, int], float]] = {}
        #: Sidecars read: name -> (the sidecar's own stat, what it describes or None: see :func:`described`), so a
        #: poll stats each sidecar but reads only new or changed ones.
        self._sidecars: dict[str, tuple[tuple[int, int, int], tuple[int, ...] | None]] = {}
        #: Images the listing could not stat (EIO, ESTALE: skipped, the rest of the folder taken), with why as
        #: last logged: one line per name when it starts failing, not one every poll.
        self._unseen: dict[str, str] = {}
        #: Settled files that could not be decoded: name -> the (size, mtime_ns) they had and since when (monotonic)
        #: they have had it undecodable (see :meth:`undecodable`).
        self._undecodable: dict[str, tuple[tuple[int, int], float]] = {}
        #: Where the log lines go (the station sets its own).
        self.log: Callable[[str], None] = _stderr
        #: The folder's lock while a station runs on it (:meth:`claim`; see folder_lock.py).
        self._lock: FolderLock | None = None
        #: ``(station, state folder)`` from :meth:`claim` until :meth:`release`: who takes the lock again on a folder
        #: made again under the path (:meth:`_keep_lock`). Guarded by :attr:`_claiming` (a stop releases the lock from
        #: another thread than the intake's).
        self._claim: tuple[str, Path] | None = None
        self._claiming = threading.Lock()
        #: What the last listing found the station does not take, unchanged for :data:`IGNORED_AFTER_S`: name ->
        #: why (:func:`_ignored_why`). Replaced whole by each listing (the status reads it from another thread).
        self._ignored: dict[str, str] = {}
        #: Per name the polls saw and did not hand over yet, the inode of the file they saw under it: another file
        #: renamed over it (or written after it was removed) before it settled replaced it, never inspected.
        self._inodes: dict[str, int] = {}
        #: Files replaced so before they settled (each counted, and when lately), the last (name), and when the last
        #: was (monotonic; ``None``: none yet): a line in the log only for the first of a burst.
        self._found_replaced = Recent()
        self._last_replaced: str | None = None
        self._replaced_at: float | None = None
        #: The names of :attr:`_ignored` already said in the log: one line per name, not one every poll.
        self._ignored_said: set[str] = set()
        #: Each name said so, when (the status warns of those found lately: :meth:`ignored`), and the last, with why.
        self._found_ignored = Recent()
        self._last_ignored: str | None = None

    def claim(self, station: str, state_dir: Path) -> None:
        """Hold the folder for ``station`` while it runs: another station on it, in any process sharing the file
        system, is refused (:class:`~eagle_iad.errors.FolderInUseError` naming the holder). Held on the folder at the
        path, whichever it is: one made again under it is locked again before an image is taken (:meth:`_keep_lock`)."""
        with self._claiming:
            if self._lock is None:
                self._lock = lock_folder(self.folder, station, state_dir)
            self._claim = (station, state_dir)

    def release(self) -> None:
        """Drop the folder's lock (the station stopped, or did not start); again: nothing."""
        with self._claiming:
            self._claim = None
            lock, self._lock = self._lock, None
        if lock is not None:
            lock.release()

    def _keep_lock(self) -> None:
        """While claimed, make sure the folder at the path is the one locked before it is listed or an image of it is
        handed over: a folder removed and made again (the lock file gone with the old one) is locked again, in one
        line, or, held by another station meanwhile, :class:`FolderTakenError` (the intake waits, saying who). A
        folder gone raises as the listing would. One ``stat`` of the lock file when nothing changed."""
        with self._claiming:
            claim, lock = self._claim, self._lock
            if claim is None or (lock is not None and lock.holds()):
                return
            os.stat(self.folder)  # gone (unmounted, deleted): the listing's error, the intake waits for the folder
            if lock is not None:  # the old folder's (wherever it went): let go, so the one there now can be taken
                self._lock = None
                lock.release()
            try:
                self._lock = lock_folder(self.folder, *claim)
            except FolderInUseError as exc:
                raise FolderTakenError(f"hot folder {self.folder} was replaced (removed and made again) and its lock "
                                       f"is not this station's now: {exc}") from None  # fmt: skip
        self.log(f"eagle station {claim[0]}: folder {self.folder}: replaced (removed and made again, or its lock file "
                 "removed): its lock taken again on the folder there now, before any image of it")  # fmt: skip

    def finishing(self, why: str) -> None:
        """Its station ``why`` (``"was deleted"``) and is finishing its last image: a station started on the folder
        meanwhile is told to try again in a moment (see :meth:`FolderLock.finishing`)."""
        if (lock := self._lock) is not None:
            lock.finishing(why)

    def close(self) -> None:
        self.release()

    def describe(self) -> str:
        then = "moved to done/ or failed/" if self.after == "move" else "left in place with a .eagle.json sidecar"
        within = f"; with subfolders, up to {MAX_DEPTH} levels" if self.recursive else ""
        return f"folder {self.folder} (complete after {self.settle_s:g} s untouched; {then}{within})"

    def _path(self, name: str) -> Path:
        """The file of image ``name``: its path relative to the folder, ``/`` between its parts (a subfolder's
        image, with ``recursive``). Names are the listing's own (and the history's, which got them from it)."""
        return self.folder.joinpath(*name.split("/"))

    def _filed_in(self, root: Path, name: str) -> Path:
        """Where image ``name`` is put in ``root`` (``done/`` or ``failed/``): the same subfolders below it as the
        image had in the hot folder (``done/2026-12-07/cam1``), so the tree is mirrored and two images of one base
        name in two subfolders never meet."""
        return root.joinpath(*name.split("/")[:-1])

    def _reserve(self, folder: Path) -> int:
        """:func:`reserve_in` for a folder of ``failed/``'s tree too (``failed/cam1``: each refused image there gets
        its ``.reason.txt`` beside it), so putting and looking agree on the names."""
        return REASON_RESERVE if folder == self.failed or self.failed in folder.parents else 0

    def _candidates(self, listed: set[str] | None = None) -> list[tuple[int, str, Settled]]:
        """``(mtime_ns, name, stat)`` of each image waiting, oldest first; ``listed`` gets the name of every image
        file in the folder, waiting or marked by its sidecar (with ``recursive``, in its subfolders too, each name
        its relative path: see :meth:`_entered`)."""
        found: list[tuple[int, str, Settled]] = []
        ignored: dict[str, str] = {}
        vanished = False
        #: The folders still to list: (the names' prefix, the folder, its depth below the hot folder).
        folders: list[tuple[str, Path, int]] = [("", self.folder, 0)]
        while folders:
            prefix, here, depth = folders.pop()
            try:
                listing = os.scandir(here)
            except OSError as exc:
                if not prefix:
                    raise  # the hot folder itself: the intake waits for it
                if exc.errno in ABSENT:
                    vanished = True  # a subfolder taken away meanwhile, or the whole folder (see below)
                else:  # this subfolder's fault (EACCES, EIO): skipped, the rest of the folder taken
                    self._cannot_look(prefix[:-1], exc, listed)
                continue
            if prefix:
                self._unseen.pop(prefix[:-1], None)
            with listing as entries:
                for entry in entries:
                    name = prefix + entry.name
                    lower = entry.name.lower()
                    if entry.name.startswith(".") or not lower.endswith(IMAGE_SUFFIXES):
                        if not self._entered(entry, name, depth, folders, ignored):
                            self._ignoring(entry, ignored, name, top=not prefix)
                        continue
                    try:
                        info = entry.stat(follow_symlinks=False)
                    except FileNotFoundError:
                        vanished = True  # taken away meanwhile, or the whole folder (see below)
                        continue
                    except OSError as exc:  # this file's fault (EIO, ESTALE): skipped, the rest of the folder taken
                        self._cannot_look(name, exc, listed)
                        continue
                    self._unseen.pop(name, None)
                    if not stat.S_ISREG(info.st_mode):
                        if not (stat.S_ISDIR(info.st_mode) and self._entered(entry, name, depth, folders, ignored)):
                            self._ignoring(entry, ignored, name, top=not prefix)
                        continue
                    if listed is not None:
                        listed.add(name)
                    if self.after == "sidecar" and self._marked(name, look(info)):
                        continue
                    found.append((info.st_mtime_ns, name, look(info)))
        if vanished:
            # An entry stats its path, not the open listing: a folder renamed or unmounted while it was listed
            # lists names that are gone, which would read as an empty folder (``--until-idle`` would end, saying
            # nothing). Whether the folder itself is still there decides: gone, it raises as a listing would.
            os.stat(self.folder)
        self._ignored = ignored
        if listed is not None:  # the intake's poll (not the status' look at the backlog): said once per name
            for name in sorted(ignored.keys() - self._ignored_said):
                self.log(f"eagle station: folder {self.folder}: warning: {name}: ignored: {ignored[name]}")
                self._last_ignored = f"{name} ({ignored[name]})"
                self._found_ignored.add()
            self._ignored_said = set(ignored)
        found.sort()
        return found

    def _cannot_look(self, name: str, exc: OSError, listed: set[str] | None) -> None:
        """The file or subfolder ``name`` could not be looked at (EIO, ESTALE; a subfolder EACCES): skipped, the rest
        taken, said in one line when it starts failing (or fails otherwise), not at every poll."""
        if listed is not None:
            listed.add(name)  # still there: its sidecar's look kept, its line not said again
        why = exc.strerror or str(exc)
        if self._unseen.get(name) != why:
            self._unseen[name] = why
            self.log(f"eagle station: folder {self.folder}: {name}: cannot be looked at ({why}); skipped until it can")

    def keep_out(self, path: Path, why: str) -> bool:
        """Never enter ``path`` (``why``: whose it is) in the walk; whether it lies below the hot folder (both
        resolved, so a path given through a symbolic link is still recognised: the walk itself follows none)."""
        folder, path = self.folder.resolve(), path.resolve()
        if folder not in path.parents:
            return False
        self._kept_out[path.relative_to(folder).as_posix()] = why
        return True

    def _entered(
        self, entry: os.DirEntry[str], name: str, depth: int, folders: list[tuple[str, Path, int]],
        ignored: dict[str, str],
    ) -> bool:  # fmt: skip
        """Whether ``entry`` (named ``name``, in a folder ``depth`` levels below the hot folder) is a subfolder the
        listing goes into (added to ``folders``), with ``recursive`` only: not the station's own ``done/`` and
        ``failed/`` (at the top; one so named deeper is another station's, said once as not taken: :data:`FILED`),
        not a folder kept out (:meth:`keep_out`: a folder sink's, the service's; said once), not hidden
        (``.snapshot``) nor a writer's temporary name (``batch.tmp``, renamed once complete), never a symbolic link
        (said as not taken: see :func:`_ignored_why`). One deeper than :data:`MAX_DEPTH`, or holding a station's lock
        file (:data:`ANOTHER_STATION`, or :data:`CAMERA_FRAMES` with a camera's beside it: the lock is on each
        station's own folder, and does not see one inside another), is not entered either: it is said, once, as not
        taken."""
        if not self.recursive:
            return False
        base = entry.name
        # by name first, as the listing does: a sidecar or reason beside each image costs no is_dir (a stat where
        # the file system gives no entry type)
        skipped = (*PARTIAL_SUFFIXES, SIDECAR_SUFFIX, REASON_SUFFIX)
        if base.startswith(".") or base.lower().endswith(skipped) or (depth == 0 and base in ("done", FAILED)):
            return False
        try:
            if not entry.is_dir(follow_symlinks=False):
                return False
        except OSError:
            return False
        kept = FILED if base in ("done", FAILED) else self._kept_out.get(name)
        if kept is not None:
            self._ignoring(entry, ignored, name, why=kept)
            return True
        if depth + 1 > MAX_DEPTH:
            why = f"a folder more than {MAX_DEPTH} levels below the hot folder (recursive goes {MAX_DEPTH} levels deep)"
            self._ignoring(entry, ignored, name, why=why)
            return True
        try:  # its station's lock: the folder lock sees one only
            lock = os.lstat(os.path.join(entry.path, LOCK_NAME)).st_ino
        except OSError:
            self._locked.pop(name, None)
        else:
            known = self._locked.get(name)
            why = known[1] if known is not None and known[0] == lock else _locked_why(entry.path)
            self._locked[name] = (lock, why)
            self._ignoring(entry, ignored, name, why=why)
            return True
        folders.append((name + "/", Path(entry.path), depth + 1))
        return True

    def _ignoring(
        self, entry: os.DirEntry[str], ignored: dict[str, str], name: str | None = None, *, top: bool = True,
        why: str | None = None,
    ) -> None:  # fmt: skip
        """Add ``entry`` (named ``name``: its path relative to the folder) to ``ignored`` where the station does not
        take it (``why``: see :func:`_ignored_why`) and it stayed unchanged for :data:`IGNORED_AFTER_S` (its
        modification time: the same in any process, so ``eagle station status`` agrees). One already found so costs
        no stat: the poll stays one listing."""
        name = entry.name if name is None else name
        known = self._ignored.get(name)
        if known is not None:
            ignored[name] = known
            return
        why = _ignored_why(entry, top) if why is None else why
        if why is None:
            return
        try:
            mtime = entry.stat(follow_symlinks=False).st_mtime
        except OSError:
            return
        if time.time() - mtime >= IGNORED_AFTER_S:
            ignored[name] = why

    def ignored(self) -> tuple[int, str | None, Seconds]:
        """The files of its folder the station found it does not take, each name counted when the log says it
        (once; again if it comes back after it went): how many since the start, the last of them with why
        (``cam2.gif (suffix .gif not taken ...)``), and when lately (:class:`~eagle_iad.station.recent.Recent`).
        A file left there is not found again, so the status' warning of it clears after
        :data:`~eagle_iad.station.recent.RECENT_S`, while the log line and the count stay: an alert on the
        warnings must not fire until the station restarts (or the file goes)."""
        return self._found_ignored.total, self._last_ignored, self._found_ignored.seconds()

    def _marked(self, name: str, info: Settled) -> bool:
        """Whether ``name`` has a sidecar describing this very file (its size and modification time): a new
        image written under a name already inspected is a new arrival. A refusal of a file that could not be
        read also says its mode and ctime: a ``chmod`` (or ``chown``, an ACL) that may have made it readable
        changes them, so the fixed file is tried again instead of staying marked. A sidecar written before
        sidecars recorded what they describe marks its name, as it always did."""
        image = self._path(name)
        sidecar = image.with_name(sidecar_name(image.name))
        try:
            mark = os.stat(sidecar, follow_symlinks=False)
        except OSError:  # none (or none this process can see): the image is taken, and its sidecar written then
            self._sidecars.pop(name, None)
            return False
        key = (mark.st_ino, mark.st_size, mark.st_mtime_ns)
        cached = self._sidecars.get(name)
        if cached is None or cached[0] != key:
            said: tuple[int, ...] | None = None
            try:
                data = json.loads(sidecar.read_bytes())
                if isinstance(data, dict):
                    numbers = {key: data[key] for key in MARK_FIELDS if isinstance(data.get(key), int)}
                    if "size" in numbers and "mtime_ns" in numbers:
                        fields = MARK_FIELDS if len(numbers) == len(MARK_FIELDS) else MARK_FIELDS[:2]
                        said = tuple(numbers[key] for key in fields)
            except (OSError, ValueError):
                pass  # unreadable: it marks the name, as before
            cached = (key, said)
            self._sidecars[name] = cached
        return cached[1] is None or cached[1] == described(info, len(cached[1]))

    def backlog(self) -> int:
        return len(self._candidates())

    def poll(self) -> Iterator[Arrival]:
        self._keep_lock()
        now, clock = time.time(), time.monotonic()
        names = set()
        listed: set[str] = set()
        for mtime_ns, name, stat_now in self._candidates(listed):
            names.add(name)
            first = self._first_seen.setdefault(name, now)
            seen = (stat_now.size, mtime_ns)
            last = self._unchanged.get(name)
            was = self._inodes.get(name)
            if was is not None and stat_now.ino and was != stat_now.ino and last is not None and last[0] != seen:
                # another file under the name (its inode), with another size or time stamp (a file system whose inode
                # numbers are not stable changes only the inode): the earlier one is gone, never inspected
                self._replaced_unsettled(name, clock)
            self._inodes[name] = stat_now.ino
            if last is None or last[0] != seen:  # new, or changed since the last poll: settle_s from now
                last = (seen, clock)
                self._unchanged[name] = last
            if clock - last[1] < self.settle_s:
                continue  # still being written (or just written): its turn comes on a later poll
            path = self._path(name)
            if not path.is_file():
                continue  # taken away meanwhile
            # settled: as this listing saw it, unchanged for settle_s; the station reads it only if it still is
            self._keep_lock()  # the folder replaced since the listing: the path names another folder's file now
            self._inodes.pop(name, None)  # handed over: a file under its name after it was taken is no loss
            yield Arrival(path=path, source=str(path), name=name, appeared=first, settled=stat_now)
        # pop, not del: backlog() (from idle(), the status, /metrics) runs _marked in other threads, which may
        # have popped a name meanwhile
        for gone in set(self._first_seen) - names:
            self._first_seen.pop(gone, None)
        for gone in set(self._unchanged) - names:
            self._unchanged.pop(gone, None)
        for gone in set(self._undecodable) - names:
            self._undecodable.pop(gone, None)
        for gone in set(self._inodes) - names:
            self._inodes.pop(gone, None)
        for gone in set(self._sidecars) - listed:  # the images still there keep theirs, marked ones included
            self._sidecars.pop(gone, None)
        for gone in set(self._unseen) - listed:
            self._unseen.pop(gone, None)

    def _replaced_unsettled(self, name: str, clock: float) -> None:
        """Another file took ``name`` before the one the polls saw there settled (a writer renaming each frame onto one
        name faster than ``settle_s``): that one is lost, never inspected. Counted (the status' ``replaced``, a
        metric) and said in one warning line at the first of a burst (none for :data:`REPLACED_QUIET_S` before)."""
        quiet = self._replaced_at is None or clock - self._replaced_at >= REPLACED_QUIET_S
        self._replaced_at = clock
        self._found_replaced.add()
        self._last_replaced = name
        if quiet:
            self.log(f"eagle station: folder {self.folder}: warning: {name} was replaced by another file before the "
                     f"station took it (settle_s {self.settle_s:g} s): the earlier file is lost, never inspected; "
                     f"files replaced so within {REPLACED_QUIET_S:g} s of each other are not said one by one, but "
                     "counted in the status (replaced); a writer that renames each frame onto one name needs a "
                     "smaller settle_s (0 for a writer that renames complete files) or a name per frame")  # fmt: skip

    def replaced(self) -> tuple[int, str | None, Seconds]:
        """The files replaced under their name before the station took them, each lost (see
        :meth:`_replaced_unsettled`): how many since the start, the name of the last, and when lately
        (:class:`~eagle_iad.station.recent.Recent`)."""
        return self._found_replaced.total, self._last_replaced, self._found_replaced.seconds()

    def undecodable(self, arrival: Arrival) -> float | None:
        """The station could not decode the settled file of ``arrival`` (truncated, not an image yet): ``None`` when
        it has stayed so, unchanged, for :data:`UNDECODABLE_SETTLES` times ``settle_s`` (refuse it now); else the
        seconds it is still given. It is then counted as not settled: left in the folder, and a poll hands it over
        again only once it stayed unchanged ``settle_s`` once more (a writer that goes on meanwhile changes it, and
        it settles as a new file would)."""
        if arrival.settled is None:
            return None
        name, seen, clock = arrival.name, (arrival.settled.size, arrival.settled.mtime_ns), time.monotonic()
        first = self._undecodable.get(name)
        if first is None or first[0] != seen:
            first = (seen, clock)
            self._undecodable[name] = first
        left = UNDECODABLE_SETTLES * self.settle_s - (clock - first[1])
        if left <= 0:
            self._undecodable.pop(name, None)
            return None
        self._unchanged[name] = (seen, clock)  # settles again before its next try
        return left

    def waiting(self, name: str, digest: str) -> bool:
        """Whether image ``name`` is still in the folder with content ``digest`` (a poll takes it again; in sidecar
        mode, one its sidecar does not mark yet). Raises :class:`OSError` where that is unknown: the image or the
        folder could not be looked at (EACCES, EIO, ESTALE, the folder itself gone: an unmounted folder is not an
        empty one)."""
        path = self._path(name)
        if _digest_of(path) != digest:
            self._present()
            return False
        if self.after == "sidecar":
            try:
                info = os.stat(path, follow_symlinks=False)
            except OSError as exc:
                if exc.errno in ABSENT:
                    return False
                raise
            return not self._marked(name, look(info))
        return True

    def filed_at(self, name: str, digest: str, planned: Path, *, refused: bool = False) -> Path | None:
        """Where an image named ``name`` with content ``digest`` was put: at ``planned``, or under ``name`` or
        one of its ``-n`` names in the same folder (a name taken meanwhile; in sidecar mode, ``planned`` is the
        image's own place, and ``done/`` holds the bytes inspected of an image replaced while inspected, see
        :meth:`finish`, or ``failed/`` those of an image ``refused``, see :meth:`refuse`); ``None``: not there.
        Raises :class:`OSError` where that is unknown (see :meth:`waiting`)."""
        if _digest_of(planned) == digest:
            return planned
        names: list[str] = []
        # in sidecar mode, the bytes read of an image replaced while inspected are kept in done/ (failed/)
        beside = planned.parent if self.after == "move" else self._filed_in(self.failed if refused else self.done, name)
        reserve = self._reserve(beside)  # the -n names it was put under there
        base = name.rpartition("/")[2]  # a subfolder's image: its own name, in the same subfolders there
        try:
            with os.scandir(beside) as entries:
                names = sorted(
                    e.name
                    for e in entries
                    if named_after(e.name, base, reserve) or named_after(e.name, planned.name, reserve)
                )
        except OSError as exc:
            if exc.errno not in ABSENT:
                raise
        for candidate in names:
            if _digest_of(beside / candidate) == digest:
                return beside / candidate
        self._present()
        return None

    def listed(self, name: str) -> Settled | None:
        """What the listing sees of the regular file ``name`` still waiting in the folder (in sidecar mode, one its
        sidecar does not mark), or ``None``: none there. Raises :class:`OSError` where that is unknown (see
        :meth:`waiting`)."""
        try:
            info = os.stat(self._path(name), follow_symlinks=False)
        except OSError as exc:
            if exc.errno not in ABSENT:
                raise
            self._present()
            return None
        seen = look(info)
        if not stat.S_ISREG(info.st_mode) or (self.after == "sidecar" and self._marked(name, seen)):
            return None
        return seen

    def _present(self) -> None:
        """Raise :class:`OSError` unless the folder itself is there: "not found" in a folder that is gone
        (unmounted, deleted) says nothing of where its images are."""
        if not stat.S_ISDIR(os.stat(self.folder).st_mode):
            raise NotADirectoryError(errno.ENOTDIR, "Not a directory", str(self.folder))

    def planned(self, arrival: Arrival) -> Path:
        if self.after == "sidecar":
            return arrival.path
        done = self._filed_in(self.done, arrival.name)
        return first_free(done, arrival.path.name, self._reserve(done))

    def planned_repeat(self, arrival: Arrival, to: Path) -> Path:
        """Where :meth:`finish` will put ``arrival``, whose content is already filed at ``to`` (a repeat, put away
        toward the earlier file's place): ``to`` itself where those bytes were dropped again under that file's name
        (kept once), else this file's own :meth:`planned` place (``done/p4.png``, not the earlier ``done/p3.png``),
        which its refusal's ``image`` must name: a sink files that path as this part's image."""
        done = self._filed_in(self.done, arrival.name)
        if self.after == "move" and to.parent == done and named_after(to.name, arrival.path.name, self._reserve(done)):
            return to
        return self.planned(arrival)

    @staticmethod
    def _holds(path: Path, arrival: Arrival) -> os.stat_result | None:
        """The file at ``path`` (not following a link) when it holds the image the station read, else ``None``.

        The same file (device, inode, size, modification time) holds it; where that differs, a file with the
        very bytes read does too: a writer that rewrote it unchanged, or a file system whose inode numbers are
        not stable (CIFS ``noserverino``, some FUSE), must not make it "replaced" (it would be copied to done/
        and left behind, then found again at every poll).
        """
        try:
            info = os.stat(path, follow_symlinks=False)
        except FileNotFoundError:
            return None
        if arrival.identity is None or identity(info) == arrival.identity:
            return info
        if arrival.data is None or not stat.S_ISREG(info.st_mode) or info.st_size != len(arrival.data):
            return None
        return info if _same_bytes(path, arrival.data) else None

    def _still(self, arrival: Arrival) -> os.stat_result | None:
        """The file at the arrival's path when it is still the image the station read (not replaced since)."""
        return self._holds(arrival.path, arrival)

    @staticmethod
    def _mark(image: Path, mark: Mapping[str, Any], info: os.stat_result, unread: Settled | None = None) -> Path:
        """Write the sidecar of the file at ``image``; where it went. It says what file it describes (``info``'s
        size and modification time: another file under that name is new); ``unread``, for a refusal of a file
        that could not be read: also its mode and ctime as the listing saw them before the read failed, so a
        ``chmod`` since (which changes neither size nor modification time) makes it new too."""
        said = {**mark, "size": info.st_size, "mtime_ns": info.st_mtime_ns}
        if unread is not None:
            said.update(mode=unread.mode, ctime_ns=unread.ctime_ns)
        name = sidecar_name(image.name)
        if name != image.name + SIDECAR_SUFFIX:
            said["image"] = image.name  # a shortened sidecar name: which image it is about, in full
        target = image.with_name(name)
        atomic_write_text(target, json.dumps(said) + "\n")
        return target

    def _mark_in_place(self, arrival: Arrival, mark: Mapping[str, Any]) -> bool:
        """Write the sidecar beside the image while its name holds the file the station read (of a file not read:
        the one the listing saw, same size and modification time), and look again once it is written; whether
        it stands.

        A sidecar describes a file by size and modification time only: one written for a file replaced while it
        was inspected, by one with the same size and stamp (a camera writing same-sized frames within its file
        system's stamp resolution), would mark the new file inspected. So the file is looked at again after the
        write, and a sidecar written for a file replaced meanwhile is removed: the new file is a new arrival.
        A file not read that changed since its listing (a link or FIFO put under its name, a writer) is not
        marked: what failed to open may not be what is there now, which the next poll takes again.
        """
        unread = arrival.data is None  # refused before it could be read (permission denied): see _mark
        settled = arrival.settled if unread else None

        def holds() -> os.stat_result | None:
            info = self._still(arrival)
            if info is None or settled is None or described(look(info), 2) == described(settled, 2):
                return info
            return None

        info = holds()
        if info is None:
            return False
        written = self._mark(arrival.path, mark, info, (settled or look(info)) if unread else None)
        if holds() is not None:
            return True
        written.unlink(missing_ok=True)
        return False

    def _keep_marked(self, arrival: Arrival, folder: Path, mark: Mapping[str, Any], why: str) -> Path | None:
        """Sidecar mode, the image replaced while inspected: the bytes read kept in ``folder`` (``done/`` or
        ``failed/``, a free ``-n`` name there) with a sidecar describing that copy, so the verdict's place holds
        the bytes it is about; the new file stays in place, unmarked, and is taken at the next poll as a new
        arrival. Where they went; ``None``: no bytes to keep (a file not read)."""
        folder = self._filed_in(folder, arrival.name)
        kept = self._keep_read(arrival, folder / numbered(arrival.path.name, 0, self._reserve(folder)))
        if kept is None:
            return None
        self._mark(kept, mark, os.stat(kept, follow_symlinks=False))
        self.log(f"eagle station: folder {self.folder}: {arrival.name}: replaced while inspected; the bytes "
                 f"inspected ({why}) are kept at {kept} with their sidecar; the new file is taken as a new arrival"
                 )  # fmt: skip
        return kept

    def _keep_read(self, arrival: Arrival, to: Path) -> Path | None:
        """The bytes the station read put at ``to`` (or a free ``-n`` name beside it), when the file they came
        from was replaced meanwhile: the new file stays where it is for the next poll. ``None``: no bytes."""
        if arrival.data is None:
            return None
        make_folders(to.parent, self.folder)
        fd, temporary = tempfile.mkstemp(prefix=".eagle-", dir=to.parent)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(arrival.data)
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(temporary, new_file_mode())
            if os.path.lexists(to) and to.read_bytes() == arrival.data:
                return to  # a kill after the first try wrote it
            return move_new(Path(temporary), to.parent, to.name, self._reserve(to.parent))
        finally:
            Path(temporary).unlink(missing_ok=True)

    def finish(self, arrival: Arrival, to: Path, record: Mapping[str, Any]) -> Path | None:
        if self.after == "sidecar":
            mark = {"record_id": record.get("id"), "decision": record.get("decision"), "score": record.get("score")}
            if self._mark_in_place(arrival, mark) or not os.path.lexists(arrival.path):
                return None  # marked; or taken away while inspected: nothing there to mark, nor anything kept
            # replaced while inspected: the new bytes get no sidecar (they are taken next); the verdict's place
            # must hold the bytes it is about
            return self._keep_marked(arrival, self.done, mark, f"record {record.get('id')}")
        if self._still(arrival) is None:  # the inspected bytes go where its verdict says; the new file stays
            return self._keep_read(arrival, to)
        return self._move(arrival, to)

    def _move(self, arrival: Arrival, to: Path) -> Path | None:
        """Move the file read to ``to``, or a free ``-n`` name beside it; where it went (``None``: nowhere)."""
        done = self._filed_in(self.done, arrival.name)  # done/ itself, or (recursive) the image's subfolders there
        if to.parent == done:
            make_folders(done, self.folder)
            try:
                if os.path.lexists(to) and (os.path.samefile(arrival.path, to) or (
                        arrival.data is not None and named_after(to.name, arrival.path.name, self._reserve(done))
                        and _same_bytes(to, arrival.data))):  # fmt: skip
                    # a kill between link and unlink (only the unlink was left to do), or these very bytes
                    # filed there already under this name (dropped again, or kept when a file system without
                    # stable inode numbers made the file look replaced): not kept twice
                    os.unlink(arrival.path)
                    return to
                os.link(arrival.path, to)  # never replaces: a name taken meanwhile raises FileExistsError
                if self._holds(to, arrival) is None:
                    os.unlink(to)  # replaced between the look and the link: that file is the next poll's
                    return self._keep_read(arrival, to)
                os.unlink(arrival.path)
                return to
            except FileNotFoundError:
                if not arrival.path.exists():
                    return None  # taken away during its inspection: nothing left to put away
            except OSError:
                pass  # taken meanwhile, or a file system without hard links: move_new finds a name
        make_folders(done, self.folder)
        return move_new(arrival.path, done, reserve=self._reserve(done))

    def planned_refusal(self, arrival: Arrival) -> Path:
        """Where :meth:`refuse` will put the image: the first free name in ``failed/``, or (sidecar mode) its place."""
        if self.after == "sidecar":
            return arrival.path
        failed = self._filed_in(self.failed, arrival.name)
        return first_free(failed, arrival.path.name, self._reserve(failed))

    def refuse(self, arrival: Arrival, reason: str) -> Path:
        """Where the image went (see :class:`~eagle_iad.station.parts.Source`); :class:`NotPutAside` where nothing of
        it is left to put anywhere: taken away meanwhile (in move mode, the bytes read are kept in failed/ all the
        same; in sidecar mode nothing is kept, as for a verdict), or a file that could not be read replaced since it
        was listed (sidecar mode: what failed to open may not be what is there now; a move puts aside what is
        there, a link or a FIFO put under its name included)."""
        if self.after == "sidecar":
            mark = {"error": reason}
            if self._mark_in_place(arrival, mark):
                return arrival.path
            there = os.path.lexists(arrival.path)
            # replaced meanwhile: the bytes refused are kept in failed/ (none of a file not read); the new file stays
            kept = self._keep_marked(arrival, self.failed, mark, "refused") if there else None
        elif self._still(arrival) is not None:
            failed = self._filed_in(self.failed, arrival.name)
            make_folders(failed, self.folder)
            there, kept = True, move_new(arrival.path, failed, reserve=self._reserve(failed))
        else:  # replaced while inspected: the refused bytes go to failed/, the new file stays for the next poll
            there = os.path.lexists(arrival.path)
            failed = self._filed_in(self.failed, arrival.name)
            kept = self._keep_read(arrival, failed / numbered(arrival.path.name, 0, self._reserve(failed)))
        if kept is None:
            raise NotPutAside("another file is under its name since it was listed" if there else "taken away")
        if self.after == "move":
            atomic_write_text(kept.with_name(kept.name + REASON_SUFFIX), reason + "\n")
        return kept


SOURCES.add(HotFolder.kind, HotFolder)
