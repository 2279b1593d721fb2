"""The audit log: who changed what, when. Every successful write through an audited route is one row.

Why automatic: a log that each route must remember to write is a log with holes. The service's
middleware writes a row for every request that is not a GET, whose route is audited (``requires(...,
audited=True)``, the default) and that succeeded, with the caller's name and role, the route template,
the concrete path and, where the route says it (``audit_detail``), what changed ("label normal"); so a
route added later is audited without a line of its own. The row is written before the answer starts:
a change the client was told succeeded is in the log, or the client is told it failed. Inspections are
not audited (the history is their record); labels, thresholds, fits, stations and keys are.
"""

from __future__ import annotations

import csv
import io
from typing import Any

from eagle_iad.service.access import Caller
from eagle_iad.service.store import InspectionStore

COLUMNS = ("seq", "time", "actor", "role", "method", "route", "path", "status", "detail")


class AuditLog:
    def __init__(self, store: InspectionStore) -> None:
        self.store = store

    def write(self, time: str, caller: Caller, method: str, route: str, path: str, status: int,
              detail: str | None = None) -> None:  # fmt: skip
        with self.store.transaction() as db:
            db.execute(
                "INSERT INTO audit (time, actor, role, method, route, path, status, detail) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (time, caller.name, caller.role.name, method, route, path, status, detail),
            )

    def page(self, limit: int, offset: int, actor: str | None = None) -> tuple[int, list[dict[str, Any]]]:
        """Newest first: ``(total, rows)``."""
        where, params = ("WHERE actor = ?", [actor]) if actor else ("", [])
        total = int(self.store.read(f"SELECT COUNT(*) FROM audit {where}", params)[0][0])
        rows = self.store.read(f"SELECT {', '.join(COLUMNS)} FROM audit {where} ORDER BY seq DESC LIMIT ? OFFSET ?",
                               [*params, limit, offset])  # fmt: skip
        return total, [dict(zip(COLUMNS, row, strict=True)) for row in rows]

    def csv(self, actor: str | None = None) -> str:
        """Every row, oldest first, as CSV; a field a spreadsheet would run as a formula is defused."""
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
