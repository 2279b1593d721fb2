"""Atomic text files: a reader (report server, browser, a resumed run) never sees a half-written file.

The text goes to a temporary file in the destination folder, is fsynced, and is moved into place with
:func:`os.replace`; a crash leaves the previous file intact and no temporary behind.

Modes: a temporary file is made owner-only (``mkstemp``), so every output written this way is given the mode
``open()`` would have given it, ``0o666`` less the umask (:func:`new_file_mode`; folders :func:`new_folder_mode`),
before it is moved into place. A fixed ``0o644`` made defect pictures world-readable at a site whose umask is
``027``; the umask is the site's way to say who may read what it writes.
"""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path


def _umask_from_proc() -> int | None:
    """The umask as Linux (4.7 and later) shows it in ``/proc/self/status``, or ``None`` where it does not. Read
    without changing it: :func:`os.umask` has no getter, and setting it to read it would, for that instant, give
    another thread's new files the wrong mode."""
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8) & 0o777
    except (OSError, ValueError, IndexError):
        return None
    return None


def _umask_at_import() -> int:
    found = _umask_from_proc()
    if found is None:  # no /proc: set and restore it once, while the import runs (before any writer thread)
        found = os.umask(0o022)
        os.umask(found)
    return found


#: The umask when this module was first imported: what :func:`current_umask` says where ``/proc`` cannot.
UMASK_AT_START = _umask_at_import()


def current_umask() -> int:
    """This process's umask now (``/proc/self/status``), or :data:`UMASK_AT_START` where that cannot be read."""
    found = _umask_from_proc()
    return UMASK_AT_START if found is None else found


def new_file_mode() -> int:
    """The mode ``open()`` gives a new file: ``0o666`` less the umask (``0o644`` under the usual ``022``)."""
    return 0o666 & ~current_umask()


def new_folder_mode() -> int:
    """The mode ``mkdir`` gives a new folder: ``0o777`` less the umask (``0o755`` under the usual ``022``)."""
    return 0o777 & ~current_umask()


def atomic_write_bytes(path: Path, data: bytes, *, durable: bool = False) -> None:
    """Replace ``path`` with ``data`` in one step (mode :func:`new_file_mode`); missing parent folders are
    created. ``durable``: the folder is fsynced after the rename too, so a power loss cannot lose the new name (a
    file a restart must find, not only one a reader must never see half of)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, new_file_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if durable:
        sync_folder(path.parent)


#: What a folder's fsync raises on file systems that cannot sync a folder (CIFS, some FUSE ones): the rename is done
#: and the file in place, as durable as that file system makes it; nothing a retry would change.
UNSYNCABLE_FOLDER = frozenset({errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EBADF})


def sync_folder(folder: Path) -> None:
    """Make ``folder``'s entries (a rename into it, a file removed) durable, where its file system can (see
    :data:`UNSYNCABLE_FOLDER`: those errors are ignored, not taken for a write that failed)."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in UNSYNCABLE_FOLDER:
            raise
    finally:
        os.close(fd)


def atomic_write_text(path: Path, text: str, *, durable: bool = False) -> None:
    """Replace ``path`` with ``text`` (UTF-8) in one step; missing parent folders are created (``durable``: see
    :func:`atomic_write_bytes`)."""
    atomic_write_bytes(path, text.encode("utf-8"), durable=durable)
