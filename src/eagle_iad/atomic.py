"""Atomic text files: a reader (report server, browser, a resumed run) never sees a half-written file.

The text goes to a temporary file in the destination folder, is fsynced, and is moved into place with
:func:`os.replace`; a crash leaves the previous file intact and no temporary behind.
"""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path


def atomic_write_bytes(path: Path, data: bytes, *, durable: bool = False) -> None:
    """Replace ``path`` with ``data`` in one step (mode 0644); missing parent folders are created. ``durable``:
    the folder is fsynced after the rename too, so a power loss cannot lose the new name (a file a restart must
    find, not only one a reader must never see half of)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)
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
