"""``/v1/categories``: list and describe fitted experts, and fit new ones as background jobs.

A fit reads its normal images from an upload (image files, or one zip) or from a folder inside
the configured data root; uploads are checked (zip members, image content) in the request, so a
hostile upload is refused with a 4xx before any job exists, and only the fitting runs in the pool.
"""

from __future__ import annotations

import io
import json
import shutil
import uuid
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from eagle_iad.data import is_listed_image
from eagle_iad.errors import ConfigError, EagleError, ModelFormatError, OutputError
from eagle_iad.expert import ExpertConfig
from eagle_iad.expert.export import SIDECAR
from eagle_iad.expert.lighting import ExposureRange
from eagle_iad.expert.preprocess import PREPROCESSORS
from eagle_iad.expert.runtime import check_runtime, export_warnings, parse_sidecar
from eagle_iad.expert.store import (
    MANIFEST,
    ModelChangedError,
    change_threshold,
    check_replaceable,
    is_model_folder,
    labelled_parts,
    read_manifest,
    recover_model,
    retire_model,
)
from eagle_iad.fit_options import config_overrides, fit_options, parse_fit_options
from eagle_iad.mllm.serving import ApiError
from eagle_iad.naming import printable
from eagle_iad.registry import plugin_hint
from eagle_iad.service import schemas
from eagle_iad.service.access import (
    ADMIN,
    API_NAME,
    ENGINEER,
    VIEWER,
    Role,
    acting_name,
    audit_detail,
    still_allowed,
)
from eagle_iad.service.context import RETIREMENT, ServiceState, require_key, runtime_mismatch, service
from eagle_iad.service.jobs import sse_stream
from eagle_iad.service.security import check_name, extract_zip, hide_models_dir, resolve_inside, sniff_image
from eagle_iad.service.storage import check_free_space, disk_full_error, is_disk_full
from eagle_iad.tgps.calibration import MapCalibration, colour_range, legend_scale
from eagle_iad.tgps.thresholds import THRESHOLD_RULES

router = APIRouter(prefix="/v1", dependencies=[Depends(require_key)], responses=schemas.ERROR_RESPONSES)


def _distribution(scores: list[float]) -> dict[str, Any]:
    values = np.asarray(scores, dtype=np.float64)
    if values.size == 0:
        return {"count": 0, "values": []}
    counts, edges = np.histogram(values, bins=min(20, max(1, values.size)))
    return {
        "count": int(values.size),
        "min": float(values.min()),
        "max": float(values.max()),
        "mean": float(values.mean()),
        "std": float(values.std()),
        "quantiles": {str(q): float(np.quantile(values, q)) for q in (0.5, 0.9, 0.99)},
        "histogram": {"edges": [float(e) for e in edges], "counts": [int(c) for c in counts]},
        "values": [float(v) for v in values],
    }


def map_legend(raw_calibration: Any, tau: float) -> dict[str, float]:
    """The heat map's legend at ``tau`` from a model's map calibration (a manifest's ``calibration``, an
    export sidecar's ``map.calibration``)."""
    if raw_calibration is None:  # a schema-1 model: colours from 0 to tau at two thirds (fallback_calibration)
        low, high = colour_range(0.0, tau)
    else:
        calibration = MapCalibration.from_dict(dict(raw_calibration))
        low, high = legend_scale(calibration.colour_min, calibration.colour_max, calibration.map_tau, tau)
    return {"low": low, "high": high, "threshold": tau}


def _exposure(raw: object, field: str) -> dict[str, Any] | None:
    """The stored exposure range with its warning factors; ``None`` where none is recorded. A malformed one raises
    the ``ValueError`` naming ``field`` that the category's listing shows as its error, as a load would refuse it."""
    return None if raw is None else ExposureRange.parse(raw, field).summary()


