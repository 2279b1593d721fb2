"""The history's tables, derived from the one inspection record, and their versioned migrations.

One schema for every backend: the statements are written with SQLite's types and each backend's
:meth:`~eagle_iad.history.backend.HistoryBackend.ddl` names its own (``BIGINT``, ``DOUBLE PRECISION``,
identity columns in PostgreSQL). A ``schema_version`` table makes a migration explicit instead of
guessing from columns; a database newer than this code is refused rather than misread.

Versions (:data:`MIGRATIONS`): 1 = inspections; 2 adds ``fit_jobs``; 3 the user's label of an inspection
(``label``, ``label_time``); 4 the stations' intake and outbox (``station_intake``: each file a station
took, by content hash, or for a source that inspects a repeated content again, a camera, by content hash and
record, ``<sha256>:<record id>``, so each frame is a row: :func:`~eagle_iad.station.outbox.intake_key`, a value and
no version; ``outbox``: each verdict a sink must receive, committed in the same transaction as
its inspection; ``stations``: the stations created through ``/v1/stations``); 5 ``idempotency`` (an
upload's ``Idempotency-Key`` and the record it made), ``api_keys`` (named keys with roles, as digests) and
``audit`` (who changed what); 6 ``api_keys.seq``, the order keys were added (PostgreSQL has no rowid), filled
for the keys already there; 7 counts a label given before label revisions existed (``label`` set,
``label_revision`` NULL, the column added empty at the open that migrated it) as revision 1, so an
``expected_revision`` of 0 ("never labelled") is refused instead of overwriting it unseen
(:func:`_count_old_labels`). Steps 1-5 only added tables, or nullable columns the record declares, so one
idempotent step (create what is missing, add the record's missing columns) performs any of them, and rows
already stored keep their values; a step that must fill or rewrite data has its own function
(:func:`_number_keys`, :func:`_count_old_labels`).

An index is no version: every open runs every ``CREATE ... IF NOT EXISTS`` above, so an index added later
(``outbox_held``, ``station_intake_record``) is made in a history of the same version at its next open, and an
older eagle-iad, which reads that version too, reads the history as before (it never names the index). So is
``station_faults`` (why a kept station could not be started, by the replica that last tried: shared, so every
replica lists a station that runs nowhere as not started), a table an older eagle-iad never names, and so is
``outbox.refusals`` (how many tries of that row the receiver refused, in total: :meth:`Retry.gives_up`), added to
an outbox without it at the next open with its default 0; an older eagle-iad never names it and its inserts
leave it at 0. So is ``outbox.last_refused`` (1: the row's last failed try was refused, so a reconnection does not
cut its backoff short, see :class:`~eagle_iad.station.runner.Courier`), added with its default 0: a row stored
before is tried at once on a reconnection, as an older eagle-iad's courier, which never names it, tries it after a
restart. So is ``station_intake.files`` (how many files of that content the station refused, each
counted: three empty files are three refusals of one content), added with its default 1, what each row counted
for before; an older eagle-iad's inserts leave it at 1 and its repeated refusal of one content at the count it
had, as it counted. So is ``station_intake.unfiled`` (1: a refusal no sink takes, stored, its file not known to be
put aside yet, see :meth:`StationTables.write_failed`), added with its default 0, as every row stored before was
taken to be; an older eagle-iad never names it. So is ``station_refusals`` (the refusal of a file counted in the
intake row of its content while that row tells another file's refusal not put aside yet, by its key, name and
planned place, until its own file is put aside: see :meth:`StationTables.write_failed`), a table an older eagle-iad
never names (its station finds no such refusal again, as it found none before). So is ``station_runs`` (each
station a stations file's ``eagle station run`` runs: who runs it, its figures and state, and its heartbeat, written
every few seconds so every replica lists it: :mod:`eagle_iad.station.fleet`), a table an older eagle-iad never names
(its replicas list those stations nowhere, as before, and its ``eagle station run`` publishes nothing). So is
``audit.category`` (the category a row's change is of: a category's routes, and a label or deletion of one of its
inspections, for ``GET /v1/audit?category=``), added with its index and filled for the rows already there as far as
they tell it (:func:`_fill_audit_categories`); an older eagle-iad's rows leave it empty and are found by their path
alone, as that version found them. And ``stations.created_by`` (the name of the API key that created the station),
added empty: a station created before, or by an older eagle-iad (whose inserts leave it empty), shows as created
by ``api``, as every station did.
A field added to the inspection record is a nullable column added the same way, with no version of its own, the
record being its one declaration: ``inspections.label_history`` (the newest 100 labels given, changed, confirmed or
cleared, with its note and the label it replaced: ``InspectionStore.set_label``) is added empty, and a label stored
before it becomes its first entry at the part's next label; an older eagle-iad never names it (a label it gives
meanwhile is missing from the history, never from the record). :class:`Upgrade` lists each table, column and index
an open added, these included, so ``eagle db upgrade`` says every change it made.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from eagle_iad.errors import ConfigError
from eagle_iad.history.backend import Connection, HistoryBackend, transaction
from eagle_iad.record import columns

SCHEMA_VERSION = 7

#: What each version added (``eagle db upgrade`` prints the steps it applied).
MIGRATIONS: dict[int, str] = {
    1: "inspections",
    2: "fit_jobs (fit jobs outlive the service)",
    3: "the user's label of an inspection (label, label_time, label_by, label_note)",
    4: "station_intake, outbox and stations (the line's hot folders and sinks)",
    5: "idempotency, api_keys and audit (exactly-once uploads, named keys, who changed what)",
    6: "api_keys.seq (keys listed in the order they were added, in every backend; SQLite had its rowid)",
    7: "labels given before label revisions existed count as revision 1",
}


def _inspections_table() -> str:
    """``CREATE TABLE inspections`` from the record's fields (``seq``, the storage order, after ``id``)."""
    lines = []
    for column in columns():
        if column.name == "id":
            lines += ["    id TEXT PRIMARY KEY", "    seq INTEGER NOT NULL UNIQUE"]
        else:
            lines.append(f"    {column.name} {column.sql_type}{'' if column.nullable else ' NOT NULL'}")
    return "CREATE TABLE IF NOT EXISTS inspections (\n" + ",\n".join(lines) + "\n)"


