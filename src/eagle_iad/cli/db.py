"""``eagle db upgrade|status``: the history database's schema; and the flags every command that reads
the service's history shares (keys, review, teach, db), so each finds the history ``eagle serve`` uses.

Why an explicit upgrade when opening a history already migrates it: replicas sharing one PostgreSQL are
upgraded one at a time, and a plant's database administrator runs the migration once, before the new
version starts anywhere, rather than letting the first replica to start do it (docs/PLANT.md).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from eagle_iad.cli.flags import Subcommands
from eagle_iad.cli.printing import dumps

if TYPE_CHECKING:
    from eagle_iad.service.access import Role
    from eagle_iad.service.store import InspectionStore

#: Where ``eagle serve`` keeps its history when no flag says: ``<state-dir>/eagle.sqlite3``.
SQLITE_NAME = "eagle.sqlite3"


def add_history_flags(parser: argparse.ArgumentParser) -> None:
    """The flags that find the history ``eagle serve`` uses (the same flags as serve's)."""
    parser.add_argument("--models", help="the service's --models (its state folder: <models>/../eagle-service)")
    parser.add_argument("--state-dir", help="the service's --state-dir")
    parser.add_argument("--history", help="the service's --history: a database URL (postgresql://...) or an SQLite "
                        "file (default: <state-dir>/eagle.sqlite3)")  # fmt: skip
    parser.add_argument("--db", help=argparse.SUPPRESS)  # the earlier name of --history for an SQLite file
    parser.add_argument("--files", help="the service's --files (pictures; default: <state-dir>/files)")


def history_location(args: argparse.Namespace) -> str:
    """The history named by :func:`add_history_flags`' flags: a URL, or an SQLite file's path."""
    from eagle_iad.errors import ConfigError

    given = [value for value in (args.history, args.db) if value]
    if len(given) == 2:
        raise ConfigError("give the history once: --history (or its older name --db), not both")
    if given:
        return str(given[0])
    if args.state_dir:
        return str(Path(args.state_dir) / SQLITE_NAME)
    if args.models:
        return str(Path(args.models).parent / "eagle-service" / SQLITE_NAME)
    raise ConfigError("say where the service keeps its history: --models, --state-dir or --history, as eagle serve has")


def files_folder(args: argparse.Namespace) -> Path:
    """The service's pictures folder for :func:`add_history_flags`' flags: ``--files``, else
    ``<state-dir>/files``; with an SQLite ``--history`` alone, the folder beside it (the default layout)."""
    from eagle_iad.errors import ConfigError

    if args.files:
        return Path(args.files)
    if args.state_dir:
        return Path(args.state_dir) / "files"
    location = history_location(args)
    if args.models and not (args.history or args.db):
        return Path(args.models).parent / "eagle-service" / "files"
    if "://" in location:
        raise ConfigError("say where the service keeps its pictures: --files or --state-dir, as eagle serve has")
    return Path(location).parent / "files"


def state_folder(args: argparse.Namespace) -> Path | None:
    """The service's state folder for :func:`add_history_flags`' flags (``--state-dir``, else
    ``<models>/../eagle-service``, else the folder of an SQLite ``--history``); ``None`` for a database URL
    alone."""
    if args.state_dir:
        return Path(args.state_dir)
    if args.models and not (args.history or args.db):
        return Path(args.models).parent / "eagle-service"
    location = history_location(args)
    return None if "://" in location else Path(location).parent


def os_user() -> str:
    """The login name of who runs this command; ``uid N`` where there is none (a container's bare uid)."""
    import getpass

    from eagle_iad.naming import printable

    try:
        return printable(getpass.getuser())
    except (OSError, KeyError, ImportError):  # no LOGNAME/USER and no passwd entry
        return f"uid {os.getuid()}" if hasattr(os, "getuid") else "unknown"


def cli_actor(by: str | None = None) -> str:
    """Who a change made by a command here is recorded as (a label's ``label_by``, a model's ``fitted_by`` and
    the ``by`` of its threshold, teach and rollback entries): ``cli:<login name>``, the actor of the audit row
    :func:`cli_audit` writes, so the record never reads as a keyed user's (an API key's name cannot hold a
    colon). ``by`` (``--by``) is anyone's word, not a checked name: it is kept, marked as given, ``cli:root as
    boss``; left out, blank or the login name itself, the actor alone."""
    from eagle_iad.naming import printable

    user = os_user()
    given = printable((by or "").strip())
    return f"cli:{user}" if not given or given == user else f"cli:{user} as {given}"


def cli_audit(args: argparse.Namespace, store: InspectionStore, when: str, role: Role, method: str, route: str,
              path: str, status: int, detail: str, category: str | None = None) -> None:  # fmt: skip
    """The audit row the API route ``route`` writes, for the same change made by a command here (``eagle review
    label``, ``eagle keys add|revoke``): the same route, path and status, with the role the route needs, so the
    log reads alike whichever way a change was made. The actor is ``cli:<login name>`` (never an API key's name:
    a key's cannot hold a colon), and ``detail`` names the command. A busy history is waited for as the service
    waits; then the row is appended to the state folder's ``audit-pending.jsonl``, and the service moves it into
    the log: this process never drains that journal, which the service guards with locks only its own threads
    see. Without a state folder (a database URL alone) a row the log cannot take is a warning, never an error: the
    change is made (a key added, whose key must still be printed), and a failed exit would have it made again.
    ``category``: the category the change is of where ``path`` does not name it (:meth:`AuditLog.write`)."""
    from eagle_iad.service.access import Caller
    from eagle_iad.service.audit import PENDING, AuditLog

    folder = state_folder(args)
    journal = None if folder is None or not folder.is_dir() else folder / PENDING
    try:
        AuditLog(store, journal, drains=False).write(when, Caller(cli_actor(), role), method, route, path,
                                                     status, detail, category)  # fmt: skip
    except Exception as exc:
        print(f"eagle: warning: the change was made, but its audit row ({detail}) could not be written: {exc}",
              file=sys.stderr)  # fmt: skip


def open_history(args: argparse.Namespace) -> InspectionStore:
    """The service's history, which must exist already (an SQLite file is not created by a reader)."""
    from eagle_iad.service.store import InspectionStore

    location = history_location(args)
    must_exist(location)
    return InspectionStore(location)


def must_exist(location: str, hint: str = "") -> None:
    """Refuse a history that is not there: an SQLite file that does not exist, or a database (PostgreSQL) that
    exists but holds no EAGLE history. A reader, ``eagle keys`` or ``eagle db upgrade`` must not start an empty
    one by a typo: a key added there is one the running service never sees, and a mistyped database or file
    "upgraded" is a new, empty history. ``hint``: what to do instead (``--create``)."""
    from eagle_iad.errors import ConfigError
    from eagle_iad.history import open_backend
    from eagle_iad.history.schema import holds_history
    from eagle_iad.history.sqlite import SqliteHistory
    from eagle_iad.service.state_note import read_note

    backend = open_backend(location)
    if isinstance(backend, SqliteHistory):
        if not backend.path.is_file():
            # The file's folder is the state folder a --state-dir names: its service may keep the history elsewhere.
            note = read_note(backend.path.parent)
            if note is not None and Path(note.history) != backend.path:
                raise ConfigError(f"no history at {backend.path}: {note.said(backend.path.parent)}{hint}")
            raise ConfigError(f"no history at {backend.path}: has eagle serve run with these flags?{hint}")
        return
    db = backend.connect()
    try:
        held = holds_history(backend, db)
    finally:
        backend.close(db)
    if not held:
        raise ConfigError(f"{backend.describe()} holds no EAGLE history (the database is there, without its "
                          f"tables): has eagle serve run with these flags?{hint}")  # fmt: skip


#: What ``eagle db upgrade`` says to do with a history that is not there yet.
UPGRADE_CREATE_HINT = " (a new history: eagle db upgrade ... --create; eagle serve starts one too)"


def add_db(sub: Subcommands) -> None:
    db = sub.add_parser("db", help="the history database: migrate it to this version's schema, or show its version",
                        description="The history is an SQLite file (one service) or a PostgreSQL database (replicas; "
                        "docs/PLANT.md). Opening it migrates it too; 'eagle db upgrade' does it once, before the "
                        "replicas start.")  # fmt: skip
    actions = db.add_subparsers(dest="action", required=True)
    upgrade = actions.add_parser("upgrade", help="migrate the history to this version's schema (in one transaction)")
    status = actions.add_parser("status", help="the history's schema version and this version's (JSON)")
    upgrade.add_argument("--create", action="store_true",
                         help="start the history if there is none yet (a new, empty PostgreSQL database, before "
                         "any replica starts); without it a missing history is refused: a mistyped one is not "
                         "created")  # fmt: skip
    for parser, func in ((upgrade, _cmd_upgrade), (status, _cmd_status)):
        add_history_flags(parser)
        parser.set_defaults(func=func)


def _cmd_upgrade(args: argparse.Namespace) -> int:
    from eagle_iad.history import open_backend
    from eagle_iad.history.keep import keep_copy
    from eagle_iad.history.schema import upgrade

    location = history_location(args)
    if not args.create:
        must_exist(location, UPGRADE_CREATE_HINT)
    backend = open_backend(location)
    db = backend.connect()
    try:
        kept = keep_copy(backend, db)  # the way back, before the migration (history/keep.py)
        done = upgrade(backend, db)
    finally:
        backend.close(db)
    migrated = kept is not None and done.before is not None and done.before < done.after  # not by a replica meanwhile
    print(done.describe(backend.describe()) + (f"; {kept.said()}" if kept is not None and migrated else ""),
          file=sys.stderr)  # fmt: skip
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    from eagle_iad.history import open_backend
    from eagle_iad.history.schema import MIGRATIONS, SCHEMA_VERSION, missing, version

    location = history_location(args)
    must_exist(location, UPGRADE_CREATE_HINT)
    backend = open_backend(location)
    db = backend.connect()
    try:
        found = version(backend, db)
        lacking = missing(backend, db) if found == SCHEMA_VERSION else []  # older: the versions' steps say
    finally:
        backend.close(db)
    pending = [] if found is None or found >= SCHEMA_VERSION else list(range(found + 1, SCHEMA_VERSION + 1))
    # at this version, what the upgrade still adds (of no version of their own, like station_intake.files): one
    # entry without a version, so "pending" is empty only when 'eagle db upgrade' would change nothing
    unversioned = [{"version": None, "adds": "; ".join(f"{kind} {', '.join(names)}" for kind, names in lacking)}]
    print(dumps({"history": backend.describe(), "backend": backend.scheme, "schema": found,
                 "this_version_reads": SCHEMA_VERSION,
                 "pending": [{"version": v, "adds": MIGRATIONS[v]} for v in pending]
                 + (unversioned if lacking else [])}))  # fmt: skip
    return 0


#: The subcommands this module adds, by name (``eagle_iad.cli`` adds them in its fixed order).
COMMANDS: dict[str, Callable[[Subcommands], None]] = {"db": add_db}
