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
read of the log and the service's start move journalled rows into the log, each once and each on its
own: a row the log refuses outright goes to ``audit-rejected.jsonl`` for a person to read, and holds
up no other row.

Why a lock file: the journal has writers in several processes (the service, ``eagle review label``) and one
drainer (the service), which renames it to take its rows. Each append and that rename hold an exclusive
``flock`` on ``audit-pending.jsonl.lock`` beside the journal, so an append lands whole in the file before the
rename or in the new journal after it: each row is journalled once, none lost, none written twice (appends to
``audit-rejected.jsonl`` take ``audit-rejected.jsonl.lock`` alike). A lock that cannot be had is logged, never
an error for the change whose row it is (:func:`_locked`).
"""

from __future__ import annotations

import csv
import fcntl
import io
import json
import logging
import os
import threading
import time as clock
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from eagle_iad.atomic import atomic_write_text
from eagle_iad.history.schema import path_category
from eagle_iad.naming import printable
from eagle_iad.service.access import Caller
from eagle_iad.service.store import InspectionStore

COLUMNS = ("seq", "time", "actor", "role", "method", "route", "path", "status", "detail")
#: A row's fields as written (``seq`` is the log's own), with the category its change is of, which the log keeps
#: for ``?category=`` (a label's path names the inspection, not its category) and does not show: the detail says it.
_FIELDS = (*COLUMNS[1:], "category")
#: How long a row waits for a history another writer holds before it goes to the journal. Long enough for
#: any ordinary writer (a key added, a verdict stored); short enough that a client's request does not time out.
AUDIT_WAIT_S = 20.0
#: The journal of rows the log could not take yet, in the state folder.
PENDING = "audit-pending.jsonl"
#: Journalled rows the log refused (not busy: refused, as a row it can never take), kept for a person.
REJECTED = "audit-rejected.jsonl"
#: Beside a journal, ``<journal>.lock``: held by an append and by the drain's rename, in every process.
LOCK_SUFFIX = ".lock"
#: How long an append or a drain waits for another process's hold of a journal's lock (a hold lasts a write
#: and an fsync), after which it goes on without it, logged, rather than hold up a change's answer.
LOCK_WAIT_S = 10.0

_INSERT = f"INSERT INTO audit ({', '.join(_FIELDS)}) VALUES ({', '.join('?' for _ in _FIELDS)})"
#: A journalled row already in the log: the same change (to the millisecond) by the same caller.
_WRITTEN = "SELECT 1 FROM audit WHERE time = ? AND actor = ? AND method = ? AND path = ? AND status = ?"

log = logging.getLogger("eagle_iad.service")


class AuditLog:
    def __init__(self, store: InspectionStore, journal: Path | None = None, drains: bool = True) -> None:
        """``drains``: this log moves journalled rows into the log. Only the service's does: another process
        (``eagle review label``) writing to the same state folder passes ``False`` and only appends to the
        journal when the log refuses its row (the journal's lock file keeps its appends and the service's rename
        apart; two drains would also need the service's own threads' locks, which another process does not
        see)."""
        self.store = store
        self.journal = journal
        self.drains = drains
        self._journal_lock = threading.RLock()  # held by a drain that appends to its own file
        self._drain_lock = threading.Lock()

    def write(self, time: str, caller: Caller, method: str, route: str, path: str, status: int,
              detail: str | None = None, category: str | None = None) -> bool:  # fmt: skip
        """Write one row (journalled rows first); ``False`` when it went to the journal instead.

        The path and detail are written with control characters escaped (a ``why`` is the caller's text:
        a NUL in it is a row PostgreSQL refuses, a newline a forged line in the CSV). ``category``: the category
        the change is of, where its path does not say it (a label, a deletion of one of its inspections); by
        default the one the path names (:func:`~eagle_iad.history.schema.path_category`), if any.
        """
        row = (time, caller.name, caller.role.name, method, route, printable(path), status,
               None if detail is None else printable(detail), _category(category, path))  # fmt: skip
        if self.drains:
            self.drain()
        deadline = clock.monotonic() + AUDIT_WAIT_S
        delay = 0.05
        while True:
            try:
                with self.store.transaction() as db:
                    db.execute(_INSERT, row)
                return True
            except Exception as exc:
                if self.store.backend.is_unavailable(exc) and clock.monotonic() + delay < deadline:
                    clock.sleep(delay)
                    delay = min(delay * 2, 1.0)
                    continue
                if self.journal is None:
                    raise
                self._append(self.journal, row)
                log.error("audit: the log could not take a row (%s); kept in %s until it can", exc, self.journal)
                return False

    def drain(self) -> None:
        """Move journalled rows into the log, each once and each on its own (one the log refuses goes to
        ``audit-rejected.jsonl`` and blocks no other); what the log cannot take yet waits for the next drain."""
        if self.journal is None or not self.drains or not self._drain_lock.acquire(blocking=False):
            return  # no journal, another process's log (the service drains), or another thread is draining it
        try:
            self._drain(self.journal)
        except Exception:  # the journal's own trouble (a full disk): never the caller's row or read
            log.exception("audit: the journal %s could not be moved into the log", self.journal)
        finally:
            self._drain_lock.release()

    def _drain(self, journal: Path) -> None:
        """The journal renamed to ``.draining`` (appends go on to a new journal meanwhile), then its rows in
        one by one; the file is rewritten without each row once it is in or set aside. Rows an earlier drain
        left in ``.draining`` go first; the journal is renamed only once they are all in. The rename holds the
        journal's lock (:func:`_locked`), so an append of any process is in the file whole before it, or in the
        new journal after it."""
        draining = journal.with_name(journal.name + ".draining")
        for _ in range(2):  # what an earlier drain left, then the journal
            with self._journal_lock:  # appends wait only for this rename
                if not draining.exists():
                    if not journal.exists():
                        return
                    with _locked(journal, "the journal is not drained now; the next drain tries again") as held:
                        if not held or not journal.exists():
                            return
                        os.replace(journal, draining)
            if not self._drain_file(journal, draining):
                return

    def _drain_file(self, journal: Path, draining: Path) -> bool:
        """``draining``'s rows into the log; ``False`` when some must wait for a later drain."""
        rejected = journal.with_name(REJECTED)
        rows = self._pending(draining)
        for index, entry in enumerate(rows):
            try:
                with self.store.transaction() as db:
                    if db.execute(_WRITTEN, (entry[0], entry[1], entry[3], entry[5], entry[6])).fetchone() is None:
                        db.execute(_INSERT, entry)
                    else:  # a drain stopped between writing it and rewriting the file: in the log once
                        log.info("audit: a journalled row is in the log already, not written again: %s %s %s by %s",
                                 entry[0], entry[3], entry[5], entry[1])  # fmt: skip
            except Exception as exc:
                if not _refused(exc):  # busy, away, read-only, damaged: the rows wait for the next drain
                    self._keep(draining, rows[index:])
                    log.warning("audit: %s still holds rows the log cannot take yet (%s)", draining, exc)
                    return False
                self._append(rejected, entry)
                self._keep(draining, rows[index + 1 :])  # so a later drain does not refuse it again
                log.error("audit: the log refused a journalled row (%s); kept in %s", exc, rejected)
        draining.unlink()
        return True

    @staticmethod
    def _pending(journal: Path) -> list[tuple[Any, ...]]:
        if not journal.exists():
            return []
        rows = []
        for line in journal.read_text(encoding="utf-8").splitlines():
            try:
                data = json.loads(line)
                # a line journalled before rows had a category (by an older eagle-iad): the one its path names
                data.setdefault("category", None)
                data["category"] = _category(data["category"], data["path"])
                rows.append(tuple(data[name] for name in _FIELDS))
            except (ValueError, KeyError, TypeError, AttributeError):
                continue  # a line cut short by a crash while appending: its change was answered as failed
        return rows

    @staticmethod
    def _keep(journal: Path, rows: list[tuple[Any, ...]]) -> None:
        """``journal`` rewritten (atomically) to hold just ``rows``."""
        text = "".join(json.dumps(dict(zip(_FIELDS, row, strict=True))) + "\n" for row in rows)
        atomic_write_text(journal, text)

    def _append(self, journal: Path, row: tuple[Any, ...]) -> None:
        """One row as a line of ``journal``, fsynced; after a line a crash cut short, on a line of its own. Under
        the journal's lock (:func:`_locked`): a drain (the service's, whichever process this is) renames the file
        before this opens it or after this wrote it, never in between."""
        text = (json.dumps(dict(zip(_FIELDS, row, strict=True))) + "\n").encode()
        otherwise = "the row is appended under this process's lock alone (another process's drain may miss it)"
        with self._journal_lock, _locked(journal, otherwise), journal.open("a+b") as handle:
            line = text
            end = handle.seek(0, os.SEEK_END)
            if end and os.pread(handle.fileno(), 1, end - 1) != b"\n":
                line = b"\n" + line
            handle.write(line)
            handle.flush()
            os.fsync(handle.fileno())

    def page(
        self, limit: int, offset: int, actor: str | None = None, category: str | None = None
    ) -> tuple[int, list[dict[str, Any]]]:
        """Newest first: ``(total, rows)``."""
        self.drain()
        where, params = _where(actor, category)
        total = int(self.store.read(f"SELECT COUNT(*) FROM audit {where}", params)[0][0])
        rows = self.store.read(f"SELECT {', '.join(COLUMNS)} FROM audit {where} ORDER BY seq DESC LIMIT ? OFFSET ?",
                               [*params, limit, offset])  # fmt: skip
        return total, [dict(zip(COLUMNS, row, strict=True)) for row in rows]

    def csv(self, actor: str | None = None, category: str | None = None) -> str:
        """Every row, oldest first, as CSV; a field a spreadsheet would run as a formula is defused."""
        self.drain()
        where, params = _where(actor, category)
        rows = self.store.read(f"SELECT {', '.join(COLUMNS)} FROM audit {where} ORDER BY seq", params)
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\r\n")
        writer.writerow(COLUMNS)
        for row in rows:
            writer.writerow([_defuse(value) for value in row])
        return out.getvalue()


