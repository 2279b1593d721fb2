"""The key table: named API keys with roles, stored as digests in the history's SQLite file.

Why in the history file: a key's name is what the audit log and the labels record, so keys and what
they did live and are backed up together; ``eagle keys`` writes the same file while the service runs
(SQLite's WAL lets both), and a revoked key stops working at its next request (keys are looked up per
request, never cached). A revoked key's row stays (its name still explains the audit log) and its name
cannot be given to a new key.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from eagle_iad.errors import ConfigError, one_of
from eagle_iad.history.backend import Connection
from eagle_iad.naming import CATEGORY_NAME, printable
from eagle_iad.service.access import API_NAME, ENV_KEY_NAME, LOCAL, KeyRow, Role, digest, new_key
from eagle_iad.service.store import InspectionStore

#: A key's name: what labels, thresholds and the audit log show (``anna.k``, ``line-2-camera``).
NAME_RULE = "1-64 letters, digits, '_', '.', '-', starting with a letter or digit"


@dataclass(frozen=True)
class KeyInfo:
    """A key as listed: never the key itself."""

    name: str
    role: str
    created: str
    revoked: str | None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "role": self.role, "created": self.created, "revoked": self.revoked}


#: Names the service gives callers itself: a key named so would pass for the open mode, the environment's key
#: or an open-mode change that named no one; and the roles' names: a key named ``admin`` would read as a role
#: where the audit log and the key list show a name beside its role ("admin (viewer)"). Compared ignoring
#: case (``LOCAL`` reads as ``local`` in a log).
RESERVED = (LOCAL, ENV_KEY_NAME, API_NAME, *(role.name for role in Role))


def check_key_name(name: str) -> str:
    """``name`` if a key may have it (``eagle keys add`` and ``POST /v1/keys`` both check here), else
    :class:`ConfigError`."""
    if not CATEGORY_NAME.fullmatch(name) or ".." in name:
        raise ConfigError(f"invalid key name {printable(name)[:80]!r}: use {NAME_RULE}")
    if name.casefold() in {reserved.casefold() for reserved in RESERVED}:
        raise ConfigError(f"key name {name!r} is reserved (a role's or the service's own name for a caller); "
                          "choose another name")  # fmt: skip
    return name


class FirstKeyError(ConfigError):
    """An open-mode caller's key refused: ``code`` ``first_key_not_admin`` (the first key must be an admin) or
    ``service_not_open`` (a key was added since the request came in: the caller now needs one)."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.code = code


def _check_first_key(db: Connection, role: Role) -> None:
    """Inside :meth:`KeyTable.add`'s transaction: an open-mode caller may add only the first key, an admin.

    Why an admin: from the first key on every call needs one, and without an admin nobody could add or revoke
    keys through the API again (what the ``last_admin`` rule keeps for revoking)."""
    if db.execute("SELECT 1 FROM api_keys LIMIT 1").fetchone() is not None:
        raise FirstKeyError("another key was added first, so the service is no longer open: every call needs a "
                            "key now (ask that key's holder, an admin, for one)", "service_not_open")  # fmt: skip
    if role != Role.admin:
        raise FirstKeyError(f"the first key must be an admin: once it exists every call needs a key, and "
                            f"{role.with_article} could not add or revoke keys; add an admin key first",
                            "first_key_not_admin")  # fmt: skip


class NameTakenError(ConfigError):
    """A key's name given before, to a key that exists or was revoked (in any case): the API's 409 ``key_exists``."""


def _taken(name: str, held: str, revoked: str | None) -> str:
    """Why ``name`` cannot be a new key's name: ``held`` (the same name, maybe in another case) has it."""
    why = f"was revoked on {revoked}; names are not reused" if revoked else "exists; revoke it first"
    if held == name:
        return f"key {name!r} {why} (choose another name)"
    if revoked:
        return f"key {name!r}: a key named {held!r} {why}, in any case (choose another name)"
    return f"key {name!r}: a key named {held!r} exists; names are compared ignoring case (choose another name)"


class LastAdminError(ConfigError):
    """Revoking the only admin key that is not revoked: the API's 409 ``last_admin``."""


def parse_role(text: str) -> Role:
    try:
        return Role[text]
    except KeyError:
        raise ConfigError(
            f"unknown role {printable(text)[:40]!r}: use one of {one_of(role.name for role in Role)}"
        ) from None