def describe(directory: Path, with_scores: bool) -> dict[str, Any]:
    """A category's public summary from its manifest (no host paths, no training image names)."""
    manifest = read_manifest(directory)
    thresholds = manifest["thresholds"]
    tau = float(thresholds["tau"])
    distribution = _distribution(list(manifest["training"]["scores"]))
    if not with_scores:
        distribution.pop("values", None)
    return {
        "name": directory.name,
        "category": manifest.get("category", directory.name),
        "backbone": manifest["backbone"]["name"],
        "tau": thresholds["tau"],
        "s_max": thresholds["s_max"],
        "rule": thresholds["rule"],
        "rule_params": thresholds.get("params", {}),
        "created": manifest.get("created"),
        "train_images": len(manifest["training"]["images"]),
        "bank_size": manifest["training"].get("bank_size"),
        "training_exposure": _exposure(manifest["training"].get("exposure"), "training.exposure"),
        "training_scores": distribution,
        "map_legend": map_legend(manifest.get("calibration"), tau),
        "warnings": [*unloaded_plugins(manifest), *(str(warning) for warning in manifest.get("warnings") or [])],
        **({"history": list(manifest.get("history", []))} if with_scores else {}),
    }


def unloaded_plugins(manifest: dict[str, Any]) -> list[str]:
    """Why this service cannot inspect with a model whose threshold rule or preprocessing mode is a plugin's it has
    not loaded, one line each (first among the category's warnings).

    Why: the summary is read from the manifest alone, so such a category was listed as if it were fine and only an
    inspection said it cannot be loaded; the listing is where an operator looks after a restart without
    ``EAGLE_PLUGINS``."""
    lines = []
    rule = manifest["thresholds"]["rule"]
    if rule not in THRESHOLD_RULES:
        lines.append(f"cannot inspect here: its threshold rule {rule!r} is not loaded {plugin_hint('rule')}")
    mode = (manifest.get("config") or {}).get("preprocess")
    if isinstance(mode, str) and mode not in PREPROCESSORS:
        lines.append(f"cannot inspect here: its preprocessing mode {mode!r} is not loaded {plugin_hint('mode')}")
    return lines


def describe_export(directory: Path, runtime: str) -> dict[str, Any]:
    """An export folder's public summary from its sidecar (``eagle serve --runtime onnx|openvino``): what
    :func:`describe` gives of a fitted model, but the training scores and threshold history an export does
    not carry. The sidecar is checked as the runtime checks it (:func:`~eagle_iad.expert.runtime.parse_sidecar`:
    schema version, checksum, format, graph files present; and that ``runtime`` runs its format), so an export
    the category's load would refuse is listed with that error; only the graph's SHA-256 waits for the load
    (a listing stays quick)."""
    folder, record = parse_sidecar(directory)
    check_runtime(folder, record, runtime)
    thresholds = record["thresholds"]
    tau = float(record["tau"])
    return {
        "name": directory.name,
        "category": record.get("category", directory.name),
        "backbone": record["backbone"]["name"],
        "tau": tau,
        "s_max": float(record["s_max"]),
        "rule": thresholds["rule"],
        "rule_params": thresholds.get("params", {}),
        "created": (record.get("source") or {}).get("created"),
        "map_legend": map_legend(record["map"].get("calibration"), tau),
        "training_exposure": _exposure((record.get("verdict") or {}).get("exposure"), "verdict.exposure"),
        "warnings": export_warnings(record),
        "export": record.get("format"),
    }


def _runs(state: ServiceState, directory: Path) -> bool:
    """``directory`` holds what this service runs: a fitted model, or with ``--runtime onnx|openvino`` an export."""
    if state.settings.runtime == "torch":
        return is_model_folder(directory)
    return (directory / SIDECAR).is_file()


def not_fitted(state: ServiceState, directory: Path, name: str, what: str) -> ApiError:
    """The answer to a change (``what``: a threshold change, teaching, a rollback) of a category that has no fitted
    model: 409 when it is an export this service runs (``--runtime onnx|openvino``), saying that the change needs
    the fitted model and a service that runs it; 404 otherwise."""
    if state.settings.runtime != "torch" and (directory / SIDECAR).is_file():
        return ApiError(409, f"category {name!r} is an export this service runs (--runtime {state.settings.runtime}): "
                             f"{what} needs the fitted model (serve the fitted models with eagle serve --runtime "
                             "torch)", code="needs_fitted_model")  # fmt: skip
    return ApiError(404, f"no fitted category {name!r}", code="category_not_found")


