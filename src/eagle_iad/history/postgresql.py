"""The plant's history: PostgreSQL (psycopg 3), shared by every ``eagle serve`` replica that names it.

Why PostgreSQL and not a home-made cluster: plants already run it, it serialises concurrent writers
correctly, and its advisory locks give the replicas what they must agree on (one storage order for
inspections, one fit per category at a time) with locks the server drops when a holder's connection
ends, so a replica killed mid-fit never leaves a category locked.

``postgresql://user:password@host:port/database`` (libpq's URL form; ``?sslmode=...`` and the other
libpq parameters pass through). psycopg is the ``eagle-iad[postgresql]`` extra.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
import socket
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, cast

from eagle_iad.errors import ConfigError, HistoryUnavailableError
from eagle_iad.history.backend import (
    Connection,
    Cursor,
    HistoryBackend,
    Lease,
    connect_timeout,
    history_backend,
    positional_to_format,
    redact,
    scrub,
)

if TYPE_CHECKING:
    import psycopg

#: Seconds a connection attempt may take before the history is reported unreachable.
CONNECT_TIMEOUT_S = 10
#: TCP keepalives and a user timeout (libpq's parameters): an idle lock connection whose server went away
#: is noticed within about 25 s, and a statement sent into a silent network within 20 s, not the kernel's
#: 15 minutes of retransmissions, so :meth:`_AdvisoryLease.held` answers promptly.
KEEPALIVES = {"keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 5, "keepalives_count": 3,
              "tcp_user_timeout": 20000}  # fmt: skip

#: The same keepalives asked of the server for each connection (PostgreSQL's own settings of these names):
#: a lock connection sits idle at the server, which by the operating system's default probes it only after
#: two hours, so a replica whose machine lost power (no FIN, no RST) would keep its stations' and fits'
#: locks for over two hours. With these the server ends such a session, and its locks, within about 25 s.
#: Only the settings the server knows are set (``tcp_user_timeout`` is PostgreSQL 12's).
SERVER_KEEPALIVES = {"tcp_keepalives_idle": KEEPALIVES["keepalives_idle"],
                     "tcp_keepalives_interval": KEEPALIVES["keepalives_interval"],
                     "tcp_keepalives_count": KEEPALIVES["keepalives_count"],
                     "tcp_user_timeout": KEEPALIVES["tcp_user_timeout"]}  # fmt: skip
_SERVER_KEEPALIVES_SQL = (
    "SELECT set_config(s.name, v.value, false) FROM (VALUES "
    + ", ".join(f"('{name}', '{value}')" for name, value in SERVER_KEEPALIVES.items())
    + ") AS v(name, value) JOIN pg_settings s ON s.name = v.name"
)

_log = logging.getLogger(__name__)


def _psycopg() -> Any:
    try:
        import psycopg
    except ImportError:
        raise ConfigError(
            "a postgresql:// history needs psycopg 3: pip install 'eagle-iad[postgresql]' (or psycopg[binary])"
        ) from None
    return psycopg


def lock_key(name: str) -> int:
    """A named lock as PostgreSQL's 64-bit advisory-lock key (a stable hash: every replica agrees)."""
    return int.from_bytes(hashlib.sha256(f"eagle-iad:{name}".encode()).digest()[:8], "big", signed=True)


#: What stands for U+0000, which PostgreSQL's text cannot hold (SQLite's can): the replacement character.
NUL_STAND_IN = "\ufffd"
#: ``\u0000`` in JSON text (after an even number of backslashes: an escape, not an escaped backslash).
_JSON_NUL = re.compile(r"(?<!\\)((?:\\\\)*)\\u0000")


