"""The stations' two tables in the history file: what each station took (intake) and what each sink owes (outbox).

Why in the history's SQLite file: a verdict, its intake row and one outbox row per sink are written in
the inspection's own transaction (:meth:`InspectionStore.add`'s ``also``), so after any crash either
all of them exist or none does. A file is then never inspected twice (its content hash is in the
intake) and never left unreported (its outbox rows wait until delivered). Delivery is at least once:
a sink that crashed after sending but before the row was marked sends it again, with the same
idempotency key (the record id), which the receiver uses to drop the repeat.

Per sink, rows are delivered in the order they were stored (the head waits until it is delivered or
becomes a dead letter), so a receiver sees each station's verdicts in order. By default only a verdict the
receiver refuses becomes a dead letter (see :meth:`Retry.gives_up`: its row's ``refusals``, counted in the row
so a restart or a receiver that flaps between refusing and being unreachable neither resets nor hides them); one
it cannot be reached for waits, and the rows behind it too. A dead letter requeued
(:meth:`StationTables.requeue_dead`) keeps its ``seq``: it goes again ahead of every row still pending that was
stored after it.

An image the station refuses (it cannot be inspected: see :meth:`StationTables.write_failed`) is delivered the same
way: its intake row (``failed``) and one outbox row per sink that takes refusals, in one transaction, held until the
image is put aside, then due in the same queues as the verdicts, keyed ``refused-<...>`` (see :func:`refusal_key`).
"""

from __future__ import annotations

import hashlib
import json
import random
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from eagle_iad.history.backend import Connection
from eagle_iad.service.store import InspectionStore
from eagle_iad.station.parts import Retry, Settled

PENDING, DELIVERED, DEAD = "pending", "delivered", "dead"
#: ``next_try`` of the outbox rows of an image not yet filed: never due before :meth:`StationTables.filed` says
#: where the image went (a name taken meanwhile puts it at ``-1``), so no sink is sent a path it is not at.
#: Still pending, so it holds its sink's queue in order and counts as owed.
HELD = 1e18


#: What the idempotency key of a refusal starts with (a record id is 32 hex digits: the two never collide).
REFUSED_PREFIX = "refused-"


def _tag(*parts: object) -> str:
    return hashlib.sha256("\0".join(map(str, parts)).encode("utf-8", "surrogateescape")).hexdigest()[:16]


def refusal_key(
    station: str, name: str, digest: str, settled: Settled | None, again: str | None, *, fresh: bool = False
) -> str:
    """The idempotency key of a refusal (its outbox rows' ``record_id``).

    Why not one rule for both: a refusal is an event (this file refused now), not a content, so bytes refused
    before and dropped again (a camera writing one empty ``current.png`` per part) are another part, told anew.
    With the bytes read (``digest``): a new random key, except ``again``, the key of this very file's refusal
    stored earlier whose deliveries are still held (a crash, or a put-aside that failed, between storing it and
    putting the file aside): refused again, it keeps that key, so it is sent once. A file that could not be read
    has no digest, and a crash loses any memory of it outside the outbox: its key is derived from the station,
    its name and what the listing saw of it (``settled``: size and modification time, then ctime and inode), so
    refusing the same file again after a restart gives the same key, and the rows already stored under it are not
    written twice (a receiver drops a repeat by its key anyway). Its first 16 hex digits are of the station, name,
    size and modification time alone (see :func:`refusal_of`). ``fresh``: rows under the derived key exist and are
    no longer held (a refusal of another file that looked the same, long told): the last 16 are random instead.
    """
    if digest:
        return again or f"{REFUSED_PREFIX}{uuid.uuid4().hex}"
    if settled is None:
        return f"{REFUSED_PREFIX}{_tag(station, name)}{uuid.uuid4().hex[:16] if fresh else _tag(station, name, 0)}"
    seen = (settled.size, settled.mtime_ns)
    rest = uuid.uuid4().hex[:16] if fresh else _tag(station, name, *seen, settled.ctime_ns, settled.ino)
    return f"{REFUSED_PREFIX}{_tag(station, name, *seen)}{rest}"


def repeat_key(station: str, name: str, digest: str, settled: Settled | None) -> str:
    """The idempotency key of the refusal a file of content already inspected is told as (``duplicates =
    "refuse"``): derived from the station, the file's name, content and what the listing saw of it, so the same
    file taken again after a crash (its rows written, its put-away not done) gets the same key and is told once;
    another file of that name and content (the next part) has another modification time or inode."""
    if settled is None:
        return f"{REFUSED_PREFIX}{uuid.uuid4().hex}"
    seen = (settled.size, settled.mtime_ns, settled.ctime_ns, settled.ino)
    return f"{REFUSED_PREFIX}{_tag('repeat', station, name, digest)}{_tag('repeat', station, name, digest, *seen)}"


