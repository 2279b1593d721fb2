"""The audit log: who changed what, when. Every successful write through an audited route is one row.

Why automatic: a log that each route must remember to write is a log with holes. The service's
middleware writes a row for every request that is not a GET, whose route is audited (``requires(...,
audited=True)``, the default) and that succeeded, with the caller's name and role, the route template,
the concrete path and, where the route says it (``audit_detail``), what changed ("label normal"); so a
route added later is audited without a line of its own. The row is written before the answer starts.
Inspections are not audited (the history is their record); labels, thresholds, fits, stations and keys are.

Why a journal: a model's change (a threshold, a teach, a rollback) is saved as files before its row is
written, so a row that cannot be written must not turn a change that took effect into an error the
client would retry. A busy history (another writer holds it: ``eagle keys``, a station, a replica) is
waited for up to :data:`AUDIT_WAIT_S`; after that, or on any other failure, the row is appended to
``audit-pending.jsonl`` in the state folder (fsynced) and the answer goes out. The next audit write, a
read of the log and the service's start move journalled rows into the log, each once.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import threading
import time as clock
from pathlib import Path
from typing import Any

from eagle_iad.service.access import Caller
from eagle_iad.service.store import InspectionStore

COLUMNS = ("seq", "time", "actor", "role", "method", "route", "path", "status", "detail")
#: A row's fields as written (``seq`` is the log's own).
_FIELDS = COLUMNS[1:]
#: How long a row waits for a history another writer holds before it goes to the journal. Long enough for
#: any ordinary writer (a key added, a verdict stored); short enough that a client's request does not time out.
AUDIT_WAIT_S = 20.0
#: The journal of rows the log could not take yet, in the state folder.
PENDING = "audit-pending.jsonl"

_INSERT = f"INSERT INTO audit ({', '.join(_FIELDS)}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
#: A journalled row already in the log: the same change (to the millisecond) by the same caller.
_WRITTEN = "SELECT 1 FROM audit WHERE time = ? AND actor = ? AND method = ? AND path = ? AND status = ?"

log = logging.getLogger("eagle_iad.service")


class AuditLog:
    def __init__(self, store: InspectionStore, journal: Path | None = None) -> None:
        self.store = store
        self.journal = journal
        self._journal_lock = threading.Lock()

    def write(self, time: str, caller: Caller, method: str, route: str, path: str, status: int,
              detail: str | None = None) -> bool:  # fmt: skip
        """Write one row (journalled rows first); ``False`` when it went to the journal instead."""
        row = (time, caller.name, caller.role.name, method, route, path, status, detail)
        deadline = clock.monotonic() + AUDIT_WAIT_S
        delay = 0.05
        while True:
            try:
                self._insert([row])
                return True
            except Exception as exc:
                if self.store.backend.is_unavailable(exc) and clock.monotonic() + delay < deadline:
                    clock.sleep(delay)
                    delay = min(delay * 2, 1.0)
                    continue
                if self.journal is None:
                    raise
                self._append(row, exc)
                return False

    def drain(self) -> None:
        """Move journalled rows into the log (each once); left in the journal if the log cannot take them now."""
        if self.journal is None or not self.journal.exists():
            return
        try:
            self._insert([])
        except Exception as exc:
            log.warning("audit: %s still holds rows the log cannot take yet (%s)", self.journal, exc)

    def _insert(self, rows: list[tuple[Any, ...]]) -> None:
        """The journal's rows, then ``rows``, in one transaction; the journal is emptied once they are in.
        A journalled row already in the log (a drain cut short after its commit) is not written twice."""
        with self._journal_lock:
            pending = self._pending()
            with self.store.transaction() as db:
                for entry in pending:
                    if db.execute(_WRITTEN, (entry[0], entry[1], entry[3], entry[5], entry[6])).fetchone() is None:
                        db.execute(_INSERT, entry)
                for entry in rows:
                    db.execute(_INSERT, entry)
            if pending and self.journal is not None:
                self.journal.unlink(missing_ok=True)

    def _pending(self) -> list[tuple[Any, ...]]:
        if self.journal is None or not self.journal.exists():
            return []
        rows = []
        for line in self.journal.read_text(encoding="utf-8").splitlines():
            try:
                data = json.loads(line)
                rows.append(tuple(data[name] for name in _FIELDS))
            except (ValueError, KeyError, TypeError):
                continue  # a line cut short by a crash while appending: its change was answered as failed
        return rows

    def _append(self, row: tuple[Any, ...], exc: BaseException) -> None:
        assert self.journal is not None
        with self._journal_lock, self.journal.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(dict(zip(_FIELDS, row, strict=True))) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        log.error("audit: the log could not take a row (%s); kept in %s until it can", exc, self.journal)

    def page(self, limit: int, offset: int, actor: str | None = None) -> tuple[int, list[dict[str, Any]]]:
        """Newest first: ``(total, rows)``."""
        self.drain()
        where, params = ("WHERE actor = ?", [actor]) if actor else ("", [])
        total = int(self.store.read(f"SELECT COUNT(*) FROM audit {where}", params)[0][0])
        rows = self.store.read(f"SELECT {', '.join(COLUMNS)} FROM audit {where} ORDER BY seq DESC LIMIT ? OFFSET ?",
                               [*params, limit, offset])  # fmt: skip
        return total, [dict(zip(COLUMNS, row, strict=True)) for row in rows]

    def csv(self, actor: str | None = None) -> str:
        """Every row, oldest first, as CSV; a field a spreadsheet would run as a formula is defused."""
        self.drain()
        where, params = ("WHERE actor = ?", [actor]) if actor else ("", [])
        rows = self.store.read(f"SELECT {', '.join(COLUMNS)} FROM audit {where} ORDER BY seq", params)
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\r\n")
        writer.writerow(COLUMNS)
        for row in rows:
            writer.writerow([_defuse(value) for value in row])
        return out.getvalue()


def _defuse(value: Any) -> Any:
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value
