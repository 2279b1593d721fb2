"""Every saved model is a numbered version, kept inside the model's folder (docs/USAGE.md, "Versions").

Layout, beside the current ``model.json`` and ``tensors.safetensors``::

    versions/1/model.json, tensors.safetensors     the fit
    versions/2/...                                 a threshold change, a teach, a rollback, ...

Why inside the model's folder: a save already writes a complete new folder and swaps it in whole
(eagle_iad/folder_swap.py), so carrying the versions into that folder makes a new version and the new
current model appear in the same atomic step, and a SIGKILL at any point leaves the old folder with its
versions or the new one with one more; a model folder copied elsewhere keeps its history. Why hard links:
the carried versions and the current tensors are links to the files earlier saves wrote, never copies,
and a tensor file identical to an earlier version's (a threshold change, a rollback) is replaced by a
link to it, so ten threshold changes cost one tensor file, not ten. Files are never changed in place
(every save writes new ones), so sharing them is safe; only the current ``model.json``, which a person
may edit, is a copy of its version's. Where the filesystem has no hard links they
are copied (correct, only larger).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from eagle_iad.atomic import new_folder_mode
from eagle_iad.errors import ModelFormatError
from eagle_iad.expert.manifest import MANIFEST, TENSORS, model_root, read_manifest
from eagle_iad.file_hash import file_sha256
from eagle_iad.folder_swap import fsync_dir

VERSIONS = "versions"


def _link(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:  # no hard links here (another filesystem, a FAT stick): a copy is correct, only larger
        shutil.copy2(source, target)


def _number(name: str) -> int | None:
    """The version a folder's name numbers (ASCII digits only: ``"²"`` and ``"٣"`` are digits to
    :meth:`str.isdigit` but no version's name, and ``int`` reads the second as 3), else ``None``."""
    return int(name) if name.isascii() and name.isdigit() else None


def _numbers(folder: Path) -> list[int]:
    if not folder.is_dir():
        return []
    return sorted(n for child in folder.iterdir() if (n := _number(child.name)) is not None and child.is_dir())


def _tensor_digest(folder: Path) -> str | None:
    try:
        data = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
        digest = data.get("tensors", {}).get("sha256")
    except (OSError, ValueError, AttributeError):
        return None
    return digest if isinstance(digest, str) else None


def carry(target: Path, staging: Path) -> int:
    """Link ``target``'s versions into ``staging`` and add ``staging``'s model as the next one; its number.

    A model saved before versions existed becomes version 1 first. ``staging``'s tensor file is
    replaced by a link to an earlier version's identical one (same SHA-256 in its manifest).
    """
    carried = staging / VERSIONS
    carried.mkdir()
    earlier = target / VERSIONS
    every = _numbers(earlier)
    # A version missing a file (pruned by hand, a partial copy) is left behind: it could not be loaded, and
    # must not stop the save. The next number still follows the highest, so numbers are never reused.
    numbers = [n for n in every if all((earlier / str(n) / name).is_file() for name in (MANIFEST, TENSORS))]
    for number in numbers:
        (carried / str(number)).mkdir()
        for name in (MANIFEST, TENSORS):
            _link(earlier / str(number) / name, carried / str(number) / name)
    if not every and (target / MANIFEST).is_file() and (target / TENSORS).is_file():
        (carried / "1").mkdir()
        for name in (MANIFEST, TENSORS):
            _link(target / name, carried / "1" / name)
        numbers = [1]
    digest = _tensor_digest(staging)
    for number in reversed(numbers):
        if digest is not None and _tensor_digest(carried / str(number)) == digest:
            shared = staging / f".{TENSORS}.link"
            _link(carried / str(number) / TENSORS, shared)
            os.replace(shared, staging / TENSORS)
            break
    number = max([*every, *numbers], default=0) + 1
    (carried / str(number)).mkdir()
    # The manifest is copied, not linked: model.json is the file people open, and an edit of it in place
    # (an editor that writes in place, `>`) would otherwise change the version it came from as well, leaving
    # nothing intact to roll back to. It is small; the tensors, never edited by hand, stay shared.
    shutil.copy2(staging / MANIFEST, carried / str(number) / MANIFEST)
    with open(carried / str(number) / MANIFEST, "rb") as copied:
        os.fsync(copied.fileno())  # durable before the swap, like the files the save wrote
    _link(staging / TENSORS, carried / str(number) / TENSORS)
    for folder in [*(carried / str(n) for n in [*numbers, number]), carried]:
        os.chmod(folder, new_folder_mode())  # the mode mkdir would give it, like the model's own folder
        fsync_dir(folder)  # the links are durable before the swap makes them the model's
    fsync_dir(staging)
    return number