def _storable(value: Any) -> Any:
    r"""``value`` as PostgreSQL can take it: U+0000 in text becomes U+FFFD, as does a ``\u0000`` escape in
    JSON text (``verdict::jsonb`` refuses it, which would break every review query for one such row).

    Why here: text reaches the history from URLs, operators' notes and MLLM answers; on SQLite a NUL is
    stored and an id holding one is simply not found, so on PostgreSQL it must not be a 500 instead.

    A lookup's parameters pass through here too, so its U+0000 becomes U+FFFD as well: it finds what was
    stored from the same text (as on SQLite), and also what was stored with U+FFFD in that place, which
    SQLite tells apart. An id in a URL holding a NUL still finds nothing: the service's ids are hex.
    """
    if not isinstance(value, str):
        return value
    if "\x00" in value:
        value = value.replace("\x00", NUL_STAND_IN)
    if "\\u0000" in value and value[:1] in '{["':
        try:
            json.loads(value)
        except ValueError:
            return value  # not JSON: a user's own backslashes, kept as typed
        value = _JSON_NUL.sub(r"\1\\ufffd", value)
    return value


class _Postgres:
    """A psycopg connection speaking the history's SQLite dialect (``?`` placeholders, ``json_extract``)."""

    def __init__(self, db: psycopg.Connection[Any]) -> None:
        self.raw = db

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Cursor:
        return cast(Cursor, self.raw.execute(positional_to_format(sql), tuple(_storable(p) for p in params)))

    def close(self) -> None:
        self.raw.close()


class _AdvisoryLease:
    """A session advisory lock on a connection of its own: released by :meth:`release`, or by the server
    when the holder's process dies and its connection ends."""

    def __init__(self, db: psycopg.Connection[Any], key: int) -> None:
        self._db = db
        self._key = key

    def release(self) -> None:
        if self._db.closed:
            return
        try:
            self._db.execute("SELECT pg_advisory_unlock(%s)", (self._key,))
        except Exception:  # the connection is gone, and the server released the lock with it
            _log.debug("advisory lock %d: its connection was gone at release", self._key)
        finally:
            self._db.close()

    def held(self) -> bool:
        """The lock's session is alive (a session lock lasts as long as its session): one round trip."""
        if self._db.closed or self._db.broken:
            return False
        try:
            self._db.execute("SELECT 1")
        except Exception:
            return False
        return True


