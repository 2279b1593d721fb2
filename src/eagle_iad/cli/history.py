"""``eagle history delete|prune``: remove one inspection, or the old ones, from the service's history and its pictures.

The same removal as ``DELETE /v1/inspections/{id}`` (service/retention.py: for one, the pictures first, then the
record; for a prune, the unlabelled records, then their pictures), for a shell or a cron line; both work beside a
running service, on SQLite as on a PostgreSQL shared by replicas (a prune works in short batches). ``eagle history
delete`` is audited as the route is, by ``cli:<login>``; a prune that removed something writes one audit row too
(:data:`PRUNE_ROUTE`), saying what it was asked and what it removed, so a supervisor reading the log sees that
inspections went, and who removed them; also a prune that stopped part-way (an error, SIGTERM, Ctrl-C: its
finished batches are removed for good), whose row says what it had removed and ``stopped early: <why>``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from contextlib import suppress
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from eagle_iad.cli.db import add_history_flags, cli_audit, files_folder, open_history
from eagle_iad.cli.flags import Subcommands
from eagle_iad.cli.printing import dumps

if TYPE_CHECKING:
    from eagle_iad.service.retention import PruneProgress
    from eagle_iad.service.store import InspectionStore

#: The API route ``eagle history delete`` stands for: its audit row reads as the API's (``GET /v1/audit``).
DELETE_ROUTE = "/v1/inspections/{inspection_id}"
#: The audit row's route (and path) of a prune: no API route prunes, so the row names the command, as a person
#: would type it; its method is a delete's, its role the admin's a delete needs.
PRUNE_ROUTE = "eagle history prune"


def add_history(sub: Subcommands) -> None:
    history = sub.add_parser("history", help="remove an inspection, or the old ones, from the history and its pictures",
                             description="Removes inspections from the history eagle serve and eagle station keep, "
                             "with their pictures (heatmap, boxed picture, the kept upload). "
                             "Safe beside a running service.")  # fmt: skip
    actions = history.add_subparsers(dest="action", required=True)
    delete = actions.add_parser("delete", help="delete one inspection: its pictures, its record, its label (audited)",
                                description="For an image that must not be kept (a person in frame, a customer's "
                                "part photographed by mistake); audited as DELETE /v1/inspections/ID.")  # fmt: skip
    delete.add_argument("inspection", help="the inspection's id (the console and GET /v1/inspections show it)")
    delete.add_argument("--why", default=None, help="why it is deleted (kept in the audit row)")
    prune = actions.add_parser("prune", help="remove inspections (or only their pictures) older than some days",
                               description="Says what it removes (inspections, files, bytes), then removes it, in "
                               "short batches; running it again removes nothing more. Labelled inspections "
                               "are kept (an operator's correction is training evidence) unless "
                               "--include-labelled.")  # fmt: skip
    prune.add_argument("--older-than", type=float, required=True, metavar="DAYS",
                       help="inspected more than this many days ago")  # fmt: skip
    prune.add_argument("--pictures-only", action="store_true",
                       help="remove only their pictures and kept uploads; the records (verdicts, scores, labels) stay, "
                       "each saying its pictures were removed")  # fmt: skip
    prune.add_argument("--category", default=None, help="only this category's inspections")
    prune.add_argument(
        "--include-labelled",
        action="store_true",
        help="remove labelled inspections too (kept by default: they are training evidence)",
    )
    prune.add_argument("--dry-run", action="store_true", help="say what it would remove, and remove nothing")
    for parser, func in ((delete, _cmd_delete), (prune, _cmd_prune)):
        add_history_flags(parser)
        parser.set_defaults(func=func)


def _cmd_delete(args: argparse.Namespace) -> int:
    from eagle_iad.errors import ConfigError
    from eagle_iad.service.access import Role
    from eagle_iad.service.retention import delete_inspection, files_dir_problem
    from eagle_iad.service.schemas import plain_text

    try:  # what the API refuses in a why, refused here too (control characters), before anything is removed
        reason = " ".join(plain_text(args.why or "").split())
    except ValueError as exc:
        raise ConfigError(f"--why: {exc}") from None
    files = files_folder(args)
    store = open_history(args)
    try:
        found = store.get(args.inspection)
        if found is not None and (problem := files_dir_problem(files, found)) is not None:
            raise ConfigError(problem)
        try:
            deleted = delete_inspection(store, files, args.inspection)
        except OSError as exc:
            raise ConfigError(f"inspection {args.inspection}: its pictures under {files} could not be removed "
                              f"({exc}); nothing was deleted, its record is kept") from None  # fmt: skip
        if deleted is None:
            raise ConfigError(f"no inspection {args.inspection!r} in the history; nothing was deleted")
        record, removed = deleted
        detail = (
            f"deleted inspection {record.id} of {record.category} ({record.image_name}; {removed.files} "
            f"files, {removed.bytes} bytes)" + (f": {reason}" if reason else "") + " (eagle history delete)"
        )
        cli_audit(args, store, datetime.now(UTC).isoformat(timespec="milliseconds"), Role.admin, "DELETE",
                  DELETE_ROUTE, DELETE_ROUTE.replace("{inspection_id}", record.id), 200, detail,
                  category=record.category)  # fmt: skip
    finally:
        store.close()
    print(dumps({"id": record.id, "category": record.category, "image_name": record.image_name,
                 "files_removed": removed.files, "bytes_removed": removed.bytes}))  # fmt: skip
    return 0


def _cmd_prune(args: argparse.Namespace) -> int:
    from eagle_iad.errors import ConfigError
    from eagle_iad.naming import category_name_problem, printable
    from eagle_iad.service.retention import PruneProgress, describe_prune, prune
    from eagle_iad.stops import Stopped

    if args.category is not None and (problem := category_name_problem(args.category)) is not None:
        raise ConfigError(f"--category: {problem}")
    files = files_folder(args)
    store = open_history(args)
    progress = PruneProgress()
    report: dict[str, Any] | None = None
    stopped = "it did not finish"  # replaced by what stopped it, or cleared when it returns
    try:
        report = prune(store, files, args.older_than, category=args.category, pictures_only=args.pictures_only,
                       labelled=args.include_labelled, dry_run=args.dry_run, progress=progress)  # fmt: skip
        stopped = ""
    except Stopped as stop:
        stopped = f"stopped by {stop.signal_name}"
        raise
    except BaseException as exc:
        stopped = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        raise
    finally:
        # Whatever ended it: each batch committed for good, so what went is audited even when the prune did not
        # finish (an error, SIGTERM, Ctrl-C), never only after it returned.
        try:
            if not args.dry_run and stopped:
                with suppress(Exception):  # the history away: what was counted is audited (if it can be)
                    progress.settle(store)  # a batch written and not yet counted when it stopped
            if not args.dry_run and progress.anything:
                _audit_prune(args, store, progress, report, stopped)
                if stopped:
                    print(f"eagle history prune: stopped early ({printable(stopped)}) after it removed "
                          f"{progress.inspections} inspection(s), {progress.files} files, {progress.bytes} bytes "
                          "(audited); running it again removes the rest", file=sys.stderr)  # fmt: skip
        finally:
            store.close()
    assert report is not None  # prune returned
    print(f"eagle history prune: {describe_prune(report)}", file=sys.stderr)
    print(dumps(report))
    return 0


def _audit_prune(args: argparse.Namespace, store: InspectionStore, progress: PruneProgress,
                 report: dict[str, Any] | None, stopped: str) -> None:  # fmt: skip
    """One audit row for a prune that removed something (:func:`~eagle_iad.cli.db.cli_audit`: by ``cli:<login>``,
    as ``eagle history delete``): what it was asked (the days and the cut-off they made, the category, pictures
    only, labelled included) and what it removed. One row per prune, never per inspection (a nightly prune of
    thousands would bury the log); a dry run, or a prune that found nothing, changed nothing and writes none.
    ``stopped``: why it did not finish (then ``report`` is ``None``: the labelled ones it kept were never
    counted), written as ``stopped early: <why>`` after the counts of what it had removed by then."""
    from eagle_iad.service.access import Role

    scope = f"category {args.category}" if args.category is not None else "every category"
    ending = f"stopped early: {stopped}" if stopped or report is None else f"{report['labelled_kept']} labelled kept"
    detail = (
        f"pruned inspections older than {args.older_than:g} days (inspected before {progress.older_than}), {scope}, "
        f"{'pictures only' if args.pictures_only else 'records and pictures'}, labelled "
        f"{'included' if args.include_labelled else 'kept'}: {progress.inspections} inspection(s), "
        f"{progress.picture_folders} picture folder(s), {progress.files} files, {progress.bytes} bytes removed; "
        f"{ending} (eagle history prune)"
    )
    cli_audit(args, store, datetime.now(UTC).isoformat(timespec="milliseconds"), Role.admin, "DELETE", PRUNE_ROUTE,
              PRUNE_ROUTE, 200, detail, category=args.category)  # fmt: skip


#: The subcommands this module adds, by name (``eagle_iad.cli`` adds them in its fixed order).
COMMANDS: dict[str, Callable[[Subcommands], None]] = {"history": add_history}