def _category(category: str | None, path: str) -> str | None:
    """A row's category: the one its writer named, else the one its path names."""
    return category if category is not None else path_category(path)


def _where(actor: str | None, category: str | None) -> tuple[str, list[Any]]:
    """The filter of a read of the log: one person's rows (``actor``), and one category's: the rows whose
    ``category`` is it (its fit, thresholds, teaches, rollbacks, its retirement, and the labels and deletions of its
    inspections), compared whole on an indexed column, never by ``LIKE`` on text (a name may hold ``_``).

    A row without a category (written by an older eagle-iad, or before the column, of an inspection no longer in
    the history) is matched by its path as that version matched it: ``/v1/categories/{category}`` and below it,
    by a prefix compare at its own length (both backends: tests/test_history_backends.py).
    """
    clauses: list[str] = []
    params: list[Any] = []
    if actor:
        clauses.append("actor = ?")
        params.append(actor)
    if category:
        base = f"/v1/categories/{category}"
        clauses.append("(category = ? OR (category IS NULL AND (path = ? OR substr(path, 1, length(?)) = ?)))")
        params.extend([category, base, base + "/", base + "/"])
    return ("WHERE " + " AND ".join(clauses) if clauses else ""), params


@contextmanager
def _locked(journal: Path, otherwise: str) -> Iterator[bool]:
    """Hold ``journal``'s lock (an exclusive ``flock`` on ``<journal>.lock``), shared by every process that writes
    the journal or renames it; yields whether it is held. The lock file is never removed: a holder's file removed
    under a waiter would let two hold locks on two files. It is made ``0o666`` less the umask, as the journal is,
    so another user of the state folder's group can take it too; one this user cannot write (another's, made
    under a stricter umask) is opened read-only, which ``flock`` takes alike. One that cannot be opened at all, or
    a lock another process holds past :data:`LOCK_WAIT_S` (a stuck process must not hold up an answer), is
    logged with ``otherwise`` (what the caller does without it) and yields ``False``: an applied change is
    never answered 500 for its journal's lock."""
    path = journal.with_name(journal.name + LOCK_SUFFIX)
    fd: int | None = None
    why = ""
    try:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
        except PermissionError:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        why = f"it cannot be opened: {exc.strerror or exc}"
    if fd is not None:
        deadline = clock.monotonic() + LOCK_WAIT_S
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if clock.monotonic() >= deadline:
                    why = f"another process has held it for {LOCK_WAIT_S:g} s"
                    break
                clock.sleep(0.02)
            except OSError as exc:
                why = f"it cannot be locked: {exc.strerror or exc}"
                break
    try:
        if why:
            log.error("audit: no lock on %s (%s); %s", path, why, otherwise)
        yield not why
    finally:
        if fd is not None:
            os.close(fd)


def _refused(exc: BaseException) -> bool:
    """Whether the log refused the row itself (a value it cannot store, a constraint): never retried. Anything
    else (busy, unreachable, read-only, damaged) is the database's state, which passes: the row waits."""
    return type(exc).__name__ in ("IntegrityError", "DataError", "ProgrammingError")


def _defuse(value: Any) -> Any:
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value
