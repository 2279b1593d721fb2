"""The inspection record: one image's outcome as the history database stores it and the API returns it.

Declared once, here. The service's SQLite columns (``service/store.py``), the OpenAPI
``InspectionRecord`` schema (``service/schemas.py``, hence the TypeScript client's type) and the JSON
the API answers are all derived from :class:`InspectionRecord`'s fields, so adding a field is one line
in the class: give it a default (``None``) so rows stored before it existed still load, and say what
it holds in ``doc(...)``. Such an additive field needs no schema version bump: opening a history file
adds the missing column, and an older eagle-iad reading a newer file selects its own columns by name.
"""

from __future__ import annotations

import functools
import json
import types
import typing
from dataclasses import MISSING, dataclass, field, fields
from datetime import UTC, datetime
from typing import Any


def iso_time(seconds: float | None = None) -> str:
    """A time as the history's records have it (UTC, ISO 8601, milliseconds): ``seconds`` since the epoch, or now."""
    when = datetime.now(UTC) if seconds is None else datetime.fromtimestamp(seconds, UTC)
    return when.isoformat(timespec="milliseconds")


#: How many entries a record's ``label_history`` keeps, the newest: a part relabelled without end (a script in a
#: loop, two stations' operators disagreeing all shift) must not grow one row of the history without bound, which
#: every listing and export reads. Every label stays in the audit log (``label_audit``: what it replaced, by whom,
#: the note), so nothing said is lost; the first kept entry's revision says how many went before it.
LABEL_HISTORY_KEPT = 100


def doc(text: str, default: Any = MISSING) -> Any:
    """A field with its description (the OpenAPI schema shows it) and, optionally, a default."""
    if default is MISSING:
        return field(metadata={"doc": text})
    return field(default=default, metadata={"doc": text})


