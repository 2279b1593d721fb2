"""``/v1/inspect``, the inspection history, evaluation runs and the pictures they link to.

An inspection is the expert's verdict (no MLLM configured) or the full EAGLE verdict (MLLM
configured: TGPS prompt, CAAS in the band), stored in the history with links to its pictures.
:func:`eagle_iad.pipeline.inspect_records` does the inspection (the expert once, its result giving
both the pictures and the MLLM's prompt); this route adds the id, the links, the history and metrics.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import FileResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from eagle_iad.errors import EagleError
from eagle_iad.expert.export import SIDECAR
from eagle_iad.expert.manifest import MANIFEST, read_manifest
from eagle_iad.expert.versions import VERSIONS, current_version
from eagle_iad.history.backend import Connection
from eagle_iad.mllm.serving import ApiError
from eagle_iad.naming import category_name_problem, printable
from eagle_iad.record import InspectionRecord
from eagle_iad.review import LABEL_WORDS, DecisionFilter, model_names, review_page, unknown_category
from eagle_iad.service import idempotency, retention, schemas
from eagle_iad.service.access import (
    ADMIN,
    INSPECTING,
    OPERATOR,
    VIEWER,
    Role,
    acting_name,
    audit_detail,
    caller,
    still_allowed,
)
from eagle_iad.service.batching import BATCHER
from eagle_iad.service.context import ServiceState, require_key, service
from eagle_iad.service.live import after_from, inspection_events
from eagle_iad.service.security import check_name, resolve_inside, sniff_image
from eagle_iad.service.storage import check_free_space, disk_full_error, is_disk_full
from eagle_iad.service.store import (
    LABEL_SAID,
    AlreadyStoredError,
    LabelChangedError,
    label_audit,
    label_changed_detail,
    new_inspection_id,
    readable_time,
)
from eagle_iad.service.teaching import kept_image
from eagle_iad.tgps.prompt import ANOMALY_QUESTION, Question

router = APIRouter(prefix="/v1", dependencies=[Depends(require_key)], responses=schemas.ERROR_RESPONSES)

MAX_QUESTION_CHARS = 1000

#: More rows written in an inspection's transaction (given the connection and the record being stored).
AlsoWrite = Callable[[Connection, InspectionRecord], None]


#: Folders kept in front of an upload's file name (``lot-7/cut/003.png``): enough to tell apart
#: same-named files from different folders, short enough for a table column.
MAX_NAME_FOLDERS = 3

#: Longest part of a kept name, in characters (a file system allows 255 bytes in one name).
MAX_NAME_PART = 255


def upload_name(filename: str | None, folders: int | None = MAX_NAME_FOLDERS) -> str:
    """The upload's name as its owner knows it, with up to three folders: kept exactly (Unicode, spaces,
    brackets), so the history matches the files on disk.

    The folders are kept because ``cut/003.png`` and ``hole/003.png`` are different images that a user
    must be able to tell apart in the history. Only what could mislead is changed: ``..``, ``.`` and
    empty parts are dropped (the name is never a path: it names no file, see :func:`storage_stem`), and
    control and format characters (newlines, escape sequences, RTL overrides) are written as ``\\xNN``
    escapes, as the CLI prints them. ``folders``: how many folders are kept (``None``: all, for a name the
    station's own source gave, such as a hot folder's subfolder path, bounded by how deep it looks).
    """
    parts = [part for part in re.split(r"[\\/]", filename or "") if part not in ("", ".", "..")]
    kept = [printable(part)[:MAX_NAME_PART] for part in (parts if folders is None else parts[-(folders + 1) :])]
    return "/".join(part for part in kept if part.strip()) or "upload.png"


def storage_stem(name: str) -> str:
    """The stem of the pictures' file names for an upload named ``name``: its base name's stem in a safe
    alphabet (``A-Z a-z 0-9 _ . -``, no leading dot), so the ``/v1/files/<id>/...`` links need no
    escaping; the record keeps the real name (:func:`upload_name`)."""
    stem = PurePosixPath(PurePosixPath(name).name).stem
    return re.sub(r"[^A-Za-z0-9_.-]", "_", stem).lstrip(".")[:80] or "image"


def run_inspection(
    state: ServiceState, category: str, data: bytes, filename: str, question_text: str | None, attention: bool,
    *, origin: tuple[str, str] | None = None, also: AlsoWrite | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Score (and with an MLLM, ask about) one image through the pipeline; store and return the record.

    The pipeline writes the pictures into the inspection's folder; here they become
    ``/v1/files/<id>/...`` links, and the verdict drops the raw attention (the overlays carry it).
    A station's inspection comes through here too, so it is stored exactly as an upload is: ``origin``
    (station, source) fills the record's ``station`` and ``source``, and ``also`` writes the station's
    intake and outbox rows in the history row's transaction.
    """
    from eagle_iad.pipeline import Eagle, EagleConfig, input_warnings, inspect_records

    settings = state.settings
    if state.queued is None and (question_text is not None or attention):
        raise ApiError(400, "questions and attention need an MLLM (start the service with --mllm)", code="no_mllm")
    rgb = sniff_image(data, filename, settings.max_pixels)
    expert, model_version = state.experts.loaded(category)
    # The pictures: a heatmap and a boxed copy (attention overlays with an MLLM), a few times the RGB bytes.
    check_free_space(settings.files_dir, 4 * rgb.nbytes, settings.min_free_bytes)
    inspection_id = new_inspection_id()
    out = settings.files_dir / inspection_id
    link = f"/v1/files/{inspection_id}"
    eagle = None
    question = None
    if state.queued is not None:
        question = ANOMALY_QUESTION if question_text is None else Question(question_text, ("Yes.", "No."))
        eagle = Eagle(expert, state.queued, EagleConfig(capture_attention=attention))
    try:
        (inspected,) = inspect_records(
            expert, [rgb], category=category, names=[filename], ids=[inspection_id], eagle=eagle,
            question=question, out_dir=out, stems=[storage_stem(filename)],
            run_expert=lambda rgbs: [BATCHER.inspect(expert, one) for one in rgbs],  # concurrent requests share a pass
            model_version=model_version,
        )  # fmt: skip
    except BaseException as exc:
        shutil.rmtree(out, ignore_errors=True)  # a refused (429) or failed inspection leaves no orphan pictures
        if is_disk_full(exc):
            raise disk_full_error() from None
        raise
    pictures = {kind: f"{link}/{Path(path).name}" for kind, path in inspected.pictures.items()}
    verdict = dict(inspected.verdict)
    if verdict.get("attention") is not None:
        verdict["attention"] = None  # large; the overlays carry it
    verdict["pictures"] = pictures
    # the file's bytes name it (the image was decoded once above, so the pipeline sees pixels, not the file)
    stored = replace(inspected, verdict=verdict, pictures=pictures, image_sha256=hashlib.sha256(data).hexdigest(),
                     warnings=input_warnings(expert.model, data, rgb))  # fmt: skip
    if origin is not None:
        stored = replace(stored, station=origin[0], source=origin[1])
    final = stored
    try:
        out.mkdir(parents=True, exist_ok=True)
        kept_image(settings.files_dir, inspection_id).write_bytes(data)  # what a teach or a defect check reads
        state.store.add(stored, None if also is None else lambda db: also(db, final))
    except BaseException as exc:  # not in the history: its pictures go too (no row without pictures, no orphans)
        shutil.rmtree(out, ignore_errors=True)
        if is_disk_full(exc):
            raise disk_full_error() from None
        raise
    state.metrics.observe_inspection(stored.caas_applied)
    return stored.to_dict()


