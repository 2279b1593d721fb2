"""Where the inspection history lives, named by a URL: ``sqlite:///path`` (one station) or
``postgresql://...`` (a plant's replicas sharing one history).

Why a backend is a small object and not an ORM: the history's SQL is a few dozen plain statements
written once for SQLite; the two dialects differ in a handful of places (placeholders, JSON access,
column types, how a write transaction begins, how processes exclude each other), and a backend
answers exactly those. Everything else (the schema derived from the inspection record, the
migrations, the queries) is shared, so one test of the store covers both.

A backend registers under its URL scheme (``@history_backend("postgresql")``), like every other
interchangeable part (:mod:`eagle_iad.registry`).
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import unquote

from eagle_iad.errors import ConfigError
from eagle_iad.registry import Registry

#: The connect timeout (seconds) that connections opened in this context use instead of the backend's own; ``None``:
#: the backend's. Set by :func:`short_connects` (``/metrics``); a backend that connects over a network reads it.
_SHORT_CONNECT_S: ContextVar[float | None] = ContextVar("eagle_history_short_connect_s", default=None)


@contextmanager
def short_connects(seconds: float) -> Iterator[None]:
    """Connections to the history opened in this block (this thread, this task) give up after ``seconds``.

    Why: ``/metrics`` must answer within a scraper's timeout (Prometheus: 10 s) exactly when the history is
    unreachable, and each of its readers that met a blackholed PostgreSQL waited the full connect timeout (30-40 s
    in all); a request that stores or reads work keeps the longer one, which rides out a slow network."""
    token = _SHORT_CONNECT_S.set(seconds)
    try:
        yield
    finally:
        _SHORT_CONNECT_S.reset(token)


def connect_timeout(default: float) -> float:
    """The connect timeout to use now: ``default``, or the shorter one of an enclosing :func:`short_connects`."""
    short = _SHORT_CONNECT_S.get()
    return default if short is None else min(default, short)


class Cursor(Protocol):
    """What a statement returns (``sqlite3.Cursor`` and ``psycopg.Cursor`` both are one)."""

    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...


class Connection(Protocol):
    """The one method the history's SQL needs: a statement in SQLite's dialect (``?`` placeholders),
    which a backend translates to its own."""

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Cursor: ...

    def close(self) -> None: ...


class Lease(Protocol):
    """A named lock held across processes (and, with PostgreSQL, machines) until :meth:`release`, or
    until the holder dies: a lock a killed process held is never left behind."""

    def release(self) -> None:
        """Give the lock up; never raises (a lock whose connection is gone is released already)."""

    def held(self) -> bool:
        """Still held: ``False`` once the database dropped the holder's connection (a restart, a failover),
        after which another process may hold it, so whatever it guarded must stop."""


class HistoryBackend(ABC):
    """One kind of database for the history. Subclasses register with :func:`history_backend`."""

    #: The URL scheme (``sqlite``, ``postgresql``).
    scheme: str = ""
    #: Several processes may use one history at once (replicas): pictures of an inspection another
    #: process is writing may exist before its row, and start-up must not take them for orphans.
    shared: bool = False

    def __init__(self, url: str) -> None:
        self.url = url

    @property
    def returning(self) -> bool:
        """Whether ``UPDATE ... RETURNING`` is understood (PostgreSQL: always; SQLite: from 3.35)."""
        return True

    @abstractmethod
    def connect(self) -> Connection:
        """A new connection, in autocommit mode (transactions are begun explicitly by :meth:`begin`)."""

    @abstractmethod
    def alive(self, db: Connection) -> bool:
        """``db`` can still be used (a database restart breaks a client/server connection)."""

    @abstractmethod
    def close(self, db: Connection) -> None: ...

    @abstractmethod
    def begin(self, db: Connection) -> None:
        """Begin a write transaction that no other writer can interleave with (SQLite: ``BEGIN
        IMMEDIATE``; PostgreSQL: ``BEGIN ISOLATION LEVEL READ COMMITTED`` plus, where order matters,
        :meth:`serialize`). Each statement after a :meth:`serialize` must see what the transaction that
        held it before committed: a snapshot fixed earlier (PostgreSQL's ``repeatable read``, which a
        server's ``default_transaction_isolation`` may make the default) would not."""

    def serialize(self, db: Connection, what: str) -> None:
        """Inside a transaction: wait until no other transaction holds ``what``, then hold it to the end.

        Why: an inspection's storage number is the previous one plus one, and a live feed reads "every
        row after the last one I saw"; two replicas numbering at once would collide or commit out of
        order. SQLite's ``BEGIN IMMEDIATE`` already serialises every writer, so it needs nothing here.
        """
        return None

    @abstractmethod
    def in_transaction(self, db: Connection) -> bool: ...

    #: An SQL expression for the database's clock, in seconds since the epoch (SQLite's here; a backend whose
    #: dialect differs names its own). Why the database's: a heartbeat written by one machine and judged by
    #: another (``station_runs``) is compared on one clock, so a skewed clock on either cannot make a silent
    #: station look alive, or a live one silent.
    clock: str = "((julianday('now') - 2440587.5) * 86400.0)"
    #: The SQL function ``find(text, part)``: the 1-based position of ``part``'s first occurrence in ``text``, 0 where
    #: there is none (SQLite's ``instr``; PostgreSQL's ``strpos`` takes the same arguments in the same order). Why:
    #: a migration that fills a column from a path (``audit.category``) does it in one set-based statement.
    find: str = "instr"

    @abstractmethod
    def columns(self, db: Connection, table: str) -> set[str]:
        """The column names ``table`` has now (for migrations that add columns)."""

    def indexes(self, db: Connection) -> set[str]:
        """The index names the database has now, so ``eagle db upgrade`` can say which it made; a backend that
        does not say (a plugin's) has its new indexes left out of that list, nothing else."""
        return set()

    @abstractmethod
    def ddl(self, sql: str) -> str:
        """A ``CREATE``/``ALTER`` statement written with SQLite's types in this backend's."""

    @abstractmethod
    def is_unique_violation(self, exc: BaseException) -> bool:
        """``exc`` is a write refused because a unique key was already taken (by another replica)."""

    @abstractmethod
    def is_unavailable(self, exc: BaseException) -> bool:
        """``exc`` means the database cannot be used right now (locked, unreachable): answer 503."""

    @abstractmethod
    def try_lock(self, name: str) -> Lease | None:
        """Hold the lock called ``name`` (``fit:tire``), or ``None`` at once if another process holds it."""

    def lock_holder(self, name: str) -> str | None:
        """Who holds the lock called ``name`` (a host and process id, as the database can tell), for a refusal or
        a wait to name it; ``None``: not known (no other process can hold it, or the database cannot say)."""
        return None

    def describe(self) -> str:
        """The URL without its password, for messages and logs."""
        return redact(self.url)


#: History backends by URL scheme.
BACKENDS: Registry[Callable[[str], HistoryBackend]] = Registry("history backend")


def history_backend(scheme: str) -> Callable[[type[HistoryBackend]], type[HistoryBackend]]:
    """Register a backend class for URLs ``scheme://...``."""

    def decorate(cls: type[HistoryBackend]) -> type[HistoryBackend]:
        cls.scheme = scheme
        BACKENDS.add(scheme, cls)
        return cls

    return decorate


#: The URL parameters libpq reads a secret from: the server's password and the passphrase of the client's TLS key
#: (compared case-insensitively, after percent-decoding, as libpq decodes a parameter's name).
_SECRET_PARAMETERS = frozenset({"password", "sslpassword"})


def _authority(url: str) -> tuple[int, int] | None:
    """Where the ``user[:password]@host`` part of ``url`` starts and ends (``None``: no ``scheme://``)."""
    if "://" not in url:
        return None
    start = url.index("://") + 3
    slash = url.find("/", start)
    return start, len(url) if slash < 0 else slash


def secrets_of(url: str) -> list[str]:
    """The passwords ``url`` carries, raw and decoded, longest first: what :func:`redact` hides and what
    :func:`scrub` removes from a driver's message. The password is what libpq itself reads (when psycopg
    is installed), and, read here: everything between the first ``:`` of the user part and its last
    ``@`` (so ``?``, ``#`` and ``@`` inside a password count), and every ``password=`` and ``sslpassword=``
    parameter."""
    found = []
    where = _authority(url)
    if where is not None:
        authority = url[where[0] : where[1]]
        user, at, _ = authority.rpartition("@")
        if at and ":" in user:
            found.append(user.split(":", 1)[1])
    found += [m.group(2) for m in re.finditer(r"[?&]([^?&=]*)=([^&]*)", url) if _is_secret(m.group(1))]
    try:
        from psycopg.conninfo import conninfo_to_dict

        conninfo = conninfo_to_dict(url)
        found += [str(conninfo.get(name) or "") for name in _SECRET_PARAMETERS]
    except Exception:  # no psycopg, or a URL libpq cannot read: what was found above
        pass
    return sorted({*found, *(unquote(f) for f in found)} - {""}, key=len, reverse=True)


def _parameters(url: str) -> tuple[int, list[str]]:
    """Where the query of ``url`` (its user part's password already masked or left out: it may hold a ``?``)
    starts (its ``?``; ``len(url)``: none), and its ``name=value`` pairs."""
    mark = url.find("?")
    return (len(url), []) if mark < 0 else (mark, url[mark + 1 :].split("&"))


def _is_secret(pair: str) -> bool:
    return unquote(pair.split("=", 1)[0]).lower() in _SECRET_PARAMETERS


def _without_secrets(url: str, *, mask: str | None) -> str:
    """``url`` with the password of its user part and its secret parameters replaced by ``mask``, or left out
    (``None``)."""
    where = _authority(url)
    if where is not None:
        authority = url[where[0] : where[1]]
        user, at, host = authority.rpartition("@")
        if at and ":" in user:
            name = user.split(":", 1)[0]
            authority = f"{name}@{host}" if mask is None else f"{name}:{mask}@{host}"
        url = url[: where[0]] + authority + url[where[1] :]
    mark, pairs = _parameters(url)
    if not any(_is_secret(pair) for pair in pairs):
        return url
    if mask is None:
        query = "&".join(pair for pair in pairs if not _is_secret(pair))
    else:
        query = "&".join(f"{pair.split('=', 1)[0]}={mask}" if _is_secret(pair) else pair for pair in pairs)
    return url[:mark] + (f"?{query}" if query else "")


def redact(url: str) -> str:
    """``url`` with any password (the user part's, every ``password=`` and ``sslpassword=`` parameter) replaced by
    ``***`` (several hosts, odd characters and bad percent escapes included: nothing here parses the URL beyond
    finding where a password is)."""
    return _without_secrets(url, mask="***")


def without_passwords(url: str) -> str:
    """``url`` with every password left out, not masked: the user part's, and each ``password=`` and
    ``sslpassword=`` parameter (all of them, however often given): a URL to pass with the password given another
    way (``PGPASSWORD``, ``~/.pgpass``)."""
    return _without_secrets(url, mask=None)


def scrub(text: str, url: str) -> str:
    """``text`` (a driver's error message) with the passwords of ``url`` replaced by ``***`` (those of
    three characters or more: a shorter one would blank letters of every word, and guards little)."""
    for secret in secrets_of(url):
        if len(secret) >= 3:
            text = text.replace(secret, "***")
    return text


def history_url(value: str | Path) -> str:
    """A history URL from what a user gives: a URL, or a plain path (an SQLite file, as ``--db`` took)."""
    text = str(value)
    if "://" in text:
        return text
    return f"sqlite:///{Path(text).expanduser().resolve()}"


def open_backend(value: str | Path) -> HistoryBackend:
    """The backend for a history URL (or SQLite path); an unknown scheme names the known ones."""
    url = history_url(value)
    scheme = url.split("://", 1)[0].lower()
    scheme = {"postgres": "postgresql", "postgresql+psycopg": "postgresql"}.get(scheme, scheme)
    if scheme not in BACKENDS:
        raise ConfigError(
            f"history {redact(url)}: unknown kind of database {scheme!r}; use one of "
            + ", ".join(f"{name}://..." for name in BACKENDS.names())
        )
    return BACKENDS.get(scheme)(url)


_TOKENS = re.compile(r"'(?:[^']|'')*'|\?|%")
_JSON_FIELD = re.compile(r"json_extract\((\w+(?:\.\w+)?), '\$\.(\w+)'\)")


def positional_to_format(sql: str) -> str:
    """SQLite's ``?`` placeholders as ``%s`` (psycopg's), with a literal ``%`` doubled; text inside
    quotes is left alone. ``json_extract(col, '$.key')`` becomes PostgreSQL's ``(col::jsonb ->> 'key')``."""
    sql = _JSON_FIELD.sub(r"(\1::jsonb ->> '\2')", sql)

    def one(match: re.Match[str]) -> str:
        token = match.group(0)
        return "%s" if token == "?" else "%%" if token == "%" else token

    return _TOKENS.sub(one, sql)


@contextmanager
def transaction(backend: HistoryBackend, db: Connection) -> Iterator[Connection]:
    """``db`` inside one write transaction: committed when the block ends, rolled back if it raises."""
    backend.begin(db)
    try:
        yield db
        db.execute("COMMIT")
    except BaseException:
        # SQLite may have rolled back itself (a full disk), COMMIT may be done, and a lost PostgreSQL
        # connection cannot roll back at all (the server did): the error that got here is the one to raise.
        if backend.alive(db) and backend.in_transaction(db):
            with suppress(Exception):
                db.execute("ROLLBACK")
        raise
