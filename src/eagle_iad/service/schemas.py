"""Response shapes, declared so ``/openapi.json`` types them for generated clients (the TypeScript one).

Extra fields are allowed (and kept): the verdict records grow with the engine, and a client
generated from an older document must not make the server drop what it does not know yet.
"""

from __future__ import annotations

import unicodedata
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeAlias

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, create_model

from eagle_iad import record
from eagle_iad.choices import MAX_TEACH_IMAGES
from eagle_iad.record import field_docs, field_types
from eagle_iad.review import LabelWord

#: Bidirectional embeddings, overrides and isolates: they reorder how the text around them is shown (a note that
#: shows "defective.png" while it holds other characters), in the audit, an export or a terminal alike.
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def plain_text(value: str) -> str:
    """A person's note or why as it is kept: a line end written ``\\r\\n`` becomes ``\\n``, newlines and tabs
    stay, and any other control character (NUL, escape sequences, a lone carriage return) or bidirectional
    control is refused with where it is, instead of being stored to garble or spoof a CSV, a log line or a
    terminal later (t-shift finding 13). Lengths are counted in characters, as before."""
    value = value.replace("\r\n", "\n")
    for index, char in enumerate(value):
        if char in "\n\t":
            continue
        if unicodedata.category(char) == "Cc" or char in _BIDI_CONTROLS:
            raise ValueError(
                f"character {index + 1} is the control character U+{ord(char):04X}"
                f" ({unicodedata.name(char, 'unnamed')}); only newlines and tabs may be in a note or why: remove it"
            )
    return value


#: A person's words kept on the record (a label's note, a change's why): see :func:`plain_text`.
PlainText = Annotated[str, AfterValidator(plain_text)]


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class Histogram(_Open):
    edges: list[float]
    counts: list[int]


class ScoreDistribution(_Open):
    count: int
    min: float | None = None
    max: float | None = None
    mean: float | None = None
    std: float | None = None
    quantiles: dict[str, float] | None = None
    histogram: Histogram | None = None
    #: Every training score (the category detail only).
    values: list[float] | None = None


class MapLegend(_Open):
    low: float
    high: float
    threshold: float


class TrainingExposure(_Open):
    """The raw exposure range of a model's training images (``training.exposure``, model schema 12) and the factors
    beyond it at which a verdict warns (expert/lighting.py; docs/METHOD.md, "Photos under other light")."""

    images: int
    #: [low, high] of the images' mean grey (0-255), before the exposure step
    mean: list[float]
    #: [low, high] of the images' grey standard deviation
    spread: list[float]
    #: how many times beyond the mean range a photo must lie to warn (2, widened for few images)
    mean_factor: float
    #: the same for the spread range
    spread_factor: float


class Category(_Open):
    name: str
    category: str | None = None
    backbone: str | None = None
    tau: float | None = None
    s_max: float | None = None
    rule: str | None = None
    rule_params: dict[str, float] | None = None
    created: str | None = None
    train_images: int | None = None
    bank_size: int | None = None
    #: The training images' exposure range; null where the model recorded none (saved before schema 12, or an
    #: export of such a model): the console says "not recorded".
    training_exposure: TrainingExposure | None = None
    training_scores: ScoreDistribution | None = None
    #: The heatmaps' colour scale on the score's scale, the threshold at tau (the console draws its legend).
    map_legend: MapLegend | None = None
    #: Threshold changes since the fit, oldest first (who, when, why, before/after); the detail only.
    history: list[dict[str, Any]] | None = None
    #: What is degenerate about the model although it is usable (very few images, an empty low-confidence
    #: band, a coreset chosen from a sample), as the fit, the last teach or threshold change left them.
    warnings: list[str] | None = None
    #: The export's format (``onnx``, ``openvino``) where this service runs an export (``eagle serve --runtime
    #: onnx|openvino``); null: a fitted model. An export has no versions, training images or training scores,
    #: so a threshold change, a teach, the versions and a nearest normal reference answer 409
    #: ``needs_fitted_model``; the dashboard and the threshold preview (read-only) answer as for a fitted model.
    export: str | None = None
    #: Set instead of the fields above when the category's manifest cannot be read.
    error: str | None = None


class ThresholdChange(BaseModel):
    """A recorded threshold change: give ``tau`` (a new threshold) or ``restore`` (a change's number).

    Strict: ``"tau": true`` or ``"tau": "5"`` is refused (400), not read as 1.0 or 5.0.
    """

    model_config = ConfigDict(extra="forbid", strict=True)
    tau: float | None = Field(default=None, gt=0, allow_inf_nan=False)  # 0: every image anomalous
    restore: int | None = Field(default=None, ge=1)
    why: PlainText = Field(min_length=1, max_length=500)
    by: str | None = Field(default=None, max_length=100)