#: The multipart body this route parses by hand, described for OpenAPI clients.
INSPECT_BODY: dict[str, Any] = {
    "parameters": [
        {
            "name": idempotency.HEADER,
            "in": "header",
            "required": False,
            "schema": {"type": "string", "minLength": 1, "maxLength": idempotency.MAX_KEY_CHARS},
            "description": "one key per upload (e.g. a UUID): a repeat with the same key answers with the first "
            "try's record (header Idempotent-Replayed: true) instead of inspecting again; the same key with "
            "another image, category or question is refused (422 idempotency_key_reused)",
        }
    ],
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["image", "category"],
                    "properties": {
                        "image": {"type": "string", "format": "binary"},
                        "category": {"type": "string"},
                        "question": {"type": "string", "description": "a yes/no question (needs an MLLM)"},
                        "attention": {"type": "boolean", "description": "attention overlays (needs an MLLM)"},
                    },
                }
            }
        },
    },
}


@router.post("/inspect", dependencies=INSPECTING, openapi_extra=INSPECT_BODY, response_model=schemas.InspectionRecord)
async def inspect(request: Request, response: Response) -> dict[str, Any]:
    """Multipart: ``image`` (file), ``category``, optional ``question`` and ``attention`` (true/false).

    With an Idempotency-Key header, a repeat of the upload answers with the first try's record.
    """
    state = service(request)
    form = await request.form(max_files=1, max_fields=8, max_part_size=state.settings.max_upload_bytes)
    image = form.get("image")
    category = form.get("category")
    if not isinstance(image, UploadFile):
        raise ApiError(400, "send the image as the multipart file field 'image'", code="invalid_request")
    if not isinstance(category, str):
        raise ApiError(400, "send the category as the form field 'category'", code="invalid_request")
    question = form.get("question")
    if question is not None and (not isinstance(question, str) or not question.strip()
                                 or len(question) > MAX_QUESTION_CHARS):  # fmt: skip
        raise ApiError(400, f"question must be non-empty text of at most {MAX_QUESTION_CHARS} characters",
                       code="invalid_request")  # fmt: skip
    attention = str(form.get("attention", "false")).lower() in ("1", "true", "yes")
    key = idempotency.check_key(request.headers.get(idempotency.HEADER))
    data = await image.read()
    name = check_name(category)
    filename = upload_name(image.filename)
    if key is None:
        return await _inspect_admitted(state, name, data, filename, question, attention, None)
    sent = idempotency.fingerprint(name, data, question, attention)
    async with state.idempotent.claim(key):
        found = await run_in_threadpool(state.store.by_idempotency_key, key)
        if found is not None:
            if found[0] != sent:
                raise idempotency.reused_error(key)
            response.headers[idempotency.REPLAYED_HEADER] = "true"
            return found[1].to_dict()

        def remember(db: Connection, record: InspectionRecord) -> None:
            db.execute("INSERT INTO idempotency (key, fingerprint, record_id, created) VALUES (?, ?, ?, ?)",
                       (key, sent, record.id, record.time))  # fmt: skip

        try:
            return await _inspect_admitted(state, name, data, filename, question, attention, remember)
        except AlreadyStoredError:
            # A replica sharing the history stored this key while we inspected (a retry that reached two
            # replicas): ours was not kept, and the answer is the record the key names, as on one service.
            found = await run_in_threadpool(state.store.by_idempotency_key, key)
            if found is None:
                raise
            if found[0] != sent:
                raise idempotency.reused_error(key) from None
            response.headers[idempotency.REPLAYED_HEADER] = "true"
            return found[1].to_dict()