@history_backend("postgresql")
class PostgresHistory(HistoryBackend):
    """``postgresql://user:password@host:port/database``."""

    shared = True

    def __init__(self, url: str) -> None:
        super().__init__(url)
        _, rest = url.split("://", 1)
        self.conninfo = f"postgresql://{rest}"
        #: A connection was made once: a later failure is the server being away, not a wrong URL.
        self.opened = False
        if not rest.strip("/"):
            raise ConfigError(f"history {redact(url)}: say which server and database (postgresql://host/database)")

    def _connect_raw(self, application_name: str = "eagle-iad") -> psycopg.Connection[Any]:
        pg = _psycopg()
        try:
            connection: psycopg.Connection[Any] = pg.connect(
                self.conninfo,
                autocommit=True,
                # libpq takes whole seconds, and takes under 2 as 2
                connect_timeout=max(2, math.ceil(connect_timeout(CONNECT_TIMEOUT_S))),
                application_name=application_name,
                **KEEPALIVES,
            )
        except pg.Error as exc:
            reason = scrub(" ".join(str(exc).split()) or type(exc).__name__, self.url)
            message = f"history {self.describe()}: cannot connect ({reason})"
            if self.opened:  # it worked before: the server is restarting or unreachable for now (503)
                raise HistoryUnavailableError(message) from None
            raise ConfigError(message) from None
        self.opened = True
        try:
            connection.execute(_SERVER_KEEPALIVES_SQL)
        except pg.OperationalError:  # the connection went away at once: as a connection that failed
            connection.close()
            raise HistoryUnavailableError(f"history {self.describe()}: the connection was lost") from None
        except pg.Error as exc:  # a proxy that refuses them: the client's keepalives still apply
            _log.warning("history %s: the server's TCP keepalives could not be set (%s)", self.describe(),
                         scrub(" ".join(str(exc).split()), self.url))  # fmt: skip
        return connection

    def connect(self) -> Connection:
        return _Postgres(self._connect_raw())

    def alive(self, db: Connection) -> bool:
        raw = cast(_Postgres, db).raw
        return not (raw.closed or raw.broken)

    def close(self, db: Connection) -> None:
        db.close()

    def begin(self, db: Connection) -> None:
        # READ COMMITTED whatever the server's default_transaction_isolation: each statement sees what was
        # committed before it, so after serialize()'s wait the next statement sees what the holder wrote. A
        # 'repeatable read' default would fix the snapshot at the lock statement, before the wait: two first
        # keys would both find no key, two replicas would number an inspection alike.
        db.execute("BEGIN ISOLATION LEVEL READ COMMITTED")

    def serialize(self, db: Connection, what: str) -> None:
        db.execute("SELECT pg_advisory_xact_lock(?)", (lock_key(what),))

    def in_transaction(self, db: Connection) -> bool:
        from psycopg.pq import TransactionStatus

        return bool(cast(_Postgres, db).raw.info.transaction_status != TransactionStatus.IDLE)

    def columns(self, db: Connection, table: str) -> set[str]:
        rows = db.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema() "
            "AND table_name = ?",
            (table,),
        ).fetchall()
        return {str(row[0]) for row in rows}

    def indexes(self, db: Connection) -> set[str]:
        rows = db.execute("SELECT indexname FROM pg_indexes WHERE schemaname = current_schema()").fetchall()
        return {str(row[0]) for row in rows}

    clock = "EXTRACT(EPOCH FROM clock_timestamp())::DOUBLE PRECISION"
    find = "strpos"

    def ddl(self, sql: str) -> str:
        sql = sql.replace("INTEGER PRIMARY KEY AUTOINCREMENT", "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY")
        return sql.replace(" INTEGER", " BIGINT").replace(" REAL", " DOUBLE PRECISION")

    def is_unique_violation(self, exc: BaseException) -> bool:
        return isinstance(exc, _psycopg().errors.UniqueViolation)

    def is_unavailable(self, exc: BaseException) -> bool:
        return isinstance(exc, _psycopg().OperationalError)

    def try_lock(self, name: str) -> Lease | None:
        # named after this host and process, so another process refused the lock can say who holds it (lock_holder)
        db = self._connect_raw(holder_name())
        key = lock_key(name)
        try:
            row = db.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()
        except BaseException:
            db.close()
            raise
        if not row or not row[0]:
            db.close()
            return None
        return _AdvisoryLease(db, key)

    def lock_holder(self, name: str) -> str | None:
        """Who holds the lock ``name``, from the server's view of its sessions: ``eagle-iad on <host>, pid <pid>``
        for an eagle-iad process (:func:`holder_name`), else the session's application and address; ``None`` when
        no session holds it, or the server does not let this user see who does."""
        key = lock_key(name) & 0xFFFF_FFFF_FFFF_FFFF  # an advisory lock's bigint key, as pg_locks splits it
        db = self._connect_raw()
        try:
            row = db.execute(
                "SELECT a.application_name, host(a.client_addr) FROM pg_locks l JOIN pg_stat_activity a "
                "ON a.pid = l.pid WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 "
                "AND l.classid = %s::bigint::oid AND l.objid = %s::bigint::oid "
                "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())",
                (key >> 32, key & 0xFFFF_FFFF),
            ).fetchone()
        finally:
            db.close()
        if row is None:
            return None
        application, address = row
        if not application:
            return None if address is None else f"a session from {address}"
        held = str(application)
        if held.startswith(HOLDER_PREFIX):
            host, _, pid = held[len(HOLDER_PREFIX) :].rpartition(" pid ")
            return f"eagle-iad on {host}, pid {pid}"
        return f"{held!r}" + ("" if address is None else f" from {address}")


#: How a lock's session names its process (``application_name``, at most 63 bytes: the host is cut to fit).
HOLDER_PREFIX = "eagle-iad@"


def holder_name() -> str:
    """``eagle-iad@<host> pid <pid>``: the ``application_name`` of a session holding a lock."""
    pid = f" pid {os.getpid()}"
    host = socket.gethostname().encode()[: 63 - len(HOLDER_PREFIX) - len(pid)].decode(errors="ignore")
    return f"{HOLDER_PREFIX}{host}{pid}"
