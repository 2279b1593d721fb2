"""The inspection history and the fit jobs' records, in the database a history URL names.

Which database, its schema and its migrations are :mod:`eagle_iad.history`'s: an embedded SQLite file by
default (one service), PostgreSQL where replicas share one history (docs/PLANT.md). This class is the
queries, written once in SQLite's dialect and translated by the backend. One connection guarded by a
lock: the service writes a row per inspection, far below what serialising costs; a connection the
database dropped (a PostgreSQL restart) is opened again at the next use.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

from eagle_iad.history import HistoryBackend, open_backend
from eagle_iad.history.backend import Connection, Cursor, Lease, scrub
from eagle_iad.history.backend import transaction as _transaction
from eagle_iad.history.keep import KeptCopy, keep_copy
from eagle_iad.history.schema import SCHEMA_VERSION as SCHEMA_VERSION
from eagle_iad.history.schema import Upgrade, upgrade
from eagle_iad.record import LABEL_HISTORY_KEPT, InspectionRecord, columns, from_row, to_row
from eagle_iad.review import DECISION_FILTERS, REASONS, Reason, queued_condition, reason_columns, reasons_of

#: What a user may say an inspected part actually was (``None``: not labelled).
LABELS = ("normal", "anomalous")

#: What a fit job that was queued or running when the service stopped becomes on the next start.
INTERRUPTED = "interrupted: the service stopped before this fit finished; start the fit again"


#: The stored inspection is the one inspection record (eagle_iad/record.py); the columns derive from it.
Inspection = InspectionRecord

#: How the service names an inspection (and its picture folder): :func:`new_inspection_id`.
_INSPECTION_ID = re.compile(r"[0-9a-f]{32}")


def new_inspection_id() -> str:
    """A new inspection's id, which names its picture folder too: 32 lowercase hex digits."""
    return uuid.uuid4().hex


def is_inspection_id(name: str) -> bool:
    """``name`` is an id :func:`new_inspection_id` may give (a folder named otherwise is not the service's)."""
    return _INSPECTION_ID.fullmatch(name) is not None


class AlreadyStoredError(Exception):
    """A write lost a race for a unique key to another process (a retried upload's ``Idempotency-Key``
    stored meanwhile by another replica); nothing of this write was kept."""


class StoreBusyError(TimeoutError):
    """A read given a ``wait_s`` found the history's connection held by other queries for longer."""


class LabelChangedError(Exception):
    """A label based on a revision that is no longer the stored one: someone else labelled (or cleared) the
    inspection since the caller looked, and their label is kept. ``current`` is the record as stored now."""

    def __init__(self, expected: int, current: Inspection, message: str | None = None) -> None:
        self.expected = expected
        self.current = current
        super().__init__(message or label_changed_message(expected, current))


def label_changed_message(expected: int, current: Inspection) -> str:
    """What a refused label says, in the words a person labels with: the image by its name, what its label is
    now (``defective`` / ``normal``, as the console and ``eagle review label`` say it), who gave it and when, and
    that nothing was stored. Two operators on one part then know whose decision stands and can talk; the
    revisions stay out of the sentence (the 409 body's ``label_changed`` carries them, with the same facts as
    fields a client composes its own sentence from, in its own time zone). A label given with an eagle-iad from
    before label histories (none kept: it came through an upgrade) is not said to be given "while you were
    looking": its own time says when it was."""
    name = current.image_name or f"inspection {current.id}"
    if current.label is None:
        # (a revision > 0 without a label: cleared since; 0 with a revision expected: never labelled after all)
        what = f"{name} had its label cleared" if (current.label_revision or 0) else f"{name} is not labelled"
    else:
        who = current.label_by or "someone"
        at = f" at {readable_time(current.label_time)}" if current.label_time else ""
        # No label history: given with an eagle-iad from before label histories (and revisions: schema 7 counts it
        # as revision 1) and kept through the upgrade, so nobody gave it "while you were looking"; its time says when.
        earlier = not current.label_history
        said = LABEL_SAID.get(current.label, current.label)
        what = f"{name} was {'already ' if earlier else ''}labelled {said} by {who}{at}"
        if current.label_note:
            what += f" (note: {current.label_note})"
        if earlier:
            return (
                f"{what}, with an earlier eagle-iad (the label came through an upgrade). Your label was not stored: "
                "look at it again, then label it if you still disagree."
            )
    return (
        f"{what} while you were looking. Your label was not stored: look at it again, then label it if you still "
        "disagree."
    )