async def _inspect_admitted(
    state: ServiceState, name: str, data: bytes, filename: str, question: str | None, attention: bool,
    also: AlsoWrite | None,
) -> dict[str, Any]:  # fmt: skip
    """One inspection counted against ``max_inspections`` (429 beyond it), run off the event loop."""
    state.admit_inspection()
    started = time.perf_counter()
    try:
        return await run_in_threadpool(run_inspection, state, name, data, filename, question, attention, also=also)
    finally:
        state.release_inspection(time.perf_counter() - started)


#: Largest page offset: SQLite's integers are signed 64-bit, and no history holds 2**62 rows.
MAX_OFFSET = 2**62


@router.get("/inspections", dependencies=VIEWER, response_model=schemas.InspectionPage)
def inspections(
    request: Request,
    limit: int = Query(50, ge=1, le=500),
    offset: int = Query(0, ge=0, le=MAX_OFFSET),
    category: str | None = None,
    decision: DecisionFilter | None = None,
    label: Literal["normal", "anomalous", "labelled", "unlabelled"] | None = None,
) -> dict[str, Any]:
    """The history, newest first, ``limit`` rows from ``offset``; ``next_offset`` is null on the last page.

    ``category`` and ``decision`` (``anomalous``, ``normal``, ``unrecognised``: not like the training images,
    ``undecided``: none of those, an unparsable MLLM reply or a custom question without an anomaly decision)
    and ``label`` (the user's: ``normal``, ``anomalous``, ``labelled``, ``unlabelled``) filter the rows;
    ``total`` counts the filtered rows.
    """
    total, rows = service(request).store.page(
        limit, offset, None if category is None else check_name(category), decision, label
    )
    next_offset = offset + len(rows) if offset + len(rows) < total else None
    return {"total": total, "limit": limit, "offset": offset, "next_offset": next_offset,
            "items": [row.to_dict() for row in rows]}  # fmt: skip