def statements() -> list[str]:
    """Every ``CREATE`` of the current schema, in SQLite's dialect, each safe to run again."""
    return [
        "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)",
        _inspections_table(),
        "CREATE INDEX IF NOT EXISTS inspections_category ON inspections (category, seq)",
        """CREATE TABLE IF NOT EXISTS fit_jobs (
    id TEXT PRIMARY KEY,
    created TEXT NOT NULL,
    record TEXT NOT NULL
)""",
        """CREATE TABLE IF NOT EXISTS station_intake (
    station TEXT NOT NULL,
    digest TEXT NOT NULL,
    name TEXT NOT NULL,
    state TEXT NOT NULL,
    record_id TEXT,
    reason TEXT,
    moved_to TEXT,
    appeared REAL NOT NULL,
    time REAL NOT NULL,
    files INTEGER NOT NULL DEFAULT 1,
    unfiled INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (station, digest)
)""",
        "CREATE INDEX IF NOT EXISTS station_intake_time ON station_intake (station, time)",
        """CREATE TABLE IF NOT EXISTS outbox (
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
    refusals INTEGER NOT NULL DEFAULT 0,
    last_refused INTEGER NOT NULL DEFAULT 0,
    UNIQUE (station, sink, record_id)
)""",
        "CREATE INDEX IF NOT EXISTS outbox_due ON outbox (station, sink, state, seq)",
        # the deliveries held for images not filed yet (StationTables.held, release_held): no version of its own
        "CREATE INDEX IF NOT EXISTS outbox_held ON outbox (station, state, next_try)",
        # ... and their intake rows, joined by record (StationTables.held): no version of its own either
        "CREATE INDEX IF NOT EXISTS station_intake_record ON station_intake (station, record_id)",
        """CREATE TABLE IF NOT EXISTS idempotency (
    key TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    record_id TEXT NOT NULL,
    created TEXT NOT NULL
)""",
        """CREATE TABLE IF NOT EXISTS api_keys (
    name TEXT PRIMARY KEY,
    seq INTEGER,
    role TEXT NOT NULL,
    digest TEXT NOT NULL UNIQUE,
    created TEXT NOT NULL,
    revoked TEXT
)""",
        """CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    time TEXT NOT NULL,
    actor TEXT NOT NULL,
    role TEXT NOT NULL,
    method TEXT NOT NULL,
    route TEXT NOT NULL,
    path TEXT NOT NULL,
    status INTEGER NOT NULL,
    detail TEXT,
    category TEXT
)""",
        # no version: audit.category (the category a row's change is of), added to an older log at its next open
        "CREATE INDEX IF NOT EXISTS audit_category ON audit (category, seq)",
        """CREATE TABLE IF NOT EXISTS stations (
    name TEXT PRIMARY KEY,
    spec TEXT NOT NULL,
    paused INTEGER NOT NULL DEFAULT 0,
    created TEXT NOT NULL,
    created_by TEXT
)""",
        # no version: like an index, made at the next open of a history of the same version, and never named
        # by an older eagle-iad (which shows a station it cannot start as before)
        """CREATE TABLE IF NOT EXISTS station_faults (
    name TEXT PRIMARY KEY,
    why TEXT NOT NULL,
    time TEXT NOT NULL
)""",
        # no version either: each refusal counted in an intake row that tells another file (StationTables.write_failed)
        """CREATE TABLE IF NOT EXISTS station_refusals (
    station TEXT NOT NULL,
    record_id TEXT NOT NULL,
    digest TEXT NOT NULL,
    name TEXT NOT NULL,
    moved_to TEXT,
    unfiled INTEGER NOT NULL DEFAULT 0,
    time REAL NOT NULL,
    PRIMARY KEY (station, record_id)
)""",
        # no version either: what each ``eagle station run`` says of its stations (StationRuns), for every replica
        """CREATE TABLE IF NOT EXISTS station_runs (
    name TEXT PRIMARY KEY,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    file TEXT NOT NULL,
    state TEXT NOT NULL,
    figures TEXT NOT NULL,
    every_s REAL NOT NULL,
    started REAL NOT NULL,
    beat REAL NOT NULL,
    stopped REAL
)""",
    ]


