"""Replace a folder by a complete new one, crash-consistently: at every instant the old or the new is in place.

Why a module of its own: the way a saved model replaces the previous one (a whole folder written
beside the target, then swapped in) does not depend on what the folder holds, and its hardest parts
(the atomic exchange, the lock, the recovery after a crash between two renames) deserve one home
and one set of kill-at-each-step tests (tests/test_expert_store_and_inputs.py), whoever uses it.

* The new folder is written complete into ``.NAME.tmp-*`` next to the target (:func:`staging_folder`).
  On Linux the two folders are then swapped in one atomic ``renameat2(RENAME_EXCHANGE)``
  (:func:`exchange`). Elsewhere the old folder is renamed to ``.NAME.old-*`` and the new one into
  place; a crash between those two renames leaves no target, and :func:`recover` (called by the
  next reader or writer) restores the retired copy.
* Writers into one parent folder are serialised by an advisory lock on it (:func:`folder_lock`), and
  each write removes the ``.NAME.tmp-*`` / ``.NAME.old-*`` leftovers of earlier crashed writes.

What counts as a complete folder (worth restoring) is the caller's to say (``is_complete``).
"""

from __future__ import annotations

import ctypes
import errno
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

try:  # advisory locks serialise writes into one folder (POSIX; elsewhere writes are not serialised)
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

#: ``.NAME.tmp-XXXXXXXX`` (being written) or ``.NAME.old-XXXXXXXX`` (retired), as :mod:`tempfile` names them.
LEFTOVER = re.compile(r"^\.(.+)\.(tmp|old)-[A-Za-z0-9_]{8}$")


def fsync_dir(path: Path) -> None:
    """Make a folder's entries (a rename into it) durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def folder_lock(parent: Path) -> Iterator[None]:
    """Hold an exclusive advisory lock on ``parent`` (writes and recoveries there take turns)."""
    if fcntl is None:  # pragma: no cover - Windows
        yield
        return
    fd = os.open(parent, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def staging_folder(target: Path) -> Path:
    """A new private ``.NAME.tmp-XXXXXXXX`` folder next to ``target``, to write the new folder into."""
    return Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))


def leftovers(target: Path, kind: str) -> list[Path]:
    """``.NAME.<kind>-XXXXXXXX`` folders next to ``target`` (exactly the names this module makes)."""
    pattern = re.compile(rf"^\.{re.escape(target.name)}\.{kind}-[A-Za-z0-9_]{{8}}$")
    try:
        names = os.listdir(target.parent)
    except OSError:
        return []
    return sorted(target.parent / name for name in names if pattern.match(name))


def recover(target: Path, is_complete: Callable[[Path], bool]) -> bool:
    """Put a retired complete folder back when a crash left none at ``target``; call with the lock held."""
    if os.path.lexists(target):
        return False
    retired = [path for path in leftovers(target, "old") if is_complete(path)]
    if not retired:
        return False
    newest = max(retired, key=lambda path: path.stat().st_mtime_ns)
    os.rename(newest, target)
    fsync_dir(target.parent)
    return True


def clean_leftovers_of(target: Path, is_complete: Callable[[Path], bool]) -> None:
    """Remove what crashed writes left next to ``target``; call with the lock held (no write is running)."""
    recover(target, is_complete)
    for path in leftovers(target, "tmp") + leftovers(target, "old"):
        shutil.rmtree(path, ignore_errors=True)


def clean_folder(folder: str | os.PathLike[str], is_complete: Callable[[Path], bool]) -> list[str]:
    """Recover and clean up after crashed writes of every folder in ``folder``; the names concerned.

    Under the folder's lock, so a write running in another process is never disturbed.
    """
    root = Path(os.path.abspath(folder))
    try:
        names = sorted({match.group(1) for entry in os.listdir(root) if (match := LEFTOVER.match(entry))})
    except OSError:
        return []
    if names:
        with folder_lock(root):
            for name in names:
                clean_leftovers_of(root / name, is_complete)
    return names


def recover_if_retired(target: Path, is_complete: Callable[[Path], bool]) -> None:
    """Before reading ``target``: restore the retired copy a write that crashed between its two renames left."""
    if not os.path.lexists(target) and leftovers(target, "old"):
        with folder_lock(target.parent):
            recover(target, is_complete)


def exchange(a: Path, b: Path) -> bool:
    """Atomically swap two directories with ``renameat2(RENAME_EXCHANGE)``; False where unsupported."""
    if sys.platform != "linux":
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2  # glibc >= 2.28
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    renameat2.restype = ctypes.c_int
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
        return False  # an old kernel or a filesystem without exchange: fall back to two renames
    raise OSError(code, os.strerror(code), str(a))


def swap_in(staging: Path, target: Path, step: Callable[[str], None] = lambda name: None) -> None:
    """Put the complete folder ``staging`` at ``target``, the old one removed; call with the lock held.

    ``step(name)`` is told ``exchanged``, or ``retired`` then ``promoted``, as the swap passes them (a
    test kills the process there). An error between the two renames puts the old folder back.
    """
    parent = target.parent
    if not os.path.lexists(target):
        os.rename(staging, target)
    elif exchange(staging, target):
        step("exchanged")  # target: the new folder; staging: the old one, removed below
        fsync_dir(parent)
        shutil.rmtree(staging, ignore_errors=True)
    else:
        retired = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=parent))
        os.rmdir(retired)
        os.rename(target, retired)
        step("retired")
        try:
            os.rename(staging, target)
        except BaseException:
            os.rename(retired, target)  # put the old folder back: never leave none at all
            raise
        step("promoted")
        fsync_dir(parent)
        shutil.rmtree(retired, ignore_errors=True)
    fsync_dir(parent)
