"""Who is calling and what they may do: named API keys with roles, checked per route.

Why: one shared key let anyone who could inspect also move a threshold or delete a station, and a label
or a threshold change recorded no person. Now each key has a name and a role, and every route declares
the least role it needs with :func:`requires`; ``tests/test_access.py`` walks every route of the app, so
a route added without a role fails the suite instead of being open to every key.

The roles, each allowed what the one before it is, plus:

- ``viewer``: read: categories, history, pictures, evaluations, dashboards, stations, metrics;
- ``operator``: inspect, label inspections, pause, resume and trigger stations, retry dead letters;
- ``engineer``: fit, change a threshold, create and delete stations, read the audit log (a shift's supervisor
  reconstructs who labelled, taught or changed what; keys stay the admin's);
- ``admin``: add and revoke keys.

Where callers come from, first match wins: a key from the key table (``eagle keys add``; stored as a
SHA-256 digest, never the key), the single ``EAGLE_API_KEY`` of earlier versions (an admin named
``EAGLE_API_KEY``), or, when neither exists, the open local mode: one user, named ``local``, with every
role, as before (``eagle serve`` warns when that is not on loopback). Once a key was ever added the service
is never open again: revoking every key locks it (``eagle keys add`` on its machine opens it to a new key).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, Protocol

from fastapi import Depends, Request

from eagle_iad.errors import HistoryUnavailableError
from eagle_iad.history.backend import short_connects
from eagle_iad.mllm.serving import ApiError
from eagle_iad.naming import printable


class Role(IntEnum):
    """Ordered: a role may do everything the roles below it may."""

    viewer = 1
    operator = 2
    engineer = 3
    admin = 4

    @property
    def with_article(self) -> str:
        """The role's name after its indefinite article ("an operator", "a viewer"), for messages that say what
        someone is: formatted as "a {name}", three of the four roles read "a operator"."""
        return ("an " if self.name[0] in "aeiou" else "a ") + self.name


ROLE_HELP = {
    Role.viewer: "read: categories, history, pictures, evaluations, dashboards, stations, metrics",
    Role.operator: "also inspect, label, pause/resume/trigger stations, retry dead letters",
    Role.engineer: "also fit, teach, change thresholds, roll a model back, create, change and delete stations, "
    "read the audit log",
    Role.admin: "also add and revoke keys, delete an inspection, retire a category",
}

#: The caller's name in the open local mode (no keys at all).
LOCAL = "local"
#: The name the single key of ``EAGLE_API_KEY`` goes by.
ENV_KEY_NAME = "EAGLE_API_KEY"
#: The name an open-mode change records when the request names no one (a threshold, teach or rollback).
API_NAME = "api"
#: A key's prefix: tells an EAGLE key apart in a config file or a leaked log.
KEY_PREFIX = "eagle_"


@dataclass(frozen=True)
class Caller:
    """Who is calling: the key's name, its role, and whether the service is open (no keys at all)."""

    name: str
    role: Role
    open: bool = False


def new_key() -> str:
    """A fresh API key: 256 random bits, URL-safe."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def digest(key: str) -> str:
    """What the key table stores: the key's SHA-256. A key has 256 random bits, so a fast hash is enough
    (a slow password hash guards low-entropy secrets); the key itself is shown once and never stored."""
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()


def offered_key(request: Request) -> str | None:
    """``Authorization: Bearer <key>`` or ``X-API-Key: <key>``; ``None`` when neither is sent."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return request.headers.get("x-api-key") or None


@dataclass(frozen=True)
class KeyRow:
    """A key found by its digest: its name, role, and when it was revoked (``None``: it is not)."""

    name: str
    role: Role
    revoked: str | None


#: Looks a key's digest up: the key's row, revoked or not, else ``None`` (one query either way).
KeyLookup = Callable[[str], KeyRow | None]


