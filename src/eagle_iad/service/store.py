"""The inspection history and the fit jobs' records: an embedded SQLite file that survives restarts.

Why SQLite: one file, no server, transactional; WAL mode lets readers (history pages) run while an
inspection is written. A ``schema_version`` table makes a future migration explicit instead of
guessing from columns. One connection guarded by a lock: the service writes a row per inspection,
far below what serialising costs.

Schema history: 1 = inspections; 2 adds ``fit_jobs``; 3 adds the user's label of an inspection
(``label``: what the part actually was, ``label_time``); 4 adds the stations' intake and outbox
(``station_intake``: each file a station took, by content hash; ``outbox``: each verdict a sink must
receive, committed in the same transaction as its inspection; ``stations``: the stations created through
``/v1/stations``, started again with the service; see :mod:`eagle_iad.station`); 5 adds ``idempotency``
(an upload's ``Idempotency-Key``, what was sent under it and the record it made: a repeat answers with
that record, so a reloaded console or a retrying client never stores an image twice), ``api_keys`` (named
keys with roles, as digests: :mod:`eagle_iad.service.keys`) and ``audit`` (who changed what:
:mod:`eagle_iad.service.audit`). Older
files are migrated in place when opened, their history untouched; a file newer than this code is
refused rather than misread.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from eagle_iad.errors import ConfigError
from eagle_iad.record import InspectionRecord, columns, from_row, to_row
from eagle_iad.review import REASONS, Reason, queued_condition, reason_columns, reasons_of

SCHEMA_VERSION = 5

#: What a user may say an inspected part actually was (``None``: not labelled).
LABELS = ("normal", "anomalous")

def _inspections_table() -> str:
    """``CREATE TABLE inspections`` from the record's fields (``seq``, the storage order, after ``id``)."""
    lines = []
    for column in columns():
        if column.name == "id":
            lines += ["    id TEXT PRIMARY KEY", "    seq INTEGER NOT NULL UNIQUE"]
        else:
            lines.append(f"    {column.name} {column.sql_type}{'' if column.nullable else ' NOT NULL'}")
    return "CREATE TABLE IF NOT EXISTS inspections (\n" + ",\n".join(lines) + "\n);"