#: The tables and indexes :func:`statements` makes, by name, in their order there.
_TABLES = [m.group(1) for m in (re.match(r"CREATE TABLE IF NOT EXISTS (\w+)", sql) for sql in statements()) if m]
_INDEXES = [m.group(1) for m in (re.match(r"CREATE INDEX IF NOT EXISTS (\w+)", sql) for sql in statements()) if m]


@dataclass(frozen=True)
class Upgrade:
    """What :func:`upgrade` found and did: every table, column (``table.column``) and index it added, so ``eagle
    db upgrade`` says each change it made, those of no version of their own (``outbox.refusals``) too."""

    before: int | None  # None: a new, empty database
    after: int
    added_columns: tuple[str, ...]
    added_tables: tuple[str, ...] = ()
    added_indexes: tuple[str, ...] = ()

    def describe(self, where: str) -> str:
        if self.before is None:
            return f"history {where}: created at schema {self.after}"
        made = [(what, names) for what, names in (("tables", self.added_tables), ("columns", self.added_columns),
                                                   ("indexes", self.added_indexes)) if names]  # fmt: skip
        if self.before == self.after and not made:
            return f"history {where}: schema {self.after}, up to date"
        steps = [f"{v}: {MIGRATIONS[v]}" for v in range(self.before + 1, self.after + 1)]
        added = "".join(f"; added {what} {', '.join(names)}" for what, names in made)
        return f"history {where}: schema {self.before} -> {self.after} ({'; '.join(steps) or 'no new version'}{added})"


def _layout(backend: HistoryBackend, db: Connection) -> tuple[dict[str, set[str]], set[str]]:
    """The columns of each of the schema's tables (none: not there) and which of its indexes are there."""
    return {table: backend.columns(db, table) for table in _TABLES}, backend.indexes(db) & set(_INDEXES)


