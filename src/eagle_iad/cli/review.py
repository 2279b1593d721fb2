"""``eagle review list|label``: the review queue from a terminal (docs/SERVICE.md, "Review").

The queue is the service's (eagle_iad/review.py says what enters it and why); this reads and labels the
same history file ``eagle serve`` uses, so a shift can work through it without the console, and a
running service sees each label at once (the history is one SQLite file in WAL mode).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from eagle_iad.cli.db import add_history_flags, cli_actor, cli_audit, history_location, open_history, os_user
from eagle_iad.cli.flags import Subcommands
from eagle_iad.cli.printing import dumps
from eagle_iad.history.backend import redact
from eagle_iad.naming import printable
from eagle_iad.review import LABEL_WORDS, model_names, unknown_category

if TYPE_CHECKING:
    from eagle_iad.service.store import Inspection, InspectionStore

#: What a reviewer may say a part was (the API's words): "defective" is stored as "anomalous".
VERDICTS = LABEL_WORDS
#: The API route a CLI label stands for: its audit row reads as the API's (``GET /v1/audit``).
LABEL_ROUTE = "/v1/inspections/{inspection_id}/label"


def add_review(sub: Subcommands) -> None:
    review = sub.add_parser("review", help="the review queue: unsure verdicts waiting for a person",
                            description="Inspections in the unsure band, close calls, images not like the "
                            "training images and MLLM answers that disagree with the expert wait here until "
                            "someone labels them.")  # fmt: skip
    actions = review.add_subparsers(dest="action", required=True)
    listing = actions.add_parser("list", help="the queue, oldest first, each with why it is there")
    listing.add_argument("--category", help="only this category")
    listing.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")
    listing.add_argument("--json", action="store_true", help="the page as JSON (the service's GET /v1/review)")
    label = actions.add_parser("label", help="say what the part actually was: it leaves the queue")
    label.add_argument("inspection", help="the inspection's id (eagle review list shows it)")
    label.add_argument("verdict", choices=sorted(VERDICTS), help="what the part actually was")
    label.add_argument("--note", default=None,
                       help="what you saw, or why (kept with the label, 500 characters); left out, a relabel "
                       "with the label the part has keeps its note, a changed label has none; "
                       "--note '' clears it")  # fmt: skip
    label.add_argument("--by", default=None,
                       help="your name, if not your login name: anyone's word, so the label is recorded as given on "
                       "this machine, label_by 'cli:<login name> as NAME' (default: 'cli:<login name>')")  # fmt: skip
    label.add_argument("--expected-revision", type=int, default=None, metavar="N",
                       help="the label revision you looked at (eagle review list shows it; 0: never labelled): "
                       "if someone labelled the part since, nothing is stored and the error says who and when "
                       "(default: no check, the last label wins)")  # fmt: skip
    for parser, func in ((listing, _cmd_list), (label, _cmd_label)):
        add_history_flags(parser)
        parser.set_defaults(func=func)


def _store(args: argparse.Namespace) -> InspectionStore:
    return open_history(args)


def models_folder(args: argparse.Namespace) -> Path | None:
    """The service's models folder: ``--models``, else the one the service on the state folder noted there
    (service/state_note.py: ``--state-dir``, or the folder of an SQLite ``--history``); ``None`` when neither
    says, as for a database URL alone."""
    from eagle_iad.cli.db import state_folder
    from eagle_iad.service.state_note import read_note

    if args.models:
        return Path(args.models)
    note = read_note(state_folder(args))
    return None if note is None else note.models


def _cmd_list(args: argparse.Namespace) -> int:
    from eagle_iad.errors import ConfigError
    from eagle_iad.review import review_page

    if not 1 <= args.limit <= 500:
        raise ConfigError(f"--limit must be 1-500, got {args.limit}")
    store = _store(args)
    try:
        if args.category is not None:
            folder = models_folder(args)
            problem = unknown_category(args.category, [*store.categories(), *model_names(folder)])
            if problem is not None:  # a typo must not read as "0 to review"
                # the service's rule (GET /v1/review): the history's categories and the fitted ones
                unseen = "" if folder is not None else " (those in the history; --models names the fitted ones too)"
                raise ConfigError(problem + unseen)
        total, rows = store.review(args.limit, 0, args.category)
    finally:
        store.close()
    if args.json:
        print(dumps(review_page(total, args.limit, 0, list(rows))))
        return 0
    print(f"{total} to review{'' if len(rows) == total else f' (the oldest {len(rows)} shown)'}")
    for row, reasons in rows:
        score = "–" if row.score is None else f"{row.score:.2f}"
        tau = "–" if row.tau is None else f"{row.tau:.2f}"
        # A part labelled and cleared again is at a later revision than 0: --expected-revision needs it.
        revision = f"  (label revision {row.label_revision})" if row.label_revision else ""
        print(f"{row.id}  {row.time}  {row.category}  {row.image_name}  score {score} / threshold {tau}  "
              f"{row.decision or 'undecided'}: {'; '.join(r.words for r in reasons)}{revision}")  # fmt: skip
    return 0


def _cmd_label(args: argparse.Namespace) -> int:
    from eagle_iad.errors import ConfigError
    from eagle_iad.service.store import LabelChangedError

    note = (args.note or "").strip() or None
    if note is not None and len(note) > 500:
        raise ConfigError(f"--note is {len(note)} characters; at most 500")
    if note is not None:  # what the API refuses in a note, refused here too (control characters)
        from eagle_iad.service.schemas import plain_text

        try:
            note = plain_text(note)
        except ValueError as exc:
            raise ConfigError(f"--note: {exc}") from None
    # Who said so, in the audit row's detail; the record says it came from here, not from a keyed user.
    named, by = printable((args.by or "").strip()) or os_user(), cli_actor(args.by)
    label = VERDICTS[args.verdict]
    store = _store(args)
    try:
        when = datetime.now(UTC).isoformat(timespec="milliseconds")
        stored = store.set_label(args.inspection, label, when, by=by, note=note,
                                 expected=args.expected_revision, keep_note=args.note is None)  # fmt: skip
        if stored is not None:
            _audit(args, store, when, named, stored)
    except LabelChangedError as exc:  # the service's 409 label_changed, in the same words
        raise ConfigError(str(exc)) from None
    finally:
        store.close()
    if stored is None:
        raise ConfigError(f"no inspection {args.inspection!r} in {redact(history_location(args))}")
    notices = _notices(args, stored, by, label)
    for notice in notices:  # said where a person reads it, and in the JSON as PUT .../label answers it
        print(f"eagle: note: {notice}", file=sys.stderr)
    print(dumps(stored.to_dict() | {"notices": notices}))
    return 0


def _notices(args: argparse.Namespace, stored: Inspection, by: str, label: str | None) -> list[str]:
    """The notices ``PUT /v1/inspections/{id}/label`` answers, for a label given here (rev1 finding 3): that the
    part was already labelled so by someone else, whose label stands, and, where the models folder is known
    (:func:`models_folder`: ``--models``, or the one the service noted in its state folder, as ``eagle review list``
    finds it), that a part labelled defective is inside its category's current model (taught as normal), so the
    operator knows to roll back."""
    from eagle_iad.service.routes_inspect import already_labelled, taught_notice

    given = (stored.label_history or [{}])[-1]
    notices = [already_labelled(stored)] if given.get("agreed") and given.get("by") == by else []
    folder = models_folder(args) if label == "anomalous" else None
    if folder is not None:
        notices += taught_notice(folder, stored)
    return notices


def _audit(args: argparse.Namespace, store: InspectionStore, when: str, by: str, stored: Inspection) -> None:
    """The audit row ``PUT /v1/inspections/{id}/label`` writes, for a label given here (:func:`cli_audit`), with
    the operator role (the role a label needs). ``--by`` is a name anyone may type, so the actor is the login
    name (``cli:root``, as the record's ``label_by``: ``cli:root as ana``) and the ``--by`` name is in the detail
    with this command's: ``label anomalous (defective) of x.png (tire), was normal by omar; note: a cut (by ana,
    eagle review label)``."""
    from eagle_iad.service.access import Role
    from eagle_iad.service.store import label_audit

    path = LABEL_ROUTE.replace("{inspection_id}", args.inspection)
    cli_audit(args, store, when, Role.operator, "PUT", LABEL_ROUTE, path, 200,
              f"{label_audit(stored)} (by {by}, eagle review label)", category=stored.category)  # fmt: skip


COMMANDS: dict[str, Callable[[Subcommands], None]] = {"review": add_review}