def identify(request: Request, env_key: str | None, lookup: KeyLookup, any_keys: Callable[[], bool]) -> Caller:
    """The caller of ``request``, or 401 when keys exist and none of them was sent.

    A revoked key is told so, and when (``revoked_api_key``), which spares its holder hunting a typo; not whose
    it was: keys are revoked because they leaked, and a leaked key's holder must not learn whose it was. Any
    other key sent is told only that it is missing or wrong (``invalid_api_key``), so a guess learns nothing.
    """
    offered = offered_key(request)
    if offered is not None:
        found = lookup(digest(offered))
        if found is not None and found.revoked is None:
            return Caller(found.name, found.role)
        if env_key is not None and hmac.compare_digest(offered.encode(), env_key.encode()):
            return Caller(ENV_KEY_NAME, Role.admin)
        if found is not None:
            raise ApiError(401, f"this key was revoked at {found.revoked}; ask an admin for a new key",
                           code="revoked_api_key")  # fmt: skip
    elif env_key is None and not any_keys():
        return Caller(LOCAL, Role.admin, open=True)
    raise ApiError(401, "missing or wrong API key (send Authorization: Bearer <key>)", code="invalid_api_key")


class _Keys(Protocol):
    def lookup(self, key_digest: str) -> KeyRow | None: ...
    def any_ever(self, wait_s: float | None = None) -> bool: ...


def caller(request: Request) -> Caller:
    """Who sent ``request`` (401 when keys exist and none was sent); worked out once per request from the
    app's service state (its ``settings.api_key`` and key table)."""
    known = getattr(request.state, "caller", None)
    if isinstance(known, Caller):
        return known
    state = request.app.state.service
    keys: _Keys = state.keys
    who = identify(request, state.settings.api_key, keys.lookup, keys.any_ever)
    request.state.caller = who
    return who


#: How long ``/metrics`` still answers, while the history (which holds the key table) is unavailable, a caller it
#: identified before the outage: an alerting system must be able to scrape ``eagle_history_up 0`` exactly then.
METRICS_GRACE_S = 900.0

#: The connect timeout (seconds) of every connection to the history that ``/metrics`` opens (the key check, the
#: history's gauge), where requests wait 10 s (history/postgresql.py, ``CONNECT_TIMEOUT_S``): a scrape during an
#: unreachable PostgreSQL answers within a few seconds, inside Prometheus' default 10 s scrape timeout, with
#: ``eagle_history_up 0``, instead of after 30-40 s of one full timeout per reader. 2 is libpq's least.
METRICS_CONNECT_TIMEOUT_S = 2.0


def _history_outage(exc: BaseException) -> bool:
    """``exc`` says the history cannot be reached now (the service's 503 ``history_unavailable``)."""
    if isinstance(exc, HistoryUnavailableError):
        return True
    try:
        import psycopg
    except ImportError:  # no PostgreSQL driver: no PostgreSQL history
        return False
    return isinstance(exc, psycopg.OperationalError)


class MetricsCallers:
    """The callers ``/metrics`` identified lately, by key digest (``None``: the open mode), so that a scrape during a
    history outage is answered (viewer data: the figures, nothing else) instead of 503 like every other route.

    Only a key that was checked against the key table within :data:`METRICS_GRACE_S` is taken, and only while
    the key table cannot be read: a key revoked during the outage (through a replica that still reaches the
    database) reads this replica's figures for that long at most. The open mode's entry is dropped once a key
    was seen, so a service that has keys is never open, even in an outage.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seen: dict[str | None, tuple[Caller, float]] = {}

    def identify(self, request: Request) -> Caller:
        offered = offered_key(request)
        slot = None if offered is None else digest(offered)
        try:
            who = caller(request)
        except Exception as exc:
            if not _history_outage(exc):
                with self._lock:  # refused (revoked, unknown, its role lowered): not answered in a later outage
                    self._seen.pop(slot, None)
                raise
            with self._lock:
                seen = self._seen.get(slot)
            if seen is None or time.monotonic() - seen[1] > METRICS_GRACE_S:
                raise
            request.state.caller = seen[0]
            return seen[0]
        with self._lock:
            self._seen[slot] = (who, time.monotonic())
            if not who.open:
                self._seen.pop(None, None)
        return who


def metrics_caller(request: Request) -> Caller:
    """``/metrics``'s dependency: :func:`caller`, which during a history outage remembers (:class:`MetricsCallers`)."""
    callers: MetricsCallers = request.app.state.service.metrics_callers
    with short_connects(METRICS_CONNECT_TIMEOUT_S):
        return callers.identify(request)