def _summary(state: ServiceState, directory: Path, with_scores: bool) -> dict[str, Any]:
    if state.settings.runtime == "torch":
        return describe(directory, with_scores=with_scores)
    return describe_export(directory, state.settings.runtime)


@router.get("/categories", dependencies=VIEWER, response_model=schemas.CategoryList)
def list_categories(request: Request) -> dict[str, Any]:
    state = service(request)
    items = []
    for directory in sorted(state.settings.models_dir.iterdir()):
        if directory.name.startswith(".") or not _runs(state, directory):
            continue
        try:
            items.append(_summary(state, directory, with_scores=False))
        except (ModelFormatError, ConfigError, KeyError, TypeError, ValueError, AttributeError) as exc:
            items.append({"name": directory.name, "error": hide_models_dir(str(exc), directory.parent)})
    return {"categories": items}


@router.get("/categories/{name}", dependencies=VIEWER, response_model=schemas.Category)
def get_category(name: str, request: Request) -> dict[str, Any]:
    state = service(request)
    directory = state.settings.models_dir / check_name(name)
    if not _runs(state, directory):
        raise runtime_mismatch(directory, state.settings.runtime) or ApiError(
            404, f"no fitted category {name!r}", code="category_not_found"
        )
    try:
        return _summary(state, directory, with_scores=True)
    except (ModelFormatError, ConfigError, KeyError, TypeError, ValueError, AttributeError) as exc:
        reason = hide_models_dir(str(exc), directory.parent)  # no host paths in answers
        raise ApiError(409, f"category {name!r} cannot be read: {reason}", code="model_invalid") from None


@router.post("/categories/{name}/threshold", dependencies=ENGINEER, response_model=schemas.Category)
def change_category_threshold(name: str, change: schemas.ThresholdChange, request: Request) -> dict[str, Any]:
    """Set the category's tau (or restore an earlier one), recorded in the model's history.

    The same recorded change as ``eagle threshold``: who, when, why and the thresholds before and
    after stay with the model, the saved model is replaced atomically, and the next inspection uses
    the new threshold (the expert cache reloads a model whose files changed). Two concurrent
    changes cannot both win: the later save sees the model changed and answers 409.
    """
    state = service(request)
    directory = state.settings.models_dir / check_name(name)
    if not (directory / MANIFEST).is_file():
        raise not_fitted(state, directory, name, "a threshold change")
    if (change.tau is None) == (change.restore is None):
        raise ApiError(400, "give either 'tau' (a new threshold) or 'restore' (the number of a change to undo)",
                       code="invalid_request")  # fmt: skip
    if not change.why.strip():
        raise ApiError(400, "'why' must say why the threshold changes (it is kept in the model's history)",
                       code="invalid_request")  # fmt: skip
    try:
        errors = labelled_errors(state.store.labelled(name))
        with state.model_changes.making(name, "a threshold change"):
            change_threshold(directory, why=change.why, by=_changed_by(request, change.by), tau=change.tau,
                             restore=change.restore, labelled_errors=errors)  # fmt: skip
    except (ConfigError, ModelFormatError, OutputError) as exc:
        raise change_refused(name, exc, directory, "invalid_threshold") from None
    state.experts.drop(name)
    what = f"tau {change.tau}" if change.tau is not None else f"restore {change.restore}"
    audit_detail(request, f"{what}: {change.why}")
    return describe(directory, with_scores=True)


