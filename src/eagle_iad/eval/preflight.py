"""Checks of an evaluation's data before any work: every test image decodes, every mask fits its image.

Why: ``eagle eval`` and ``eagle eval-expert`` otherwise meet a corrupt image or a mask of the wrong size
only when they reach it — after an expert fit and hours of MLLM records, or at the metrics, with no
report written. Decoding each file once up front costs seconds (threads, as PIL decodes without the GIL)
and turns that into one error listing the bad files, as ``eagle attention`` does for its one image.
Also: a layout that finds no mask at all where the data has a mask folder (a wrong ``--layout``) is
said on stderr before the run, since its pixel metrics would otherwise just read "–".

A resumed ``eagle eval`` run does not decode its data again: the files checked good are kept in
``RUN/preflight.json`` (:data:`CHECKED_FILE`: each file's size, modification and change time) and only a
pair with a new or changed file is checked again (minutes on MMAD-sized data otherwise, at every resume).
Another eagle version or other image limits (``EAGLE_MAX_PIXELS``, ``EAGLE_MAX_ASPECT``) check everything again.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from eagle_iad.atomic import atomic_write_text
from eagle_iad.errors import EagleError, ImageError
from eagle_iad.images import SHOWN_UNUSABLE, load_mask, load_rgb, max_aspect, max_pixels, unusable_error
from eagle_iad.naming import plural

#: At most this many bad files are named in the error (the count says how many there are in all).
SHOWN = SHOWN_UNUSABLE
#: Folder names datasets keep their masks in (MVTec AD and 3D-AD ``ground_truth``/``gt``, folder ``masks``).
MASK_FOLDERS = ("ground_truth", "gt", "masks", "Masks")


#: ``RUN/preflight.json``: the (image, mask) pairs a run checked good, with their files' stamps.
CHECKED_FILE = "preflight.json"
#: Its format; a file of another format is ignored (everything is checked again), never misread.
CHECKED_FORMAT = 1

Pair = tuple[str, str | None]
#: A file's (size, mtime_ns, ctime_ns): a rewrite changes them (ctime even when the mtime is put back).
Stamp = tuple[int, int, int]
#: A pair checked good: the stamps of its image and of its mask (None without a mask).
Checked = dict[Pair, tuple[Stamp, Stamp | None]]


def _stamp(path: str) -> Stamp:
    stat = os.stat(path)
    return (stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)


def _check(pair: Pair) -> tuple[EagleError | None, tuple[Stamp, Stamp | None] | None]:
    """The problem with one (image, mask) pair, or None; and, when it is good, its files' stamps.

    The stamps are taken before the decode: a file rewritten meanwhile then does not match them next time.
    """
    image, mask = pair
    try:
        stamps = (_stamp(image), None if mask is None else _stamp(mask))
    except OSError:
        stamps = None  # the decode below says what is wrong with it
    try:
        rgb = load_rgb(image)
        if mask is not None:
            load_mask(mask, (rgb.shape[0], rgb.shape[1]))
    except EagleError as exc:
        return exc, None
    return None, stamps


def _unchanged(pair: Pair, known: Mapping[Pair, tuple[Stamp, Stamp | None]]) -> bool:
    """Whether ``pair`` was checked good and neither of its files changed since (a stat each, no decode)."""
    was = known.get(pair)
    if was is None:
        return False
    try:
        return was == (_stamp(pair[0]), None if pair[1] is None else _stamp(pair[1]))
    except OSError:
        return False


def check_test_files(
    pairs: Iterable[tuple[str | os.PathLike[str], str | os.PathLike[str] | None]],
    known: Mapping[Pair, tuple[Stamp, Stamp | None]] | None = None,
    outcome: str = "nothing was fitted or asked yet",
) -> Checked:
    """Decode every (test image, mask or None) once; one error naming the bad ones (up to :data:`SHOWN`).

    One bad file raises its own error (an :class:`ImageError` naming it); several, one naming them all.
    ``known``: pairs checked good before (:func:`read_checked`); one whose files did not change is not decoded
    again. Returns every pair checked good with its stamps, to keep with :func:`write_checked`. ``outcome``: what
    the refusal left undone, in the caller's words (``eagle eval``'s default: nothing was fitted or asked yet).
    """
    unique = list(dict.fromkeys((str(image), None if mask is None else str(mask)) for image, mask in pairs))
    known = known or {}
    good: Checked = {pair: known[pair] for pair in unique if _unchanged(pair, known)}
    todo = [pair for pair in unique if pair not in good]
    with ThreadPoolExecutor(max_workers=max(1, min(8, os.cpu_count() or 1))) as pool:
        results = list(pool.map(_check, todo))
    problems = [problem for problem, _ in results if problem is not None]
    if not problems:
        good.update((pair, stamps) for pair, (_, stamps) in zip(todo, results, strict=True) if stamps is not None)
        return good
    raise unusable_error(problems, len(unique), "test images", outcome)


def _limits() -> dict[str, Any]:
    """What else decides whether a file passes: the eagle version and the image limits in force."""
    from eagle_iad import __version__

    try:
        return {"eagle": __version__, "max_pixels": max_pixels(), "max_aspect": max_aspect()}
    except ImageError:
        return {"eagle": __version__}  # a malformed limit: the decode says so, on every file checked


def read_checked(folder: Path) -> Checked:
    """The pairs ``folder/preflight.json`` holds as checked good; none where it is missing, unreadable, of
    another format, eagle version or image limits (then everything is checked again: it is only a shortcut)."""
    try:
        data = json.loads((Path(folder) / CHECKED_FILE).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {}
    if not isinstance(data, dict) or data.get("format") != CHECKED_FORMAT or data.get("checked_with") != _limits():
        return {}
    checked: Checked = {}
    try:
        for row in data["files"]:
            mask = None if row["mask"] is None else str(row["mask"])
            image_stamp = (int(row["image_stamp"][0]), int(row["image_stamp"][1]), int(row["image_stamp"][2]))
            mask_stamp = None if row["mask_stamp"] is None else (
                int(row["mask_stamp"][0]), int(row["mask_stamp"][1]), int(row["mask_stamp"][2]))  # fmt: skip
            checked[(str(row["image"]), mask)] = (image_stamp, mask_stamp)
    except (KeyError, TypeError, ValueError, IndexError):
        return {}
    return checked


def write_checked(folder: Path, checked: Mapping[Pair, tuple[Stamp, Stamp | None]]) -> None:
    """Keep ``checked`` in ``folder/preflight.json`` (atomically), for the next resume's :func:`check_test_files`."""
    rows = [
        {"image": image, "mask": mask, "image_stamp": list(stamps[0]),
         "mask_stamp": None if stamps[1] is None else list(stamps[1])}
        for (image, mask), stamps in sorted(checked.items(), key=lambda kv: (kv[0][0], kv[0][1] or ""))
    ]  # fmt: skip
    data = {"format": CHECKED_FORMAT, "checked_with": _limits(), "files": rows}
    atomic_write_text(Path(folder) / CHECKED_FILE, json.dumps(data, indent=1) + "\n")


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
                f"category {category!r}: layout {layout!r} read no mask for any of its "
                f"{plural(defects, 'defect image')}, but {found} exists; is --layout right? Pixel AUROC, AUPRO and "
                "the box measures need the masks"
            )
    return notes