def still_allowed(request: Request, role: Role) -> Callable[[], bool]:
    """For an answer that outlives its request (a live feed): whether ``request``'s caller still may have it.

    The route's check ran once, when the stream opened; a feed stays open for hours, so it asks this at
    each poll and ends once the key is revoked (or the role no longer allows ``role``, or keys were added
    since the open mode let it in). Blocking (it reads the key table): call it in a thread.
    """
    state = request.app.state.service
    keys: _Keys = state.keys

    def check() -> bool:
        try:
            who = identify(request, state.settings.api_key, keys.lookup, keys.any_ever)
        except ApiError:
            return False
        return who.role >= role

    return check


def requires(role: Role, *, audited: bool = True) -> Any:
    """A route's access rule: callers below ``role`` get 403 naming who they are and what is needed.

    ``audited``: a successful write (any method but GET) through this route is written to the audit log
    with the caller's name (:mod:`eagle_iad.service.audit`); inspections are not (they are the history).
    """

    def check(request: Request) -> Caller:
        who = caller(request)
        if who.role < role:
            raise ApiError(
                403,
                f"{who.name} is {who.role.with_article}; this needs the {role.name} role or above",
                type_="permission_error",
                code="forbidden",
            )
        request.state.audited = audited
        return who

    check.role = role  # type: ignore[attr-defined]  # read by the route walk in tests/test_access.py
    return Depends(check)


def audit_detail(request: Request, text: str, category: str | None = None) -> None:
    """What a change did, in a few words, for its audit row ("label normal", "tau 123.0", "added anna
    (operator)"): the route and path say where, this says what. Up to :data:`MAX_AUDIT_DETAIL` characters: room
    for a person's 500-character note or why beside what it replaced (a relabel keeps the previous label and its
    note there, a forced teach each check it overrode). ``category``: the category the change is of where the
    path does not name it (a label or deletion of one of its inspections), so ``GET /v1/audit?category=`` lists
    it; a path under ``/v1/categories/{name}`` says it already."""
    request.state.audit_detail = text[:MAX_AUDIT_DETAIL]
    if category is not None:
        request.state.audit_category = category


#: The longest audit detail kept, in characters.
MAX_AUDIT_DETAIL = 2000


def route_role(dependencies: list[Any]) -> Role | None:
    """The role a route's dependencies require (``None``: none declared); for the route walk and the docs."""
    roles = [getattr(d.call, "role", None) for d in dependencies]
    found = [r for r in roles if isinstance(r, Role)]
    return found[0] if len(found) == 1 else None


#: The routes' ``dependencies=``: one per role (inspections, the history's own rows, are not audited).
VIEWER = [requires(Role.viewer)]
OPERATOR = [requires(Role.operator)]
ENGINEER = [requires(Role.engineer)]
ADMIN = [requires(Role.admin)]
INSPECTING = [requires(Role.operator, audited=False)]


def acting_name(request: Request, claimed: str | None, default: str) -> str:
    """Who a write records: the key's name. Only in the open local mode (one user, no keys) may the request
    name someone (``claimed``, else ``default``); a keyed caller cannot record another name."""
    who = caller(request)
    return (printable((claimed or "").strip()) or default) if who.open else who.name