@router.get("/review", dependencies=VIEWER, response_model=schemas.ReviewPage)
def review_queue(
    request: Request,
    limit: int = Query(50, ge=1, le=500),
    offset: int = Query(0, ge=0, le=MAX_OFFSET),
    category: str | None = None,
) -> dict[str, Any]:
    """The review queue, oldest first: unlabelled inspections a person should look at, each with its reasons
    (unsure band, close call, not recognised, the MLLM disagreeing with the expert, no decision). Labelling one
    (``PUT /v1/inspections/{id}/label``) takes it out; ``reasons`` lists every reason there is. A ``category``
    neither in the history nor among the models is 404 ``category_not_found``, naming the known ones."""
    state = service(request)
    if category is not None:
        check_name(category)
        problem = unknown_category(category, [*state.store.categories(), *model_names(state.settings.models_dir)])
        if problem is not None:  # a typo must not read as an empty queue
            raise ApiError(404, problem, code="category_not_found")
    total, rows = state.store.review(limit, offset, category)
    page = review_page(total, limit, offset, list(rows))
    models: dict[str, dict[str, Any] | None] = {}
    same: dict[tuple[str, Any], bool] = {}
    for item in page["items"]:
        record = item["record"]
        name = str(record.get("category"))
        if name not in models:
            models[name] = current_model(state.settings.models_dir, name)
        item["current_model"] = models[name]
        then = (name, record.get("model_version"))
        if then not in same:
            same[then] = isinstance(then[1], int) and decides_as(state.settings.models_dir, name, then[1])
        item["judged_by_older"] = None if same[then] else judged_by_older(record, models[name])
    return page


#: The fields of a manifest that decide a verdict: a version whose model.json has the current one's (a rollback
#: copies them) decides every part as the current model does; its history, times and package version may differ.
DECIDING_FIELDS = ("config", "backbone", "grid", "thresholds", "training", "calibration", "tensors")