def next_number(target: Path) -> int:
    """The number :func:`carry` gives the next save into ``target`` (the same rule: one above the highest kept;
    2 for a model saved before versions, which becomes version 1; 1 for an empty folder).

    Why known before the save: the change's record names the version it makes (``history[].version``), and
    the record is written before the versions are carried; both happen under the save's folder lock."""
    every = _numbers(target / VERSIONS)
    if not every:
        return 2 if (target / MANIFEST).is_file() and (target / TENSORS).is_file() else 1
    return max(every) + 1


def change_words(entry: dict[str, Any]) -> str:
    """A history entry in a few words a person reads: "threshold set to 97.1 by sam at 04:39:20 UTC"."""
    action = str(entry.get("action", "set"))
    after = entry.get("after") if isinstance(entry.get("after"), dict) else {}
    tau = after.get("tau") if isinstance(after, dict) else None
    shown = f" to {tau:.4g}" if isinstance(tau, int | float) else ""
    if action == "set":
        what = f"threshold set{shown}"
    elif action == "restore":
        what = f"threshold restored{shown}"
    elif action == "teach":
        count = len(entry.get("images") or [])
        what = f"{count} image{'s' if count != 1 else ''} taught"
    elif action == "rollback":
        what = f"rollback to version {entry.get('to')}"
    else:
        what = action
    by = f" by {entry['by']}" if entry.get("by") else ""
    at = str(entry.get("at") or "")
    when = f" at {at[11:19]} UTC" if len(at) >= 19 and at[10] == "T" else (f" at {at}" if at else "")
    return f"{what}{by}{when}"


