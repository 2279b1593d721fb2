"""A copy of an SQLite history at its older schema, kept beside it before a migration: the way back.

Why: a migration is one transaction (all of it, or nothing), but once it commits, every eagle-iad that reads the
older schema refuses the history (``history schema 6 is not the 3 this eagle-iad reads``). The only way back to the
older release is a copy taken before; a plant upgrading from a release whose manual had no backup section may have
none. So the first open that migrates a history from an older schema (``eagle serve``, ``eagle station run``,
``eagle db upgrade``) first writes ``<file>.schema<N>.bak`` with SQLite's online backup API (a consistent copy while
the file is open, its WAL included), under a temporary name, fsynced, then renamed: a copy is whole or absent.
A copy of that name already there is kept (it is the one made before the first migration from that schema).

Not enough free disk (the file's size and its WAL's, plus :data:`COPY_MARGIN_BYTES`, checked first): no copy, and
the migration's WARNING says so; the migration itself goes on, as before. PostgreSQL: no copy (a server's database
is backed up with ``pg_dump``, by who runs the server); the WARNING says so.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
from contextlib import closing, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from eagle_iad.atomic import sync_folder
from eagle_iad.history.backend import Connection, HistoryBackend
from eagle_iad.history.schema import SCHEMA_VERSION, version
from eagle_iad.history.sqlite import SqliteConnection, SqliteHistory

#: Free space kept over the copy's size: the migration itself writes to the same disk (its WAL) right after.
COPY_MARGIN_BYTES = 64 * 1024 * 1024

#: Where the manual says how to go back (quoted by every message here).
GOING_BACK = "docs/OPERATIONS.md, 'Going back to an older release'"

_MIB = 1024 * 1024


@dataclass(frozen=True)
class KeptCopy:
    """What :func:`keep_copy` did before a migration from schema ``before``: ``path`` the copy (``None``: none made,
    ``why_not`` says why)."""

    before: int
    path: Path | None
    why_not: str = ""

    def said(self) -> str:
        """One clause for the migration's WARNING and ``eagle db upgrade``'s line."""
        if self.path is not None:
            return (f"a copy at schema {self.before} is kept at {self.path}: the older eagle-iad runs on it "
                    f"({GOING_BACK})")  # fmt: skip
        return f"no copy at schema {self.before} was kept: {self.why_not} ({GOING_BACK})"


def copy_path(history: Path, before: int) -> Path:
    """``<file>.schema<before>.bak``, beside the history."""
    return history.with_name(f"{history.name}.schema{before}.bak")


def keep_copy(backend: HistoryBackend, db: Connection) -> KeptCopy | None:
    """Before :func:`~eagle_iad.history.schema.upgrade`: a copy of a history at an older schema (``None``: nothing
    to migrate, a new history, or one :func:`upgrade` refuses). Never raises for a copy it cannot make: the
    migration goes on, and the returned :class:`KeptCopy` says why there is none."""
    before = version(backend, db)
    if before is None or not 1 <= before < SCHEMA_VERSION:
        return None
    if not isinstance(backend, SqliteHistory):
        return KeptCopy(before, None, f"{backend.scheme} is not copied by eagle-iad: take a pg_dump before upgrading")
    target = copy_path(backend.path, before)
    if target.exists():
        return KeptCopy(before, target)
    wal = backend.path.with_name(backend.path.name + "-wal")
    size = sum(path.stat().st_size for path in (backend.path, wal) if path.exists())
    free = shutil.disk_usage(backend.path.parent).free
    need = size + COPY_MARGIN_BYTES
    if free < need:
        return KeptCopy(before, None, f"not enough free disk in {backend.path.parent} ({free / _MIB:.1f} MiB free, "
                        f"{need / _MIB:.1f} MiB needed); the migration goes on, so only a backup taken before "
                        "it leads back")  # fmt: skip
    for leftover in target.parent.glob(f".{target.name}.*.tmp"):  # a copy a kill cut short (one owner per file)
        with suppress(OSError):
            leftover.unlink()
    temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        with closing(sqlite3.connect(str(temporary), isolation_level=None)) as copy:
            cast(SqliteConnection, db).raw.backup(copy)
            copy.execute("PRAGMA journal_mode=DELETE")  # one self-contained file, no -wal beside it
            row = copy.execute("SELECT version FROM schema_version").fetchone()
        if row is None or int(row[0]) != before:  # another process migrated it meanwhile: nothing older to keep
            temporary.unlink()
            return None
        with open(temporary, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(temporary, target)
        sync_folder(target.parent)
    except (OSError, sqlite3.Error) as exc:
        with suppress(OSError):
            temporary.unlink()
        return KeptCopy(before, None, f"it could not be written at {target} ({exc}); the migration goes on, so "
                        "only a backup taken before it leads back")  # fmt: skip
    return KeptCopy(before, target)
