"""What a teach needs from the history: the images of inspections, and the defects it must not hide.

Why the service keeps each inspection's image (``<files>/<id>/image``, the uploaded bytes): an operator's
"actually normal" is only useful to the model if the image it was said of can be taught, and the guard
against teaching a defect rescores the images labelled defective, which the pictures alone cannot give.
Shared by ``POST /v1/categories/{name}/teach`` and ``eagle teach --models/--state-dir/--db``.
"""

from __future__ import annotations

from pathlib import Path

from eagle_iad.errors import ConfigError
from eagle_iad.expert.teach import LabelledImage, TeachImage
from eagle_iad.service.store import InspectionStore

#: The inspected image's bytes, as uploaded, beside its pictures in ``<files>/<id>/``.
KEPT_IMAGE = "image"


def kept_image(files_dir: Path, inspection_id: str) -> Path:
    return files_dir / inspection_id / KEPT_IMAGE


def inspection_images(store: InspectionStore, files_dir: Path, category: str, ids: list[str]) -> list[TeachImage]:
    """The kept images of inspections ``ids`` of ``category``, or :class:`ConfigError` naming the first that
    cannot be taught (unknown, another category's, or inspected before images were kept)."""
    images = []
    for inspection_id in ids:
        record = store.get(inspection_id)
        if record is None:
            raise ConfigError(f"no inspection {inspection_id!r} in the history; nothing was taught")
        if record.category != category:
            raise ConfigError(f"inspection {inspection_id} is of category {record.category!r}, not {category!r}; "
                              "nothing was taught")  # fmt: skip
        path = kept_image(files_dir, inspection_id)
        if not path.is_file():
            raise ConfigError(f"inspection {inspection_id}: its image was not kept (inspected before this version "
                              "kept images); nothing was taught")  # fmt: skip
        # Named as inspected (what the teach's warnings and the version comparison show), its id kept beside it.
        images.append(
            TeachImage(
                record.image_name,
                path,
                inspection=inspection_id,
                label=record.label,
                label_revision=record.label_revision or 0,
            )
        )
    return images


def history_guard(store: InspectionStore, files_dir: Path, category: str) -> tuple[dict[str, str], list[LabelledImage]]:
    """``(digest -> inspection id)`` of every image labelled defective in any category, and this category's
    labelled inspections whose images were kept (scored by the model before and after the teach)."""
    digests = {
        record.image_sha256: record.id for record in reversed(store.labelled_defective()) if record.image_sha256
    }  # the oldest inspection names a digest labelled more than once
    labelled = [
        LabelledImage(record.id, kept_image(files_dir, record.id), str(record.label), name=record.image_name)
        for record in store.labelled(category)
        if record.label in ("normal", "anomalous") and kept_image(files_dir, record.id).is_file()
    ]
    return digests, labelled
