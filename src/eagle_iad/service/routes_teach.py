"""``POST /v1/categories/{name}/teach``: fold normal images into a fitted model without a refit.

The same teach as ``eagle teach`` (expert/teach.py): the images are inspections from the history (the
images the service kept, e.g. those labelled "actually normal") and/or a folder under the data root;
every image is decoded before anything changes, an image that looks defective, is unrecognised (not like
the training images) or is labelled defective is refused unless forced (400 ``not_taught``, with the
reason), and a teach after which a labelled defect would pass is refused unless forced. An image taught
although it scored above s_max, or whose exposure lies far outside the training images' (it does not widen
that range: expert/teach.py ``_taught_exposure``), is named in the answer's ``change.warnings``. The model is replaced
atomically; a concurrent threshold change or teach answers 409.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Depends, Request

from eagle_iad.errors import ConfigError, ImageError, ModelFormatError, OutputError
from eagle_iad.expert.store import MANIFEST
from eagle_iad.expert.teach import TeachImage, teach
from eagle_iad.mllm.serving import ApiError
from eagle_iad.service import schemas
from eagle_iad.service.access import API_NAME, ENGINEER, acting_name, audit_detail
from eagle_iad.service.context import require_key, service
from eagle_iad.service.routes_categories import change_refused, describe, folder_images, not_fitted
from eagle_iad.service.security import check_name
from eagle_iad.service.store import LABEL_SAID, Inspection, InspectionStore, LabelChangedError
from eagle_iad.service.teaching import history_guard, inspection_images

router = APIRouter(prefix="/v1", dependencies=[Depends(require_key)], responses=schemas.ERROR_RESPONSES)


@router.post("/categories/{name}/teach", dependencies=ENGINEER, response_model=schemas.TeachAnswer)
def teach_category(name: str, request_body: schemas.TeachRequest, request: Request) -> dict[str, Any]:
    """Teach the category's model these normal images; the next inspection uses the taught model."""
    state = service(request)
    directory = state.settings.models_dir / check_name(name)
    if not (directory / MANIFEST).is_file():
        raise not_fitted(state, directory, name, "teaching")
    if not request_body.why.strip():
        raise ApiError(400, "'why' must say why these images are normal (it is kept in the model's history)",
                       code="invalid_request")  # fmt: skip
    files_dir = state.settings.files_dir
    try:
        images = inspection_images(state.store, files_dir, name, request_body.inspections)
        if request_body.folder is not None:
            images += [TeachImage(path.name, path) for path in folder_images(state, request_body.folder)]
        if not images:
            raise ConfigError("give the inspections to teach, or a folder of normal images")
        with state.model_changes.making(name, "a teach"):
            digests, labelled = history_guard(state.store, files_dir, name)
            by = acting_name(request, request_body.by, API_NAME)
            result = teach(directory, images, why=request_body.why, by=by, force=request_body.force,
                           labelled_defective=digests, labelled=labelled)  # fmt: skip
    except (ConfigError, ImageError, ModelFormatError, OutputError) as exc:
        raise change_refused(name, exc, directory, "not_taught", files_dir) from None
    state.experts.drop(name)
    notices = label_taught(state.store, images, result.entry, by, request_body.why)
    forced = result.entry.get("forced") or []
    overrode = f", forced past: {'; '.join(forced)}" if forced else ""
    audit_detail(request, f"taught {len(images)} image(s): {request_body.why}{overrode}")
    return {"change": result.entry, "category": describe(directory, with_scores=True), "notices": notices}


def label_taught(
    store: InspectionStore, images: list[TeachImage], entry: dict[str, Any], by: str, why: str
) -> list[str]:
    """Label normal, in the teacher's name, each inspection a forced teach took that nobody had labelled: the
    history then says what the model was taught it is (a supervisor's teach is their label), with the why as its
    note, and the answer says so for each. One labelled meanwhile by someone else keeps their label."""
    taught = {str(image.get("inspection")) for image in entry.get("images", []) if image.get("inspection")}
    when = datetime.now(UTC).isoformat(timespec="milliseconds")
    notices = []
    for image in images:
        if image.inspection is None or image.label is not None or image.inspection not in taught:
            continue
        note = f"taught as normal (forced: labelled by nobody before): {why.strip()}"[:500]
        try:
            stored = _label_unlabelled(store, image.inspection, image.label_revision, when, by, note)
        except LabelChangedError as exc:
            notices.append(f"{image.name} (inspection {image.inspection}) was taught, and {_changed(exc.current)}")
            continue
        if stored is None:  # removed meanwhile (an admin's delete): nothing to label
            continue
        if (stored.label_history or [{}])[-1].get("agreed"):  # labelled normal meanwhile: theirs stands
            notices.append(f"{image.name} (inspection {image.inspection}) was taught, and {_changed(stored)}")
            continue
        notices.append(f"{image.name} (inspection {image.inspection}) was labelled normal by nobody: it is now "
                       f"labelled normal by {by}, who taught it")  # fmt: skip
    return notices


def _label_unlabelled(
    store: InspectionStore, inspection: str, revision: int, when: str, by: str, note: str
) -> Inspection | None:
    """Label ``inspection`` normal on ``revision`` (the one the teach read); where its revision moved and it is
    unlabelled now all the same (a label given and cleared since), label it on the revision it is at: nobody says
    otherwise, and the history must say what the model was taught. A label someone gave since is kept
    (:class:`LabelChangedError`)."""
    try:
        return store.set_label(inspection, "normal", when, by=by, note=note, expected=revision)
    except LabelChangedError as exc:
        if exc.current.label is not None:
            raise
        return store.set_label(inspection, "normal", when, by=by, note=note, expected=exc.current.label_revision or 0)


def _changed(now: Inspection) -> str:
    """What happened to a taught inspection's label since the teach read it, in the words a person labels with (a
    label cleared meanwhile is said so, not "labelled None by None")."""
    if now.label is None:
        return "its label was given and cleared meanwhile; it is left unlabelled"
    return (
        f"labelled meanwhile: {LABEL_SAID.get(now.label, now.label)} by {now.label_by or 'someone'}; that label is kept"
    )