class TeachRequest(BaseModel):
    """Normal images to fold into a category's model (``eagle teach``): inspections from the history (their
    kept images, e.g. the ones labelled "actually normal") and/or a folder under the data root."""

    model_config = ConfigDict(extra="forbid", strict=True)
    inspections: list[str] = Field(default_factory=list, max_length=MAX_TEACH_IMAGES)
    folder: str | None = Field(default=None, max_length=1000)
    why: PlainText = Field(min_length=1, max_length=500)
    by: str | None = Field(default=None, max_length=100)
    #: Teach although an image looks defective or is labelled so, or a labelled defect would then pass.
    force: bool = False


class TeachAnswer(_Open):
    """The teach's record (kept in the model's history: images, scores, tau before/after) and the category."""

    change: dict[str, Any]
    category: Category
    #: What the teacher should know besides: each inspection nobody had labelled, taught by force, is now labelled
    #: normal in the teacher's name. Empty: nothing to say.
    notices: list[str] = Field(default_factory=list)


class LabelledCount(_Open):
    """A model's false alarms and misses on the labelled history, counted at a model change."""

    #: The labelled parts counted.
    images: int
    false_alarms: int
    misses: int
    #: Which parts those were (a short SHA-256 of their inspection ids and labels): two counts of the same
    #: ``parts`` compare the models, counts of other parts (the same number or not) do not. Null: counted before
    #: it was recorded.
    parts: str | None = None


class ModelVersion(_Open):
    """One saved version of a category's model: what made it, its thresholds and size, the disk it added."""

    version: int
    #: fit, threshold, teach or rollback.
    action: str
    at: str | None = None
    by: str | None = None
    why: str | None = None
    current: bool
    tau: float
    s_max: float
    rule: str
    train_images: int
    bank_size: int | None = None
    #: Bytes of files this version added on disk (files shared with earlier versions are not counted again).
    bytes_added: int
    #: A teach: the names of the images it added.
    images_added: list[str] | None = None
    #: A forced teach: each check it overrode, in the words of the refusal it would otherwise have given (an image
    #: labelled defective or by nobody, one far above s_max or unrecognised, labelled defects that would then pass);
    #: null: nothing was forced.
    forced: list[str] | None = None
    #: A teach of inspections (through the service): their ids, in the order of ``images_added``' taught ones.
    inspections_added: list[str] | None = None
    #: A rollback: the version it went back to.
    to: int | None = None
    #: A threshold restore: the change it undid, and the version that change made (null: saved before changes
    #: named their version).
    restored: int | None = None
    restored_version: int | None = None
    #: The labelled history's figures before and after the change (a teach: its kept labelled images
    #: rescored; a threshold change: their recorded scores against each tau), each with images,
    #: false_alarms and misses; null when unknown (a fit, a rollback, a change from the command line).
    labelled: dict[str, LabelledCount] | None = None


class DamagedVersion(_Open):
    """A version whose files cannot be read (one missing, pruned by hand; a manifest edited or corrupt)."""

    version: int
    problem: str


class VersionList(_Open):
    versions: list[ModelVersion]
    #: Versions that cannot be read, and why: listed apart so that one does not hide the others (they cannot
    #: be rolled back to).
    damaged: list[DamagedVersion] = []
    #: The model folder with every version, each shared file counted once.
    disk_bytes: int
    #: The inspections the current model was taught (its own history's teaches no rollback undid): what the console's
    #: "labelled normal, not yet taught" list leaves out, read from the current model so that a damaged or pruned
    #: version cannot make a taught part look untaught.
    taught_inspections: list[str] = []


class CategoryRetired(BaseModel):
    """A retired category: where its model folder went (every version, its taught images) and how to undo it."""

    name: str
    retired_to: str = Field(description="the folder it was moved to, relative to the service's --models folder")
    inspections_kept: int = Field(description="the history's inspections of it, kept (listed, labelled, exported)")
    undo: str = Field(description="how an administrator puts it back")


class InspectionDeleted(BaseModel):
    """A deleted inspection: which one, and what of it was removed (its pictures first, then its record)."""

    id: str
    category: str
    image_name: str = Field(description="the uploaded file's name, as the record had it")
    files_removed: int = Field(description="files removed from its picture folder (pictures, the kept upload)")
    bytes_removed: int = Field(description="the bytes those files held")


class RollbackRequest(BaseModel):
    """Make version ``to`` of a category's model current again, and why."""

    model_config = ConfigDict(extra="forbid", strict=True)
    to: int = Field(ge=1)
    why: PlainText = Field(min_length=1, max_length=500)
    by: str | None = Field(default=None, max_length=100)


class CategoryList(_Open):
    categories: list[Category]


class JobProgress(_Open):
    stage: str
    done: int
    total: int


class Job(_Open):
    id: str
    category: str
    state: str
    created: str
    images: int
    progress: JobProgress | None = None
    error: str | None = None
    result: dict[str, Any] | None = None