#: A stored label in the words a person labels with (the API accepts ``defective`` and stores ``anomalous``).
LABEL_SAID = {"anomalous": "defective", "normal": "normal"}


def label_changed_detail(current: Inspection) -> dict[str, Any]:
    """The 409 ``label_changed`` body's facts as fields (``error.label_changed``): the stored label as the API
    stores it, who gave it and when (ISO 8601, UTC), its note and revision, so a client words the refusal itself
    and shows the time in its user's zone instead of parsing the message."""
    return {
        "id": current.id,
        "image_name": current.image_name,
        "label": current.label,
        "labelled_by": current.label_by,
        "labelled_at": current.label_time,
        "label_note": current.label_note,
        "label_revision": current.label_revision or 0,
    }


def readable_time(iso: str) -> str:
    """``2026-12-06T21:59:23.274+00:00`` as ``2026-12-06 21:59:23 UTC``; anything else as it is."""
    match = re.fullmatch(r"(\d{4}-\d\d-\d\d)T(\d\d:\d\d:\d\d)(?:\.\d+)?(?:\+00:00|Z)", iso)
    return f"{match[1]} {match[2]} UTC" if match else iso


_log = logging.getLogger(__name__)

#: How long ``/healthz`` waits for the history's connection behind other queries before answering "busy".
HEALTH_WAIT_S = 1.0


