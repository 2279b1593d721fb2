"""The review queue: the inspections a person should look at, and why (docs/SERVICE.md, "Review").

EAGLE already knows where it is unsure; a shift should not have to hunt for those verdicts in History.
An unlabelled inspection is queued for each reason it has, declared once here: the SQL condition the
history filters on and the words the CLI, the API and the console show come from the same entry, so a
reason added here is queued, explained and counted everywhere. A label (normal / defective) takes an
inspection out of the queue; "skip" is the reviewer's own and changes nothing stored.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

#: What the history's decision filter takes (``GET /v1/inspections?decision=``, the console's History):
#: the final decision ``anomalous`` or ``normal``; ``unrecognised``, an image not like the training images
#: (the expert's decision, no MLLM answer); ``undecided``, none of these (an unreadable MLLM reply, a custom
#: question without an anomaly decision).
DecisionFilter = Literal["anomalous", "normal", "unrecognised", "undecided"]
DECISION_FILTERS: tuple[str, ...] = get_args(DecisionFilter)

#: The words a label may be given in (``PUT /v1/inspections/{id}/label``, ``eagle review label``) and what
#: each is stored as: "defective" is the console's word for the history's "anomalous".
LabelWord = Literal["normal", "anomalous", "defective"]
LABEL_WORDS: dict[str, str] = {"normal": "normal", "anomalous": "anomalous", "defective": "anomalous"}

#: The expert's decision inside an EAGLE verdict (absent from an expert-only verdict).
_EXPERT = "json_extract(verdict, '$.expert_decision')"
#: A decision that says something about the part (an unreadable reply is stored as 'unparsable').
_DECIDED = "IN ('anomalous', 'normal')"


@dataclass(frozen=True)
class Reason:
    """Why an inspection needs a person: its code, its words, and its condition on the history's columns."""

    code: str
    words: str
    condition: str


REASONS: tuple[Reason, ...] = (
    Reason("band", "in the unsure band: the expert is unsure between its threshold and the band end", "in_band = 1"),
    Reason(
        "close_call", "a close call: the score is within the normal variation of the threshold", "near_threshold = 1"
    ),
    # A defect over much of the part is unrecognised too (docs/METHOD.md, "Unrecognised"): said among the causes,
    # so an operator looking at an obvious crack is not told it must be another product or the camera.
    Reason(
        "unrecognised",
        "not like the training images (another product, a blocked camera, or a defect over much of the part?)",
        "unrecognised = 1",
    ),
    Reason(
        "disagreement",
        "the MLLM's answer disagrees with the expert's decision",
        f"{_EXPERT} {_DECIDED} AND decision {_DECIDED} AND decision != {_EXPERT}",
    ),
    # Only an unreadable reply: a custom question's inspection has no anomaly decision by design (NULL).
    Reason(
        "undecided",
        "no decision: the MLLM's reply could not be read",
        f"{_EXPERT} IS NOT NULL AND decision = 'unparsable'",
    ),
)


def model_names(models: Path | None) -> list[str]:
    """The category folders of a models folder (a category fitted but never inspected is one too)."""
    if models is None or not models.is_dir():
        return []
    return [d.name for d in models.iterdir() if d.is_dir() and not d.name.startswith(".")]


def unknown_category(name: str, known: Iterable[str]) -> str | None:
    """Why ``name`` is no category to review (a typo would otherwise read as "0 to review"), naming the
    known ones: those in the history and those with a model; ``None`` when it is one of them."""
    names = sorted(set(known))
    if name in names:
        return None
    if not names:
        return f"no category {name!r}: the history has no inspections and there are no models yet"
    return f"no category {name!r}; known categories: {', '.join(names)}"


def queued_condition() -> str:
    """The history rows in the queue: not yet labelled, with at least one reason."""
    return "label IS NULL AND (" + " OR ".join(f"({reason.condition})" for reason in REASONS) + ")"


def reason_columns() -> str:
    """One 0/1 column per reason, in :data:`REASONS` order, to select beside a row."""
    return ", ".join(f"CASE WHEN {reason.condition} THEN 1 ELSE 0 END" for reason in REASONS)


def reasons_of(flags: tuple[int, ...]) -> list[Reason]:
    """The reasons whose column (from :func:`reason_columns`) is set."""
    return [reason for reason, flag in zip(REASONS, flags, strict=True) if flag]


def review_page(total: int, limit: int, offset: int, rows: list[tuple[Any, list[Reason]]]) -> dict[str, Any]:
    """The queue as the API answers it (and ``eagle review list --json`` prints it): ``rows`` are history
    rows (anything with ``to_dict()``) with their reasons."""

    def said(reasons: Iterable[Reason]) -> list[dict[str, str]]:
        return [{"code": reason.code, "words": reason.words} for reason in reasons]

    next_offset = offset + len(rows) if offset + len(rows) < total else None
    return {"total": total, "limit": limit, "offset": offset, "next_offset": next_offset, "reasons": said(REASONS),
            "items": [{"record": row.to_dict(), "reasons": said(reasons)} for row, reasons in rows]}  # fmt: skip
