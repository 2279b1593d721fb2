"""Checks of an evaluation's data before any work: every test image decodes, every mask fits its image.

Why: ``eagle eval`` and ``eagle eval-expert`` otherwise meet a corrupt image or a mask of the wrong size
only when they reach it — after an expert fit and hours of MLLM records, or at the metrics, with no
report written. Decoding each file once up front costs seconds (threads, as PIL decodes without the GIL)
and turns that into one error listing the bad files, as ``eagle attention`` does for its one image.
Also: a layout that finds no mask at all where the data has a mask folder (a wrong ``--layout``) is
said on stderr before the run, since its pixel metrics would otherwise just read "–".
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from eagle_iad.errors import DataError, EagleError
from eagle_iad.images import load_mask, load_rgb

#: At most this many bad files are named in the error (the count says how many there are in all).
SHOWN = 10
#: Folder names datasets keep their masks in (MVTec AD and 3D-AD ``ground_truth``/``gt``, folder ``masks``).
MASK_FOLDERS = ("ground_truth", "gt", "masks", "Masks")


def _check(pair: tuple[str, str | None]) -> EagleError | None:
    """The problem with one (image, mask) pair, or None."""
    image, mask = pair
    try:
        rgb = load_rgb(image)
        if mask is not None:
            load_mask(mask, (rgb.shape[0], rgb.shape[1]))
    except EagleError as exc:
        return exc
    return None


def check_test_files(pairs: Iterable[tuple[str | os.PathLike[str], str | os.PathLike[str] | None]]) -> None:
    """Decode every (test image, mask or None) once; one error naming the bad ones (up to :data:`SHOWN`).

    One bad file raises its own error (an :class:`ImageError` naming it); several, a :class:`DataError`.
    """
    unique = list(dict.fromkeys((str(image), None if mask is None else str(mask)) for image, mask in pairs))
    with ThreadPoolExecutor(max_workers=max(1, min(8, os.cpu_count() or 1))) as pool:
        problems = [p for p in pool.map(_check, unique) if p is not None]
    if not problems:
        return
    if len(problems) == 1:
        raise problems[0]
    more = f" (the first {SHOWN} shown)" if len(problems) > SHOWN else ""
    listed = "; ".join(map(str, problems[:SHOWN]))
    raise DataError(
        f"{len(problems)} of the {len(unique)} test images cannot be used{more}: {listed}; "
        "fix or remove them (nothing was fitted or asked yet)"
    )


def _mask_folder(category_dir: Path) -> Path | None:
    """A folder of :data:`MASK_FOLDERS` under ``category_dir`` (three levels at most), or None."""
    if not category_dir.is_dir():
        return None
    base_depth = len(category_dir.parts)
    for folder, subdirs, _ in os.walk(category_dir):
        depth = len(Path(folder).parts) - base_depth
        for name in subdirs:
            if name in MASK_FOLDERS:
                return Path(folder) / name
        if depth >= 2:
            subdirs.clear()
    return None


def unread_mask_folders(root: Path | None, samples: Sequence[tuple[str, int, str | None]], layout: str) -> list[str]:
    """Warnings for categories where ``layout`` read no mask for any defect image but the data has a mask folder.

    ``samples``: (category, label, mask path or None) per test image.
    """
    if root is None:
        return []
    by_category: dict[str, list[tuple[int, str | None]]] = {}
    for category, label, mask in samples:
        by_category.setdefault(category, []).append((label, mask))
    notes: list[str] = []
    for category, rows in sorted(by_category.items()):
        defects = sum(label == 1 for label, _ in rows)
        if not defects or any(mask is not None for _, mask in rows):
            continue
        found = _mask_folder(Path(root) / category)
        if found is not None:
            notes.append(
                f"category {category!r}: layout {layout!r} read no mask for any of its {defects} defect images, "
                f"but {found} exists; is --layout right? Pixel AUROC, AUPRO and the box measures need the masks"
            )
    return notes