_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);
{_inspections_table()}
CREATE INDEX IF NOT EXISTS inspections_category ON inspections (category, seq);
CREATE TABLE IF NOT EXISTS fit_jobs (
    id TEXT PRIMARY KEY,
    created TEXT NOT NULL,
    record TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS station_intake (
    station TEXT NOT NULL,
    digest TEXT NOT NULL,
    name TEXT NOT NULL,
    state TEXT NOT NULL,
    record_id TEXT,
    reason TEXT,
    moved_to TEXT,
    appeared REAL NOT NULL,
    time REAL NOT NULL,
    PRIMARY KEY (station, digest)
);
CREATE INDEX IF NOT EXISTS station_intake_time ON station_intake (station, time);
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    station TEXT NOT NULL,
    sink TEXT NOT NULL,
    record_id TEXT NOT NULL,
    payload TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0,
    next_try REAL NOT NULL DEFAULT 0,
    last_error TEXT,
    delivered REAL,
    UNIQUE (station, sink, record_id)
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (station, sink, state, seq);
CREATE TABLE IF NOT EXISTS idempotency (
    key TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    record_id TEXT NOT NULL,
    created TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS api_keys (
    name TEXT PRIMARY KEY,
    role TEXT NOT NULL,
    digest TEXT NOT NULL UNIQUE,
    created TEXT NOT NULL,
    revoked TEXT
);
CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    time TEXT NOT NULL,
    actor TEXT NOT NULL,
    role TEXT NOT NULL,
    method TEXT NOT NULL,
    route TEXT NOT NULL,
    path TEXT NOT NULL,
    status INTEGER NOT NULL,
    detail TEXT
);
CREATE TABLE IF NOT EXISTS stations (
    name TEXT PRIMARY KEY,
    spec TEXT NOT NULL,
    paused INTEGER NOT NULL DEFAULT 0,
    created TEXT NOT NULL
);
"""

#: What a fit job that was queued or running when the service stopped becomes on the next start.
INTERRUPTED = "interrupted: the service stopped before this fit finished; start the fit again"


#: The stored inspection is the one inspection record (eagle_iad/record.py); the columns derive from it.
Inspection = InspectionRecord


class InspectionStore:
    """Append and page through inspections; thread-safe (one connection, one lock)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        with self._lock:
            self._db.executescript(_SCHEMA)
            row = self._db.execute("SELECT version FROM schema_version").fetchone()
            if row is None:
                self._db.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))
            elif int(row[0]) > SCHEMA_VERSION or int(row[0]) < 1:
                raise ConfigError(f"{path}: history schema {row[0]} is not the {SCHEMA_VERSION} this eagle-iad reads")
            else:
                self._add_missing_columns(int(row[0]))

    def _add_missing_columns(self, version: int) -> None:
        """Bring an older file up to the record: v2 only added fit_jobs (created above), v3 the label columns,
        and a field added to the record since is a new nullable column. Rows already stored keep their values."""
        present = {str(c[1]) for c in self._db.execute("PRAGMA table_info(inspections)").fetchall()}
        missing = [column for column in columns() if column.name not in present]
        if not missing and version == SCHEMA_VERSION:
            return
        self._db.execute("BEGIN IMMEDIATE")
        try:
            for column in missing:
                if not column.nullable:
                    raise ConfigError(f"history column {column.name} cannot be added to stored rows: make it nullable")
                self._db.execute(f"ALTER TABLE inspections ADD COLUMN {column.name} {column.sql_type}")
            self._db.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION,))
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    def caas_counts(self) -> tuple[int, int]:
        """``(inspections, with CAAS applied)`` over the whole stored history."""
        with self._lock:
            row = self._db.execute("SELECT COUNT(*), COALESCE(SUM(caas_applied), 0) FROM inspections").fetchone()
        return int(row[0]), int(row[1])

    def save_job(self, record: dict[str, Any]) -> None:
        """Insert or replace a fit job's public record (``Job`` in the API)."""
        with self._lock:
            self._db.execute(
                "INSERT INTO fit_jobs (id, created, record) VALUES (?, ?, ?) "
                "ON CONFLICT(id) DO UPDATE SET record = excluded.record",
                (record["id"], record["created"], json.dumps(record)),
            )

    def load_job(self, job_id: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute("SELECT record FROM fit_jobs WHERE id = ?", (job_id,)).fetchone()
        return None if row is None else dict(json.loads(row[0]))

    def interrupt_unfinished_jobs(self) -> int:
        """Mark jobs left queued or running by a stopped service as failed (they will never finish)."""
        changed = 0
        with self._lock:
            rows = self._db.execute("SELECT id, record FROM fit_jobs").fetchall()
            for job_id, text in rows:
                record = json.loads(text)
                if record.get("state") in ("queued", "running"):
                    record.update(state="failed", error=INTERRUPTED)
                    self._db.execute("UPDATE fit_jobs SET record = ? WHERE id = ?", (json.dumps(record), job_id))
                    changed += 1
        return changed

    def has_inspection(self, inspection_id: str) -> bool:
        with self._lock:
            row = self._db.execute("SELECT 1 FROM inspections WHERE id = ?", (inspection_id,)).fetchone()
        return row is not None

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def add(self, record: Inspection, also: Callable[[sqlite3.Connection], None] | None = None) -> None:
        """Store ``record``; ``also`` writes more rows in the same transaction (a station's intake and
        outbox rows: the verdict is stored with its deliveries, or neither is)."""
        with self.transaction() as db:
            seq = int(db.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM inspections").fetchone()[0])
            marks = ", ".join("?" for _ in range(len(columns()) + 1))
            db.execute(f"INSERT INTO inspections (seq, {_columns()}) VALUES ({marks})", (seq, *to_row(record)))
            if also is not None:
                also(db)

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """The connection inside one write transaction (committed when the block ends, rolled back if it
        raises), holding the store's lock: for the station tables, which live in this file so that a
        verdict and its deliveries commit together."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:  # SQLite may have rolled back itself (a full disk); COMMIT may be done
                    self._db.execute("ROLLBACK")
                raise

    def read(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Rows of one query (the station tables' readers), under the store's lock."""
        with self._lock:
            return list(self._db.execute(sql, params).fetchall())

    def by_idempotency_key(self, key: str) -> tuple[str, Inspection] | None:
        """``(fingerprint, record)`` stored under an upload's ``Idempotency-Key``; ``None`` if the key is new."""
        with self._lock:
            row = self._db.execute(
                f"SELECT fingerprint, {_columns('i.')} FROM idempotency k JOIN inspections i ON i.id = k.record_id "
                "WHERE k.key = ?",
                (key,),
            ).fetchone()
        return None if row is None else (str(row[0]), _row(row[1:]))

    def get(self, inspection_id: str) -> Inspection | None:
        with self._lock:
            row = self._db.execute(f"SELECT {_columns()} FROM inspections WHERE id = ?", (inspection_id,)).fetchone()
        return None if row is None else _row(row)

    def set_label(
        self, inspection_id: str, label: str | None, when: str, by: str | None = None, note: str | None = None
    ) -> Inspection | None:
        """Record (or with ``None`` clear) what the part actually was, who said so and their note; ``None`` when
        there is no such inspection."""
        if label is not None and label not in LABELS:
            raise ValueError(f"label must be one of {LABELS} or None, not {label!r}")
        with self._lock:
            cursor = self._db.execute(
                "UPDATE inspections SET label = ?, label_time = ?, label_by = ?, label_note = ? WHERE id = ?",
                (label, None if label is None else when, None if label is None else by,
                 None if label is None else note, inspection_id),
            )
        return None if cursor.rowcount == 0 else self.get(inspection_id)

    def page(
        self, limit: int, offset: int, category: str | None = None, decision: str | None = None,
        label: str | None = None,
    ) -> tuple[int, list[Inspection]]:  # fmt: skip
        """Newest first: ``(total, rows)`` for ``limit`` rows after skipping ``offset``.

        ``decision`` filters on the final decision: ``anomalous``, ``normal`` or ``undecided`` (no verdict:
        the MLLM's reply was unparsable, or a custom question has no anomaly decision). ``label`` filters on
        the user's label: ``normal``, ``anomalous``, ``labelled`` (either) or ``unlabelled``.
        """
        clauses: list[str] = []
        params: list[Any] = []
        if category:
            clauses.append("category = ?")
            params.append(category)
        if decision == "undecided":
            clauses.append("(decision IS NULL OR decision NOT IN ('anomalous', 'normal'))")
        elif decision:
            clauses.append("decision = ?")
            params.append(decision)
        if label == "unlabelled":
            clauses.append("label IS NULL")
        elif label == "labelled":
            clauses.append("label IS NOT NULL")
        elif label:
            clauses.append("label = ?")
            params.append(label)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        with self._lock:
            total = int(self._db.execute(f"SELECT COUNT(*) FROM inspections {where}", params).fetchone()[0])
            rows = self._db.execute(
                f"SELECT {_columns()} FROM inspections {where} ORDER BY seq DESC LIMIT ? OFFSET ?",
                [*params, limit, offset],
            ).fetchall()
        return total, [_row(row) for row in rows]

    def last_seq(self) -> int:
        """The storage number of the newest inspection (0 for an empty history): where a live feed starts."""
        with self._lock:
            return int(self._db.execute("SELECT COALESCE(MAX(seq), 0) FROM inspections").fetchone()[0])

    def since(self, after: int, category: str | None = None, limit: int = 100) -> list[tuple[int, Inspection]]:
        """Inspections stored after ``after`` (a storage number), oldest first, at most ``limit``: a live feed."""
        params: list[object]
        where, params = "WHERE seq > ?", [after]
        if category is not None:
            where += " AND category = ?"
            params.append(category)
        with self._lock:
            rows = self._db.execute(
                f"SELECT seq, {_columns()} FROM inspections {where} ORDER BY seq LIMIT ?", [*params, limit]
            ).fetchall()
        return [(int(row[0]), _row(row[1:])) for row in rows]

    def review(
        self, limit: int, offset: int = 0, category: str | None = None
    ) -> tuple[int, list[tuple[Inspection, list[Reason]]]]:
        """The review queue, oldest first (a queue is worked through in the order it filled): ``(total, rows)``,
        each row with its reasons (eagle_iad/review.py)."""
        where, params = queued_condition(), list[object]()
        if category is not None:
            where += " AND category = ?"
            params.append(category)
        with self._lock:
            total = int(self._db.execute(f"SELECT COUNT(*) FROM inspections WHERE {where}", params).fetchone()[0])
            rows = self._db.execute(
                f"SELECT {reason_columns()}, {_columns()} FROM inspections WHERE {where} ORDER BY seq LIMIT ? OFFSET ?",
                [*params, limit, offset],
            ).fetchall()
        count = len(REASONS)
        return total, [(_row(row[count:]), reasons_of(tuple(row[:count]))) for row in rows]

    def labelled(self, category: str) -> list[Inspection]:
        """Every labelled inspection of ``category`` with a score, oldest first (the threshold preview's evidence)."""
        with self._lock:
            rows = self._db.execute(
                f"SELECT {_columns()} FROM inspections WHERE category = ? AND label IS NOT NULL AND score IS NOT NULL "
                "ORDER BY seq",
                (category,),
            ).fetchall()
        return [_row(row) for row in rows]

    def labelled_defective(self) -> list[Inspection]:
        """Every inspection labelled defective (``anomalous``), any category, oldest first: what a teach must
        not take for normal, and the images it rescores (service/teaching.py)."""
        with self._lock:
            rows = self._db.execute(
                f"SELECT {_columns()} FROM inspections WHERE label = 'anomalous' ORDER BY seq"
            ).fetchall()
        return [_row(row) for row in rows]

    def daily(self, category: str) -> list[dict[str, Any]]:
        """Per UTC day, in one pass: inspections, rejects, scores and the labels against the verdicts.

        ``rejected`` counts final decisions ``anomalous`` (what the station told the user); ``flagged``,
        ``false_alarms`` and ``misses`` judge the expert as ``eagle eval-expert`` does (flagged iff
        ``score >= tau``, with the threshold in force at that inspection) against the user's labels.
        """
        with self._lock:
            rows = self._db.execute(_DAILY, (category,)).fetchall()
        keys = ("day", "inspections", "scored", "rejected", "flagged", "in_band", "score_min", "score_mean",
                "score_max", "labelled_normal", "labelled_anomalous", "false_alarms", "misses")  # fmt: skip
        return [dict(zip(keys, row, strict=True)) for row in rows]


def _columns(prefix: str = "") -> str:
    return ", ".join(prefix + column.name for column in columns())


def _row(row: tuple[Any, ...]) -> Inspection:
    return from_row(row)


_DAILY = """
SELECT substr(time, 1, 10) AS day, COUNT(*), COUNT(score), COALESCE(SUM(decision = 'anomalous'), 0),
       COALESCE(SUM(score >= tau), 0), COALESCE(SUM(in_band), 0), MIN(score), AVG(score), MAX(score),
       COALESCE(SUM(label = 'normal'), 0), COALESCE(SUM(label = 'anomalous'), 0),
       COALESCE(SUM(label = 'normal' AND score >= tau), 0), COALESCE(SUM(label = 'anomalous' AND score < tau), 0)
FROM inspections WHERE category = ? GROUP BY day ORDER BY day
"""