@router.delete("/categories/{name}", dependencies=ADMIN, response_model=schemas.CategoryRetired)
def retire_category(name: str, request: Request) -> dict[str, Any]:
    """Retire a category: its model folder (every version, its taught images) is moved whole, in one rename, to
    ``<models>/.retired/<name>-<UTC time>/``; an inspection of it then answers 404 ``category_not_found``.

    Refused with 409 ``category_in_use``, naming what, while a station uses it (one this service runs, or one
    the history keeps: paused, or run by a replica sharing it), a fit of it is queued or running (here, or on
    a replica sharing the history), or a threshold change, teach or rollback of it runs here. The history's
    inspections of it are kept. Undo: move the folder back to ``<models>/<name>`` (docs/SERVICE.md).
    """
    state = service(request)
    directory = state.settings.models_dir / check_name(name)
    recover_model(directory)  # a save that crashed between its two renames left it under another name
    if not is_model_folder(directory):
        raise not_fitted(state, directory, name, "a retirement")
    with state.model_changes.making(name, RETIREMENT, alone=True):
        users = [line for listed in state.category_users for line in listed(name)]
        if users:
            raise ApiError(409, f"category {name!r} is in use by {'; '.join(users)}: delete those stations, or "
                           "change their category (PATCH /v1/stations/<station>), then retire it",
                           code="category_in_use")  # fmt: skip
        with state.jobs.without_fits(name):
            try:
                moved = retire_model(directory)
            except (ConfigError, OutputError) as exc:
                raise change_refused(name, exc, directory, "not_retired") from None
            finally:
                state.experts.drop(name)
    where = moved.relative_to(state.settings.models_dir).as_posix()
    kept, _ = state.store.page(0, 0, category=name)
    audit_detail(request, f"retired {name}: moved to {where}; {kept} inspection(s) kept in the history")
    return {"name": name, "retired_to": where, "inspections_kept": kept,
            "undo": f"move <models>/{where} back to <models>/{name} (<models>: the service's --models folder); "
                    "the next inspection loads it"}  # fmt: skip


#: A change's name and what did not happen to the model, by the code its route refuses it with.
_CHANGES = {"invalid_threshold": ("threshold change", "changed"), "not_taught": ("teach", "taught"),
            "invalid_rollback": ("rollback", "rolled back")}  # fmt: skip


def change_refused(name: str, exc: Exception, directory: Path, refused_code: str, *also: Path) -> ApiError:
    """The answer to a model change (threshold, teach, rollback) the engine refused, without host paths.

    400 ``refused_code`` for what the request asked wrongly, 409 ``model_changed`` when another change
    landed meanwhile (nothing was lost: run it again), 409 ``model_invalid`` for a model that fails its
    checks, 507 for a full disk and 500 ``not_saved`` when the folder could not be written otherwise (the
    model is unchanged either way). ``also``:
    more server folders whose paths the message must not show.
    """
    reason = str(exc).replace(str(directory) + ": ", "").replace(str(directory.parent) + "/", "")
    for folder in also:
        reason = reason.replace(str(folder) + "/", "")
    reason = reason.replace(str(directory), name)
    if isinstance(exc, ModelChangedError):  # said for an HTTP caller and a console: what is there now, what to do
        what, undone = _CHANGES.get(refused_code, ("change", "changed"))
        return ApiError(409, f"category {name!r}: {exc.now} was made while this {what} was prepared; nothing was "
                        f"{undone}: send the request again", code="model_changed")  # fmt: skip
    # A command line's hint, said for an HTTP caller (no command to run there).
    reason = reason.replace("(eagle versions --verify lists the versions that can be)",
                            f"(GET /v1/categories/{name}/versions lists the versions)")  # fmt: skip
    for flag in ("--restore", "--tau", "--why"):  # a field of the request, where a message opens with the flag
        if reason.startswith(flag):  # (not inside a command it names: that stays a command one can run)
            reason = flag[2:] + reason[len(flag) :]
    status, code = (409, "model_changed") if "changed while" in reason else (400, refused_code)
    if isinstance(exc, ModelFormatError):
        status, code = 409, "model_invalid"
    if isinstance(exc, OutputError):
        if exc.__cause__ is not None and is_disk_full(exc.__cause__):
            return disk_full_error()  # 507, as every write route answers a full disk
        if directory.is_symlink():  # the engine's "give the folder itself" names nothing an API caller can do
            reason = ("its folder under the service's --models is a symbolic link, and a change replaces the "
                      "folder whole; serve a copy of the model in place of the link to change it here")  # fmt: skip
        status, code = 500, "not_saved"
    return ApiError(status, f"category {name!r}: {reason}", code=code)


