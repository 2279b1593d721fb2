"""``/v1/categories/{name}/versions`` and ``/rollback``: a category's model versions, and going back to one.

The same versions as ``eagle versions`` / ``eagle rollback`` (expert/versions.py): every fit, threshold
change, teach and rollback is a numbered version kept in the model's folder. A rollback saves the
chosen version as a new one, atomically; the next inspection uses it; a concurrent change answers 409.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request

from eagle_iad.errors import ConfigError, ModelFormatError, OutputError
from eagle_iad.expert.store import is_model_folder, recover_model, rollback
from eagle_iad.expert.versions import disk_use, read_versions, taught_inspections
from eagle_iad.mllm.serving import ApiError
from eagle_iad.service import schemas
from eagle_iad.service.access import API_NAME, ENGINEER, VIEWER, acting_name, audit_detail
from eagle_iad.service.context import require_key, service
from eagle_iad.service.routes_categories import change_refused, describe, not_fitted
from eagle_iad.service.security import check_name

router = APIRouter(prefix="/v1", dependencies=[Depends(require_key)], responses=schemas.ERROR_RESPONSES)


def _model(request: Request, name: str, what: str) -> Any:
    state = service(request)
    directory = state.settings.models_dir / check_name(name)
    recover_model(directory)  # a save that crashed between its two renames left it under another name
    if not is_model_folder(directory):  # versions kept count, its model.json deleted: a rollback recovers it
        raise not_fitted(state, directory, name, what)
    return directory


@router.get("/categories/{name}/versions", dependencies=VIEWER, response_model=schemas.VersionList)
def category_versions(name: str, request: Request) -> dict[str, Any]:
    """Every version of the category's model, oldest first, with what made it and the disk it takes."""
    directory = _model(request, name, "listing its versions")
    try:
        listed, damaged = read_versions(directory)
        hidden = str(directory.parent) + "/"  # no host paths in an answer
        damaged = [{**broken, "problem": str(broken["problem"]).replace(hidden, "")} for broken in damaged]
        return {"versions": listed, "damaged": damaged, "disk_bytes": disk_use(directory),
                "taught_inspections": taught_inspections(directory)}  # fmt: skip
    except (ModelFormatError, KeyError, TypeError, OSError) as exc:
        reason = str(exc).replace(str(directory.parent) + "/", "")
        raise ApiError(409, f"category {name!r}: its versions cannot be read: {reason}", code="model_invalid") from None


@router.post("/categories/{name}/rollback", dependencies=ENGINEER, response_model=schemas.Category)
def rollback_category(name: str, change: schemas.RollbackRequest, request: Request) -> dict[str, Any]:
    """Make version ``to`` current again (as a new version on the record); the next inspection uses it."""
    state = service(request)
    directory = _model(request, name, "a rollback")
    if not change.why.strip():
        raise ApiError(400, "'why' must say why the model goes back (it is kept in the model's history)",
                       code="invalid_request")  # fmt: skip
    try:
        with state.model_changes.making(name, "a rollback"):
            rollback(directory, to=change.to, why=change.why, by=acting_name(request, change.by, API_NAME))
    except (ConfigError, ModelFormatError, OutputError) as exc:
        raise change_refused(name, exc, directory, "invalid_rollback") from None
    state.experts.drop(name)
    audit_detail(request, f"rollback to version {change.to}: {change.why}")
    return describe(directory, with_scores=True)