def upgrade(backend: HistoryBackend, db: Connection) -> Upgrade:
    """Bring the database to :data:`SCHEMA_VERSION` in one transaction (all of it, or nothing).

    Serialised across processes (replicas starting together migrate once; the others find it done).
    A database newer than this code, or with a version that never existed, is refused untouched.
    """
    with transaction(backend, db):
        backend.serialize(db, "schema")
        tables, indexes = _layout(backend, db)
        if tables["audit"] and "category" not in tables["audit"]:  # no version of its own; before its index
            db.execute(backend.ddl("ALTER TABLE audit ADD COLUMN category TEXT"))
            _fill_audit_categories(backend, db)
        for statement in statements():
            db.execute(backend.ddl(statement))
        row = db.execute("SELECT version FROM schema_version").fetchone()
        before = None if row is None else int(row[0])
        if before is not None and (before > SCHEMA_VERSION or before < 1):
            newer = before > SCHEMA_VERSION
            raise ConfigError(
                f"history {backend.describe()}: schema {before} is "
                + ("newer than this eagle-iad reads (upgrade eagle-iad)" if newer else "not one eagle-iad ever wrote")
                + f"; this version reads schema {SCHEMA_VERSION}"
            )
        if before is not None and before < 6:
            _number_keys(backend, db)
        if "refusals" not in backend.columns(db, "outbox"):  # no version of its own (see above)
            db.execute(backend.ddl("ALTER TABLE outbox ADD COLUMN refusals INTEGER NOT NULL DEFAULT 0"))
        if "last_refused" not in backend.columns(db, "outbox"):  # nor this one
            db.execute(backend.ddl("ALTER TABLE outbox ADD COLUMN last_refused INTEGER NOT NULL DEFAULT 0"))
        if "files" not in backend.columns(db, "station_intake"):  # nor this one
            db.execute(backend.ddl("ALTER TABLE station_intake ADD COLUMN files INTEGER NOT NULL DEFAULT 1"))
        if "unfiled" not in backend.columns(db, "station_intake"):  # nor this one
            db.execute(backend.ddl("ALTER TABLE station_intake ADD COLUMN unfiled INTEGER NOT NULL DEFAULT 0"))
        if "created_by" not in backend.columns(db, "stations"):  # nor this one (NULL: not known, shown as "api")
            db.execute(backend.ddl("ALTER TABLE stations ADD COLUMN created_by TEXT"))
        present = backend.columns(db, "inspections")
        missing = [column for column in columns() if column.name not in present]
        for column in missing:
            if not column.nullable:
                raise ConfigError(f"history column {column.name} cannot be added to stored rows: make it nullable")
            db.execute(backend.ddl(f"ALTER TABLE inspections ADD COLUMN {column.name} {column.sql_type}"))
        if before is not None and before < 7:  # after the record's columns: label_revision may just have been added
            _count_old_labels(db)
        if before is None:
            db.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))
        elif before != SCHEMA_VERSION:
            db.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION,))
        now, indexes_now = _layout(backend, db)
    return Upgrade(
        before, SCHEMA_VERSION,
        tuple(f"{table}.{name}" for table in _TABLES if tables[table] for name in sorted(now[table] - tables[table])),
        tuple(table for table in _TABLES if not tables[table]),
        tuple(index for index in _INDEXES if index in indexes_now - indexes),
    )  # fmt: skip


def _number_keys(backend: HistoryBackend, db: Connection) -> None:
    """Schema 6: ``api_keys.seq`` added and filled, in the order (time added, then name) of the keys there."""
    if "seq" not in backend.columns(db, "api_keys"):
        db.execute(backend.ddl("ALTER TABLE api_keys ADD COLUMN seq INTEGER"))
    db.execute(
        "UPDATE api_keys SET seq = (SELECT COUNT(*) FROM api_keys k WHERE k.created < api_keys.created "
        "OR (k.created = api_keys.created AND k.name <= api_keys.name)) WHERE seq IS NULL"
    )


def _count_old_labels(db: Connection) -> None:
    """Schema 7: a label given before ``label_revision`` existed is revision 1, not "never labelled".

    Such a row has ``label`` set and ``label_revision`` NULL (the column was added empty), and NULL reads as
    revision 0: a label sent with ``expected_revision`` 0 then passed the check and overwrote it unseen (the old
    one kept only in ``label_history``), and one sent with 1 was refused as if given meanwhile. Filled once, here,
    so every reader (the API, ``eagle review``, a teach, SQL on the database) sees the same revision. A row
    without a label keeps NULL: not labelled, revision 0, as a label request reads it."""
    db.execute("UPDATE inspections SET label_revision = 1 WHERE label IS NOT NULL AND label_revision IS NULL")


#: Where the routes that change one inspection are: ``/v1/inspections/{id}`` (its deletion) and ``.../label``.
_INSPECTION_PREFIX = "/v1/inspections/"
#: Where a category's own routes are: ``/v1/categories/{name}`` and below it.
_CATEGORY_PREFIX = "/v1/categories/"


def path_category(path: str) -> str | None:
    """The category an audit row's path names (``/v1/categories/{name}`` and below it: a threshold, a teach, a
    rollback, a fit, a retirement), else ``None``: the default of a row's ``category`` where its writer names none.
    :func:`_fill_audit_categories` says the same in SQL."""
    if not path.startswith(_CATEGORY_PREFIX):
        return None
    name = path[len(_CATEGORY_PREFIX) :].split("/", 1)[0]
    return name or None