def refusal_of(key: str, station: str, name: str, seen: Settled) -> bool:
    """Whether ``key`` is of a refusal of an unread file of ``station`` named ``name`` with the size and modification
    time of ``seen`` (see :func:`refusal_key`): a file the source still lists so is that file, not put aside yet."""
    return key.startswith(f"{REFUSED_PREFIX}{_tag(station, name, seen.size, seen.mtime_ns)}")


def _settled(db: Connection, station: str, key: str) -> None:
    """The file of refusal ``key`` is put aside, or no longer waited for: its row of ``station_refusals`` (a refusal
    counted in another file's intake row, see :meth:`StationTables.write_failed`), if any, has done its work."""
    db.execute("DELETE FROM station_refusals WHERE station = ? AND record_id = ?", (station, key))


def intake_key(digest: str, record_id: str, dedupe: bool) -> str:
    """The ``digest`` an inspected image's intake row is stored under: its content hash where the source skips a
    content already inspected (``dedupe``: a hot folder, which finds the row again by it), else the content hash and
    the record (``<sha256>:<record id>``: a camera, which inspects a repeated frame again, a still scene or a blocked
    lens). Why: the row is keyed by station and ``digest``, so a repeated frame stored under its hash alone replaced
    the earlier frame's row, and ``inspected`` (a count of rows) and the latencies counted each content once, not
    each frame (22 triggers, 22 records, 22 deliveries: "inspected": 6). Only a value changes, not the table: an
    older eagle-iad reads such rows as it reads any (it looks a camera's rows up by nothing)."""
    return digest if dedupe else f"{digest}:{record_id}"


def station_lock(name: str) -> str:
    """The lock held by the one process that runs station ``name`` (several share a PostgreSQL history)."""
    return f"station:{name}"


#: An intake row written again (a file retried after a failure) replaces the earlier one, in every backend.
_REPLACE_INTAKE = (
    " ON CONFLICT (station, digest) DO UPDATE SET name = excluded.name, state = excluded.state,"
    " record_id = excluded.record_id, reason = excluded.reason, moved_to = excluded.moved_to,"
    " appeared = excluded.appeared, time = excluded.time, unfiled = excluded.unfiled"
)
#: :data:`_REPLACE_INTAKE` of a refusal: a content refused again (another empty file) keeps the count of its
#: refused files (``files``, one per file) and adds the parameter (1 for a refusal not stored before, 0 for the same
#: refusal stored again: see :meth:`StationTables.write_failed`).
_REPLACE_FAILED = (
    _REPLACE_INTAKE + ", files = CASE WHEN station_intake.state = 'failed' THEN station_intake.files + ? ELSE 1 END"
)


@dataclass(frozen=True)
class Intake:
    """What the station already did with one content hash."""

    state: str
    record_id: str | None
    moved_to: str | None
    reason: str | None


@dataclass(frozen=True)
class Held:
    """A record whose deliveries wait for its image's filing: its content hash, name and planned place (``None``
    where its intake row is gone)."""

    record_id: str
    digest: str | None
    name: str | None
    planned: str | None
    #: What its deliveries say (one of its rows' payload): a refusal's ``refused`` tells its image's name and hash.
    payload: dict[str, Any] | None = None


@dataclass(frozen=True)
class Due:
    """The head of one sink's queue."""

    seq: int
    record_id: str
    payload: dict[str, Any]
    attempts: int
    next_try: float
    #: Tries of this row the receiver refused, in total since it was stored or last requeued.
    refusals: int = 0
    #: Whether its last failed try was refused (an unreachable try since clears it): a reconnection then does
    #: not cut its backoff short (:meth:`~eagle_iad.station.runner.Courier._once`).
    last_refused: bool = False


def backoff_s(attempts: int, retry: Retry) -> float:
    """Seconds before try ``attempts + 1``: doubling from ``base_s``, capped at ``max_s``, half of it jittered
    (stations restarted together do not retry in lockstep)."""
    ceiling = min(retry.max_s, retry.base_s * 2.0 ** min(attempts - 1, 60))
    return ceiling / 2 + random.uniform(0, ceiling / 2)


