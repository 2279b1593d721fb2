"""``eagle keys add|list|revoke``: the service's named API keys, each with a role (docs/SERVICE.md, "Users")."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

from eagle_iad.cli.db import add_history_flags, cli_audit, history_location, must_exist
from eagle_iad.cli.flags import Subcommands
from eagle_iad.cli.printing import dumps

if TYPE_CHECKING:
    from eagle_iad.service.keys import KeyTable
    from eagle_iad.service.store import InspectionStore

#: ``--role``'s help: the roles table of ``eagle_iad.service.access.ROLE_HELP`` (and docs/SERVICE.md), written out
#: here because importing it would load the web framework for every ``eagle`` command; a test keeps the two equal.
ROLE_FLAG_HELP = (
    "viewer: read: categories, history, pictures, evaluations, dashboards, stations, metrics; "
    "operator: also inspect, label, pause/resume/trigger stations, retry dead letters; "
    "engineer: also fit, teach, change thresholds, roll a model back, create, change and delete stations, "
    "read the audit log; "
    "admin: also add and revoke keys, delete an inspection, retire a category"
)


def add_keys(sub: Subcommands) -> None:
    keys = sub.add_parser("keys", help="the service's named API keys and their roles (viewer to admin)",
                          description="Keys live in the service's history file, as digests; a running service "
                          "sees a new or revoked key at its next request.")  # fmt: skip
    actions = keys.add_subparsers(dest="action", required=True)
    add = actions.add_parser("add", help="add a key: printed once, stored only as a digest")
    add.add_argument("name", help="who holds it (letters, digits, '_', '.', '-'): labels and the audit log show it")
    add.add_argument("--role", required=True, choices=["viewer", "operator", "engineer", "admin"], help=ROLE_FLAG_HELP)
    add.add_argument("--create", action="store_true",
                     help="start the history if there is none yet (a new service's first key, before "
                     "eagle serve first runs); without it a missing history is refused: "
                     "a mistyped folder gets no key")  # fmt: skip
    listing = actions.add_parser("list", help="every key (never the key itself), revoked ones with the time (JSON)")
    revoke = actions.add_parser("revoke", help="revoke a key: refused from its next request on")
    revoke.add_argument("name")
    revoke.add_argument("--last-admin", action="store_true",
                        help="revoke it even if it is the last admin key (a leaked one: nobody can then add or "
                        "revoke keys through the API until 'eagle keys add NAME --role admin' here adds an "
                        "admin); without it the last admin key is refused, as the API refuses it")  # fmt: skip
    for parser, func in ((add, _cmd_add), (listing, _cmd_list), (revoke, _cmd_revoke)):
        add_history_flags(parser)
        parser.set_defaults(func=func)


def _table(args: argparse.Namespace) -> tuple[InspectionStore, KeyTable]:
    """The key table in the history file ``eagle serve`` uses with the same flags, which must exist unless
    ``keys add --create`` says to start it (a key in a new history by a mistyped folder would be one the
    running service never accepts)."""
    from eagle_iad.service.keys import KeyTable
    from eagle_iad.service.store import InspectionStore

    location = history_location(args)
    if not getattr(args, "create", False):
        hint = " (a new service's first key: eagle keys add ... --create)" if args.func is _cmd_add else ""
        must_exist(location, hint)
    store = InspectionStore(location)
    return store, KeyTable(store)


def _cmd_add(args: argparse.Namespace) -> int:
    from eagle_iad.service.keys import parse_role

    store, table = _table(args)
    try:
        key = table.add(args.name, parse_role(args.role))
        _audit(args, store, "POST", "/v1/keys", "/v1/keys", 201, f"added {args.name} ({args.role}) (eagle keys add)")
    finally:
        store.close()
    print(key)
    print(f"eagle keys: added {args.name!r} ({args.role}); the key above is shown only now", file=sys.stderr)
    return 0


def _audit(args: argparse.Namespace, store: InspectionStore, method: str, route: str, path: str, status: int,
           detail: str) -> None:  # fmt: skip
    """The audit row the API's key route writes for the same change (``POST /v1/keys``, ``DELETE
    /v1/keys/{name}``, with the admin role they need), by ``cli:<login name>``: a key added or revoked here is
    in ``GET /v1/audit`` as one added or revoked through the API is (:func:`~eagle_iad.cli.db.cli_audit`)."""
    from datetime import UTC, datetime

    from eagle_iad.service.access import Role

    when = datetime.now(UTC).isoformat(timespec="milliseconds")
    cli_audit(args, store, when, Role.admin, method, route, path, status, detail)


def _cmd_list(args: argparse.Namespace) -> int:
    store, table = _table(args)
    try:
        print(dumps([info.to_dict() for info in table.list()]))
    finally:
        store.close()
    return 0


def _cmd_revoke(args: argparse.Namespace) -> int:
    """Revoke a key. The last admin key is refused in the API's words, as ``DELETE /v1/keys/{name}`` refuses it
    (409 ``last_admin``), unless ``--last-admin``: a mistyped name must not leave the service without anyone
    who can manage keys through the API, while a leaked last admin key can still be revoked at once (this
    command is the way back: ``eagle keys add`` here adds an admin whatever the API has)."""
    from eagle_iad.errors import ConfigError
    from eagle_iad.service.keys import LastAdminError

    store, table = _table(args)
    try:
        info = table.revoke(args.name, last_admin=args.last_admin)
        last = (
            args.last_admin
            and info.role == "admin"
            and not any(k.role == "admin" and k.revoked is None for k in table.list())
        )
        detail = f"revoked {args.name} ({info.role}) (eagle keys revoke{' --last-admin' if last else ''})"
        _audit(args, store, "DELETE", "/v1/keys/{name}", f"/v1/keys/{args.name}", 200, detail)
    except KeyError:
        raise ConfigError(f"no key named {args.name!r} (eagle keys list shows them)") from None
    except LastAdminError as exc:
        raise ConfigError(f"{exc} (eagle keys add NAME --role admin), or give --last-admin to revoke it anyway: "
                          "nobody can then add or revoke keys through the API until eagle keys add adds an admin "
                          "here") from None  # fmt: skip
    finally:
        store.close()
    print(dumps(info.to_dict()))
    if last:
        print(f"eagle keys: warning: {args.name!r} was the last admin key: nobody can add or revoke keys through the "
              "API until 'eagle keys add NAME --role admin' here adds one", file=sys.stderr)  # fmt: skip
    return 0


COMMANDS: dict[str, Callable[[Subcommands], None]] = {"keys": add_keys}