def labelled_errors(records: list[Any]) -> Callable[[float], dict[str, int | str]]:
    """False alarms and misses at a tau on labelled history items, by the score each was given, and which parts
    they were counted on (:func:`~eagle_iad.expert.store.labelled_parts`)."""
    kept = [r for r in records if r.score is not None and r.label in ("normal", "anomalous")]
    scored = [(float(r.score), r.label) for r in kept]
    parts = labelled_parts((str(r.id), str(r.label)) for r in kept)

    def at(tau: float) -> dict[str, int | str]:
        return {
            "images": len(scored),
            "false_alarms": sum(1 for score, label in scored if label == "normal" and score >= tau),
            "misses": sum(1 for score, label in scored if label == "anomalous" and score < tau),
            "parts": parts,
        }

    return at


def _changed_by(request: Request, claimed: str | None) -> str:
    """Who the model's history records (service/access.py's acting_name; "api" when the open mode names none)."""
    return acting_name(request, claimed, API_NAME)


def _config(options: dict[str, Any], strict: bool) -> ExpertConfig:
    """The fit's settings from a client's options: the fit options table (eagle_iad/fit_options.py) checks them.

    ``strict``: the options came as JSON, whose numbers must be numbers (a form's fields are text).
    """
    try:
        preset, overrides = config_overrides(parse_fit_options(options, service=True, strict=strict))
        config = ExpertConfig.from_preset(preset, **overrides)
        config.validate()
    except EagleError as exc:  # an unknown option, a value out of range: the option's problem, whatever raised it
        raise ApiError(400, str(exc), code="invalid_option") from None
    return config


def folder_images(state: ServiceState, folder: str) -> list[Path]:
    root = state.settings.data_root
    directory = resolve_inside(root, folder)
    if not directory.is_dir():
        raise ApiError(400, f"folder {folder!r} is not a directory under the data root", code="invalid_path")
    assert root is not None
    images = [
        path for path in sorted(directory.rglob("*"))
        if is_listed_image(path, directory) and path.resolve().is_relative_to(root)
    ]  # fmt: skip
    return images


def _store_uploads(state: ServiceState, uploads: list[tuple[str, bytes]], out: Path) -> list[Path]:
    """Write uploaded images (or the members of one zip) to ``out``; every file must decode as an image."""
    settings = state.settings
    out.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    for index, (filename, data) in enumerate(uploads):
        if data[:4] in (b"PK\x03\x04", b"PK\x05\x06"):  # a zip by its content, whatever its name or type says
            members = extract_zip(data, out / f"zip{index}", max_files=settings.max_zip_files,
                                  max_bytes=settings.max_zip_bytes, max_ratio=settings.max_zip_ratio)  # fmt: skip
            for member in members:
                sniff_image(member.read_bytes(), f"zip member {member.name[6:]}", settings.max_pixels)
            paths += members
        else:
            sniff_image(data, filename, settings.max_pixels)
            target = out / f"{index:05d}.img"
            target.write_bytes(data)
            paths.append(target)
    return paths


#: Retry-After for a full fit queue: a fit takes minutes, so a client should not poll faster.
FIT_RETRY_AFTER_S = 30


def _admit_fit(state: ServiceState) -> None:
    """Refuse (429) a fit while ``max_fit_jobs`` are queued or running."""
    limit = state.settings.max_fit_jobs
    if state.jobs.pending >= limit:
        raise ApiError(429, f"{state.jobs.pending} fit jobs are queued or running (the limit is {limit}); retry later",
                       type_="rate_limit_error", code="too_many_fit_jobs",
                       headers={"Retry-After": str(FIT_RETRY_AFTER_S)})  # fmt: skip


