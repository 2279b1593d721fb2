"""The inspection history and the fit jobs' records: an embedded SQLite file that survives restarts.

Why SQLite: one file, no server, transactional; WAL mode lets readers (history pages) run while an
inspection is written. A ``schema_version`` table makes a future migration explicit instead of
guessing from columns. One connection guarded by a lock: the service writes a row per inspection,
far below what serialising costs.

Schema history: 1 = inspections; 2 adds ``fit_jobs``; 3 adds the user's label of an inspection
(``label``: what the part actually was, ``label_time``). Older files are migrated in place when opened,
their history untouched; a file newer than this code is refused rather than misread.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eagle_iad.errors import ConfigError

SCHEMA_VERSION = 3

#: What a user may say an inspected part actually was (``None``: not labelled).
LABELS = ("normal", "anomalous")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS inspections (
    id TEXT PRIMARY KEY,
    seq INTEGER NOT NULL UNIQUE,
    time TEXT NOT NULL,
    category TEXT NOT NULL,
    image_name TEXT NOT NULL,
    score REAL,
    tau REAL,
    s_max REAL,
    decision TEXT,
    in_band INTEGER NOT NULL,
    answer TEXT,
    caas_applied INTEGER NOT NULL,
    verdict TEXT NOT NULL,
    pictures TEXT NOT NULL,
    label TEXT,
    label_time TEXT
);
CREATE INDEX IF NOT EXISTS inspections_category ON inspections (category, seq);
CREATE TABLE IF NOT EXISTS fit_jobs (
    id TEXT PRIMARY KEY,
    created TEXT NOT NULL,
    record TEXT NOT NULL
);
"""

#: What a fit job that was queued or running when the service stopped becomes on the next start.
INTERRUPTED = "interrupted: the service stopped before this fit finished; start the fit again"


@dataclass(frozen=True)
class Inspection:
    """One stored inspection (the row, with its JSON columns decoded)."""

    id: str
    time: str
    category: str
    image_name: str
    score: float | None
    tau: float | None
    s_max: float | None
    decision: str | None
    in_band: bool
    answer: str | None
    caas_applied: bool
    verdict: dict[str, Any]
    pictures: dict[str, str]
    #: What the user says the part actually was (``normal`` / ``anomalous``), and when they said it.
    label: str | None = None
    label_time: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "time": self.time,
            "category": self.category,
            "image_name": self.image_name,
            "score": self.score,
            "tau": self.tau,
            "s_max": self.s_max,
            "decision": self.decision,
            "in_band": self.in_band,
            "answer": self.answer,
            "caas_applied": self.caas_applied,
            "verdict": self.verdict,
            "pictures": self.pictures,
            "label": self.label,
            "label_time": self.label_time,
        }


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
            elif int(row[0]) in (1, 2):
                # v2 only added fit_jobs (created above); v3 adds the label columns to the old table.
                columns = {str(c[1]) for c in self._db.execute("PRAGMA table_info(inspections)").fetchall()}
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    for column in ("label", "label_time"):
                        if column not in columns:
                            self._db.execute(f"ALTER TABLE inspections ADD COLUMN {column} TEXT")
                    self._db.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION,))
                    self._db.execute("COMMIT")
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
            elif int(row[0]) != SCHEMA_VERSION:
                raise ConfigError(f"{path}: history schema {row[0]} is not the {SCHEMA_VERSION} this eagle-iad reads")

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

    def add(self, record: Inspection) -> None:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                seq = int(self._db.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM inspections").fetchone()[0])
                self._db.execute(
                    f"INSERT INTO inspections (id, seq, {_COLUMNS.removeprefix('id, ')}) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        record.id, seq, record.time, record.category, record.image_name, record.score, record.tau,
                        record.s_max, record.decision, int(record.in_band), record.answer, int(record.caas_applied),
                        json.dumps(record.verdict), json.dumps(record.pictures), record.label, record.label_time,
                    ),
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def get(self, inspection_id: str) -> Inspection | None:
        with self._lock:
            row = self._db.execute(f"SELECT {_COLUMNS} FROM inspections WHERE id = ?", (inspection_id,)).fetchone()
        return None if row is None else _row(row)

    def set_label(self, inspection_id: str, label: str | None, when: str) -> Inspection | None:
        """Record (or with ``None`` clear) what the part actually was; ``None`` when there is no such inspection."""
        if label is not None and label not in LABELS:
            raise ValueError(f"label must be one of {LABELS} or None, not {label!r}")
        with self._lock:
            cursor = self._db.execute(
                "UPDATE inspections SET label = ?, label_time = ? WHERE id = ?",
                (label, None if label is None else when, inspection_id),
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
                f"SELECT {_COLUMNS} FROM inspections {where} ORDER BY seq DESC LIMIT ? OFFSET ?",
                [*params, limit, offset],
            ).fetchall()
        return total, [_row(row) for row in rows]


_COLUMNS = ("id, time, category, image_name, score, tau, s_max, decision, in_band, answer, caas_applied, verdict, "
            "pictures, label, label_time")


def _row(row: tuple[Any, ...]) -> Inspection:
    return Inspection(
        id=str(row[0]),
        time=str(row[1]),
        category=str(row[2]),
        image_name=str(row[3]),
        score=row[4],
        tau=row[5],
        s_max=row[6],
        decision=row[7],
        in_band=bool(row[8]),
        answer=row[9],
        caas_applied=bool(row[10]),
        verdict=json.loads(row[11]),
        pictures=json.loads(row[12]),
        label=row[13],
        label_time=row[14],
    )
