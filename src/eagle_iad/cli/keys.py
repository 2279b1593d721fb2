"""``eagle keys add|list|revoke``: the service's named API keys, each with a role (docs/SERVICE.md, "Users")."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

from eagle_iad.cli.db import add_history_flags, history_location, must_exist
from eagle_iad.cli.flags import Subcommands
from eagle_iad.cli.printing import dumps

if TYPE_CHECKING:
    from eagle_iad.service.keys import KeyTable
    from eagle_iad.service.store import InspectionStore


def add_keys(sub: Subcommands) -> None:
    keys = sub.add_parser("keys", help="the service's named API keys and their roles (viewer to admin)",
                          description="Keys live in the service's history file, as digests; a running service "
                          "sees a new or revoked key at its next request.")  # fmt: skip
    actions = keys.add_subparsers(dest="action", required=True)
    add = actions.add_parser("add", help="add a key: printed once, stored only as a digest")
    add.add_argument("name", help="who holds it (letters, digits, '_', '.', '-'): labels and the audit log show it")
    add.add_argument("--role", required=True, choices=["viewer", "operator", "engineer", "admin"],
                     help="viewer: read; operator: also inspect and label; engineer: also fit and thresholds; "
                     "admin: also keys and the audit log")  # fmt: skip
    add.add_argument("--create", action="store_true",
                     help="start the history if there is none yet (a new service's first key, before "
                     "eagle serve first runs); without it a missing history is refused: "
                     "a mistyped folder gets no key")  # fmt: skip
    listing = actions.add_parser("list", help="every key (never the key itself), revoked ones with the time (JSON)")
    revoke = actions.add_parser("revoke", help="revoke a key: refused from its next request on")
    revoke.add_argument("name")
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
    finally:
        store.close()
    print(key)
    print(f"eagle keys: added {args.name!r} ({args.role}); the key above is shown only now", file=sys.stderr)
    return 0


def _cmd_list(args: argparse.Namespace) -> int:
    store, table = _table(args)
    try:
        print(dumps([info.to_dict() for info in table.list()]))
    finally:
        store.close()
    return 0


def _cmd_revoke(args: argparse.Namespace) -> int:
    from eagle_iad.errors import ConfigError

    store, table = _table(args)
    try:
        info = table.revoke(args.name)
    except KeyError:
        raise ConfigError(f"no key named {args.name!r} (eagle keys list shows them)") from None
    finally:
        store.close()
    print(dumps(info.to_dict()))
    return 0


COMMANDS: dict[str, Callable[[Subcommands], None]] = {"keys": add_keys}