class InspectionStore:
    """Append and page through inspections; thread-safe (one connection, one lock)."""

    def __init__(self, where: Path | str) -> None:
        """``where``: a history URL (``sqlite:///...``, ``postgresql://...``) or an SQLite file's path."""
        self.backend: HistoryBackend = open_backend(where)
        self._lock = threading.Lock()
        # The history away: since when (monotonic; None: available), and how many requests were refused meanwhile.
        # Said once each way in the log, whoever found it (a request, /healthz): not a line per refused request.
        self._away_lock = threading.Lock()
        self._away_since: float | None = None
        self._away_refused = 0
        self._db: Connection = self.backend.connect()
        try:
            with self._lock:
                #: The copy at the older schema kept before a migration (None: nothing to migrate): the way back.
                self.kept: KeptCopy | None = keep_copy(self.backend, self._db)
                #: What opening did to the schema (a new database, a migration, nothing).
                self.upgrade: Upgrade = upgrade(self.backend, self._db)
        except BaseException:
            self.backend.close(self._db)
            raise

    def log_upgrade(self) -> None:
        """Say what opening did to the schema, for a long-running process (``eagle serve``, ``eagle station run``).

        Why a WARNING for a new version: a replica of the new eagle-iad started before ``eagle db upgrade`` migrates
        the shared history by itself, and every process of the older version (the other replicas, stations, the
        CLI on other machines) refuses it from then on, at its next start; the log must record when and by whom.
        A new history, or a step of no version of its own (a column the older version ignores), is INFO."""
        done = self.upgrade
        where = self.backend.describe()
        if done.before is not None and done.before < done.after:
            _log.warning("%s; eagle-iad versions that read schema %d refuse it from now on (other replicas, stations, "
                         "the CLI on other machines): upgrade them too (in a plant, run 'eagle db upgrade' before "
                         "starting a new version: docs/PLANT.md)%s", done.describe(where), done.before,
                         "" if self.kept is None else "; " + self.kept.said())  # fmt: skip
        elif done.before is None or done.added_columns or done.added_tables or done.added_indexes:
            _log.info("%s", done.describe(where))

    @property
    def shared(self) -> bool:
        """Other processes may write this history at once (replicas on PostgreSQL)."""
        return self.backend.shared

    def _run(self, sql: str, params: Sequence[Any] = ()) -> Cursor:
        """One statement on the connection (call with the lock held)."""
        cursor = self._conn().execute(sql, params)
        if self._away_since is not None:  # it answered: the history is back
            self._came_back()
        return cursor

    def _conn(self) -> Connection:
        """The connection, opened again if the database dropped it (call with the lock held)."""
        if not self.backend.alive(self._db):
            self._db = self.backend.connect()
        return self._db

    @property
    def available(self) -> bool:
        """The history answered at its last use (``False`` from a failed use, by a request or ``/healthz``, until one
        succeeds): ``eagle_history_up`` of ``/metrics``."""
        return self._away_since is None

    def unavailable(self, reason: str, seen_by: str, *, refused: bool = True) -> None:
        """The history could not be reached by ``seen_by`` (``POST /v1/inspect``, ``/healthz``): logged (WARNING, the
        server named, the password hidden) when it goes away, and counted, not logged, while it stays away, so an
        outage at line rates is two lines, not one per request. ``refused``: a request was answered 503 for it."""
        with self._away_lock:
            first = self._away_since is None
            if first:
                self._away_since = time.monotonic()
                self._away_refused = 0
            self._away_refused += int(refused)
        if first:
            where = self.backend.describe()
            reason = " ".join(reason.split()).removeprefix(f"history {where}: ") or "no reason given"
            _log.warning("history %s is unavailable (%s; seen by %s); requests that need it answer 503 "
                         "history_unavailable until it is back", where, scrub(reason, self.backend.url),
                         seen_by)  # fmt: skip
        else:
            _log.debug("history %s still unavailable (%s)", self.backend.describe(), seen_by)

    def _came_back(self) -> None:
        with self._away_lock:
            if self._away_since is None:
                return
            seconds, refused = time.monotonic() - self._away_since, self._away_refused
            self._away_since = None
        _log.warning("history %s is available again after %.0f s; %d request%s refused (503) meanwhile",
                     self.backend.describe(), seconds, refused, "" if refused == 1 else "s were")  # fmt: skip

    def health(self, wait_s: float = HEALTH_WAIT_S, seen_by: str = "/healthz") -> str:
        """The history's state for ``/healthz``: ``"ok"`` (a ``SELECT 1`` answered), ``"busy"`` (another query
        held the connection for over ``wait_s``: not known, not failed) or ``"unavailable: ..."``.

        Why: a PostgreSQL outage left ``/healthz`` answering ok, so a load balancer kept sending a replica
        work it could only refuse. Cheap: one round trip on the open connection (a dropped one is opened
        again, as at any use), never waiting long behind other queries. The answer is public, so it does
        not name the server; the reason is logged (WARNING) once when the history goes away, and one line
        when it is back (:meth:`unavailable`, shared with the requests refused meanwhile).
        """
        if not self._lock.acquire(timeout=wait_s):
            return "busy"
        try:
            self._run("SELECT 1").fetchone()
        except Exception as exc:  # whatever the driver raises: /healthz reports, it does not fail
            self.unavailable(str(exc) or type(exc).__name__, seen_by, refused=False)
            return "unavailable: the history database is unreachable"
        finally:
            self._lock.release()
        return "ok"

    def caas_counts(self) -> tuple[int, int]:
        """``(inspections, with CAAS applied)`` over the whole stored history."""
        with self._lock:
            row = self._run("SELECT COUNT(*), COALESCE(SUM(caas_applied), 0) FROM inspections").fetchone()
        return int(row[0]), int(row[1])

    def save_job(self, record: dict[str, Any]) -> None:
        """Insert or replace a fit job's public record (``Job`` in the API)."""
        with self._lock:
            self._run(
                "INSERT INTO fit_jobs (id, created, record) VALUES (?, ?, ?) "
                "ON CONFLICT(id) DO UPDATE SET record = excluded.record",
                (record["id"], record["created"], json.dumps(record)),
            )

    def load_job(self, job_id: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._run("SELECT record FROM fit_jobs WHERE id = ?", (job_id,)).fetchone()
        return None if row is None else dict(json.loads(row[0]))

    def interrupt_unfinished_jobs(self, claim: Callable[[dict[str, Any]], Lease | None] | None = None) -> int:
        """Mark jobs left queued or running by a stopped service as failed (they will never finish).

        ``claim``: the lock a live job holds (its job lock); a job whose lock another process
        still holds is running on another replica and is left alone. Without it, every unfinished job is
        taken for dead (one service owns the history).
        """
        changed = 0
        with self._lock:
            rows = self._run("SELECT id, record FROM fit_jobs").fetchall()
        for job_id, text in rows:
            record = json.loads(text)
            if record.get("state") not in ("queued", "running"):
                continue
            lease = None if claim is None else claim(record)
            if claim is not None and lease is None:
                continue  # its replica is alive and holds the lock
            try:
                if lease is not None:  # again, under its lock: its replica may have just ended it
                    again = self.load_job(str(job_id))
                    if again is None or again.get("state") not in ("queued", "running"):
                        continue
                    record = again
                record.update(state="failed", error=INTERRUPTED)
                with self._lock:
                    self._run("UPDATE fit_jobs SET record = ? WHERE id = ?", (json.dumps(record), job_id))
                changed += 1
            finally:
                if lease is not None:
                    lease.release()
        return changed

    def stored_ids(self, inspection_ids: Sequence[str], batch: int = 500) -> set[str]:
        """Which of ``inspection_ids`` have a row: one query per ``batch`` ids (a replica's start-up looks at
        every picture folder, and a round trip each to a plant's PostgreSQL would take minutes)."""
        found: set[str] = set()
        for start in range(0, len(inspection_ids), batch):
            chunk = list(inspection_ids[start : start + batch])
            marks = ", ".join("?" for _ in chunk)
            with self._lock:
                rows = self._run(f"SELECT id FROM inspections WHERE id IN ({marks})", chunk).fetchall()
            found.update(str(row[0]) for row in rows)
        return found

    def has_inspection(self, inspection_id: str) -> bool:
        with self._lock:
            row = self._run("SELECT 1 FROM inspections WHERE id = ?", (inspection_id,)).fetchone()
        return row is not None

    def close(self) -> None:
        with self._lock:
            self.backend.close(self._db)

    def add(self, record: Inspection, also: Callable[[Connection], None] | None = None) -> None:
        """Store ``record``; ``also`` writes more rows in the same transaction (a station's intake and
        outbox rows, an upload's idempotency key: the verdict is stored with them, or nothing is).

        :class:`AlreadyStoredError` when ``also`` lost a unique key to another replica (nothing was kept).
        """
        try:
            with self.transaction() as db:
                self.backend.serialize(db, "inspections")  # one storage order across replicas
                seq = int(db.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM inspections").fetchone()[0])
                marks = ", ".join("?" for _ in range(len(columns()) + 1))
                db.execute(f"INSERT INTO inspections (seq, {_columns()}) VALUES ({marks})", (seq, *to_row(record)))
                if also is not None:
                    also(db)
        except Exception as exc:
            if self.backend.is_unique_violation(exc):
                raise AlreadyStoredError(str(exc)) from exc
            raise

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """The connection inside one write transaction (committed when the block ends, rolled back if it
        raises), holding the store's lock: for the station tables, which live in this history so that a
        verdict and its deliveries commit together."""
        with self._lock, _transaction(self.backend, self._conn()) as db:
            yield db
        if self._away_since is not None:  # committed: the history is back
            self._came_back()

    def read(self, sql: str, params: Sequence[Any] = (), wait_s: float | None = None) -> list[tuple[Any, ...]]:
        """Rows of one query (the station tables' readers), under the store's lock.

        ``wait_s``: wait at most so long for the lock, else :class:`StoreBusyError` (``/healthz``, which
        must answer while a long query or fit holds the connection); ``None`` waits as long as it takes.
        """
        if not self._lock.acquire(timeout=-1 if wait_s is None else wait_s):
            raise StoreBusyError(f"the history's connection was busy for over {wait_s:g} s")
        try:
            return list(self._run(sql, params).fetchall())
        finally:
            self._lock.release()

    def by_idempotency_key(self, key: str) -> tuple[str, Inspection] | None:
        """``(fingerprint, record)`` stored under an upload's ``Idempotency-Key``; ``None`` if the key is new."""
        with self._lock:
            row = self._run(
                f"SELECT fingerprint, {_columns('i.')} FROM idempotency k JOIN inspections i ON i.id = k.record_id "
                "WHERE k.key = ?",
                (key,),
            ).fetchone()
        return None if row is None else (str(row[0]), _row(row[1:]))

    def get(self, inspection_id: str) -> Inspection | None:
        with self._lock:
            row = self._run(f"SELECT {_columns()} FROM inspections WHERE id = ?", (inspection_id,)).fetchone()
        return None if row is None else _row(row)

    def set_label(
        self, inspection_id: str, label: str | None, when: str, by: str | None = None, note: str | None = None,
        expected: int | None = None, keep_note: bool = False,
    ) -> Inspection | None:  # fmt: skip
        """Record (or with ``None`` clear) what the part actually was, who said so and their note; ``None`` when
        there is no such inspection. Each call moves the record's ``label_revision`` on by one and adds an entry
        to its ``label_history`` (the label it replaced and that one's note stay there: a correction never erases
        what was said before, and who said it).

        ``expected``: the ``label_revision`` the caller based its label on (0: never labelled); if the stored
        one moved since (another operator labelled the part meanwhile), nothing is written and
        :class:`LabelChangedError` says what is stored now; unless the stored label is the one given: two
        operators who agree are no conflict, so the first one's label (who, when, note) stands and the second
        one's is kept in the history marked ``agreed``, note included. Agreements do not conflict with a later
        correction based on the revision before them (the label the caller saw is still the one stored), and the
        same person giving the same label and note again since the revision they saw (a client retrying a request
        whose answer was lost) is answered with the stored record, nothing written. ``None``: no check (the last
        label wins, as before revisions existed).

        ``keep_note`` (with ``note`` ``None``): a relabel with the label it already has keeps the stored note
        (``eagle review label ID normal`` without ``--note`` does not erase what was written); a changed
        label drops it (a note about a defect does not describe a normal part), and the history keeps it.

        The row is read and written in one write transaction holding the history's ``labels`` lock
        (:meth:`HistoryBackend.serialize`: SQLite's ``BEGIN IMMEDIATE`` already keeps every other writer out,
        PostgreSQL waits for the advisory lock), so two labels, from one replica or two, are decided one after
        the other against what the first wrote: neither can lose the other's history entry, and two based on
        the same revision cannot both pass. PostgreSQL runs it at ``read committed`` whatever the server's
        default, so the read after the wait sees what the holder committed.
        """
        if label is not None and label not in LABELS:
            raise ValueError(f"label must be one of {LABELS} or None, not {label!r}")
        select = f"SELECT {_columns()} FROM inspections WHERE id = ?"
        with self.transaction() as db:
            self.backend.serialize(db, "labels")
            for _ in range(LABEL_TRIES):
                row = db.execute(select, (inspection_id,)).fetchone()
                if row is None:
                    return None
                current = _row(row)
                written = _labelled(current, label, when, by, note, expected, keep_note)
                if written is current:  # the same person's label repeated (a retried request): nothing to write
                    return current
                # Only if the row is still the one read: a writer that holds no "labels" lock (an older eagle-iad on
                # another replica, during an upgrade) may have changed it since; PostgreSQL's UPDATE then waits for
                # that writer's row lock and finds the revision moved, and the label is decided again on what it wrote.
                moved = db.execute(
                    "UPDATE inspections SET label = ?, label_time = ?, label_by = ?, label_note = ?, "
                    "label_revision = ?, label_history = ? WHERE id = ? AND COALESCE(label_revision, 0) = ?",
                    (written.label, written.label_time, written.label_by, written.label_note, written.label_revision,
                     json.dumps(written.label_history), inspection_id, current.label_revision or 0),
                )  # fmt: skip
                if moved.rowcount:
                    # read back as stored (PostgreSQL keeps a NUL as U+FFFD): the answer is what the history holds
                    return _row(db.execute(select, (inspection_id,)).fetchone())
            if expected is None:  # no revision was checked: say why it failed, not that someone labelled it "meanwhile"
                name = current.image_name or f"inspection {current.id}"
                raise LabelChangedError(0, current, (
                    f"{name}'s label was changed {LABEL_TRIES} times by another writer while yours was being written "
                    "(one that does not take the history's labels lock: an older eagle-iad on another replica, "
                    "during an upgrade). Your label was not stored: try again."))  # fmt: skip
            raise LabelChangedError(expected, current)

    def delete(self, inspection_ids: Sequence[str], unlabelled_only: bool = False) -> list[str]:
        """Remove the rows of ``inspection_ids`` (their labels and review entries are columns of the row, so they go
        with it) and the upload keys that name them, in one short transaction; the ids removed (an id with no row
        is left out). ``unlabelled_only``: a row labelled since the caller chose it (an operator's correction during
        a prune) is kept.

        The ``DELETE`` itself says ``label IS NULL`` (not only the ``SELECT`` before it): on PostgreSQL, at read
        committed, a label another replica commits between the two statements is seen by the ``DELETE`` (which
        also waits for, then re-checks, a label being written at that moment), so a labelled row is never removed
        with it; its ``RETURNING`` says which rows went, and only their upload keys are removed. SQLite's
        ``BEGIN IMMEDIATE`` keeps other writers out anyway (and an SQLite too old for ``RETURNING`` relies on it)."""
        if not inspection_ids:
            return []
        where = f"id IN ({', '.join('?' for _ in inspection_ids)})" + (" AND label IS NULL" if unlabelled_only else "")
        with self.transaction() as db:
            if self.backend.returning:
                found = [str(row[0]) for row in db.execute(f"DELETE FROM inspections WHERE {where} RETURNING id",
                                                           list(inspection_ids)).fetchall()]  # fmt: skip
            else:
                found = [str(row[0]) for row in db.execute(f"SELECT id FROM inspections WHERE {where}",
                                                           list(inspection_ids)).fetchall()]  # fmt: skip
                if found:
                    db.execute(f"DELETE FROM inspections WHERE id IN ({', '.join('?' for _ in found)})", found)
            if found:
                db.execute(f"DELETE FROM idempotency WHERE record_id IN ({', '.join('?' for _ in found)})", found)
        return found

    def forget_pictures(
        self, inspection_ids: Sequence[str], note: str, unlabelled_only: bool = False,
        remove: Callable[[str], None] | None = None,
    ) -> list[str]:  # fmt: skip
        """Say in the rows of ``inspection_ids`` that their pictures are gone: no picture links (``pictures`` and the
        verdict's), and ``note`` added to ``warnings``, so every reader shows the record as one without pictures
        instead of following links to missing files. One transaction, the JSON rewritten as read in it; the ids
        it changed (one deleted meanwhile is not).

        ``remove``: called with each id to change, inside the transaction, before its row is rewritten (the
        pictures-only prune removes the files there): a failure rolls the batch back, its rows still linking
        pictures, so the next prune finds them again. ``unlabelled_only``: only rows with no label; the
        transaction then holds the ``labels`` lock first (as :meth:`set_label` does), so a part labelled during
        the batch is labelled after it (its record then says its pictures are gone) or left alone by it, never
        left with its label and without its files while still linking them."""
        if not inspection_ids:
            return []
        where = f"id IN ({', '.join('?' for _ in inspection_ids)})" + (" AND label IS NULL" if unlabelled_only else "")
        changed: list[str] = []
        with self.transaction() as db:
            if unlabelled_only:
                self.backend.serialize(db, "labels")
            rows = db.execute(f"SELECT id, verdict, warnings FROM inspections WHERE {where}",
                              list(inspection_ids)).fetchall()  # fmt: skip
            for inspection_id, verdict_text, warnings_text in rows:
                if remove is not None:
                    remove(str(inspection_id))
                verdict = json.loads(verdict_text) if verdict_text else {}
                if isinstance(verdict, dict):
                    verdict.pop("pictures", None)
                warnings = (json.loads(warnings_text) if warnings_text else None) or []  # stored "null": none
                db.execute("UPDATE inspections SET pictures = ?, verdict = ?, warnings = ? WHERE id = ?",
                           ("{}", json.dumps(verdict), json.dumps([*warnings, note]), inspection_id))  # fmt: skip
                changed.append(str(inspection_id))
        return changed

    def aged(
        self, before: str, after_seq: int, limit: int, category: str | None = None, with_pictures: bool = False,
        labelled: bool = False,
    ) -> list[tuple[int, str]]:  # fmt: skip
        """``(seq, id)`` of at most ``limit`` inspections stored after ``after_seq`` and inspected before ``before``
        (an ISO 8601 UTC time, compared as the stored text), oldest first: one batch of a retention prune.
        ``with_pictures``: only those whose row still links pictures; ``labelled``: labelled ones too (left out by
        default: an operator's correction is training evidence). Ids only: a batch of whole records would cost
        more to decode than the prune's statements take."""
        # text order is time order: every row's time is pipeline.now_iso's one format (test_retention pins it)
        where, params = "seq > ? AND time < ?", list[Any]([after_seq, before])
        if category is not None:
            where += " AND category = ?"
            params.append(category)
        if with_pictures:
            where += " AND pictures <> '{}'"
        if not labelled:
            where += " AND label IS NULL"
        with self._lock:
            rows = self._run(
                f"SELECT seq, id FROM inspections WHERE {where} ORDER BY seq LIMIT ?", [*params, limit]
            ).fetchall()
        return [(int(row[0]), str(row[1])) for row in rows]

    def page(
        self, limit: int, offset: int, category: str | None = None, decision: str | None = None,
        label: str | None = None,
    ) -> tuple[int, list[Inspection]]:  # fmt: skip
        """Newest first: ``(total, rows)`` for ``limit`` rows after skipping ``offset``.

        ``decision`` filters on the final decision: ``anomalous``, ``normal``, ``unrecognised`` (not like the
        training images) or ``undecided`` (none of those: the MLLM's reply was unparsable, or a custom question
        has no anomaly decision). ``label`` filters on
        the user's label: ``normal``, ``anomalous``, ``labelled`` (either) or ``unlabelled``.
        """
        clauses: list[str] = []
        params: list[Any] = []
        if category:
            clauses.append("category = ?")
            params.append(category)
        if decision == "undecided":  # the filter's other values, declared in eagle_iad.review, are decisions
            decided = ", ".join(f"'{value}'" for value in DECISION_FILTERS if value != "undecided")
            clauses.append(f"(decision IS NULL OR decision NOT IN ({decided}))")
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
            total = int(self._run(f"SELECT COUNT(*) FROM inspections {where}", params).fetchone()[0])
            rows = self._run(
                f"SELECT {_columns()} FROM inspections {where} ORDER BY seq DESC LIMIT ? OFFSET ?",
                [*params, limit, offset],
            ).fetchall()
        return total, [_row(row) for row in rows]

    def last_seq(self) -> int:
        """The storage number of the newest inspection (0 for an empty history): where a live feed starts."""
        with self._lock:
            return int(self._run("SELECT COALESCE(MAX(seq), 0) FROM inspections").fetchone()[0])

    def since(self, after: int, category: str | None = None, limit: int = 100) -> list[tuple[int, Inspection]]:
        """Inspections stored after ``after`` (a storage number), oldest first, at most ``limit``: a live feed."""
        params: list[object]
        where, params = "WHERE seq > ?", [after]
        if category is not None:
            where += " AND category = ?"
            params.append(category)
        with self._lock:
            rows = self._run(
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
            total = int(self._run(f"SELECT COUNT(*) FROM inspections WHERE {where}", params).fetchone()[0])
            rows = self._run(
                f"SELECT {reason_columns()}, {_columns()} FROM inspections WHERE {where} ORDER BY seq LIMIT ? OFFSET ?",
                [*params, limit, offset],
            ).fetchall()
        count = len(REASONS)
        return total, [(_row(row[count:]), reasons_of(tuple(row[:count]))) for row in rows]

    def categories(self) -> list[str]:
        """Every category the history holds an inspection of, sorted."""
        with self._lock:
            rows = self._run("SELECT DISTINCT category FROM inspections ORDER BY category").fetchall()
        return [str(row[0]) for row in rows]

    def labelled(self, category: str) -> list[Inspection]:
        """Every labelled inspection of ``category`` with a score, oldest first (the threshold preview's evidence)."""
        with self._lock:
            rows = self._run(
                f"SELECT {_columns()} FROM inspections WHERE category = ? AND label IS NOT NULL AND score IS NOT NULL "
                "ORDER BY seq",
                (category,),
            ).fetchall()
        return [_row(row) for row in rows]

    def labelled_defective(self) -> list[Inspection]:
        """Every inspection labelled defective (``anomalous``), any category, oldest first: what a teach must
        not take for normal, and the images it rescores (service/teaching.py)."""
        with self._lock:
            rows = self._run(f"SELECT {_columns()} FROM inspections WHERE label = 'anomalous' ORDER BY seq").fetchall()
        return [_row(row) for row in rows]

    def daily(self, category: str) -> list[dict[str, Any]]:
        """Per UTC day, in one pass: inspections, rejects, scores and the labels against the verdicts.

        ``rejected`` counts final decisions ``anomalous`` (what the station told the user); ``flagged``,
        ``false_alarms`` and ``misses`` judge the expert as ``eagle eval-expert`` does (flagged iff
        ``score >= tau``, with the threshold in force at that inspection) against the user's labels.
        """
        with self._lock:
            rows = self._run(_DAILY, (category,)).fetchall()
        keys = ("day", "inspections", "scored", "rejected", "flagged", "in_band", "score_min", "score_mean",
                "score_max", "labelled_normal", "labelled_anomalous", "false_alarms", "misses")  # fmt: skip
        return [dict(zip(keys, row, strict=True)) for row in rows]


def label_audit(stored: Inspection) -> str:
    """The audit row's detail of a label: what it is now, of which image and category, what it replaced (and
    who had given that), and the note, so the audit alone tells a correction from a first label and why (the
    service's ``PUT .../label`` and ``eagle review label`` write it alike)."""
    given = (stored.label_history or [{}])[-1]
    said = LABEL_SAID.get(str(given.get("label")), "cleared")
    text = f"label {given.get('label') or 'cleared'} ({said}) of {stored.image_name} ({stored.category})"
    previous = given.get("previous")
    if given.get("agreed"):
        text += f": agrees with {stored.label_by or 'someone'}, whose label stands"
    elif previous is not None:
        earlier = (stored.label_history or [])[-2:-1]
        who = earlier[0].get("by") if earlier else None
        note = earlier[0].get("note") if earlier else None
        text += f", was {previous}" + (f" by {who}" if who else "") + (f" (note: {note})" if note else "")
    if given.get("note"):
        text += f"; note: {given['note']}"
    return text


#: How many times a label is decided again when its row changed under it (a writer without the "labels" lock).
LABEL_TRIES = 5


def _labelled(
    current: Inspection, label: str | None, when: str, by: str | None, note: str | None, expected: int | None,
    keep_note: bool,
) -> Inspection:  # fmt: skip
    """``current`` with this label given (:meth:`InspectionStore.set_label`'s rules), its history one entry longer;
    :class:`LabelChangedError` where it is based on a revision that moved and gives another label."""
    revision = current.label_revision or 0
    if expected is not None and revision != expected:
        since = [entry for entry in current.label_history or [] if int(entry.get("revision") or 0) > expected]
        complete = len(since) == revision - expected
        if (
            complete
            and label is not None
            and label == current.label
            and by is not None
            and by == current.label_by
            and note == current.label_note
            and any(not entry.get("agreed") for entry in since)
        ):
            return current  # this person's own label, given since the revision they saw: a retry, already stored
        if complete and since and all(entry.get("agreed") for entry in since):
            expected = revision  # only agreements since: the label the caller saw is the one stored (F14)
    agreed = expected is not None and revision != expected and label is not None and label == current.label
    if expected is not None and revision != expected and not agreed:
        raise LabelChangedError(expected, current)
    entry: dict[str, Any] = {"revision": revision + 1, "label": label, "by": by, "time": when, "note": note,
                             "previous": current.label}  # fmt: skip
    if agreed:  # the first one's label stands (who, when, note); the second one's is in the history
        entry["agreed"] = True
    # the newest LABEL_HISTORY_KEPT only (the audit log keeps every one); a retry based on a revision gone from
    # them is no longer recognised as one (its entries since are not all there), and is taken as an agreement
    history = [*(current.label_history or _earlier_label(current)), entry][-LABEL_HISTORY_KEPT:]
    if agreed:
        return replace(current, label_revision=revision + 1, label_history=history)
    kept = keep_note and note is None and label is not None and label == current.label
    return replace(
        current, label=label, label_time=None if label is None else when, label_by=None if label is None else by,
        label_note=current.label_note if kept else None if label is None else note, label_revision=revision + 1,
        label_history=history,
    )  # fmt: skip


def _earlier_label(record: Inspection) -> list[dict[str, Any]]:
    """A label given before ``label_history`` existed, as that history's first entry (what it replaced is not
    known); none where the part is not labelled."""
    if record.label is None:
        return []
    return [{"revision": record.label_revision, "label": record.label, "by": record.label_by,
             "time": record.label_time, "note": record.label_note, "previous": None}]  # fmt: skip


def _columns(prefix: str = "") -> str:
    return ", ".join(prefix + column.name for column in columns())


def _row(row: tuple[Any, ...]) -> Inspection:
    return from_row(row)


def _count(condition: str) -> str:
    """How many rows meet ``condition``, as an integer in every backend (PostgreSQL cannot sum a boolean)."""
    return f"CAST(COALESCE(SUM(CASE WHEN {condition} THEN 1 ELSE 0 END), 0) AS INTEGER)"


_DAILY = f"""
SELECT substr(time, 1, 10) AS day, COUNT(*), COUNT(score), {_count("decision = 'anomalous'")},
       {_count("score >= tau")}, {_count("in_band = 1")}, MIN(score), AVG(score), MAX(score),
       {_count("label = 'normal'")}, {_count("label = 'anomalous'")},
       {_count("label = 'normal' AND score >= tau")}, {_count("label = 'anomalous' AND score < tau")}
FROM inspections WHERE category = ? GROUP BY day ORDER BY day
"""