class JobLinks(_Open):
    self: str
    events: str


class JobStarted(_Open):
    job: Job
    links: JobLinks


class Reference(_Open):
    """The nearest normal training image (docs/METHOD.md, "Nearest normal reference")."""

    #: Index into the model's training images, and that image's name relative to the training folder.
    index: int
    image: str
    #: The memory-bank row nearest to the highest-scoring patch (it came from this image).
    bank_row: int
    #: Why no picture can be shown (a model fitted before model schema 4); null: ``pictures.reference``.
    unavailable: str | None = None


#: Record fields stored as JSON whose API schema is a named model rather than a free object.
_TYPED: dict[str, Any] = {"reference": Reference | None}


def _record_model() -> type[_Open]:
    """``InspectionRecord`` from the one record (eagle_iad/record.py): a field added there is in the schema."""
    definitions: dict[str, Any] = {
        name: (_TYPED.get(name, hint), Field(... if required else None, description=field_docs()[name]))
        for name, (hint, required) in field_types().items()
    }
    return create_model("InspectionRecord", __base__=_Open, __doc__=record.InspectionRecord.__doc__, **definitions)


if TYPE_CHECKING:
    InspectionRecord: TypeAlias = _Open
else:
    InspectionRecord = _record_model()


class LabelRequest(BaseModel):
    """``PUT /v1/inspections/{id}/label``: what the part actually was; ``null`` clears the label."""

    model_config = ConfigDict(extra="forbid")
    #: ``defective`` is accepted as the console's and ``eagle review label``'s word, stored as ``anomalous``.
    label: LabelWord | None
    #: What the labeller saw or why (kept with the label).
    note: PlainText | None = Field(default=None, max_length=500)
    #: Who labels, in the open local mode only (one user, no keys); with a key the key's name is recorded.
    by: str | None = Field(default=None, max_length=100)
    #: The record's ``label_revision`` this label is based on (``null`` or 0: never labelled). When the stored
    #: revision moved since (someone else labelled the part meanwhile), the label is refused with 409
    #: ``label_changed`` and theirs is kept. Left out: no check, the last label wins (clients before revisions).
    expected_revision: int | None = Field(
        default=None,
        ge=0,
        description="the record's label_revision this label is based on (null or 0: never labelled); if it moved "
        "since, 409 label_changed and the stored label is kept; left out: no check (the last label wins)",
    )


class LabelAnswer(InspectionRecord):
    """``PUT /v1/inspections/{id}/label``'s answer: the record as stored now (its ``label_history`` included) and
    what the labeller should know besides."""

    #: Sentences for the person who labelled: the same label was given meanwhile by someone else (theirs stands,
    #: this one is in the label history), or a part labelled defective is one of the current model's training
    #: images (taught as normal). Empty: nothing to say.
    notices: list[str] = Field(default_factory=list)


class ReviewReason(_Open):
    code: str
    words: str


class CurrentModel(_Open):
    """The category's model now (``version``: null where no version matches its ``model.json``)."""

    version: int | None = None
    tau: float


class ReviewItem(_Open):
    """One inspection in the review queue and why it is there."""

    record: InspectionRecord
    reasons: list[ReviewReason]
    #: The category's model now; null where it has none (retired, or served as an export).
    current_model: CurrentModel | None = None
    #: Where the part was judged by another model version than the current one: that version and its tau against
    #: the current ones, in words ("judged by version 1 (threshold 98.00); the model is now version 5 (threshold
    #: 97.30)"); null where it is the same version, a version the current model is a copy of (a rollback to it: the
    #: same tensors, thresholds and settings), or either is unknown.
    judged_by_older: str | None = None


class ReviewPage(_Open):
    """``GET /v1/review``: the queue, oldest first; ``total`` is how many are left to review."""

    total: int
    limit: int
    offset: int
    next_offset: int | None = None
    reasons: list[ReviewReason]
    items: list[ReviewItem]


class InspectionPage(_Open):
    total: int
    limit: int
    offset: int
    next_offset: int | None
    items: list[InspectionRecord]


class EvaluationRun(_Open):
    name: str
    modified: str
    metrics: dict[str, Any] | None = None
    run: dict[str, Any] | None = None
    #: Figure name (relative to the run) -> ``/v1/evaluations/<name>/files/...`` link.
    plots: dict[str, str] = {}
    error: str | None = None


class EvaluationList(_Open):
    runs: list[EvaluationRun]