def what_is_there(directory: str | os.PathLike[str]) -> str:
    """What the model at ``directory`` is now, for a change refused because it was saved meanwhile: "version 9
    (threshold set to 97.1 by sam at 04:39:20 UTC)", "a model that is no version (model.json edited by hand)",
    or "no model (retired or removed)"."""
    root = Path(directory)
    try:
        data = json.loads((root / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "no model (it was retired or removed)"
    history = data.get("history") if isinstance(data, dict) else None
    entry = history[-1] if isinstance(history, list) and history and isinstance(history[-1], dict) else None
    if entry is not None:
        what = change_words(entry)
    else:
        by = f" by {data['fitted_by']}" if isinstance(data, dict) and data.get("fitted_by") else ""
        what = f"a new fit{by}"
    number = current_version(root)
    return f"version {number} ({what})" if number is not None else f"a model that is no version ({what})"


def taught_inspections(directory: str | os.PathLike[str]) -> list[str]:
    """The inspections the current model was taught (its own history's teaches a rollback did not undo), in order.

    Why from the current model and not by walking the versions: its history carries every change since its fit
    (a rollback keeps what it undid, marked ``undone_by``), so one version pruned by hand or damaged cannot make
    an inspection taught long ago read as untaught, as a walk through the version list would."""
    try:
        data = json.loads((Path(directory) / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    history = data.get("history") if isinstance(data, dict) else None
    taught: list[str] = []
    for entry in history if isinstance(history, list) else []:
        if isinstance(entry, dict) and entry.get("action") == "teach" and not entry.get("undone_by"):
            for image in entry.get("images") or []:
                if isinstance(image, dict) and image.get("inspection") and str(image["inspection"]) not in taught:
                    taught.append(str(image["inspection"]))
    return taught


def _action(manifest: dict[str, Any]) -> dict[str, Any]:
    """What made a version: its newest history entry, or the fit when it has none."""
    history = manifest.get("history") or []
    if not history:
        return {"action": "fit", "at": manifest.get("created"), "by": manifest.get("fitted_by"), "why": None}
    entry = history[-1]
    action = str(entry.get("action", "set"))
    described = {"action": "threshold" if action in ("set", "restore") else action, "at": entry.get("at"),
                 "by": entry.get("by"), "why": entry.get("why")}  # fmt: skip
    if isinstance(entry.get("labelled"), dict):  # the labelled history's false alarms and misses, before/after
        described["labelled"] = entry["labelled"]
    if action == "teach":
        described["images_added"] = [str(image.get("name")) for image in entry.get("images", [])]
        # Each guard a forced teach overrode, in its refusal's words: a version made by force says so in every list.
        described["forced"] = [str(reason) for reason in entry.get("forced") or []] or None
        # The inspections they came from (a teach through the service): what the shift labelled normal and is
        # taught already, so the console lists only the rest ("labelled normal, not yet taught").
        described["inspections_added"] = [str(image["inspection"]) for image in entry.get("images", [])
                                          if image.get("inspection")]  # fmt: skip
    if action == "rollback":
        described["to"] = entry.get("to")
    if action == "restore":
        described["restored"] = entry.get("restored")
        undone = next((e for e in history if isinstance(e, dict) and e.get("change") == entry.get("restored")), None)
        described["restored_version"] = None if undone is None else undone.get("version")
    return described


def list_versions(directory: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Every readable version of the model at ``directory``, oldest first (:func:`read_versions`)."""
    return read_versions(directory)[0]


#: Hashes one tensor file (:func:`eagle_iad.file_hash.file_sha256`, or one that also draws progress).
Hasher = Callable[[Path], str]


def tensor_mismatch(place: Path, manifest: dict[str, Any], hasher: Hasher = file_sha256) -> str | None:
    """Why the tensor file in ``place`` is not the one ``manifest`` records (its SHA-256 differs), else ``None``.

    Why worth saying apart: the file is read whole, which a listing does not do (fast: it only stats), but a
    load and a rollback do, and refuse it; a file changed in place is shared by hard link with every version
    saved since the last fit or teach, which are damaged with it (docs/USAGE.md, "Versions")."""
    return _mismatch(hasher(place / TENSORS), manifest)


def _mismatch(digest: str, manifest: dict[str, Any]) -> str | None:
    """Why a tensor file with SHA-256 ``digest`` is not the one ``manifest`` records, else ``None``."""
    if digest == (manifest.get("tensors") or {}).get("sha256"):
        return None
    return (f"{TENSORS} does not match the SHA-256 its {MANIFEST} records (changed or cut short since it was "
            "saved); the model cannot be loaded from it")  # fmt: skip


def read_versions(
    directory: str | os.PathLike[str], *, verify: bool = False, hasher: Hasher = file_sha256
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The versions of the model at ``directory``, oldest first, and those that cannot be read.

    Each readable one: number, what made it (action, when, who, why), its thresholds and size, whether
    it is the current model, and the bytes it added on disk. Each damaged one (a file missing, pruned by
    hand; a manifest edited or corrupt): its number and the problem. Why listed apart and not refused
    whole: one damaged old version must not hide the others, which are what a rollback needs (a save
    leaves a version missing a file behind, :func:`carry`). A model saved before versions existed lists
    itself as version 1 (it becomes one at its next save). :class:`ModelFormatError` where ``directory``
    holds no model at all. Call :func:`eagle_iad.expert.store.recover_model` first: a save that crashed
    between its two renames left the folder under another name.

    ``verify``: also read every tensor file and list a version whose file does not match its manifest's
    SHA-256 as damaged (:func:`tensor_mismatch`); a file several versions share (a hard link) is hashed once,
    and its hash compared with each version's manifest.
    Off by default: a listing then only stats files, fast whatever the model's size.
    """
    root = Path(directory)
    folder = root / VERSIONS
    numbers = _numbers(folder)
    if not numbers:  # versions kept make a model's folder, its own model.json deleted or not
        model_root(directory)
    places = [(number, folder / str(number)) for number in numbers] or [(1, root)]
    # By content: a copied folder (cp -r) has its own inodes. None: deleted (a rollback recovers the model).
    current = (root / MANIFEST).read_bytes() if (root / MANIFEST).is_file() else None
    seen: set[tuple[int, int]] = set()
    hashed: dict[tuple[int, int], str] = {}  # a shared tensor file's SHA-256, by (device, inode)
    listed: list[dict[str, Any]] = []
    damaged: list[dict[str, Any]] = []
    for number, place in places:
        try:
            manifest = read_manifest(place)
            files = [os.stat(place / name) for name in (MANIFEST, TENSORS)]
            thresholds, training = manifest["thresholds"], manifest["training"]
            described = {
                "version": number,
                **_action(manifest),
                "current": (place / MANIFEST).read_bytes() == current,
                "tau": thresholds["tau"], "s_max": thresholds["s_max"], "rule": thresholds["rule"],
                "train_images": len(training["images"]), "bank_size": training.get("bank_size"),
            }  # fmt: skip
            if verify:
                shared = (files[1].st_dev, files[1].st_ino)
                if shared not in hashed:
                    hashed[shared] = hasher(place / TENSORS)
                # Compared with each version's own manifest: one shared file may match one and not another.
                mismatch = _mismatch(hashed[shared], manifest)
                if mismatch is not None:
                    damaged.append({"version": number, "problem": mismatch})
                    continue
        except (ModelFormatError, OSError, KeyError, TypeError, AttributeError) as exc:
            problem = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            missing = f" ({Path(exc.filename).name})" if isinstance(exc, OSError) and exc.filename else ""
            damaged.append({"version": number, "problem": f"{problem}{missing}"})
            continue
        added = 0
        for info in files:
            if (info.st_dev, info.st_ino) not in seen:
                seen.add((info.st_dev, info.st_ino))
                added += info.st_size
        listed.append({**described, "bytes_added": added})
    return listed, damaged


def current_version(directory: str | os.PathLike[str]) -> int | None:
    """The number of the version the model at ``directory`` is now: the one whose ``model.json`` has the
    current one's bytes, as :func:`read_versions` marks ``current`` (the highest, should two match); 1 for a
    model saved before versions (what it is listed as); ``None`` where none matches (``model.json`` edited by
    hand, or deleted) or there is no model.

    A version folder loaded as a model itself (``--model models/cat/versions/3``: a folder in a model's
    ``versions``) is that version, 3, not a model saved before versions; any other folder there, ``None``.
    A model's ``versions`` is one beside the model's ``model.json`` or ``tensors.safetensors``: either
    says it (a model whose ``model.json`` is missing still numbers its versions).

    Why by content: each save's manifest differs from every earlier one (its history, its time), and a
    model folder copied elsewhere (``cp -r``) keeps the numbers but not the links. Only manifests of the
    current one's size are read, so this costs a few ``stat`` calls per version.
    """
    root = Path(directory)
    try:
        current = (root / MANIFEST).read_bytes()
    except OSError:
        return None
    numbers = _numbers(root / VERSIONS)
    if not numbers:
        real = root.resolve()
        model = real.parent.parent
        if real.parent.name == VERSIONS and any((model / name).is_file() for name in (MANIFEST, TENSORS)):
            return _number(real.name)  # in a model's versions
        return 1
    for number in reversed(numbers):
        manifest = root / VERSIONS / str(number) / MANIFEST
        try:
            if manifest.stat().st_size == len(current) and manifest.read_bytes() == current:
                return number
        except OSError:
            continue  # a damaged version (read_versions lists it apart): not the current one
    return None


def version_folder(directory: str | os.PathLike[str], number: int) -> Path:
    """The folder of version ``number``, or :class:`ValueError` naming the versions there are."""
    numbers = _numbers(Path(directory) / VERSIONS)
    if number not in numbers:
        known = f"{numbers[0]}..{numbers[-1]}" if numbers else "only the current model, saved before versions"
        raise ValueError(f"no version {number} of {os.fspath(directory)} (versions: {known})")
    return Path(directory) / VERSIONS / str(number)


def disk_use(directory: str | os.PathLike[str]) -> int:
    """Bytes the model folder takes with all of its versions, each shared file counted once."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for path in Path(directory).rglob("*"):
        if path.is_file():
            info = path.stat()
            if (info.st_dev, info.st_ino) not in seen:
                seen.add((info.st_dev, info.st_ino))
                total += info.st_size
    return total
