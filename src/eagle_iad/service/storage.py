"""Disk space: refuse (507) what would fill the state folder's disk, and say so when the disk is full anyway.

Why a floor and not only ``ENOSPC``: SQLite, the pictures and the uploads share one disk, and a
disk filled to the last byte can fail a write half-way through something else (a job record, the
WAL). Keeping ``min_free_bytes`` free refuses the request that would cross the line before any byte is
written; the ``ENOSPC`` mapping covers what the floor cannot see (another process filling the disk).
Both answer 507 Insufficient Storage with the same code, and the caller removes what it had written.
"""

from __future__ import annotations

import errno
import shutil
import sqlite3
from pathlib import Path

from eagle_iad.mllm.serving import ApiError

#: ``errno`` values that mean "no room": a full disk, or the user's quota.
DISK_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})

_MIB = 1024 * 1024


def is_disk_full(exc: BaseException) -> bool:
    """``exc`` is a write refused for lack of space (``OSError`` or SQLite's ``SQLITE_FULL``)."""
    if isinstance(exc, OSError):
        return exc.errno in DISK_FULL
    if isinstance(exc, sqlite3.OperationalError):
        return getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL or "disk is full" in str(exc)
    return False


def disk_full_error() -> ApiError:
    """The 507 for a write the disk refused."""
    return ApiError(507, "the service's disk is full; nothing was stored (free space on the state folder's disk)",
                    type_="server_error", code="insufficient_storage")  # fmt: skip


def check_free_space(folder: Path, incoming: int, floor: int) -> None:
    """Refuse (507) when writing ``incoming`` bytes under ``folder`` would leave less than ``floor`` free."""
    if floor <= 0:
        return
    free = shutil.disk_usage(folder).free
    if free - incoming < floor:
        raise ApiError(
            507,
            f"not enough free disk space for this request: {free / _MIB:.1f} MiB free, {incoming / _MIB:.1f} MiB "
            f"needed, and the service keeps {floor / _MIB:.0f} MiB free (--min-free-mb)",
            type_="server_error",
            code="insufficient_storage",
        )