class Health(_Open):
    """``GET /healthz``: ``status`` ``ok``, or ``degraded`` (answered with 503) while the history is unavailable or
    writes are refused for lack of disk space."""

    status: str
    version: str
    mllm: bool
    mllm_queue_waiting: int
    fit_jobs_pending: int
    #: ``ok``; ``busy`` (its connection held by other queries for over a second: not known, not failed); or
    #: ``unavailable: ...`` (a database server stopped or unreachable), with ``status`` ``degraded``.
    history: str
    #: ``ok``, or ``refusing: ...`` while writes are refused for lack of disk space (507), with ``status``
    #: ``degraded``: from the first such refusal until a refused kind of request is stored again, or the disk has
    #: 64 MiB free over ``--min-free-mb`` (docs/OPERATIONS.md).
    storage: str = "ok"
    #: How callers are told apart: ``keys`` (named keys from ``eagle keys add``, perhaps an ``EAGLE_API_KEY`` too),
    #: ``api_key`` (the single ``EAGLE_API_KEY``), ``open`` (no key needed); ``None`` while the history (which
    #: holds the key table) is unavailable, or busy before a key was ever seen (not known: never waited for).
    auth: Literal["keys", "api_key", "open"] | None = None
    #: The largest request body the service takes (``--max-upload-mb``), so a client can refuse a bigger file
    #: before sending it.
    max_upload_bytes: int | None = None
    #: How many times the largest training score (s_max) a threshold may lie before the model warns that it
    #: flags nothing (``FAR_ABOVE_S_MAX``): the console's tuner and inspection cards judge a tau by the same
    #: factor, read from here rather than copied, so the two cannot drift apart.
    far_above_s_max: float | None = None
    #: Seconds back a station's warnings of what happened lately look (``RECENT_S``: the p95 over the deadline,
    #: duplicate and refused files), so the console names the window the service uses.
    recent_s: float | None = None
    #: More than this share of the training images at or above a threshold puts it inside the normal parts' scores
    #: (``FLAGGED_SHARE``): the model's warning says so once a tau is saved, the console's tuner before.
    flagged_share: float | None = None


class InspectionEvent(_Open):
    """One ``inspection`` event of ``GET /v1/inspections/events``: an inspection was stored (fetch it by id)."""

    seq: int
    id: str
    time: str
    category: str
    image_name: str
    decision: str | None = None
    station: str | None = None


class JobEvent(_Open):
    """One server-sent event of a fit job (``event: state`` or ``event: progress``; ``id`` = ``seq``)."""

    event: str
    seq: int
    time: float
    state: str | None = None
    stage: str | None = None
    done: int | None = None
    total: int | None = None
    result: dict[str, Any] | None = None
    error: str | None = None


class LabelChanged(_Open):
    """A refused label's part as stored now (409 ``label_changed``): its label (``anomalous`` is the part said
    to be defective; ``null``: not labelled, or cleared), who gave it, when (ISO 8601, UTC), their note and
    the revision a new label is based on."""

    id: str
    image_name: str
    label: Literal["normal", "anomalous"] | None
    labelled_by: str | None
    labelled_at: str | None
    label_note: str | None
    label_revision: int


class ErrorDetail(_Open):
    message: str
    type: str
    code: str | None = None
    param: str | None = None
    #: With code ``label_changed`` only: the label stored now, as fields (the message says the same in words).
    label_changed: LabelChanged | None = None


class ErrorBody(_Open):
    """Every 4xx/5xx answer (OpenAI-style); 429 answers also carry ``Retry-After`` (seconds)."""

    error: ErrorDetail


#: Declared on every API route so generated clients type the error answers.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {"4XX": {"model": ErrorBody}, "5XX": {"model": ErrorBody}}


class LabelledScore(_Open):
    """One image whose truth is known: a labelled history item or an evaluation run's test image."""

    source: Literal["history", "evaluation"]
    #: The inspection id (history) or ``<run>/<image>`` (evaluation): unique within the answer.
    id: str
    name: str
    score: float
    label: Literal["normal", "anomalous"]
    #: History only: when it was inspected and its pictures (``input`` is the uploaded image).
    time: str | None = None
    pictures: dict[str, str] | None = None
    #: Evaluation only: the run, and the threshold it was judged against.
    run: str | None = None
    run_tau: float | None = None
    #: The same image file (by its SHA-256) elsewhere in the evidence, counted here once: the ids of the
    #: other inspections of it and of the evaluation runs' entries for it.
    also: list[str] | None = None


class CategoryEvidence(_Open):
    category: str
    tau: float | None = None
    items: list[LabelledScore]


class DayFigures(_Open):
    day: str
    inspections: int
    #: Inspections with a score (the mean is over these).
    scored: int
    rejected: int
    flagged: int
    in_band: int
    score_min: float | None = None
    score_mean: float | None = None
    score_max: float | None = None
    labelled_normal: int
    labelled_anomalous: int
    false_alarms: int
    misses: int


class CategoryDashboard(_Open):
    category: str
    days: list[DayFigures]
    totals: DayFigures
    reject_rate: float | None = None
    false_alarm_rate: float | None = None
    miss_rate: float | None = None