def _fill_audit_categories(backend: HistoryBackend, db: Connection) -> None:
    """``audit.category`` just added: filled for the rows already there, as far as they tell it. A row whose path is
    a category's gets that category (:func:`path_category`); a label or deletion of an inspection still in the
    history (``/v1/inspections/{id}``, ``.../label``, an id without ``/``) gets the inspection's. The rest stay empty
    (a deleted inspection's rows: its category is only in the free-text detail, never parsed): ``?category=``
    still finds such a row by its path when that is the category's, as before.

    Two set-based statements, each inspection found by its primary key. Why not row by row in Python: this runs
    inside the upgrade's transaction, which holds the schema lock (and on PostgreSQL the ``ALTER TABLE``'s exclusive
    lock on ``audit``): every replica's audit write waits for it, so it must take one pass over the log, not one
    round trip per row. Prefixes are compared with ``substr`` (exact, case-sensitive: SQLite's ``LIKE`` is not)."""
    find = backend.find
    cat, ins = len(_CATEGORY_PREFIX), len(_INSPECTION_PREFIX)
    rest = f"substr(path, {cat + 1})"  # what follows /v1/categories/
    db.execute(
        f"UPDATE audit SET category = CASE WHEN {find}({rest}, '/') = 0 THEN {rest} "
        f"ELSE substr({rest}, 1, {find}({rest}, '/') - 1) END "
        f"WHERE category IS NULL AND substr(path, 1, {cat}) = '{_CATEGORY_PREFIX}' AND length(path) > {cat} "
        f"AND substr(path, {cat + 1}, 1) <> '/'"
    )
    label = "/label"
    # the id: what follows /v1/inspections/, less a trailing /label where one follows a non-empty id
    inspection_id = (
        f"CASE WHEN length(path) > {ins + len(label)} AND substr(path, length(path) - {len(label) - 1}) = '{label}' "
        f"THEN substr(path, {ins + 1}, length(path) - {ins + len(label)}) ELSE substr(path, {ins + 1}) END"
    )
    db.execute(
        f"UPDATE audit SET category = (SELECT i.category FROM inspections i WHERE i.id = {inspection_id}) "
        f"WHERE category IS NULL AND substr(path, 1, {ins}) = '{_INSPECTION_PREFIX}' AND length(path) > {ins} "
        f"AND {find}({inspection_id}, '/') = 0"
    )


def _expected() -> dict[str, list[str]]:
    """The columns of each table :func:`statements` makes, in their order (read back from an SQLite in memory)."""
    import sqlite3

    made = sqlite3.connect(":memory:")
    try:
        for statement in statements():
            made.execute(statement)
        return {table: [str(row[1]) for row in made.execute(f"PRAGMA table_info({table})")] for table in _TABLES}
    finally:
        made.close()


def missing(backend: HistoryBackend, db: Connection) -> list[tuple[str, list[str]]]:
    """What an upgrade would add to a history there, by kind (``tables``, ``columns`` as ``table.column``,
    ``indexes``; only kinds with some), without changing anything: those of no version of their own
    (``station_intake.files``) too, which a schema version alone does not tell. Indexes are left out where
    the backend does not list them."""
    tables, indexes = _layout(backend, db)
    expected = _expected()
    found = [
        ("tables", [table for table in _TABLES if not tables[table]]),
        ("columns", [f"{table}.{name}" for table in _TABLES if tables[table] for name in expected[table]
                     if name not in tables[table]]),
        ("indexes", [index for index in _INDEXES if index not in indexes]
         if type(backend).indexes is not HistoryBackend.indexes else []),
    ]  # fmt: skip
    return [(kind, names) for kind, names in found if names]


def version(backend: HistoryBackend, db: Connection) -> int | None:
    """The database's schema version, without changing anything (``None``: no history there yet)."""
    if "version" not in backend.columns(db, "schema_version"):
        return None
    row = db.execute("SELECT version FROM schema_version").fetchone()
    return None if row is None else int(row[0])


def holds_history(backend: HistoryBackend, db: Connection) -> bool:
    """Whether the database holds an EAGLE history (a schema version, or an inspections table), without changing
    anything: an existing but empty PostgreSQL database does not, and only ``--create`` (or ``eagle serve``)
    may start one there."""
    return version(backend, db) is not None or bool(backend.columns(db, "inspections"))