class StationTables:
    """The intake and outbox rows of the stations, over the service's :class:`InspectionStore`."""

    def __init__(self, store: InspectionStore) -> None:
        self.store = store

    # ------------------------------------------------------------------ intake

    def intake(self, station: str, digest: str) -> Intake | None:
        rows = self.store.read(
            "SELECT state, record_id, moved_to, reason FROM station_intake WHERE station = ? AND digest = ?",
            (station, digest),
        )
        return None if not rows else Intake(*rows[0])

    def filed_by(self, places: Sequence[str]) -> dict[str, list[tuple[str, str]]]:
        """For each of ``places`` that an inspected record's image was filed at, the ``(station, content sha256)`` of
        each such record, any station's (see :data:`~eagle_iad.station.parts.FiledBy`): how a camera tells the frames
        it saved and the station took from one saved before a kill and never taken (its rows are keyed by content
        and record, ``<sha256>:<record id>``, and found again by their place, which no index holds: this looks at
        the table once per call, so it is asked only at a start, for a few places at a time)."""
        if not places:
            return {}
        marks = ", ".join("?" for _ in places)
        rows = self.store.read(
            f"SELECT station, digest, moved_to FROM station_intake WHERE state = 'done' AND moved_to IN ({marks})",
            tuple(places),
        )
        found: dict[str, list[tuple[str, str]]] = {}
        for station, digest, place in rows:
            found.setdefault(str(place), []).append((str(station), str(digest).partition(":")[0]))
        return found

    @staticmethod
    def write_done(
        db: Connection, station: str, digest: str, name: str, record_id: str, moved_to: str,
        appeared: float, sinks: list[str], payload: Mapping[str, Any], *, held: bool = True,
    ) -> None:  # fmt: skip
        """In the inspection's transaction: the intake row and one outbox row per sink, held (:data:`HELD`) until
        :meth:`filed` gives them the path the image was filed at; due at once where that place is final and
        nothing is written for it (not ``held``: a camera, see :attr:`Source.moves_files`)."""
        now = time.time()
        db.execute(
            "INSERT INTO station_intake (station, digest, name, state, record_id, reason, moved_to,"
            " appeared, time) VALUES (?, ?, ?, 'done', ?, NULL, ?, ?, ?)" + _REPLACE_INTAKE + ", files = 1",
            (station, digest, name, record_id, moved_to, appeared, now),
        )
        text = json.dumps(payload)
        for sink in sinks:
            db.execute(
                "INSERT INTO outbox (station, sink, record_id, payload, state, next_try) VALUES (?, ?, ?, ?, ?, ?)",
                (station, sink, record_id, text, PENDING, HELD if held else 0.0),
            )

    def write_repeat(self, station: str, key: str, sinks: Sequence[str], payload: Mapping[str, Any]) -> bool:
        """The refusal a file of content already inspected is told as (see :func:`repeat_key`): one outbox row per
        sink, due at once (the file is not put anywhere the deliveries must wait for: they name its planned place),
        in one transaction; rows already under ``key`` (the same file taken again after a crash) are kept as they
        are. Whether they were written now."""
        text = json.dumps(payload)
        with self.store.transaction() as db:
            if db.execute("SELECT 1 FROM outbox WHERE station = ? AND record_id = ?", (station, key)).fetchone():
                return False
            for sink in sinks:
                db.execute(
                    "INSERT INTO outbox (station, sink, record_id, payload, state, next_try) VALUES (?, ?, ?, ?, ?, ?)"
                    " ON CONFLICT (station, sink, record_id) DO NOTHING",
                    (station, sink, key, text, PENDING, 0.0),
                )
        return True

    def filed(self, station: str, digest: str, record_id: str, at: str, *, first: bool) -> None:
        """The image of ``record_id`` is filed at ``at``: its held outbox rows name that path and become due, in one
        transaction (a sink never sees the path planned when another file took that name meanwhile: ``-1``).

        The intake row says ``at`` too when this is the image's ``first`` filing, or when rows were still held (a
        crash between storing and filing: this is its first filing after all); a later copy of the same content
        (a repeat) leaves the record's place as it is.
        """
        with self.store.transaction() as db:
            rows = db.execute("SELECT seq, payload FROM outbox WHERE station = ? AND record_id = ? AND state = ?"
                              " AND next_try = ?", (station, record_id, PENDING, HELD)).fetchall()  # fmt: skip
            if (first or rows) and digest:  # the shared row of the files not read has no place
                db.execute("UPDATE station_intake SET moved_to = ?, unfiled = 0 WHERE station = ? AND digest = ? AND"
                           " record_id = ?", (at, station, digest, record_id))  # fmt: skip
            _settled(db, station, record_id)  # a refusal counted in another file's row: its file is put aside
            for seq, text in rows:
                payload = json.loads(text)
                if isinstance(payload, dict):
                    payload["image"] = at
                db.execute("UPDATE outbox SET payload = ?, next_try = 0 WHERE seq = ?", (json.dumps(payload), seq))

    def held(self, station: str) -> list[Held]:
        """The records of ``station`` whose outbox rows are held (images a crash or a failed put-away left
        unfiled), oldest first, with what the intake says of each (or, for a refusal counted in another file's
        intake row, its own row of ``station_refusals``: see :meth:`write_failed`)."""
        rows = self.store.read(
            "SELECT o.record_id, MIN(o.seq), COALESCE(i.digest, r.digest), COALESCE(i.name, r.name),"
            " COALESCE(i.moved_to, r.moved_to), MIN(o.payload) FROM outbox o LEFT JOIN station_intake i"
            " ON i.station = o.station AND i.record_id = o.record_id AND i.state IN ('done', 'failed')"
            " AND i.digest <> '' LEFT JOIN station_refusals r ON r.station = o.station AND r.record_id = o.record_id"
            " WHERE o.station = ? AND o.state = ? AND o.next_try = ?"
            " GROUP BY o.record_id, i.digest, i.name, i.moved_to, r.digest, r.name, r.moved_to ORDER BY MIN(o.seq)",
            (station, PENDING, HELD),
        )
        held = []
        for record_id, _, digest, name, planned, text in rows:
            payload = json.loads(text) if text else None
            held.append(Held(str(record_id), digest, name, planned, payload if isinstance(payload, dict) else None))
        return held

    def unfiled(self, station: str) -> list[Held]:
        """The refusals of ``station`` that no sink took whose files were read and are not known to be put aside (a
        crash before their filing was stored: see :meth:`write_failed`), oldest first: their key, content hash, name
        and planned place; those counted in another file's intake row too."""
        rows = self.store.read(
            "SELECT record_id, digest, name, moved_to, time FROM station_intake WHERE station = ? AND state = 'failed'"
            " AND unfiled = 1 AND digest <> '' AND record_id IS NOT NULL UNION ALL"
            " SELECT record_id, digest, name, moved_to, time FROM station_refusals WHERE station = ? AND unfiled = 1"
            " ORDER BY time",
            (station, station),
        )
        return [Held(str(key), str(digest), str(name), None if planned is None else str(planned))
                for key, digest, name, planned, _ in rows]  # fmt: skip

    def release_unfiled(self, station: str, digest: str, key: str) -> None:
        """The file of refusal ``key`` (see :meth:`unfiled`) is gone from its source and not found put aside: its
        intake row keeps the place planned for it, the best one known, and no longer tells a later file of that
        name and content for this one (see :meth:`held_refusal`), so that file is counted."""
        with self.store.transaction() as db:
            db.execute("UPDATE station_intake SET unfiled = 0 WHERE station = ? AND digest = ? AND record_id = ?",
                       (station, digest, key))  # fmt: skip
            _settled(db, station, key)

    def refusal_rows(self, station: str, key: str) -> str:
        """What the outbox holds under refusal ``key``: ``"none"``, ``"held"`` (every row still held: not told
        yet) or ``"told"`` (some row due, delivered or dead)."""
        rows = self.store.read("SELECT next_try, state FROM outbox WHERE station = ? AND record_id = ?", (station, key))
        if not rows:
            return "none"
        return "held" if all(state == PENDING and float(due) == HELD for due, state in rows) else "told"

    def release_held(self, station: str, record_id: str | None = None, *, unplaced: bool = False) -> int:
        """Make due the held rows of ``station`` (of its record ``record_id`` only, if given): images a crash or a
        failed put-away left unfiled, and gone from its source since; they go with the path planned for them, the
        best one known, or (``unplaced``: nothing is there) with ``image`` null. How many."""
        where, params = "station = ? AND state = ? AND next_try = ?", [station, PENDING, HELD]
        if record_id is not None:
            where += " AND record_id = ?"
            params.append(record_id)
        with self.store.transaction() as db:
            if unplaced and record_id is not None:
                # nothing of the image is anywhere, so nothing is left to file: a later file of its name and content
                # is another one (see held_refusal), counted, when no sink took this refusal either
                db.execute("UPDATE station_intake SET unfiled = 0 WHERE station = ? AND record_id = ?",
                           (station, record_id))  # fmt: skip
            if record_id is not None:  # released: its file is no longer waited for (a refusal counted elsewhere)
                _settled(db, station, record_id)
            if unplaced:
                for seq, text in db.execute(f"SELECT seq, payload FROM outbox WHERE {where}", params).fetchall():
                    payload = json.loads(text)
                    if isinstance(payload, dict):
                        payload["image"] = None
                    db.execute("UPDATE outbox SET payload = ? WHERE seq = ?", (json.dumps(payload), seq))
            cursor = db.execute(f"UPDATE outbox SET next_try = 0 WHERE {where}", params)
        return int(cursor.rowcount)

    def write_failed(
        self, station: str, digest: str, name: str, reason: str, appeared: float, *, key: str | None = None,
        planned: str | None = None, sinks: Sequence[str] = (), payload: Mapping[str, Any] | None = None,
    ) -> None:  # fmt: skip
        """A refusal, in one transaction: the intake row (``failed``, under ``key`` and the ``planned`` place) and
        one outbox row per sink of ``sinks``, held until :meth:`filed` says where the file was put aside. So a crash
        leaves both or neither, and the rows wait in each sink's queue behind the verdicts stored before.

        The intake row counts the file (``files``: the status's ``failed`` counts files, not contents), once: a
        refusal stored again under the same ``key`` (this file refused again after a crash, or after a put-aside
        that failed: see :func:`refusal_key`) adds nothing. That is told in this transaction by the rows already
        under ``key``: its outbox rows, or (no sink takes refusals) the intake row's key being ``key``. ``digest``
        ``""``: a file that could not be read, which has no content hash; those share one row (no place: each
        refusal's own key is in its outbox rows; the row keeps the last one's), each counted all the same. A row that
        tells another file's refusal not put aside yet (:meth:`_pending_other`) keeps telling it: this file is only
        counted in it, and its own refusal (key, name, planned place, ``unfiled``) is kept in ``station_refusals`` until
        its file is put aside (:meth:`filed`), or released (:meth:`release_held`, :meth:`release_unfiled`): so this
        file too, refused again meanwhile (a second kill before its put-aside, or a put-aside that failed), is found
        by :meth:`held_refusal` under that key, counted once and told once, and :meth:`held` and :meth:`unfiled` name
        it for the restart's look as they name the file the row tells.

        Rows already stored under ``key`` are kept as they are, delivered or not, instead of being written twice.

        With no row held (no sink takes refusals), the intake row of a file read is marked ``unfiled`` until
        :meth:`filed` stores where the file went, or the next start finds the file gone (:meth:`unfiled`,
        :meth:`release_unfiled`): nothing else would tell this file, refused again after a kill before its put-aside,
        from a later file of that name and content (see :meth:`held_refusal`)."""
        now = time.time()
        held = key is not None and payload is not None and bool(sinks)
        place, unfiled = (planned if digest else None), int(bool(digest) and key is not None and not held)
        with self.store.transaction() as db:
            stored = False
            if key is not None:
                rows = "SELECT 1 FROM outbox WHERE station = ? AND record_id = ?"
                mine = "SELECT 1 FROM station_intake WHERE station = ? AND digest = ? AND state = 'failed' AND"
                mine += " record_id = ?"
                other = "SELECT 1 FROM station_refusals WHERE station = ? AND record_id = ?"
                stored = bool(
                    db.execute(rows, (station, key)).fetchall()
                    or db.execute(mine, (station, digest, key)).fetchall()
                    or (digest and db.execute(other, (station, key)).fetchall())
                )
            if digest and self._pending_other(db, station, digest, key):
                # the row tells another file's refusal not put aside yet (a kill before its put-aside): it keeps
                # telling that one, or that file, refused again, would count as a later file (and be told twice)
                db.execute("UPDATE station_intake SET files = files + ? WHERE station = ? AND digest = ?",
                           (0 if stored else 1, station, digest))  # fmt: skip
                if key is not None:  # this file's own refusal, found by its name until its file is put aside
                    db.execute(
                        "INSERT INTO station_refusals (station, record_id, digest, name, moved_to, unfiled, time)"
                        " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (station, record_id) DO UPDATE SET"
                        " moved_to = excluded.moved_to, unfiled = excluded.unfiled, time = excluded.time",
                        (station, key, digest, name, place, unfiled, now),
                    )
            else:
                db.execute(
                    "INSERT INTO station_intake (station, digest, name, state, record_id, reason, moved_to,"
                    " appeared, time, unfiled) VALUES (?, ?, ?, 'failed', ?, ?, ?, ?, ?, ?)" + _REPLACE_FAILED,
                    (station, digest, name, key, reason, place, appeared, now, unfiled, 0 if stored else 1),
                )
                if key is not None and digest:  # the intake row tells this refusal now: one place for it
                    _settled(db, station, key)
            if not held:
                return
            text = json.dumps(payload)
            for sink in sinks:
                db.execute(
                    "INSERT INTO outbox (station, sink, record_id, payload, state, next_try) VALUES (?, ?, ?, ?, ?, ?)"
                    " ON CONFLICT (station, sink, record_id) DO NOTHING",
                    (station, sink, key, text, PENDING, HELD),
                )

    @staticmethod
    def _pending_other(db: Connection, station: str, digest: str, key: str | None) -> bool:
        """Whether the intake row of ``digest`` tells the refusal of a file not put aside yet under a key other
        than ``key``: its outbox rows still held, or (no sink took it) the row still ``unfiled``.

        Why: one row per content. A kill before that file's put-aside leaves it in the folder, and a file of the same
        content under another name may be refused first at the restart; had its refusal taken the row over, the
        first file, refused again, would no longer be found by :meth:`held_refusal`: counted a second time under a
        new key, and (with a sink) told twice, its first key's held rows released as well."""
        rows = db.execute(
            "SELECT record_id, unfiled FROM station_intake WHERE station = ? AND digest = ? AND state = 'failed'",
            (station, digest),
        ).fetchall()
        if not rows or rows[0][0] is None or rows[0][0] == key:
            return False
        if rows[0][1]:
            return True
        held = db.execute(
            "SELECT 1 FROM outbox WHERE station = ? AND record_id = ? AND state = ? AND next_try = ?",
            (station, rows[0][0], PENDING, HELD),
        ).fetchall()
        return bool(held)

    def refusal_place(self, station: str, key: str) -> str | None:
        """Where the file of refusal ``key`` was planned to go, or went (its intake row's ``moved_to``)."""
        rows = self.store.read(
            "SELECT moved_to FROM station_intake WHERE station = ? AND record_id = ? UNION ALL"
            " SELECT moved_to FROM station_refusals WHERE station = ? AND record_id = ?",
            (station, key, station, key),
        )
        return next((str(place) for (place,) in rows if place is not None), None)

    def held_refusal(self, station: str, digest: str, name: str) -> str | None:
        """The key of the refusal of ``name`` with content ``digest`` stored, its file not put aside yet (a crash or a
        failed put-aside since), or ``None``: its deliveries still held, or, where no sink took it (no rows), its
        intake row still ``unfiled`` (see :meth:`write_failed`); the intake row of its content, or, where that row
        tells another file's refusal, this file's own row of ``station_refusals``. Refused again, the file keeps that
        key, so it is neither delivered nor counted twice."""
        if not digest:
            return None
        pending = ("(EXISTS (SELECT 1 FROM outbox o WHERE o.station = i.station AND o.record_id = i.record_id AND"
                   " o.state = ? AND o.next_try = ?) OR i.unfiled = 1)")  # fmt: skip
        rows = self.store.read(
            "SELECT i.record_id, 0, i.time FROM station_intake i WHERE i.station = ? AND i.digest = ? AND i.name = ?"
            f" AND i.state = 'failed' AND i.record_id IS NOT NULL AND {pending} UNION ALL"
            " SELECT i.record_id, 1, i.time FROM station_refusals i WHERE i.station = ? AND i.digest = ? AND"
            f" i.name = ? AND {pending} ORDER BY 2, 3 DESC",
            (station, digest, name, PENDING, HELD, station, digest, name, PENDING, HELD),
        )
        return None if not rows else str(rows[0][0])

    # ------------------------------------------------------------------ outbox

    def head(self, station: str, sink: str) -> Due | None:
        rows = self.store.read(
            "SELECT seq, record_id, payload, attempts, next_try, refusals, last_refused FROM outbox"
            " WHERE station = ? AND sink = ? AND state = ? ORDER BY seq LIMIT 1",
            (station, sink, PENDING),
        )
        if not rows:
            return None
        seq, record_id, payload, attempts, next_try, refusals, last_refused = rows[0]
        return Due(int(seq), str(record_id), json.loads(payload), int(attempts), float(next_try), int(refusals),
                   bool(last_refused))  # fmt: skip

    def delivered(self, seq: int) -> None:
        with self.store.transaction() as db:
            db.execute("UPDATE outbox SET state = ?, delivered = ?, last_error = NULL WHERE seq = ?",
                       (DELIVERED, time.time(), seq))  # fmt: skip

    def failed(self, due: Due, error: str, retry: Retry, *, refused: bool = False) -> bool:
        """Count a failed try (``refused``: the receiver refused the verdict, counted in the row's ``refusals``, which
        no other kind of failure resets); ``True`` when it was the last (the row is now a dead letter: see
        :meth:`Retry.gives_up`). The row's ``last_refused`` says whether this try was refused: the total cannot
        tell a row refused once and then unreachable for an hour, which a reconnection should try at once."""
        attempts = due.attempts + 1
        refusals = due.refusals + int(refused)
        dead = retry.gives_up(attempts, refusals)
        next_try = time.time() + (0.0 if dead else backoff_s(attempts, retry))
        with self.store.transaction() as db:
            db.execute(
                "UPDATE outbox SET attempts = ?, refusals = ?, last_refused = ?, last_error = ?, next_try = ?, "
                "state = ? WHERE seq = ?",
                (attempts, refusals, int(refused), error[:500], next_try, DEAD if dead else PENDING, due.seq),
            )
        return dead

    def requeue_dead(self, station: str | list[str] | None = None, sink: str | None = None) -> int:
        """Dead letters back in their queues (tries and refusals counted afresh): the user fixed the receiver.
        ``station``: one station's, or those of the stations named (a stations file's: a shared history holds other
        files'), or (``None``) every station's."""
        clauses, params = ["state = ?"], [DEAD]
        names = [station] if isinstance(station, str) else station
        if names is not None:
            if not names:
                return 0
            clauses.append(f"station IN ({', '.join('?' for _ in names)})")
            params.extend(names)
        if sink is not None:
            clauses.append("sink = ?")
            params.append(sink)
        with self.store.transaction() as db:
            afresh = "state = 'pending', attempts = 0, refusals = 0, last_refused = 0, next_try = 0"
            cursor = db.execute(f"UPDATE outbox SET {afresh} WHERE {' AND '.join(clauses)}", params)
        return int(cursor.rowcount)

    def outbox_sinks(self, station: str | list[str] | None = None) -> list[str]:
        """The sinks that have rows in the outbox (of ``station``, or of the stations named, or any), sorted: a
        sink removed from the stations file may still have some."""
        names = [station] if isinstance(station, str) else station
        if names is not None and not names:
            return []
        where = "" if names is None else f"WHERE station IN ({', '.join('?' for _ in names)}) "
        return [str(row[0]) for row in self.store.read(f"SELECT DISTINCT sink FROM outbox {where}ORDER BY sink",
                                                       names or ())]  # fmt: skip

    # ------------------------------------------------------------------ stations created through the service

    def save_spec(self, name: str, spec: Mapping[str, Any], created: str, created_by: str | None = None) -> None:
        """Keep a station created through the service; ``created_by``: the name of the API key that created it."""
        with self.store.transaction() as db:
            db.execute("INSERT INTO stations (name, spec, paused, created, created_by) VALUES (?, ?, 0, ?, ?)",
                       (name, json.dumps(spec), created, created_by))  # fmt: skip

    def creator(self, name: str) -> str | None:
        """The name of the API key that created kept station ``name`` (``None``: not known, created with no keys,
        before it was kept, or by an older eagle-iad; or no such station)."""
        rows = self.store.read("SELECT created_by FROM stations WHERE name = ?", (name,))
        return None if not rows or rows[0][0] is None else str(rows[0][0])

    def update_spec(self, name: str, spec: Mapping[str, Any]) -> None:
        """A kept station's body changed (``PATCH /v1/stations/{name}``): its name, records and outbox stay."""
        with self.store.transaction() as db:
            db.execute("UPDATE stations SET spec = ? WHERE name = ?", (json.dumps(spec), name))

    def set_paused(self, name: str, paused: bool) -> None:
        with self.store.transaction() as db:
            db.execute("UPDATE stations SET paused = ? WHERE name = ?", (int(paused), name))

    def delete_spec(self, name: str, *, forget: bool = False) -> None:
        """Station ``name`` is no longer kept; with ``forget`` (``DELETE /v1/stations/{name}``) its intake and
        outbox rows go too, in the same transaction (see :meth:`forget`)."""
        with self.store.transaction() as db:
            db.execute("DELETE FROM stations WHERE name = ?", (name,))
            db.execute("DELETE FROM station_faults WHERE name = ?", (name,))
            if forget:
                self._forget(db, name)

    def undelivered(self, station: str) -> tuple[int, int]:
        """``(pending, dead)``: deliveries (verdicts and refusals) of ``station`` its sinks still owe, and those they
        gave up on."""
        rows = self.store.read("SELECT state, COUNT(*) FROM outbox WHERE station = ? AND state IN (?, ?) GROUP BY"
                               " state", (station, PENDING, DEAD))  # fmt: skip
        counts = {str(state): int(count) for state, count in rows}
        return counts.get(PENDING, 0), counts.get(DEAD, 0)

    def forget(self, station: str) -> tuple[int, int]:
        """Remove what ``station`` took (its intake rows: counters, repeats) and what its sinks owe or delivered
        (its outbox rows), so a station of that name starts clean: none of the old one's verdicts goes to the new
        one's sinks, and an image the old one inspected is inspected again. Its inspections stay in the history.
        ``(intake rows, outbox rows)`` removed."""
        with self.store.transaction() as db:
            return self._forget(db, station)

    @staticmethod
    def _forget(db: Connection, station: str) -> tuple[int, int]:
        intake = db.execute("DELETE FROM station_intake WHERE station = ?", (station,)).rowcount
        db.execute("DELETE FROM station_refusals WHERE station = ?", (station,))  # part of the intake rows' count
        outbox = db.execute("DELETE FROM outbox WHERE station = ?", (station,)).rowcount
        return int(intake), int(outbox)

    def set_fault(self, name: str, why: str, at: str) -> None:
        """Kept station ``name`` could not be started by the replica that claimed it: why (until one starts it)."""
        with self.store.transaction() as db:
            db.execute("INSERT INTO station_faults (name, why, time) VALUES (?, ?, ?) ON CONFLICT (name) DO UPDATE"
                       " SET why = excluded.why, time = excluded.time", (name, why, at))  # fmt: skip

    def clear_fault(self, name: str) -> None:
        """``name`` runs (the replica holding its lock started it), or was deleted."""
        with self.store.transaction() as db:
            db.execute("DELETE FROM station_faults WHERE name = ?", (name,))

    def faults(self) -> dict[str, str]:
        """Why each kept station that runs nowhere could not be started, as the last replica that tried said."""
        return {str(name): str(why) for name, why in self.store.read("SELECT name, why FROM station_faults")}

    def specs(self) -> list[tuple[str, dict[str, Any], bool]]:
        """``(name, spec, paused)`` of every station created through the service, oldest first."""
        rows = self.store.read("SELECT name, spec, paused FROM stations ORDER BY created, name")
        return [(str(name), dict(json.loads(spec)), bool(paused)) for name, spec, paused in rows]

    def owed(self, station: str, sinks: list[str], *, held: bool = True) -> int:
        """Deliveries still pending for ``station``'s ``sinks`` (dead letters excluded). ``held=False``: only those
        that can go now, so neither one held for an image not filed yet nor one queued behind such a row of its
        sink (a sink's rows go in order)."""
        marks = ", ".join("?" for _ in sinks)
        query = f"SELECT COUNT(*) FROM outbox o WHERE o.station = ? AND o.state = ? AND o.sink IN ({marks})"
        if held:
            return int(self.store.read(query, (station, PENDING, *sinks))[0][0])
        query += (" AND o.next_try <> ? AND NOT EXISTS (SELECT 1 FROM outbox h WHERE h.station = o.station AND"
                  " h.sink = o.sink AND h.state = ? AND h.next_try = ? AND h.seq < o.seq)")  # fmt: skip
        return int(self.store.read(query, (station, PENDING, *sinks, HELD, PENDING, HELD))[0][0])

    def orphans(self, station: str, sinks: list[str]) -> dict[str, int]:
        """Pending deliveries of ``station`` to sinks it no longer has (renamed or removed from its file)."""
        rows = self.store.read("SELECT sink, COUNT(*) FROM outbox WHERE station = ? AND state = ? GROUP BY sink",
                               (station, PENDING))  # fmt: skip
        return {str(sink): int(count) for sink, count in rows if sink not in sinks}

    def owed_by_sink(self, station: str) -> dict[str, tuple[int, int]]:
        """``{sink: (pending, dead)}``: what ``station``'s sinks still owe, by the name their rows are kept under
        (a sink the station no longer has included), for a change that would remove one to name them."""
        rows = self.store.read("SELECT sink, state, COUNT(*) FROM outbox WHERE station = ? AND state IN (?, ?) "
                               "GROUP BY sink, state ORDER BY sink", (station, PENDING, DEAD))  # fmt: skip
        owed: dict[str, tuple[int, int]] = {}
        for sink, state, count in rows:
            pending, dead = owed.get(str(sink), (0, 0))
            owed[str(sink)] = (pending + int(count), dead) if state == PENDING else (pending, dead + int(count))
        return owed

    def drop_sinks(self, station: str, sinks: Sequence[str]) -> int:
        """Remove every outbox row of ``station``'s ``sinks`` (a change of the station removed them): what they
        still owed is dropped, and a sink added later under one of those names starts clean (rows are kept under
        the sink's name, so its queue would otherwise be sent to the new sink, and its figures shown as its).
        How many rows went."""
        if not sinks:
            return 0
        marks = ", ".join("?" for _ in sinks)
        with self.store.transaction() as db:
            cursor = db.execute(f"DELETE FROM outbox WHERE station = ? AND sink IN ({marks})", (station, *sinks))
        return int(cursor.rowcount)