def _upload_bytes(uploads: list[tuple[str, bytes]]) -> int:
    """Bytes storing ``uploads`` will write: a zip counts with its members' declared uncompressed sizes."""
    total = 0
    for _, data in uploads:
        declared = 0
        if data[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
            try:
                with zipfile.ZipFile(io.BytesIO(data)) as archive:
                    declared = sum(info.file_size for info in archive.infolist())
            except (zipfile.BadZipFile, OSError, ValueError):
                declared = 0  # refused as an invalid zip later, with its own message
        total += max(len(data), declared)
    return total


_JSON_TYPES = {float: "number", int: "integer", bool: "boolean", str: "string"}


def fit_options_schema() -> dict[str, Any]:
    """The ``FitOptions`` object schema, from the fit options table (a plugin rule's parameters included)."""
    properties: dict[str, Any] = {}
    for option in fit_options():
        if not option.service:
            continue
        entry: dict[str, Any] = {"type": _JSON_TYPES[option.kind], "description": option.help}
        if option.default is not None:
            entry["default"] = option.default
        if option.choices is not None:
            entry["enum"] = list(option.choices)
        if option.range is not None:
            entry.update(option.range.schema())
        if option.rules:
            entry["description"] += f" (rule{'s' if len(option.rules) > 1 else ''} {', '.join(option.rules)})"
        properties[option.name] = entry
        for alias in option.aliases:
            properties[alias] = {**entry, "description": f"old name of {option.name}", "deprecated": True}
    return {"title": "FitOptions", "type": "object", "additionalProperties": False, "properties": properties}


def fit_body() -> dict[str, Any]:
    """The request bodies the fit route parses by hand, described for OpenAPI clients."""
    options = fit_options_schema()
    return {
        "requestBody": {
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "properties": {
                            "files": {"type": "array", "items": {"type": "string", "format": "binary"},
                                      "description": "normal images, or one zip of them"},
                            "folder": {"type": "string", "description": "a folder relative to the data root"},
                            **options["properties"],
                        },
                    }
                },
                "application/json": {
                    "schema": {
                        "type": "object",
                        "required": ["folder"],
                        "properties": {"folder": {"type": "string"},
                                       "options": {"$ref": "#/components/schemas/FitOptions"}},
                    }
                },
            }
        }
    }  # fmt: skip


#: The route's OpenAPI extra; :func:`eagle_iad.service.app.create_app` refreshes it after loading plugins.
FIT_BODY: dict[str, Any] = fit_body()