class KeyTable:
    """Add, list, revoke and look up keys in the store's ``api_keys`` table."""

    def __init__(self, store: InspectionStore) -> None:
        self.store = store
        self._any_ever = False  # a key was seen once: never open again (any_ever)

    def add(self, name: str, role: Role, *, open_mode: bool = False) -> str:
        """A new key for ``name`` with ``role``; the key is returned once and only its digest is kept.

        ``open_mode``: the caller was let in by the open mode (no key ever added, no ``EAGLE_API_KEY``), whose
        only grant here is the first key, an admin (:class:`FirstKeyError` otherwise). Checked in the insert's
        transaction, after :meth:`~eagle_iad.history.backend.HistoryBackend.serialize`: two first-key requests
        at once (two threads, two replicas) both found the service open, and checked before it they would both
        add a key; here exactly one does, and the other finds the service no longer open.
        """
        check_key_name(name)
        key = new_key()
        with self.store.transaction() as db:
            self.store.backend.serialize(db, "api_keys")  # replicas adding keys at once: one order, no lost name
            if open_mode:
                _check_first_key(db, role)
            # Names are unique ignoring case: ``Op`` beside a revoked ``op`` would read as the same person in the
            # audit log and the labels, and give a revoked name out again. lower() is ASCII in SQLite and
            # PostgreSQL alike, as a key's name is (NAME_RULE).
            row = db.execute("SELECT revoked, name FROM api_keys WHERE lower(name) = lower(?) ORDER BY seq LIMIT 1",
                             (name,)).fetchone()  # fmt: skip
            if row is not None:
                raise NameTakenError(_taken(name, str(row[1]), None if row[0] is None else str(row[0])))
            db.execute("INSERT INTO api_keys (name, role, digest, created, revoked, seq) VALUES (?, ?, ?, ?, NULL, "
                       "(SELECT COALESCE(MAX(seq), 0) + 1 FROM api_keys))",
                       (name, role.name, digest(key), _now()))  # fmt: skip
        return key

    def revoke(self, name: str, *, last_admin: bool = False) -> KeyInfo:
        """Revoke ``name``'s key; :class:`KeyError` if there is none, :class:`ConfigError` if it already is.

        The last admin key is refused (:class:`LastAdminError`) unless ``last_admin``: without one nobody can
        add or revoke keys through the API. Checked in the update's transaction, after
        :meth:`~eagle_iad.history.backend.HistoryBackend.serialize`, so two admins revoked at once (two
        replicas, the API and ``eagle keys``) cannot both pass a count taken before either was revoked.
        """
        with self.store.transaction() as db:
            self.store.backend.serialize(db, "api_keys")
            row = db.execute("SELECT revoked, role FROM api_keys WHERE name = ?", (name,)).fetchone()
            if row is None:
                raise KeyError(name)
            if row[0] is not None:
                raise ConfigError(f"key {name!r} was already revoked on {row[0]}")
            if row[1] == Role.admin.name and not last_admin:
                admins = db.execute("SELECT COUNT(*) FROM api_keys WHERE role = ? AND revoked IS NULL",
                                    (Role.admin.name,)).fetchone()  # fmt: skip
                if int(admins[0]) <= 1:
                    raise LastAdminError(f"{name!r} is the last admin key: add another admin first")
            db.execute("UPDATE api_keys SET revoked = ? WHERE name = ?", (_now(), name))
        return next(info for info in self.list() if info.name == name)

    def list(self) -> list[KeyInfo]:
        rows = self.store.read("SELECT name, role, created, revoked FROM api_keys ORDER BY seq")
        return [KeyInfo(str(n), str(r), str(c), None if v is None else str(v)) for n, r, c, v in rows]

    def lookup(self, key_digest: str) -> KeyRow | None:
        """The key with this digest, revoked or not (:func:`~eagle_iad.service.access.identify` says which)."""
        rows = self.store.read("SELECT name, role, revoked FROM api_keys WHERE digest = ?", (key_digest,))
        if not rows:
            return None
        name, role, revoked = rows[0]
        return KeyRow(str(name), Role[str(role)], None if revoked is None else str(revoked))

    def any_ever(self, wait_s: float | None = None) -> bool:
        """Whether any key was ever added, revoked ones included: once keys exist the service is never open
        again, so revoking the last key locks the door instead of opening it.

        A ``True`` is kept (key rows are never deleted, so it cannot turn ``False``): later calls, the
        public ``/healthz`` among them, then need no query. ``wait_s``: as :meth:`InspectionStore.read`'s
        (:class:`~eagle_iad.service.store.StoreBusyError` when the history stays busy longer).
        """
        if self._any_ever:
            return True
        self._any_ever = bool(self.store.read("SELECT 1 FROM api_keys LIMIT 1", wait_s=wait_s))
        return self._any_ever


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