def decides_as(models_dir: Path, name: str, version: int) -> bool:
    """Whether category ``name``'s model now is, in what decides a verdict, its version ``version`` (rev1 finding
    9): after ``rollback --to 3`` the current model is version 8, a copy of 3, and a part judged by 3 was judged by
    this very model and threshold. Compared by content (the tensors' digest, the thresholds, the settings), not by
    following rollbacks, so a rollback of a rollback, or a threshold changed back by hand to what it was, is the
    same model too. ``False`` where either manifest cannot be read (the number decides, as before)."""
    if category_name_problem(name) is not None or version < 1:
        return False
    directory = models_dir / name
    try:
        now = json.loads((directory / MANIFEST).read_text(encoding="utf-8"))
        then = json.loads((directory / VERSIONS / str(version) / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if not isinstance(now, dict) or not isinstance(then, dict):
        return False
    digest = (now.get("tensors") or {}).get("sha256") if isinstance(now.get("tensors"), dict) else None
    if not isinstance(digest, str):  # no digest to compare: the same settings alone do not make the same model
        return False
    return all(now.get(field) == then.get(field) for field in DECIDING_FIELDS)


def current_model(models_dir: Path, name: str) -> dict[str, Any] | None:
    """The version number and tau of category ``name``'s model now, read from its ``model.json`` (no load);
    ``None`` where there is none to read (retired, an export, a name no folder holds)."""
    if category_name_problem(name) is not None:
        return None
    directory = models_dir / name
    try:
        data = json.loads((directory / MANIFEST).read_text(encoding="utf-8"))
        tau = float(data["thresholds"]["tau"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return {"version": current_version(directory), "tau": tau}


def judged_by_older(record: dict[str, Any], now: dict[str, Any] | None) -> str | None:
    """Why a part's verdict may not be today's: the version that judged it and its tau against the current ones.

    Why said: the queue keeps parts for days, and a threshold change, teach or rollback since then may decide
    them otherwise (t-shift F15: "012.png 100.38 / threshold 98.00 anomalous" while tau was 97.3)."""
    then = record.get("model_version")
    if now is None or not isinstance(then, int) or now.get("version") in (None, then):
        return None
    tau = record.get("tau")
    was = f" (threshold {tau:.2f})" if isinstance(tau, int | float) else ""
    return (f"judged by version {then}{was}; the model is now version {now['version']} (threshold "
            f"{now['tau']:.2f}), which may decide it otherwise")  # fmt: skip


#: The live feed, described for OpenAPI clients (each ``data:`` line is one InspectionEvent).
FEED_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/event-stream": {"schema": {"$ref": "#/components/schemas/InspectionEvent"}}},
          "description": "server-sent events; each data line is an InspectionEvent"}
}  # fmt: skip


@router.get("/inspections/events", dependencies=VIEWER, responses=FEED_RESPONSE, response_class=StreamingResponse)
def inspection_feed(request: Request, category: str | None = None) -> StreamingResponse:
    """Server-sent events: an ``inspection`` event (seq, id, time, category, image_name, decision, station)
    for each inspection stored from now on (or after ``Last-Event-ID``), optionally of one ``category``.

    The stream stays open until the client leaves or the service stops; resume with ``Last-Event-ID``.
    """
    # (or until the caller's key is revoked: checked at each poll; docs/SERVICE.md)
    state = service(request)
    after = after_from(request.headers.get("last-event-id"), state)
    allowed = still_allowed(request, Role.viewer)  # asked at each poll: a revoked key's feed ends
    feed = inspection_events(state, after, None if category is None else check_name(category), allowed)
    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(feed, media_type="text/event-stream", headers=headers)


@router.get("/inspections/{inspection_id}", dependencies=VIEWER, response_model=schemas.InspectionRecord)
def inspection(inspection_id: str, request: Request) -> dict[str, Any]:
    """One stored inspection by id (what ``eagle-client picture`` reads its picture links from)."""
    stored = service(request).store.get(inspection_id)
    if stored is None:
        raise ApiError(404, f"no inspection {inspection_id!r}", code="not_found")
    return stored.to_dict()


@router.put("/inspections/{inspection_id}/label", dependencies=OPERATOR, response_model=schemas.LabelAnswer)
def label_inspection(inspection_id: str, body: schemas.LabelRequest, request: Request) -> dict[str, Any]:
    """Record what the inspected part actually was (``normal`` / ``anomalous``, or ``defective``: the same,
    stored as ``anomalous``), or clear it with ``null``.

    The verdict is kept as it was: the label sits beside it, so History, exports and per-category
    figures can compare the two (false alarms, misses). With ``expected_revision`` (the record's
    ``label_revision`` the caller saw) a label given meanwhile by someone else is never overwritten
    unseen: 409 ``label_changed`` names who labelled it and when, and their label is kept; the same label
    given meanwhile is no conflict: theirs stands, this one (its note too) joins ``label_history``, and
    ``notices`` says so. Every label, and the one it replaced, stays in ``label_history`` and in the audit.
    ``notices`` also says when a part labelled defective is one of its category's current training images
    (taught as normal): the model passes it until a rollback or refit takes it out.
    """
    when = datetime.now(UTC).isoformat(timespec="milliseconds")
    by = acting_name(request, body.by, caller(request).name)
    note = (body.note or "").strip() or None
    # Sent as null counts (a record never labelled has label_revision null, which a client passes on as it is);
    # left out is no check: a client from before revisions labels as it always did.
    expected = (body.expected_revision or 0) if "expected_revision" in body.model_fields_set else None
    label = None if body.label is None else LABEL_WORDS[body.label]  # "defective" is stored as "anomalous"
    audit_detail(request, f"label {label or 'cleared'}")
    state = service(request)
    try:
        stored = state.store.set_label(inspection_id, label, when, by=by, note=note, expected=expected)
    except LabelChangedError as exc:  # a refused request is no change: the audit log has no row for it
        detail = {"label_changed": label_changed_detail(exc.current)}
        raise ApiError(409, str(exc), code="label_changed", details=detail) from None
    if stored is None:
        raise ApiError(404, f"no inspection {inspection_id!r}", code="not_found")
    given = (stored.label_history or [{}])[-1]
    audit_detail(request, label_audit(stored), category=stored.category)
    notices = []
    if given.get("agreed") and given.get("by") == by:  # (not a retry of the caller's own label, agreed since)
        notices.append(already_labelled(stored))
    if label == "anomalous":
        notices += taught_notice(state.settings.models_dir, stored)
    return stored.to_dict() | {"notices": notices}


def already_labelled(stored: InspectionRecord) -> str:
    """What a label that agrees with one given meanwhile answers: no conflict, whose label stands, that the
    caller's (and its note) is kept beside it."""
    at = f" at {readable_time(stored.label_time)}" if stored.label_time else ""
    return (f"{stored.image_name} was already labelled {LABEL_SAID.get(str(stored.label))} by "
            f"{stored.label_by or 'someone'}{at}; their label stands, and yours, with your note, is kept in its "
            "label history")  # fmt: skip


def taught_notice(models_dir: Path, stored: InspectionRecord) -> list[str]:
    """A part labelled defective whose image is one of its category's current training images (a teach took it
    for normal): the model passes that image, so say so and how to take it out. Nothing when it is not, or when
    the model cannot be read (the label is stored either way)."""
    if stored.image_sha256 is None or category_name_problem(stored.category) is not None:
        return []
    try:
        manifest = read_manifest(models_dir / stored.category, verify=False)
        training = manifest["training"]
        digests, names = training.get("sha256") or [], training["images"]
    except (OSError, ValueError, KeyError, TypeError, EagleError):
        return []
    if stored.image_sha256 not in digests or digests.index(stored.image_sha256) >= len(names):
        return []
    name = str(names[digests.index(stored.image_sha256)])
    taught = re.match(r"taught-(\d+)/", name)
    entry = next((e for e in manifest.get("history") or [] if taught and e.get("change") == int(taught[1])), None)
    inside = f"{stored.image_name} is inside the current model of {stored.category} as {name}"
    if taught is None:  # one of the images it was fitted on: no version without it to roll back to
        return [f"{inside}, one of the images it was fitted on: the model takes it for normal and passes parts like "
                "it; refit without it"]  # fmt: skip
    how = "" if entry is None else f" by {entry.get('by')} at {entry.get('at')} ({entry.get('why')})"
    return [f"{inside}, taught as normal{how}: the model takes it for normal and passes parts like it; roll back to a "
            f"version before that teach (eagle versions, GET /v1/categories/{stored.category}/versions), or refit "
            "without it"]  # fmt: skip


#: Longest ``why`` a deletion keeps in its audit row.
MAX_WHY_CHARS = 300


@router.delete("/inspections/{inspection_id}", dependencies=ADMIN, response_model=schemas.InspectionDeleted)
def delete_inspection(
    inspection_id: str, request: Request,
    why: str | None = Query(None, max_length=MAX_WHY_CHARS, description="why it is deleted (kept in the audit row)"),
) -> dict[str, Any]:  # fmt: skip
    """Delete one inspection: its files (the kept upload, heatmap, boxed picture, reference, overlays) first, then
    its record with its label and its place in the review queue. For an image that must not be kept (a person in
    frame, a customer's part photographed by mistake); old inspections are removed by ``eagle history prune``.

    Audited (who, which inspection, its category and image, ``why``). 404 ``not_found`` for an unknown id. If
    the record could not be removed after its files were (the history went away), the answer is an error and
    the record is shown without its pictures until the same request, made again, removes it (docs/SERVICE.md).
    """
    try:  # as every other why and note (schemas.PlainText): no control characters
        reason = " ".join(schemas.plain_text(why or "").split())
    except ValueError as exc:
        raise ApiError(400, f"why: {exc}", code="invalid_request") from None
    state = service(request)
    try:
        deleted = retention.delete_inspection(state.store, state.settings.files_dir, inspection_id)
    except OSError as exc:
        raise ApiError(500, f"inspection {inspection_id!r}: its pictures could not be removed ({exc.strerror or exc}); "
                       "nothing was deleted, its record is kept: try again, or remove its folder under the service's "
                       "--files by hand", type_="server_error", code="not_deleted") from None  # fmt: skip
    if deleted is None:
        raise ApiError(404, f"no inspection {inspection_id!r}", code="not_found")
    record, removed = deleted
    audit_detail(
        request,
        f"deleted inspection {record.id} of {record.category} ({record.image_name}; "
        f"{removed.files} files, {removed.bytes} bytes)" + (f": {reason}" if reason else ""),
        category=record.category,
    )
    return {"id": record.id, "category": record.category, "image_name": record.image_name,
            "files_removed": removed.files, "bytes_removed": removed.bytes}  # fmt: skip


def scored_by_export(state: ServiceState, stored: InspectionRecord) -> bool:
    """Whether ``stored`` was scored by an export this service runs: its category is an export folder here
    (``--runtime onnx|openvino``) and the record names no model version (an export has none; a fitted model's
    inspection names the version that scored it)."""
    if state.settings.runtime == "torch" or stored.model_version is not None:
        return False
    if category_name_problem(stored.category) is not None:
        return False  # a record stored under a name no folder can have
    return (state.settings.models_dir / stored.category / SIDECAR).is_file()


#: Why an inspection stored before reference pictures existed has none.
NO_REFERENCE_RECORDED = "no reference: this inspection was made before references were recorded"


@router.get(
    "/inspections/{inspection_id}/reference",
    dependencies=VIEWER,
    response_class=FileResponse,
    responses={200: {"content": {"image/jpeg": {}}, "description": "the nearest normal training image (JPEG)"}},
)
def inspection_reference(inspection_id: str, request: Request) -> FileResponse:
    """The nearest normal training image of an inspection, as stored with it (a JPEG of <= 512 px).

    Stored with the inspection, not looked up in the current model, so a refit category still shows
    the image that was nearest when the inspection was made. 404 ``no_reference`` says why there is
    none (a model fitted before model schema 4, or an inspection made before references existed); 409
    ``needs_fitted_model`` for an inspection an export scored (``--runtime onnx|openvino``): an export keeps
    no training images, so it has no nearest normal to show, and "made before references" would mislead.
    """
    state = service(request)
    stored = state.store.get(inspection_id)
    if stored is None:
        raise ApiError(404, f"no inspection {inspection_id!r}", code="not_found")
    link = stored.pictures.get("reference")
    if link is None:
        reference = stored.verdict.get("reference")
        why = reference.get("unavailable") if isinstance(reference, dict) else None
        if why is None and scored_by_export(state, stored):
            raise ApiError(409, f"inspection {inspection_id!r} was scored by an export this service runs (--runtime "
                                f"{state.settings.runtime}), which keeps no training images: its nearest normal "
                                "reference needs the fitted model (serve the fitted models with eagle serve --runtime "
                                "torch)", code="needs_fitted_model")  # fmt: skip
        raise ApiError(404, why or NO_REFERENCE_RECORDED, code="no_reference")
    target = resolve_inside(state.settings.files_dir, link.removeprefix("/v1/files/"), "file")
    if not target.is_file():
        raise ApiError(404, f"the reference picture of inspection {inspection_id!r} is missing", code="not_found")
    return FileResponse(target, media_type="image/jpeg")


@router.get("/evaluations", dependencies=VIEWER, response_model=schemas.EvaluationList)
def evaluations(request: Request) -> dict[str, Any]:
    """Run directories under the runs dir that hold a ``metrics.json`` (``eagle eval`` / ``eval-expert``)."""
    runs_dir = service(request).settings.runs_dir
    runs: list[dict[str, Any]] = []
    if runs_dir is None or not runs_dir.is_dir():
        return {"runs": runs}
    for directory in sorted(runs_dir.iterdir()):
        metrics_path = directory / "metrics.json"
        if directory.name.startswith(".") or not metrics_path.is_file():
            continue
        if not metrics_path.resolve().is_relative_to(runs_dir):
            continue  # a symlink out of the runs dir is not listed
        modified = datetime.fromtimestamp(metrics_path.stat().st_mtime, UTC).isoformat(timespec="seconds")
        entry: dict[str, Any] = {"name": directory.name, "modified": modified, "plots": _plots(directory)}
        try:
            entry["metrics"] = json.loads(metrics_path.read_text(encoding="utf-8"))
            run_json = directory / "run.json"
            if run_json.is_file():
                entry["run"] = json.loads(run_json.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError, OSError) as exc:
            entry["error"] = f"unreadable: {exc}"
        runs.append(entry)
    return {"runs": runs}


def _plots(directory: Path) -> dict[str, str]:
    """The run's PNG figures (top level and one folder down), name -> ``/v1/evaluations/...`` link."""
    found = sorted(directory.glob("*.png")) + sorted(directory.glob("*/*.png"))
    return {
        path.relative_to(directory).as_posix(): f"/v1/evaluations/{directory.name}/files/"
        f"{path.relative_to(directory).as_posix()}"
        for path in found[:64]
        if path.is_file() and path.resolve().is_relative_to(directory.resolve())
    }


@router.get("/evaluations/{name}/files/{path:path}", dependencies=VIEWER)
def evaluation_file(name: str, path: str, request: Request) -> FileResponse:
    """A figure of an evaluation run (PNG only); the path must stay inside that run's directory."""
    runs_dir = service(request).settings.runs_dir
    if runs_dir is None:
        raise ApiError(404, "no runs directory is configured (start the service with --runs)", code="not_found")
    if "/" in name or "\\" in name or name.startswith("."):
        raise ApiError(400, f"invalid run name {name!r}", code="invalid_path")
    run = resolve_inside(runs_dir, name, "run")
    target = resolve_inside(run, path, "file")
    if target.suffix.lower() != ".png" or not target.is_file():
        raise ApiError(404, f"no figure {path!r} in run {name!r}", code="not_found")
    return FileResponse(target, media_type="image/png")


@router.get("/files/{path:path}", dependencies=VIEWER)
def files(path: str, request: Request) -> FileResponse:
    """A picture written by an inspection; the path must stay inside the service's files dir."""
    target = resolve_inside(service(request).settings.files_dir, path, "file")
    media = {".png": "image/png", ".jpg": "image/jpeg"}.get(target.suffix)
    if not target.is_file() or media is None:  # pictures only: the kept upload (service/teaching.py) is not served
        raise ApiError(404, f"no file {path!r}", code="not_found")
    return FileResponse(target, media_type=media)