@router.post(
    "/categories/{name}/fit",
    dependencies=ENGINEER,
    status_code=202,
    openapi_extra=FIT_BODY,
    response_model=schemas.JobStarted,
)
async def fit_category(name: str, request: Request) -> dict[str, Any]:
    """Start a fit from uploaded images / a zip (multipart ``files``) or a server ``folder`` (form or JSON)."""
    state = service(request)
    check_name(name)
    try:  # a folder holding anything but a model is never replaced: refuse before storing uploads or fitting
        check_replaceable(state.settings.models_dir / name)
    except OutputError as exc:
        reason = str(exc).replace(str(state.settings.models_dir) + "/", "")  # no host paths in answers
        raise ApiError(409, f"category {reason}", code="category_not_replaceable") from None
    _admit_fit(state)  # before the uploads are parsed and stored
    uploads: list[tuple[str, bytes]] = []
    options: dict[str, Any] = {}
    folder: str | None = None
    as_json = request.headers.get("content-type", "").startswith("application/json")
    if as_json:
        try:
            body = json.loads(await request.body())
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise ApiError(400, "invalid JSON body", code="invalid_request") from None
        if not isinstance(body, dict):
            raise ApiError(400, "the JSON body must be an object", code="invalid_request")
        folder = body.pop("folder", None)
        raw_options = body.pop("options", None)
        if folder is not None and not isinstance(folder, str):
            raise ApiError(400, "'folder' must be a string (a folder relative to the data root)", code="invalid_path")
        if raw_options is not None and not isinstance(raw_options, dict):
            raise ApiError(400, "'options' must be an object of fit options", code="invalid_option")
        options = dict(raw_options or {})
        if body:
            raise ApiError(400, f"unknown fields {sorted(body)}", code="invalid_request")
    else:
        settings = state.settings
        form = await request.form(max_files=settings.max_zip_files, max_part_size=settings.max_upload_bytes)
        for key, value in form.multi_items():
            if isinstance(value, UploadFile):
                if key != "files":
                    raise ApiError(400, f"unexpected file field {key!r} (send images or a zip as 'files')",
                                   code="invalid_request")  # fmt: skip
                uploads.append((value.filename or "upload", await value.read()))
            elif key == "folder":
                folder = value
            else:
                options[key] = value
    if (folder is None) == (not uploads):
        raise ApiError(400, "send either uploaded images / a zip as 'files' or a server 'folder', not both or none",
                       code="invalid_request")  # fmt: skip
    config = _config(options, strict=as_json)
    if folder is not None:
        images = await run_in_threadpool(folder_images, state, str(folder))
        cleanup = None
    else:
        cleanup = state.settings.uploads_dir / uuid.uuid4().hex
        try:
            # Before anything is written: a zip's declared size counts, not only its compressed bytes.
            check_free_space(state.settings.uploads_dir, _upload_bytes(uploads), state.settings.min_free_bytes)
            images = await run_in_threadpool(_store_uploads, state, uploads, cleanup)
        except BaseException as exc:
            shutil.rmtree(cleanup, ignore_errors=True)  # a refused upload leaves nothing behind
            if is_disk_full(exc):
                raise disk_full_error() from None
            raise
    if len(images) < 2:
        if cleanup is not None:
            shutil.rmtree(cleanup, ignore_errors=True)
        raise ApiError(400, f"{len(images)} training image(s); at least 2 normal images are needed",
                       code="too_few_images")  # fmt: skip
    settings = state.settings
    folders = (cleanup, settings.data_root, settings.state_dir, settings.models_dir)
    redact = tuple(sorted((str(path) for path in folders if path), key=len, reverse=True))  # longest first
    try:
        _admit_fit(state)  # again, with no await before the submit: concurrent requests cannot overshoot
        job = state.jobs.submit(name, images, config, cleanup, redact, by=acting_name(request, None, API_NAME))
    except BaseException as exc:  # the job's record could not be stored: no job, so no uploads either
        if cleanup is not None:
            shutil.rmtree(cleanup, ignore_errors=True)
        if is_disk_full(exc):
            raise disk_full_error() from None
        raise
    source = f"folder {printable(str(folder))[:200]}" if folder is not None else "uploaded"
    audit_detail(request, f"fit {name}: {len(images)} images ({source}), job {job.id}")
    return {"job": job.to_dict(), "links": {"self": f"/v1/jobs/{job.id}", "events": f"/v1/jobs/{job.id}/events"}}


def _job(request: Request, job_id: str) -> Any:
    job = service(request).jobs.get(job_id)
    if job is None:
        raise ApiError(404, f"no job {job_id!r}", code="job_not_found")
    return job


@router.get("/jobs/{job_id}", dependencies=VIEWER, response_model=schemas.Job)
def get_job(job_id: str, request: Request) -> dict[str, Any]:
    job = _job(request, job_id)
    result: dict[str, Any] = job.to_dict()
    return result


#: The event stream, described for OpenAPI clients (each ``data:`` line is one JobEvent).
EVENTS_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/event-stream": {"schema": {"$ref": "#/components/schemas/JobEvent"}}},
          "description": "server-sent events; each data line is a JobEvent"}
}  # fmt: skip


@router.get("/jobs/{job_id}/events", dependencies=VIEWER, responses=EVENTS_RESPONSE, response_class=StreamingResponse)
def job_events(job_id: str, request: Request) -> StreamingResponse:
    """Server-sent events: every state change and progress step of the job, then the stream ends.

    A job another replica sharing the history runs has no events here: 409 ``job_elsewhere`` (its record,
    ``GET /v1/jobs/{id}``, is shared; its stream is on its replica).
    """
    job = _job(request, job_id)
    if job.remote and not job.finished:
        raise ApiError(409, f"job {job_id} runs on another replica sharing this history; its events stream there "
                       f"(GET /v1/jobs/{job_id} here reads its record)", code="job_elsewhere")  # fmt: skip
    last = request.headers.get("last-event-id", "")
    after = int(last) if last.isascii() and last.isdigit() else -1  # "²" is a digit to isdigit(), not to int()
    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    allowed = still_allowed(request, Role.viewer)  # asked about every second: a revoked key's stream ends
    return StreamingResponse(sse_stream(job, after, allowed=allowed), media_type="text/event-stream", headers=headers)
