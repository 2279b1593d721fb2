"""``/v1/me``, ``/v1/keys`` and ``/v1/audit``: who is signed in, the named keys, and who changed what.

The console asks ``/v1/me`` to show who is signed in and to hide what the role cannot do (the service
refuses it anyway: 403). Keys are added and revoked here by an admin, or with ``eagle keys`` on the
service's machine; a new key is shown once, in the answer that creates it.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, ConfigDict, Field

from eagle_iad.errors import ConfigError
from eagle_iad.mllm.serving import ApiError
from eagle_iad.service import schemas
from eagle_iad.service.access import ADMIN, ENGINEER, ROLE_HELP, VIEWER, Role, audit_detail, caller
from eagle_iad.service.context import require_key, service
from eagle_iad.service.keys import FirstKeyError, LastAdminError, NameTakenError, parse_role
from eagle_iad.service.security import check_name

router = APIRouter(prefix="/v1", dependencies=[Depends(require_key)], responses=schemas.ERROR_RESPONSES)

RoleName = Literal["viewer", "operator", "engineer", "admin"]


class Me(BaseModel):
    """The caller: the key's name and role, what the role may do, and whether the service is open."""

    name: str
    role: RoleName
    open: bool = Field(description="no keys at all: one local user with every role")
    may: list[RoleName] = Field(description="this role and every role below it")
    roles: dict[str, str] = Field(description="every role and what it may do")


class KeyInfo(BaseModel):
    name: str
    role: RoleName
    created: str
    revoked: str | None


class KeyList(BaseModel):
    keys: list[KeyInfo]


class NewKey(BaseModel):
    """``POST /v1/keys``: a name (letters, digits, '_', '.', '-') and a role."""

    model_config = ConfigDict(extra="forbid", strict=True)
    name: str = Field(min_length=1, max_length=64)
    role: RoleName


class CreatedKey(KeyInfo):
    key: str = Field(description="the key itself: shown this once, stored only as a digest")


class AuditRow(BaseModel):
    seq: int
    time: str
    actor: str
    role: str
    method: str
    route: str
    path: str
    status: int
    detail: str | None = Field(description="what changed, where the route says it (label normal, tau 123.0: why)")


class AuditPage(BaseModel):
    total: int
    items: list[AuditRow]
    next_offset: int | None


@router.get("/me", dependencies=VIEWER, response_model=Me)
def me(request: Request) -> dict[str, Any]:
    """Who this key is and what its role may do."""
    who = caller(request)
    return {"name": who.name, "role": who.role.name, "open": who.open,
            "may": [role.name for role in Role if role <= who.role],
            "roles": {role.name: text for role, text in ROLE_HELP.items()}}  # fmt: skip


@router.get("/keys", dependencies=ADMIN, response_model=KeyList)
def list_keys(request: Request) -> dict[str, Any]:
    """Every key ever added (revoked ones with the time), never the keys themselves."""
    return {"keys": [info.to_dict() for info in service(request).keys.list()]}


@router.post("/keys", dependencies=ADMIN, status_code=201, response_model=CreatedKey)
def add_key(body: NewKey, request: Request) -> dict[str, Any]:
    """A new named key with a role; the answer holds the key, which is not stored and cannot be shown again."""
    # In the open mode (no keys yet, no EAGLE_API_KEY) the only key that may be added is the first, an admin:
    # checked in the insert's own transaction (keys.py), so two first keys at once cannot both pass.
    table = service(request).keys
    try:
        key = table.add(body.name, parse_role(body.role), open_mode=caller(request).open)
    except FirstKeyError as exc:
        status = 401 if exc.code == "service_not_open" else 409  # no longer open: this caller needs a key now
        raise ApiError(status, str(exc), code=exc.code) from None
    except NameTakenError as exc:  # a name in use, or used before, in any case
        raise ApiError(409, str(exc), code="key_exists") from None
    except ConfigError as exc:
        raise ApiError(400, str(exc), code="invalid_name") from None
    info = next(info for info in table.list() if info.name == body.name)
    audit_detail(request, f"added {body.name} ({body.role})")
    return {**info.to_dict(), "key": key}


@router.delete("/keys/{name}", dependencies=ADMIN, response_model=KeyInfo)
def revoke_key(name: str, request: Request) -> dict[str, Any]:
    """Revoke a key: its next request is refused (401). Its row stays, so the audit log keeps its name.

    The last admin key is not revoked here (409): nobody could then add or revoke keys through the API;
    ``eagle keys revoke --last-admin`` on the service's machine can (checked in the revoke's transaction)."""
    table = service(request).keys
    try:
        info = table.revoke(name)
    except KeyError:
        raise ApiError(404, "no key with that name", code="not_found") from None
    except LastAdminError as exc:
        raise ApiError(409, str(exc), code="last_admin") from None
    except ConfigError as exc:
        raise ApiError(409, str(exc), code="already_revoked") from None
    audit_detail(request, f"revoked {name} ({info.role})")
    return info.to_dict()


#: Largest page offset (SQLite's integers are signed 64-bit).
MAX_OFFSET = 2**62


#: Who reads the audit log: an engineer (a shift's supervisor) as well as an admin. Reading it is how a shift is
#: reconstructed (who labelled, taught, moved a threshold, rolled back); managing keys stays the admin's.
AUDIT_READERS = ENGINEER

#: ``?category=``: the category's rows (its threshold, teaches, rollbacks, fit, retirement, and the labels and
#: deletions of its inspections), by the category each row keeps (``audit._where``).
CATEGORY_FILTER = Query(None, max_length=64, description="the category's rows: its own routes' "
                        "(/v1/categories/NAME…) and the labels and deletions of its inspections")  # fmt: skip


def _category(category: str | None) -> str | None:
    return None if category is None else check_name(category)


@router.get("/audit", dependencies=AUDIT_READERS, response_model=AuditPage)
def audit(
    request: Request, limit: int = Query(50, ge=1, le=500), offset: int = Query(0, ge=0, le=MAX_OFFSET),
    actor: str | None = Query(None, max_length=64), category: str | None = CATEGORY_FILTER,
) -> dict[str, Any]:  # fmt: skip
    """Every change made through the API, newest first: who (key name and role), when, which route (engineer)."""
    total, items = service(request).audit.page(limit, offset, actor, _category(category))
    return {"total": total, "items": items, "next_offset": offset + limit if offset + limit < total else None}


CSV_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/csv": {}}, "description": "the whole audit log, oldest first"}
}


@router.get("/audit.csv", dependencies=AUDIT_READERS, response_class=PlainTextResponse, responses=CSV_RESPONSE)
def audit_csv(
    request: Request, actor: str | None = Query(None, max_length=64), category: str | None = CATEGORY_FILTER
) -> PlainTextResponse:
    """The audit log as CSV (a field a spreadsheet would run as a formula is defused; engineer)."""
    text = service(request).audit.csv(actor, _category(category))
    return PlainTextResponse(text, media_type="text/csv; charset=utf-8",
                             headers={"Content-Disposition": 'attachment; filename="eagle-audit.csv"'})  # fmt: skip