@dataclass(frozen=True)
class InspectionRecord:
    """One inspection: the expert's numbers, the final decision, the full verdict and its pictures."""

    id: str = doc("the inspection's id (its pictures live under /v1/files/<id>/)")
    time: str = doc("when it was inspected (UTC, ISO 8601)")
    category: str = doc("the fitted category that scored it")
    image_name: str = doc("the uploaded file's name")
    score: float | None = doc("the expert's image score")
    tau: float | None = doc("the category's decision threshold at the time")
    s_max: float | None = doc("the largest training score (the low-confidence band is [tau, s_max))")
    decision: str | None = doc("anomalous / normal (the MLLM's when one answered); null: undecided")
    in_band: bool = doc("tau <= score < s_max: the expert was unsure, CAAS applies")
    answer: str | None = doc("the MLLM's parsed answer; null without an MLLM")
    caas_applied: bool = doc("whether CAAS sharpened the MLLM's attention")
    verdict: dict[str, Any] = doc("the expert verdict (no MLLM) or the full EAGLE verdict record")  # noqa: RUF009
    pictures: dict[str, str] = doc("picture kind (heatmap, box, reference, attention_L<n>) -> /v1/files/... link")  # noqa: RUF009
    reference: dict[str, Any] | None = doc(  # noqa: RUF009
        "the nearest normal training image (index, image, bank_row, unavailable); null: stored before references",
        None,
    )
    answered_by: dict[str, str] | None = doc(  # noqa: RUF009
        "which MLLM backend answered (backend, route engine/caas/single, what became of CAAS); null: expert only",
        None,
    )
    label: str | None = doc("what the user says the part actually was (normal / anomalous); null: not labelled", None)
    label_time: str | None = doc("when the label was given", None)
    label_by: str | None = doc(
        "who gave the label: the API key's name (local: the open single-user mode; cli:<login name>, or "
        "'cli:<login name> as NAME' with --by, from eagle review label)",
        None,
    )
    label_note: str | None = doc("the labeller's note (what they saw, why), up to 500 characters", None)
    label_revision: int | None = doc(
        "how many times the label was given, changed or cleared (each time one more); a label request that sends "
        "the revision it saw as expected_revision is refused (409 label_changed) if it moved since; null: never "
        "labelled (revision 0)",
        None,
    )
    label_history: list[dict[str, Any]] | None = doc(  # noqa: RUF009
        "every label given, changed, confirmed or cleared, oldest first, the current one last: revision, label "
        "(null: cleared), by, time, note and previous (the label it replaced), so a corrected label and its note are "
        "never lost; agreed: true where it gave the label the part already had (a second operator's same label, "
        "kept with their note while the first one's stands); null: never labelled since this field (a label given "
        f"before it is the history's first entry once the part is labelled again). The newest {LABEL_HISTORY_KEPT} "
        "entries are kept (the audit log keeps every one): where the first kept one's revision is above 1, the "
        "ones before it went",
        None,
    )
    near_threshold: bool | None = doc(
        "the score is within one standard deviation of the training scores of tau, on either side: a second look "
        "is advised; null: unknown (stored before this field, a model without training scores, or an export written "
        "before export schema 3)",
        None,
    )
    unrecognised: bool | None = doc(
        "the image is not like the category's training images at all (noise, a blocked camera, another product, or "
        "a defect over much of the part): "
        "the expert's decision is then 'unrecognised', with no boxes; null: a model fitted before this check or on "
        "fewer than 10 images, or an export written before export schema 3",
        None,
    )
    station: str | None = doc("the station that took the image off the line; null: uploaded", None)
    source: str | None = doc(
        "where the station took it: the file's path in its hot folder (or a camera and frame time); null: uploaded",
        None,
    )
    image_sha256: str | None = doc(
        "the SHA-256 of the image file's bytes, so the same file is known as one image wherever it was scored "
        "(the threshold preview counts an image in the history and in an evaluation run once); null: stored "
        "before this field, or an in-memory frame",
        None,
    )
    model_version: int | None = doc(
        "the number of the category's model version that scored it (GET /v1/categories/<name>/versions, eagle "
        "versions: each fit, teach, threshold change and rollback makes one), so a result can be traced to the "
        "model that gave it; null: stored before this field, or no model version (an export, the MLLM alone)",
        None,
    )
    warnings: list[str] | None = doc(  # noqa: RUF009
        "what makes this verdict less trustworthy than the model's numbers say, e.g. a JPEG inspected by a model "
        "fitted on lossless images (compression artefacts can score as defects; docs/METHOD.md, 'Exposure'); "
        "null: none, or stored before this field",
        None,
    )

    def to_dict(self) -> dict[str, Any]:
        """The API's JSON for this record (field order is the class's)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


# --------------------------------------------------------------------------- derived descriptions


@dataclass(frozen=True)
class Column:
    """How one record field is stored: SQLite type, nullability, and whether it is JSON text."""

    name: str
    sql_type: str
    nullable: bool
    json: bool
    has_default: bool


def _hints() -> dict[str, Any]:
    return _hints_of(InspectionRecord)


@functools.cache
def _hints_of(cls: type) -> dict[str, Any]:
    """Resolved once a record class (the module's ``InspectionRecord`` when asked: a test widens it): each call of
    ``get_type_hints`` evaluates every annotation again (about 3 ms here), and decoding a page of history rows
    called it per row."""
    return typing.get_type_hints(cls)


def _unwrap(hint: Any) -> tuple[Any, bool]:
    """``(base type, nullable)`` of ``X | None``."""
    args = typing.get_args(hint)
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        rest = [a for a in args if a is not type(None)]
        if len(rest) != 1:
            raise TypeError(f"record fields must be X or X | None, not {hint}")
        return rest[0], True
    return hint, False


_SQL = {str: "TEXT", float: "REAL", int: "INTEGER", bool: "INTEGER"}


def columns() -> list[Column]:
    """The stored columns, one per field, in field order (a fresh list of the once-derived columns)."""
    return list(_columns())


def _columns() -> tuple[Column, ...]:
    return _columns_of(InspectionRecord)


@functools.cache
def _columns_of(cls: type) -> tuple[Column, ...]:
    hints = _hints_of(cls)
    found = []
    for f in fields(cls):
        base, nullable = _unwrap(hints[f.name])
        origin = typing.get_origin(base) or base
        is_json = origin in (dict, list)
        has_default = f.default is not MISSING or f.default_factory is not MISSING
        found.append(Column(f.name, "TEXT" if is_json else _SQL[origin], nullable, is_json, has_default))
    return tuple(found)


def _booleans() -> frozenset[str]:
    return _booleans_of(InspectionRecord)


@functools.cache
def _booleans_of(cls: type) -> frozenset[str]:
    hints = _hints_of(cls)
    return frozenset(c.name for c in _columns_of(cls) if _unwrap(hints[c.name])[0] is bool)


def to_row(record: InspectionRecord) -> tuple[Any, ...]:
    """The record's values as stored, in :func:`columns` order (JSON as text, booleans as 0/1)."""
    row: list[Any] = []
    for column in _columns():
        value = getattr(record, column.name)
        if column.json:
            value = json.dumps(value)
        elif column.sql_type == "INTEGER" and isinstance(value, bool):
            value = int(value)
        row.append(value)
    return tuple(row)


def from_row(row: tuple[Any, ...]) -> InspectionRecord:
    """The inverse of :func:`to_row`."""
    values: dict[str, Any] = {}
    booleans = _booleans()
    for column, value in zip(_columns(), row, strict=True):
        if value is not None and column.json:
            value = json.loads(value)
        elif value is not None and column.name in booleans:
            value = bool(value)
        values[column.name] = value
    return InspectionRecord(**values)


def field_docs() -> dict[str, str]:
    return {f.name: str(f.metadata.get("doc", "")) for f in fields(InspectionRecord)}


def field_types() -> dict[str, tuple[Any, bool]]:
    """``name -> (type hint, required)`` for building the API schema."""
    hints = _hints()
    return {
        f.name: (hints[f.name], f.default is MISSING and f.default_factory is MISSING) for f in fields(InspectionRecord)
    }
