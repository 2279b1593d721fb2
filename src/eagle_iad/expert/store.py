"""Saving and loading a fitted category: one directory, safetensors + JSON, atomic, versioned.

Layout of ``DIR``::

    model.json            schema, versions, config, backbone id + hash, thresholds,
                          training-score distribution, sha256 of the tensor file, the
                          history of threshold changes, and a checksum over the fields
                          that matter (a hand edit is refused; ``eagle threshold`` records one)
    tensors.safetensors   memory bank, bank image ids, per-training-patch image id and selected flag,
                          and (schema 4) a downsized JPEG per training image, the nearest-normal
                          references an inspection shows (packed bytes + offsets)

No pickle is involved, so a model directory from an untrusted source cannot run code. Loading
verifies the schema version, the tensor file's hash, every tensor's shape, the thresholds (finite,
>= 0, s_max the largest training score) and, from schema 3, the manifest's checksum before anything
uses them.

Saving never destroys a user's files and is crash-consistent (the folder swap itself, its lock and
its recovery are eagle_iad/folder_swap.py's, for any folder):

* :func:`check_replaceable` refuses any target that is not empty and not a model of this project
  (its ``model.json`` proves it), before any work starts; the CLI and the service call it first.
* The new model is written complete into ``.NAME.tmp-*`` next to the target. On Linux the two
  directories are then swapped in one atomic ``renameat2(RENAME_EXCHANGE)``, so at every instant
  the target is the old or the new complete model. Elsewhere the old model is renamed to
  ``.NAME.old-*`` and the new one into place; a crash between those two renames leaves no target,
  and the next :func:`read_manifest` / :func:`load` / :func:`save` restores the retired copy.
* Saves into one folder are serialised by an advisory lock on that folder, and each save removes
  the ``.NAME.tmp-*`` / ``.NAME.old-*`` leftovers of earlier crashed saves.
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import json
import math
import os
import re
import shutil
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from eagle_iad import __version__
from eagle_iad.atomic import new_file_mode, new_folder_mode
from eagle_iad.errors import ConfigError, ModelFormatError, OutputError
from eagle_iad.expert import manifest as _manifest_file
from eagle_iad.expert.backbones import BackboneId
from eagle_iad.expert.coverage import Coverage
from eagle_iad.expert.encodings import parse_colours, parse_encodings
from eagle_iad.expert.lighting import ExposureRange
from eagle_iad.expert.manifest import FORMAT as FORMAT
from eagle_iad.expert.manifest import MANIFEST as MANIFEST
from eagle_iad.expert.manifest import MODEL_FILES as MODEL_FILES
from eagle_iad.expert.manifest import OLDEST_SCHEMA as OLDEST_SCHEMA
from eagle_iad.expert.manifest import SCHEMA_VERSION as SCHEMA_VERSION
from eagle_iad.expert.manifest import TENSORS as TENSORS
from eagle_iad.expert.manifest import check_checksum, check_thresholds, manifest_checksum, model_root, upgraded_config
from eagle_iad.expert.model_warnings import REFIT_NOTICE, rewarned
from eagle_iad.expert.patchcore import ExpertConfig, ExpertModel
from eagle_iad.expert.preprocess import check_stored_mode, preprocessor_of
from eagle_iad.expert.references import REFERENCE_FORMAT, REFERENCE_MAX_SIDE
from eagle_iad.expert.references import pack as pack_references
from eagle_iad.expert.references import unpack as unpack_references
from eagle_iad.expert.tails import Tails
from eagle_iad.expert.versions import VERSIONS, current_version, next_number, version_folder, what_is_there
from eagle_iad.expert.versions import carry as carry_versions
from eagle_iad.file_hash import file_sha256
from eagle_iad.folder_swap import (
    clean_folder,
    clean_leftovers_of,
    folder_lock,
    fsync_dir,
    recover_if_retired,
    staging_folder,
    swap_in,
)
from eagle_iad.outputs import check_output_path
from eagle_iad.registry import plugin_hint
from eagle_iad.stops import Stopped, uninterrupted
from eagle_iad.tgps.calibration import MapCalibration
from eagle_iad.tgps.thresholds import THRESHOLD_RULES, Thresholds, compute_thresholds

#: A training image's SHA-256 as ``training.sha256`` keeps it (hex, lower case, as hashlib writes it).
_SHA256 = re.compile(r"[0-9a-f]{64}")

#: Test hook: called with the name of each step of :func:`save` (a test kills the process there).
_step_hook: Callable[[str], None] | None = None


def _step(name: str) -> None:
    if _step_hook is not None:
        _step_hook(name)


def _manifest(model: ExpertModel, tensors_sha256: str) -> dict[str, Any]:
    fields = {
        "format": FORMAT,
        "schema_version": SCHEMA_VERSION,
        "package_version": __version__,
        "created": model.created,
        **({} if model.fitted_by is None else {"fitted_by": model.fitted_by}),  # absent: not recorded
        "category": model.category,
        "config": model.config.to_dict(),
        "backbone": {"name": model.backbone.name, "sha256": model.backbone.sha256},
        "grid": list(model.grid),
        "thresholds": model.thresholds.to_dict(),
        "training": {
            "images": model.train_images,
            "scores": [float(s) for s in model.train_scores],
            "patches": int(model.patch_image_ids.shape[0]),
            "bank_size": int(model.bank.shape[0]),
            "references": None if model.references is None else _references_record(len(model.references)),
            "map_maxima": None if model.map_maxima is None else [float(m) for m in model.map_maxima],
            "coreset_radius": model.coreset_radius,
            "tails": None
            if model.tails is None
            else {"per_image": model.tails.per_image, "rows": int(model.tails.rows.shape[0])},
            # Absent (not null) where unknown: a model saved before schema 10 keeps its checksum's fields.
            **({} if model.train_sha256 is None else {"sha256": model.train_sha256}),
            "encodings": model.train_encodings,
            "colours": model.train_colours,
            "exposure": None if model.train_exposure is None else model.train_exposure.to_dict(),
        },
        "timings": model.timings,
        "calibration": None if model.calibration is None else model.calibration.to_dict(),
        "coverage": None if model.coverage is None else model.coverage.to_dict(),
        "tensors": {"file": TENSORS, "sha256": tensors_sha256},
        "history": model.history,
        "warnings": model.warnings,
    }
    # Over the values as a reader will parse them (tuples become lists), so a load recomputes the same.
    manifest: dict[str, Any] = json.loads(json.dumps(fields))
    manifest["checksum"] = manifest_checksum(manifest)
    return manifest


def _references_record(count: int) -> dict[str, Any]:
    return {"format": REFERENCE_FORMAT, "max_side": REFERENCE_MAX_SIDE, "count": count}


def check_replaceable(directory: str | os.PathLike[str]) -> Path:
    """The absolute target of a save, or :class:`OutputError` if saving there could destroy anything.

    Why before any work: a fit takes minutes, and a refusal at the end would waste them; the CLI and
    the service call this first, and :func:`save` calls it again. Accepted: a missing folder in a
    writable place, an empty folder, or a folder holding exactly a model of this project (its
    ``model.json`` says format ``eagle-iad/expert``). Refused, with one line naming the folder: a file,
    a symbolic link, the filesystem root, the current directory (or one above it), a folder with
    anything else in it, and a place that cannot be written.
    """
    given = os.fspath(directory)
    target = check_output_path(directory, "a model", "./model", from_parent=True)
    if os.path.lexists(target):
        try:
            entries = sorted(os.listdir(target))
        except OSError as exc:
            raise OutputError(f"{given}: cannot be read ({exc.strerror})") from None
        if entries:
            if not _is_model_manifest(target / MANIFEST) and not _holds_versions(target):
                held = f"{len(entries)} {'entry' if len(entries) == 1 else 'entries'}"
                raise OutputError(
                    f"{given}: holds {held} and is not an EAGLE-IAD model ({MANIFEST} with format "
                    f"{FORMAT!r} is missing); refusing to replace it; choose an empty or new folder"
                )
            extra = [name for name in entries if name not in MODEL_FILES and name != VERSIONS]
            if extra:
                shown = ", ".join(extra[:3]) + (", ..." if len(extra) > 3 else "")
                raise OutputError(
                    f"{given}: holds a model and other files ({shown}); refusing to replace it; move them away "
                    "or choose a new folder"
                )
    return target


def check_changeable(directory: str | os.PathLike[str]) -> None:
    """Refuse, before any work, a change (teach, threshold, rollback) whose save would be refused at the end.

    Why: a teach embeds its images and scores them before it saves, and the save replaces the model folder
    whole, which it cannot do to the folder the command runs in; refused only then, the work was wasted
    and the reason read as one for a new fit's folder.
    """
    recover_model(directory)
    kept = Path(os.path.abspath(directory))
    number = kept.name if kept.name.isascii() and kept.name.isdigit() else None
    if number is not None and kept.parent.name == VERSIONS and is_model_folder(kept.parent.parent):
        model = kept.parent.parent
        shown = os.path.relpath(model) if model.is_relative_to(Path.cwd()) else str(model)
        raise ConfigError(f"{directory}: is version {number} of the model {shown}, kept read-only (every change is "
                          f"a new version); to make it current, eagle rollback --model {shown} --to {number}; to "
                          f"change the model, give --model {shown}")  # fmt: skip
    if not is_model_folder(Path(directory)):  # (a model.json deleted: a rollback to a version recovers it)
        model_root(directory)  # not a model at all: said as such, not as a fit's folder
    target = Path(directory).resolve()
    here = Path.cwd().resolve()
    # a save cannot replace the model through a link; check_output_path's "or a new folder" fits a fit's --out only:
    # name the folder it points to (from here when it is below)
    if os.path.islink(os.path.abspath(directory)):
        pointed = os.path.relpath(target, here) if target.is_relative_to(here) else str(target)
        raise OutputError(f"{directory}: is a symbolic link to {pointed}, and a change replaces the model folder "
                          f"whole; give the folder it points to (--model {pointed})")  # fmt: skip
    if here == target or target in here.parents:
        raise ConfigError(
            f"{directory}: the model folder is the current directory (or holds it), and a change replaces the folder "
            f"whole; run the command from outside it (cd {target.parent}, then --model {target.name})"
        )
    check_replaceable(directory)


def recover_model(directory: str | os.PathLike[str]) -> None:
    """Before reading a model's folder by other means than :func:`load`: put back the retired copy a save
    that crashed between its two renames left (eagle_iad/folder_swap.py), so it is not read as missing."""
    recover_if_retired(Path(os.path.abspath(directory)), _is_complete)


def is_model_folder(directory: Path) -> bool:
    """A model's folder: its ``model.json``, or versions kept where its ``model.json`` was deleted (listed as
    unreadable, and recovered by a rollback to one of them)."""
    return (directory / MANIFEST).is_file() or _holds_versions(directory)


def _holds_versions(folder: Path) -> bool:
    """Whether ``folder`` keeps versions of a model: a model folder even where its own manifest is damaged,
    which a rollback to one of them replaces (:func:`rollback`)."""
    versions = folder / VERSIONS
    try:
        return versions.is_dir() and any(_is_model_manifest(child / MANIFEST) for child in versions.iterdir())
    except OSError:  # unreadable: not known to be a model's
        return False


def _is_model_manifest(path: Path) -> bool:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    return isinstance(data, dict) and data.get("format") == FORMAT


def clean_leftovers(folder: str | os.PathLike[str]) -> list[str]:
    """Recover and clean up after crashed saves of every model in ``folder``; the names concerned.

    For a folder of models (the service's, at start-up): a retired model with no model in its place is
    restored, and staging or retired copies are removed (eagle_iad/folder_swap.py).
    """
    return clean_folder(folder, _is_complete)


def _is_complete(directory: Path) -> bool:
    """A model folder to keep after a crashed save: its manifest ours and its tensor file the manifest's, or
    one that keeps versions although its own files are damaged.

    Why the second: a rollback replaces such a folder (it recovers a model that no longer loads), and a
    crash between the two renames of a swap must put it back, versions and all, not leave it for the
    clean-up to remove.
    """
    try:
        data = json.loads((directory / MANIFEST).read_text(encoding="utf-8"))
        complete = (
            isinstance(data, dict)
            and data.get("format") == FORMAT
            and file_sha256(directory / TENSORS) == data.get("tensors", {}).get("sha256")
        )
    except (OSError, UnicodeDecodeError, ValueError, AttributeError):
        complete = False
    return complete or _holds_versions(directory)


class _NonFiniteNumberError(Exception):
    """The manifest would hold NaN or infinity (JSON has neither): the model is refused, not written."""


def _write_model(model: ExpertModel, staging: Path) -> None:
    tensors_path = staging / TENSORS
    tensors: dict[str, torch.Tensor] = {
        "bank": model.bank.contiguous().float(),
        "bank_image_ids": model.bank_image_ids.to(torch.int32).contiguous(),
        "patch_image_ids": model.patch_image_ids.to(torch.int32).contiguous(),
        "selected": model.selected.to(torch.uint8).contiguous(),
    }
    if model.map_offset is not None:
        tensors["map_offset"] = model.map_offset.float().contiguous()
    if model.tails is not None:
        tensors["tail_rows"] = model.tails.rows.float().contiguous()
        tensors["tail_image_ids"] = model.tails.image_ids.to(torch.int32).contiguous()
        tensors["tail_distances"] = torch.from_numpy(np.ascontiguousarray(model.tails.distances, dtype=np.float32))
        tensors["tail_floors"] = torch.from_numpy(np.ascontiguousarray(model.tails.floors, dtype=np.float64))
    if model.references is not None:
        data, offsets = pack_references(model.references)
        tensors["reference_bytes"] = torch.from_numpy(data)
        tensors["reference_offsets"] = torch.from_numpy(offsets)
    try:
        save_file(
            tensors,
            str(tensors_path),
            # One key: safetensors writes the metadata map in a random order, and identical tensors must give
            # identical bytes so that versions share them (expert/versions.py); model.json has the schema.
            metadata={"format": FORMAT},
        )
    except SafetensorError as exc:  # the Rust writer reports a full disk as text ("... (os error 28)")
        found = re.search(r"os error (\d+)", str(exc))
        code = int(found.group(1)) if found else errno.EIO
        raise OSError(code, os.strerror(code), str(tensors_path)) from exc
    _step("tensors written")
    manifest_path = staging / MANIFEST
    try:
        text = json.dumps(_manifest(model, file_sha256(tensors_path)), indent=2, allow_nan=False) + "\n"
    except ValueError as exc:  # a non-finite number, which no load would accept either
        raise _NonFiniteNumberError(str(exc)) from None
    manifest_path.write_text(text)
    for path in (tensors_path, manifest_path):
        os.chmod(path, new_file_mode())  # like any other file the user saves (umask), whatever the writer chose
        with path.open("rb") as handle:
            os.fsync(handle.fileno())
    os.chmod(staging, new_folder_mode())  # mkdtemp made it owner-only; the mode mkdir would give it
    fsync_dir(staging)


def _validate_staged(staging: Path, target: Path) -> None:
    """Load the staged model with every check a later load makes, before it may replace anything.

    Why the load itself and not a list of checks: a model that nothing can load must never take the
    place of one that works (a fixed threshold of -1 once replaced a working model and reported
    success), and only the loader knows every rule a model must meet, plugins' rules included. The
    cost is one more read of the tensor file the save has just written (in the page cache).
    """
    try:
        load(staging)
    except ModelFormatError as exc:
        reason = str(exc).replace(str(staging), str(target))
        raise ModelFormatError(
            f"{target}: the new model fails the checks every load makes, so it was not saved and the previous "
            f"model is unchanged ({reason})"
        ) from None


class ModelChangedError(ConfigError):
    """A save derived from one model found another in its folder (a concurrent change): nothing was written.

    ``now``: what the folder holds now, in words (:func:`~eagle_iad.expert.versions.what_is_there`: "version 9
    (threshold set to 97.1 by sam at 04:39:20 UTC)"), so a client can word the refusal its own way; the
    message says it with what to do on the command line."""

    def __init__(self, message: str, now: str = "") -> None:
        super().__init__(message)
        self.now = now


#: :func:`model_fingerprint` of a folder holding no model: a save given it as ``replacing`` expects none there.
NO_MODEL = "none"


def model_fingerprint(directory: str | os.PathLike[str]) -> str:
    """What ``save(..., replacing=)`` compares: the model's :func:`_fingerprint`, or :data:`NO_MODEL` when the
    folder holds none (so a save that expected no model is refused if one appeared meanwhile)."""
    return _fingerprint(Path(directory)) or NO_MODEL


#: A fit that found another model in its folder than the one there when it started (``eagle fit``; the
#: service's fit job says the same in its own words).
FIT_MODEL_CHANGED = (
    "the model changed while this fit ran (a threshold change, teach or rollback was saved meanwhile); the fitted "
    "model was not saved, so that change is kept: fit again to replace it"
)


def refit_notice(directory: str | os.PathLike[str], category: str | None = None) -> str | None:
    """What a fit into ``directory`` would discard from the model there: its taught images and a tau set by hand
    (``eagle threshold``), or the whole model where it is of another category than ``category`` (the fit's), said
    with the version that keeps them; ``None`` where there is none of these (or no model).

    Why: a refit starts from the training images alone, so the model it replaces may hold what only a person
    added (images taught as normal, a fixed tau); they are not lost (the version stays), but the fit must
    say so, or they are silently gone from the current model. A fit of another category into a folder
    (``--category tire --out m2/mixed``, a slip of the folder name) replaces a model that was never this
    category's: the same one line says which it was and the command that brings it back.
    """
    try:
        data = _manifest_file.read_manifest(directory, verify=False)
    except (ModelFormatError, OSError):
        return None
    # A change a rollback undid (kept on the record, marked) is not in the model.
    history = [entry for entry in data.get("history") or [] if isinstance(entry, dict) and not entry.get("undone_by")]
    taught = sum(len(entry.get("images") or []) for entry in history if entry.get("action") == "teach")
    raw = data.get("thresholds")
    thresholds: dict[str, Any] = raw if isinstance(raw, dict) else {}
    by_hand = any(entry.get("action") in ("set", "restore") for entry in history) and thresholds.get("rule") == "fixed"
    had = []
    if taught:
        had.append(f"{taught} taught image{'s' if taught != 1 else ''}")
    tau = thresholds.get("tau")
    if by_hand and isinstance(tau, int | float):
        had.append(f"a fixed tau {tau:.6g}")
    old = data.get("category")
    if category is not None and isinstance(old, str) and old != category:
        return _other_category_notice(directory, old, category, had)
    if not had:
        return None
    number = current_version(directory)
    kept = "they stay" if taught > 1 or len(had) > 1 else "it stays"
    if number is None:  # model.json edited by hand: no version matches it
        return (f"{REFIT_NOTICE}the current model, which had {' and '.join(had)} (eagle versions --model "
                f"{os.fspath(directory)} lists the versions that keep them)")  # fmt: skip
    return (f"{REFIT_NOTICE}version {number}, which had {' and '.join(had)}; {kept} in version {number} "
            f"(eagle rollback --to {number})")  # fmt: skip


def _other_category_notice(directory: str | os.PathLike[str], old: str, category: str, had: list[str]) -> str:
    """:func:`refit_notice`'s line for a model of another category: which it was, and how to get it back."""
    folder = os.fspath(directory)
    extra = f", which had {' and '.join(had)}" if had else ""
    number = current_version(directory)
    if number is None:  # model.json edited by hand: no version matches it
        return (f"{REFIT_NOTICE}the current model, of category {old!r} (this fit's is {category!r}){extra}; eagle "
                f"versions --model {folder} lists the versions that keep it")  # fmt: skip
    return (f"{REFIT_NOTICE}version {number}, a model of category {old!r} (this fit's is {category!r}){extra}; it "
            f"stays in version {number}: eagle rollback --model {folder} --to {number} --why \"...\" brings it "
            "back")  # fmt: skip


def next_change(history: list[dict[str, Any]]) -> int:
    """The number of the next change in ``history``: one above every number there, those undone by a rollback
    included (kept marked ``undone_by``), so a change number is never given twice in a model's record.

    Why not ``len(history) + 1`` (models saved before): a rollback took the history of the version it went back
    to, and the changes after it, gone from the record, had their numbers given again to the next ones."""
    numbers = [int(entry["change"]) for entry in history if isinstance(entry.get("change"), int)]
    return max([len(history), *numbers]) + 1


def find_change(history: list[dict[str, Any]], number: int) -> dict[str, Any] | None:
    """The entry of change ``number``: by its ``change`` field (positions differ once a rollback kept undone
    changes), else, for an entry written without one, by position."""
    for entry in history:
        if entry.get("change") == number:
            return entry
    if 1 <= number <= len(history) and "change" not in history[number - 1]:
        return history[number - 1]
    return None


def save(
    model: ExpertModel, directory: str | os.PathLike[str], *, replacing: str | None = None, stamp: bool = False
) -> Path:
    """Write ``model`` to ``directory``, replacing only an empty folder or an earlier model there.

    Crash-consistent (see the module docstring); a refused target raises :class:`OutputError` and a
    failed write (full disk, permissions) raises it too, with the previous model left as it was.
    ``replacing``: :func:`_fingerprint` of the model this save was derived from; if the folder holds another
    one by the time the lock is held (a concurrent change), nothing is written and
    :class:`ModelChangedError` says to run again, so no change is silently lost. ``None``: no check;
    :data:`NO_MODEL` (:func:`model_fingerprint` of an empty folder): there must still be no model.

    ``stamp``: the model's newest history entry is the change this save makes; under the lock it is given the
    time the change takes effect (``at``: now, not when its preparation began, which for a teach can be many
    seconds earlier) and the number of the version it makes (``version``). The entry is changed in place, so
    the caller's copy says the same.
    """
    target = check_replaceable(directory)
    parent = target.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{directory}: cannot create {parent} ({exc.strerror or exc})") from exc
    with folder_lock(parent):
        clean_leftovers_of(target, _is_complete)
        target = check_replaceable(directory)  # again, under the lock: the folder may have changed
        if replacing is not None and (_fingerprint(target) or NO_MODEL) != replacing:
            now = what_is_there(target)
            raise ModelChangedError(
                f"{directory}: {now} was made while this change was prepared, so the model changed while it ran "
                "and nothing was saved: run the command again",
                now,
            )
        if stamp and model.history:
            model.history[-1]["at"] = datetime.now(UTC).isoformat(timespec="seconds")
            model.history[-1]["version"] = next_number(target)
        try:
            staging = staging_folder(target)
        except OSError as exc:
            raise OutputError(f"{directory}: cannot write in {parent} ({exc.strerror or exc})") from exc
        _step("staging created")
        swapped = False
        try:
            _write_model(model, staging)
            carry_versions(target, staging)
            _validate_staged(staging, target)
            _step("staged")
            with uninterrupted():  # a stop waits for the swap: "nothing half-written was kept" stays true
                swap_in(staging, target, _step)
                swapped = True
        except _NonFiniteNumberError as exc:
            shutil.rmtree(staging, ignore_errors=True)
            raise ModelFormatError(
                f"{directory}: the new model holds a non-finite number ({exc}), so it was not saved and the previous "
                "model is unchanged"
            ) from None
        except OSError as exc:
            shutil.rmtree(staging, ignore_errors=True)
            reason = exc.strerror or str(exc)
            message = f"{directory}: cannot write the model ({reason}); the previous model is unchanged"
            raise OutputError(message) from exc
        except Stopped as stop:
            shutil.rmtree(staging, ignore_errors=True)
            if swapped:  # the stop waited for the swap, which completed: the change is saved, and must say so
                stop.what = f"{directory}: the new model was saved just before the stop (eagle versions lists it)"
            raise
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    _step("saved")
    return target


#: Where :func:`retire_model` moves a retired model, inside the folder of models (a dot name: the service's
#: category listing, its start-up clean-up and a category name never meet it).
RETIRED = ".retired"


def retire_model(directory: str | os.PathLike[str], *, when: datetime | None = None) -> Path:
    """Move the model folder ``directory`` whole (every version, its taught images) to
    ``<parent>/.retired/<name>-<UTC time>/`` in one ``rename``; where it went.

    Why a rename and not a removal: at every instant the category is there complete or gone complete (a
    replica reading it, or a SIGKILL, never sees half a folder), and an administrator undoes it by moving
    the folder back under its name. Under the folder lock every save takes, so it never interleaves with a
    save; a change prepared from the model before and saved after it finds no model and is refused as a
    concurrent change (:class:`ModelChangedError`), so it does not bring the category back. Refused
    (:class:`ConfigError`) for a folder that is no model of this project.
    """
    target = Path(os.path.abspath(directory))
    parent = target.parent
    moment = (when or datetime.now(UTC)).astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    with folder_lock(parent):
        clean_leftovers_of(target, _is_complete)  # a crashed save's retired copy back first, its staging gone
        if os.path.islink(target) or not target.is_dir() or not is_model_folder(target):
            raise ConfigError(f"{directory}: is not a fitted model folder; nothing was retired")
        retired = parent / RETIRED
        try:
            retired.mkdir(exist_ok=True)
            destination = retired / f"{target.name}-{moment}"
            suffix = 1
            while os.path.lexists(destination):  # retired twice in one second: never onto another one
                suffix += 1
                destination = retired / f"{target.name}-{moment}-{suffix}"
            _step("retiring")
            os.rename(target, destination)
            _step("moved")
            fsync_dir(parent)
            fsync_dir(retired)
        except OSError as exc:
            raise OutputError(f"{directory}: cannot be moved to {retired} ({exc.strerror or exc}); the model is "
                              "unchanged") from exc  # fmt: skip
    return destination


def _fingerprint(directory: Path) -> str | None:
    """SHA-256 of the model's ``model.json`` bytes (any schema); None when there is none to read."""
    try:
        return file_sha256(directory / MANIFEST)
    except OSError:
        return None


def _require(data: dict[str, Any], key: str, kind: type, where: Path) -> Any:
    if key not in data or not isinstance(data[key], kind):
        raise ModelFormatError(f"{where}: field {key!r} is missing or not a {kind.__name__}")
    return data[key]


def read_manifest(directory: str | os.PathLike[str], verify: bool = True) -> dict[str, Any]:
    """Read and check ``model.json``, first restoring a model a crashed save left retired.

    The JSON-only reader is :func:`eagle_iad.expert.manifest.read_manifest` (no torch, no recovery),
    what ``eagle info`` uses; ``verify`` is passed on to it.
    """
    recover_if_retired(Path(os.path.abspath(directory)), _is_complete)  # a save crashed between its two renames
    return _manifest_file.read_manifest(directory, verify=verify)


def _patches_per_image_fit(patch_ids: torch.Tensor, n_images: int, config: ExpertConfig, grid: tuple[int, int]) -> bool:
    """Image after image, each with the mode's patch count (fixed grid) or at least one patch (``scale``)."""
    if preprocessor_of(config).fixed_grid:
        return bool(patch_ids.shape[0] == n_images * config.views_per_image() * grid[0] * grid[1])
    ids = patch_ids.long()
    if ids.numel() == 0 or bool((ids[1:] < ids[:-1]).any()) or int(ids[0]) != 0 or int(ids[-1]) != n_images - 1:
        return False
    counts = torch.bincount(ids, minlength=n_images)
    # ``grid`` is the first training image's: its patch count must be the first image's.
    return bool((counts > 0).all()) and int(counts[0]) == config.views_per_image() * grid[0] * grid[1]


def load(directory: str | os.PathLike[str]) -> ExpertModel:
    """Load and verify a model directory; every inconsistency raises :class:`ModelFormatError`."""
    root = Path(directory)
    data = read_manifest(root, verify=False)  # the specific checks below come first, the checksum last
    where = root / MANIFEST
    try:
        config = ExpertConfig.from_dict(upgraded_config(_require(data, "config", dict, where), data["schema_version"]))
        raw_calibration = data.get("calibration")
        calibration = None if raw_calibration is None else MapCalibration.from_dict(dict(raw_calibration))
        backbone_data = _require(data, "backbone", dict, where)
        backbone = BackboneId(str(backbone_data["name"]), str(backbone_data["sha256"]))
        thresholds = Thresholds.from_dict(_require(data, "thresholds", dict, where))
        training = _require(data, "training", dict, where)
        tensors_meta = _require(data, "tensors", dict, where)
        grid_raw = _require(data, "grid", list, where)
        grid = (int(grid_raw[0]), int(grid_raw[1]))
        train_images = [str(x) for x in training["images"]]
        train_scores = np.asarray(training["scores"], dtype=np.float64)
        history = list(data.get("history") or [])
        raw_coverage = data.get("coverage")  # absent from models saved before it existed: no such check
        coverage = None if raw_coverage is None else Coverage.from_dict(dict(raw_coverage))
        raw_maxima = training.get("map_maxima")  # schema 6
        map_maxima = None if raw_maxima is None else np.asarray(raw_maxima, dtype=np.float64)
        raw_radius = training.get("coreset_radius")
        coreset_radius = None if raw_radius is None else float(raw_radius)
        raw_tails = training.get("tails")  # schema 9
        tails = None if raw_tails is None else {key: int(raw_tails[key]) for key in ("per_image", "rows")}
        raw_digests = training.get("sha256")  # schema 10
        train_sha256 = None if raw_digests is None else list(raw_digests)
        raw_encodings = training.get("encodings")  # schema 10; older: unknown
        encodings = None if raw_encodings is None else parse_encodings(raw_encodings, "training.encodings")
        raw_colours = training.get("colours")  # schema 11; older: unknown
        colours = None if raw_colours is None else parse_colours(raw_colours, "training.colours")
        raw_exposure = training.get("exposure")  # schema 12; older: unknown
        exposure = None if raw_exposure is None else ExposureRange.parse(raw_exposure, "training.exposure")
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise ModelFormatError(f"{where}: malformed manifest ({exc})") from exc
    check_thresholds(data, root)
    check_stored_mode(config, where)  # a plugin's mode is known once EAGLE_PLUGINS has loaded it
    tensor_path = root / TENSORS
    if not tensor_path.is_file():
        raise ModelFormatError(f"{root}: {TENSORS} is missing")
    if file_sha256(tensor_path) != tensors_meta.get("sha256"):
        raise ModelFormatError(f"{tensor_path}: checksum mismatch — the file was modified or is incomplete")
    try:
        tensors = load_file(str(tensor_path))
    except (SafetensorError, OSError) as exc:
        raise ModelFormatError(f"{tensor_path}: cannot read tensors ({exc})") from exc
    missing = {"bank", "bank_image_ids", "patch_image_ids", "selected"} - set(tensors)
    if missing:
        raise ModelFormatError(f"{tensor_path}: missing tensors {sorted(missing)}")
    bank = tensors["bank"]
    patch_ids = tensors["patch_image_ids"]
    selected = tensors["selected"].bool()
    n_images = len(train_images)
    problems = []
    if bank.ndim != 2 or bank.shape[1] != config.target_dim:
        problems.append(f"bank shape {tuple(bank.shape)} does not match target_dim {config.target_dim}")
    if tensors["bank_image_ids"].shape != (bank.shape[0],):
        problems.append("bank_image_ids length differs from the bank")
    if patch_ids.shape != selected.shape or not _patches_per_image_fit(patch_ids, n_images, config, grid):
        problems.append("per-patch bookkeeping does not match the number of training images")
    if int(selected.sum()) != bank.shape[0]:
        problems.append("selected patches do not match the bank size")
    if train_scores.shape != (n_images,):
        problems.append("training scores do not match the number of training images")
    if map_maxima is not None and (map_maxima.shape != (n_images,) or not bool(np.all(np.isfinite(map_maxima)))):
        problems.append("training.map_maxima must hold one finite number per training image")
    if coreset_radius is not None and not (math.isfinite(coreset_radius) and coreset_radius >= 0):
        problems.append(f"training.coreset_radius must be a finite number >= 0, got {coreset_radius!r}")
    map_offset = tensors.get("map_offset")
    if map_offset is not None and (map_offset.ndim != 2 or not bool(torch.isfinite(map_offset).all())):
        problems.append(f"map_offset must be a finite 2-D grid, got shape {tuple(map_offset.shape)}")
    references = _references(tensors, training.get("references"), n_images, problems)
    if train_sha256 is not None and (
        len(train_sha256) != n_images or not all(isinstance(d, str) and _SHA256.fullmatch(d) for d in train_sha256)
    ):
        problems.append("training.sha256 must hold one SHA-256 (64 hex digits) per training image")
    kept = _tails(tensors, tails, n_images, config.target_dim, problems)
    if problems:
        raise ModelFormatError(f"{root}: inconsistent model ({'; '.join(problems)})")
    _check_statistics(thresholds, train_scores, history, where)
    check_checksum(data, root)
    return ExpertModel(
        category=str(data.get("category", root.name)),
        config=config,
        backbone=backbone,
        grid=grid,
        bank=bank.float().contiguous(),
        bank_image_ids=tensors["bank_image_ids"].to(torch.int32),
        patch_image_ids=patch_ids.to(torch.int32),
        selected=selected,
        train_images=train_images,
        train_scores=train_scores,
        thresholds=thresholds,
        created=str(data.get("created", "")),
        timings={str(k): float(v) for k, v in dict(data.get("timings", {})).items()},
        calibration=calibration,
        map_offset=None if map_offset is None else map_offset.float().contiguous(),
        history=history,
        references=references,
        warnings=[str(w) for w in data.get("warnings") or []],
        coverage=coverage,
        map_maxima=map_maxima,
        coreset_radius=coreset_radius,
        tails=kept,
        fitted_by=None if data.get("fitted_by") is None else str(data["fitted_by"]),
        train_sha256=train_sha256,
        train_encodings=encodings,
        train_colours=colours,
        train_exposure=exposure,
    )


def _tails(
    tensors: dict[str, torch.Tensor], described: dict[str, int] | None, n_images: int, dim: int, problems: list[str]
) -> Tails | None:
    """The kept highest-scoring patches (schema 9), checked against the manifest; ``None`` when the model has
    none. Why so strict: a teach takes the old images' scores from them, so a wrong row would move tau."""
    names = ("tail_rows", "tail_image_ids", "tail_distances", "tail_floors")
    present = [name for name in names if name in tensors]
    if described is None and not present:
        return None
    per_image = 0 if described is None else described["per_image"]
    if described is None or len(present) != len(names) or per_image < 1:
        problems.append("training.tails and the tensors " + ", ".join(names) + " must come together")
        return None
    rows, ids, distances, floors = (tensors[name] for name in names)
    shaped = (
        rows.ndim == 2
        and rows.shape == (described["rows"], dim)
        and ids.shape == (rows.shape[0],)
        and distances.shape == (rows.shape[0],)
        and floors.shape == (n_images,)
    )
    counts = torch.bincount(ids.long().clamp(0, max(n_images - 1, 0)), minlength=n_images) if shaped else None
    if (
        counts is None
        or bool((ids < 0).any())
        or bool((ids >= n_images).any())
        or bool((ids[1:] < ids[:-1]).any())
        or bool((counts < 1).any())
        or bool((counts > per_image).any())
        or bool((floors[counts < per_image] != 0).any())  # an image with every scored patch kept has no rest
        or not bool(torch.isfinite(rows).all())
        or not bool(torch.isfinite(distances).all())
        or bool((distances < 0).any())
        or not bool(torch.isfinite(floors).all())
        or bool((floors < 0).any())
    ):
        problems.append(f"the kept patches (tail_*) do not match the {n_images} training images")
        return None
    return Tails(rows=rows.float().contiguous(), image_ids=ids.to(torch.int32), distances=distances.float().numpy(),
                 floors=floors.double().numpy(), per_image=per_image)  # fmt: skip


def _references(
    tensors: dict[str, torch.Tensor], described: Any, n_images: int, problems: list[str]
) -> list[bytes] | None:
    """The reference pictures (schema 4), checked against the manifest; ``None`` when the model has none."""
    data, offsets = tensors.get("reference_bytes"), tensors.get("reference_offsets")
    if described is None and data is None and offsets is None:
        return None
    if not isinstance(described, dict) or data is None or offsets is None:
        problems.append("reference pictures and their description in the manifest disagree")
        return None
    ends = offsets.to(torch.int64)
    if (
        data.dtype != torch.uint8 or data.ndim != 1 or ends.ndim != 1 or ends.shape[0] != n_images + 1
        or described.get("count") != n_images or int(ends[0]) != 0 or int(ends[-1]) != data.shape[0]
        or bool((ends[1:] < ends[:-1]).any())
    ):  # fmt: skip
        problems.append("reference pictures do not match the training images")
        return None
    return unpack_references(data.numpy(), ends.numpy())


def _check_statistics(thresholds: Thresholds, scores: np.ndarray, history: list[Any], where: Path) -> None:
    """The numbers a verdict rests on agree with each other (after the shapes were checked).

    tau may lie above s_max (the low-confidence band is then empty, docs/METHOD.md §2), so the band
    itself is never refused; what is refused is what no fit or ``eagle threshold`` writes.
    """
    if scores.size == 0 or not bool(np.all(np.isfinite(scores))) or float(scores.min()) < 0:
        raise ModelFormatError(f"{where}: training.scores must be finite numbers >= 0 (one per training image)")
    largest = float(scores.max())
    if not math.isclose(thresholds.s_max, largest, rel_tol=1e-9, abs_tol=1e-12):
        raise ModelFormatError(
            f"{where}: thresholds.s_max is {thresholds.s_max!r} but the largest training score is {largest!r}; "
            "s_max must be the largest training score (refit the model)"
        )
    if thresholds.rule not in THRESHOLD_RULES:  # a plugin's rule is known once EAGLE_PLUGINS has loaded it
        known = ", ".join(THRESHOLD_RULES.names())
        raise ModelFormatError(
            f"{where}: thresholds.rule is {thresholds.rule!r}; known rules: {known} {plugin_hint('rule')}"
        )
    for number, entry in enumerate(history, start=1):
        if not isinstance(entry, dict) or not isinstance(entry.get("before"), dict):
            raise ModelFormatError(f"{where}: history entry {number} is malformed (no 'before' thresholds)")


def labelled_parts(items: Iterable[tuple[str, str]]) -> str:
    """Which labelled parts a count of false alarms and misses was made on (``items``: each one's inspection id
    and label): a short SHA-256 of them, sorted, kept beside the count (``labelled.before/after.parts``).

    Why: the versions diff puts two versions' counts side by side, and counts made on the same number of parts
    are not made on the same parts (a teach rescores the labelled images it can read, a threshold change the
    labelled records with a score; labels come and go through a shift). Only counts of the same parts labelled
    alike compare the models; the console says the others are not comparable."""
    digest = hashlib.sha256()
    for where, label in sorted(items):
        digest.update(f"{where}\0{label}\n".encode())
    return digest.hexdigest()[:16]


def change_threshold(
    directory: str | os.PathLike[str],
    *,
    why: str,
    by: str,
    tau: float | None = None,
    restore: int | None = None,
    labelled_errors: Callable[[float], dict[str, int | str]] | None = None,
) -> tuple[ExpertModel, dict[str, Any]]:
    """Set tau (``tau``) or put back the thresholds that change ``restore`` replaced, on the record.

    ``labelled_errors(tau)``: the false alarms and misses on the labelled history at a tau (the service
    passes one); kept in the entry for the tau before and after, so each version says what it changed.

    Why a command and not an edit of ``model.json``: a threshold decides every verdict, so who changed
    it, when, why and from what must stay with the model (its ``history``); a hand edit leaves no such
    record and is refused at load (the checksum). The model is loaded with every check, given the new
    thresholds (rule ``fixed``: tau no longer follows from the training scores; s_max, the training
    statistics and the map calibration stay the fit's) and saved through :func:`save`, atomically.
    Returns the saved model and the history entry just added.
    """
    if (tau is None) == (restore is None):
        raise ConfigError("give either --tau VALUE or --restore N")
    if not why.strip():
        raise ConfigError("--why must say why the threshold changes (it is kept in the model's history)")
    check_changeable(directory)
    loaded_from = _fingerprint(Path(directory))
    model = load(directory)
    before = model.thresholds
    entry: dict[str, Any] = {
        "change": next_change(model.history),
        "at": datetime.now(UTC).isoformat(timespec="seconds"),  # given again when it is saved (``stamp``)
        "by": by,
        "why": why.strip(),
    }
    if tau is not None:
        if not math.isfinite(tau) or tau < 0:
            raise ConfigError(f"--tau must be a finite number >= 0, got {tau!r}")
        if tau == 0:  # scores are distances: score >= 0 holds for every image
            raise ConfigError("--tau 0 would call every image anomalous, its training images too; give a tau above 0")
        after = Thresholds(rule="fixed", tau=float(tau), s_max=before.s_max, params={"value": float(tau)})
        entry["action"] = "set"
    else:
        assert restore is not None
        restoring = find_change(model.history, restore)
        if restoring is None:
            known = f"1..{next_change(model.history) - 1}" if model.history else "none yet"
            raise ConfigError(f"--restore {restore}: no such change in {directory} (changes: {known})")
        made = f" (version {restoring['version']})" if isinstance(restoring.get("version"), int) else ""
        if restoring.get("undone_by") is not None:
            raise ConfigError(
                f"--restore {restore}: change {restore}{made} was undone by change {restoring['undone_by']}, a "
                "rollback; it is not part of the current model, so there is nothing of it to restore"
            )
        undoes = {"teach": "taught images to the model", "rollback": "rolled the model back to an earlier version"}
        what = undoes.get(str(restoring.get("action")))
        if what is not None:
            # No command named: the API answers with this text too (a rollback there is POST .../rollback).
            raise ConfigError(
                f"--restore {restore}: change {restore}{made} {what}, which a threshold restore cannot undo; a "
                "rollback to the version before it puts that back (the versions list names each version)"
            )
        old = Thresholds.from_dict(restoring["before"])
        after = Thresholds(rule=old.rule, tau=old.tau, s_max=before.s_max, params=old.params)
        if old.rule != "fixed":  # a learned rule gives its tau on today's training scores (a teach may have added some)
            after = compute_thresholds(model.train_scores, old.rule, **old.params)
        entry["action"] = "restore"
        entry["restored"] = restore
    if after == before:
        raise ConfigError(f"{directory}: tau is already {before.tau!r} with rule {before.rule!r}; nothing to change")
    entry["before"] = before.to_dict()
    entry["after"] = after.to_dict()
    if labelled_errors is not None:
        entry["labelled"] = {"before": labelled_errors(before.tau), "after": labelled_errors(after.tau)}
    changed = dataclasses.replace(
        model,
        thresholds=after,
        history=[*model.history, entry],
        warnings=rewarned(model, model.train_scores, after),
    )
    save(changed, directory, replacing=loaded_from, stamp=True)
    return changed, entry


def _same_model(one: ExpertModel, one_at: Path, other: ExpertModel, other_at: Path) -> bool:
    """Whether two loaded models are the same model: everything a save writes but the record of how each
    came about (history).

    Why not the manifests' bytes: a rollback's model is the version's plus a history entry, so a second
    rollback to the same version, or one to a version a threshold restore already matches, would add a
    version identical to the current one. Why from the loaded models: a version saved under an older
    schema reads as today's, as it would be saved (:func:`_manifest` writes both the same way).
    """

    def written(model: ExpertModel, at: Path) -> dict[str, Any]:
        manifest = _manifest(dataclasses.replace(model, history=[]), str(read_manifest(at)["tensors"]["sha256"]))
        manifest.pop("checksum", None)
        return manifest

    return written(one, one_at) == written(other, other_at)


def _from_folder(message: str, directory: str | os.PathLike[str]) -> str:
    """``message`` with the model folder's path shortened to its name (no host path in a kept record)."""
    name = Path(directory).name
    for shown in sorted({os.fspath(directory), str(Path(directory)), os.path.abspath(directory)}, key=len)[::-1]:
        message = message.replace(shown, name)
    return message


def rollback(directory: str | os.PathLike[str], *, to: int, why: str, by: str) -> tuple[ExpertModel, dict[str, Any]]:
    """Make version ``to`` the current model again, as a new version that says so (docs/USAGE.md, "Versions").

    Why a new version and not a deletion: what was rolled back stays on record and can itself be
    restored. The model is version ``to``'s (bank, training images, thresholds, history) plus a
    ``rollback`` entry (who, when, why, the thresholds before and after); its tensor file is a link
    to the version's (no copy). Saved through :func:`save`: atomic, and refused with "changed while"
    when another change landed meanwhile. Returns the saved model and the entry.
    """
    if not why.strip():
        raise ConfigError("--why must say why the model goes back (it is kept in the model's history)")
    check_changeable(directory)
    loaded_from = _fingerprint(Path(directory))
    current: ExpertModel | None
    try:
        current = load(directory)
        before: dict[str, Any] = current.thresholds.to_dict()
    except ModelFormatError as exc:
        # The current model cannot be used (edited by hand, a file damaged): going back to an intact version
        # is how it is recovered, so that is not refused; the entry keeps why the model it replaced failed,
        # named from the model's folder (the record travels with it, and the service shows it).
        current, before = None, {"unreadable": _from_folder(str(exc), directory)}
    try:
        folder = version_folder(directory, to)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    try:
        older = load(folder)  # checked whole, its tensor file's SHA-256 included: a damaged version is refused
    except ModelFormatError as exc:
        raise ModelFormatError(
            f"{directory}: version {to} cannot be rolled back to: {_from_folder(str(exc), directory)}; nothing "
            "was changed (eagle versions --verify lists the versions that can be)"
        ) from None
    if current is not None and _same_model(older, folder, current, Path(directory)):
        now = current_version(directory)
        copy = "" if now in (None, to) else f" (the current version, {now}, is a copy of it)"
        raise ConfigError(f"{directory}: version {to} is the current model already{copy}; nothing to roll back")
    kept = older.history + _undone(older.history, [] if current is None else current.history)
    entry: dict[str, Any] = {
        "change": next_change(kept),
        "action": "rollback",
        "to": to,
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "by": by,
        "why": why.strip(),
        "before": before,
        "after": older.thresholds.to_dict(),
    }
    for undone in kept[len(older.history) :]:
        undone.setdefault("undone_by", entry["change"])
    restored = dataclasses.replace(older, history=[*kept, entry])
    save(restored, directory, replacing=loaded_from, stamp=True)
    return restored, entry


def _undone(older: list[dict[str, Any]], current: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The changes of the current model's record that the version rolled back to does not hold: kept in the
    new version's record (marked ``undone_by`` the rollback), so no change drops out of the record and none
    of their numbers is given again; copies, in change order.

    A change is known by its number, action, time and author (what was undone earlier stays marked so). Two
    records written before numbers were kept unique (``len + 1``) may give one number to two changes: the
    undone one is then renumbered above every other (``renumbered_from`` keeps the number it had).
    """

    def key(entry: dict[str, Any]) -> tuple[Any, ...]:
        return tuple(entry.get(field) for field in ("change", "action", "at", "by", "why"))

    held = {key(entry) for entry in older}
    taken = {entry.get("change") for entry in older}
    gone = [dict(entry) for entry in current if key(entry) not in held]
    top = max(
        [len(older), len(current), *(e["change"] for e in [*older, *current] if isinstance(e.get("change"), int))]
    )
    for entry in gone:
        if entry.get("change") in taken or not isinstance(entry.get("change"), int):
            top += 1
            entry["renumbered_from"] = entry.get("change")
            entry["change"] = top
        taken.add(entry["change"])
    return sorted(gone, key=lambda entry: int(entry["change"]))
