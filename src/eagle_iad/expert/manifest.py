"""A saved model's ``model.json``: its name, format and schema version, read without torch.

Split from ``store.py`` (which loads the tensors and so imports torch) so that ``eagle info`` and a
service listing its categories read a manifest in milliseconds; ``store`` re-exports every name.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path
from typing import Any

from eagle_iad import __version__
from eagle_iad.errors import ModelFormatError

FORMAT = "eagle-iad/expert"
#: Schema 3 adds ``checksum`` (see :func:`manifest_checksum`) and ``history`` (threshold changes made
#: with ``eagle threshold``). Older schemas are read with every number and shape check but without
#: the hand-edit check (they carry no checksum) and with an empty history; the next save of such a
#: model (``eagle threshold``, a refit) writes schema 3.
#: Schema 4 adds the reference pictures (a downsized JPEG per training image, tensors
#: ``reference_bytes`` + ``reference_offsets``, described by ``training.references``); older models
#: load without them and an inspection says "no reference: model fitted before model schema 4".
#: Schema 5 widens the checksum to the tensor file's hash and the backbone's weights hash
#: (:data:`CHECKED_FIELDS_5`), so another model's tensors with their hash typed into ``tensors.sha256``,
#: or a swapped backbone hash, are refused as a hand edit; older schemas keep their own field list.
#: Schema 6 adds ``training.map_maxima`` (each training image's map maximum) and
#: ``training.coreset_radius``, what ``eagle teach`` continues from; older models load and are taught
#: with the approximations docs/METHOD.md states ("Teaching normal images").
#: Schema 7 adds the config settings ``native_up_to`` and ``pixel_scale`` and the ``scale`` preprocessing
#: (each training image with its own patch count); a schema-6 model reads as ``native_up_to`` 0 and no
#: pixel scale. The number moved so that an older eagle-iad says "upgrade" instead of naming the settings.
#: Schema 8 adds the config setting ``exposure``; a model of schema 7 or older reads as ``exposure`` none (its
#: pixels as they are), so it inspects exactly as when it was saved.
#: Schema 9 adds each training image's highest-scoring patches (tensors ``tail_rows``, ``tail_image_ids``,
#: ``tail_distances``, ``tail_floors``, described by ``training.tails``), from which a teach rescores the
#: old images exactly (expert/tails.py); an older model loads without them and a teach keeps its old
#: images' scores.
#: Schema 10 adds ``training.sha256``, each training image's SHA-256 (of its file's bytes), from which a teach
#: skips an image that is one of the fit's own (an older model loads without it and its teach cannot tell), and
#: ``training.encodings`` (``{encoding: number of training images}``: ``lossless``, ``jpeg 4:2:0 q95``, ...), so a
#: verdict on an input of another encoding warns (expert/encodings.py; an older model reads as unknown and none
#: of its verdicts warns).
#: Schema 11 adds ``training.colours`` (``{grey | colour: number of training images}``, from the decoded pixels:
#: images.colour_mode), so a verdict on a greyscale input of a colour-fitted model, or the reverse, warns
#: (expert/encodings.py; an older model reads as unknown and none of its verdicts warns about colour).
#: Schema 12 adds ``training.exposure`` (``{images, mean: [low, high], spread: [low, high]}``: the range of the
#: training images' grey mean and spread before the exposure step, expert/lighting.py), so a verdict on a photo far
#: brighter, darker, flatter or more contrasted than any of them warns (an older model reads as unknown and none of
#: its verdicts warns about exposure). A new number, though the field is optional, as for schemas 10 and 11: an
#: older eagle-iad's save of such a model (a teach, a threshold change) would write it back without the field, and
#: its teach would not widen the range, so it refuses the model ("upgrade") rather than drop what it cannot keep.
SCHEMA_VERSION = 12
#: Oldest schema this version reads. Schema 1 (before whole-frame preprocessing) had no
#: ``preprocess``/``region_rule`` settings and no map calibration: it is read as the paper's centre
#: crop with the paper's box rule, so such a model inspects exactly as when it was saved.
OLDEST_SCHEMA = 1
#: First schema whose manifest carries a checksum.
CHECKSUM_SCHEMA = 3
#: The manifest fields the checksum covers: everything that decides a verdict or records how it was
#: set. Not covered: ``created``, ``package_version`` and ``timings`` (informational), ``backbone``,
#: whose weights hash is checked against the real weights whenever the backbone is built, and
#: ``tensors``, whose hash is checked against the tensor file at every load.
CHECKED_FIELDS = (
    "format", "schema_version", "category", "config", "grid", "thresholds", "training", "calibration", "history",
)  # fmt: skip
#: From schema 5: every field that decides a verdict, the tensor file's and the backbone's hashes included.
CHECKED_FIELDS_5 = (*CHECKED_FIELDS, "backbone", "tensors")
MANIFEST = "model.json"
TENSORS = "tensors.safetensors"
#: Every file a saved model consists of; a model folder holding anything else is not replaced.
MODEL_FILES = frozenset({MANIFEST, TENSORS})


#: What schema 1 left unsaid, stated as what it meant: the paper's centre crop, the paper's box rule,
#: no position baseline (those models were made before the other choices existed).
SCHEMA_1_SETTINGS: dict[str, Any] = {"preprocess": "center-crop", "region_rule": "paper", "position_baseline": False}


#: Settings added after a model could be saved, as what a model saved without them did: its coreset from every
#: patch, every image downscaled to ``size``, the pixels' own exposure (schema 8).
SETTINGS_BEFORE_THEM: dict[str, Any] = {"coreset_points": 0, "native_up_to": 0, "exposure": "none"}


def upgraded_config(config: dict[str, Any], schema_version: object) -> dict[str, Any]:
    """A manifest's ``config`` as this version reads it: a copy, with what older schemas left unsaid filled in.

    Why one function: the loader and ``eagle info`` must show the same settings for an old model, so
    that what ``info`` reports is what an inspection with that model does. Torch-free, for ``info``.
    """
    upgraded = dict(config)
    if schema_version == 1:
        upgraded.update(SCHEMA_1_SETTINGS)
    for name, value in SETTINGS_BEFORE_THEM.items():
        upgraded.setdefault(name, value)
    return upgraded


def manifest_checksum(data: dict[str, Any]) -> str:
    """``sha256:<hex>`` over the canonical JSON (sorted keys, no spaces) of the schema's checked fields.

    Canonical JSON, not the file's bytes, so re-indenting the file is harmless while any changed
    value (a tau typed in by hand) is detected.
    """
    version = data.get("schema_version")
    checked = CHECKED_FIELDS_5 if isinstance(version, int) and version >= 5 else CHECKED_FIELDS
    fields = {key: data.get(key) for key in checked}
    text = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=True)
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


def threshold_command(directory: str | os.PathLike[str]) -> str:
    """The command that changes a threshold with a record (what a hand edit is pointed to)."""
    return f"eagle threshold --model {os.fspath(directory)} --tau VALUE --why TEXT"


def check_checksum(data: dict[str, Any], directory: str | os.PathLike[str]) -> None:
    """Refuse a schema-3 manifest whose recorded fields differ from what its last save wrote."""
    path = Path(directory) / MANIFEST
    if data.get("schema_version", 0) < CHECKSUM_SCHEMA:
        if "checksum" in data or "history" in data:  # an older schema number typed over a newer manifest
            raise ModelFormatError(
                f"{path}: was edited by hand (schema_version {data.get('schema_version')!r} predates the checksum "
                "it carries); undo the edit or refit"
            )
        return  # older manifests carry no checksum (see SCHEMA_VERSION)
    recorded = data.get("checksum")
    if not isinstance(recorded, str):
        raise ModelFormatError(f"{path}: checksum is missing; the manifest was edited by hand or is incomplete")
    if recorded != manifest_checksum(data):
        raise ModelFormatError(
            f"{path}: was edited by hand (its checksum does not match its fields); undo the edit, roll back to a "
            f"version (eagle versions --model {os.fspath(directory)} lists them) or refit. "
            f"To change the threshold, use: {threshold_command(directory)}"
        )


def check_thresholds(data: dict[str, Any], directory: str | os.PathLike[str]) -> None:
    """Refuse a tau or s_max that is not a finite number >= 0 (scores are distances)."""
    path = Path(directory) / MANIFEST
    thresholds = data.get("thresholds")
    if not isinstance(thresholds, dict):
        raise ModelFormatError(f"{path}: field 'thresholds' is missing or not a dict")
    for name in ("tau", "s_max"):
        value = thresholds.get(name)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ModelFormatError(f"{path}: thresholds.{name} is {value!r}; it must be a finite number >= 0")
        if not math.isfinite(value) or value < 0:
            raise ModelFormatError(
                f"{path}: thresholds.{name} is {float(value)!r}; it must be a finite number >= 0 (refit the model)"
            )


def model_root(directory: str | os.PathLike[str]) -> Path:
    """``directory`` as a path, or :class:`ModelFormatError` where it is not a folder with a ``model.json``."""
    root = Path(directory)
    if not root.is_dir():
        raise ModelFormatError(f"{root}: no model directory here (run `eagle fit` first)")
    if not (root / MANIFEST).is_file():
        export = export_format(root)
        if export is not None:
            runtimes = "openvino" if export == "openvino" else "onnx|openvino"
            what = f"an {EXPORT_NAMES[export]} export" if export in EXPORT_NAMES else "an export (of an unknown format)"
            raise ModelFormatError(
                f"{root}: is {what} (written by eagle export), not a fitted model folder: run it with "
                f"eagle inspect --runtime {runtimes} --model {root}, or serve it as a category folder with eagle serve "
                f"--runtime {runtimes} --models DIR; info, teach, versions, threshold and export need the fitted "
                "model folder it was exported from"
            )
        raise ModelFormatError(f"{root}: not an EAGLE-IAD model directory ({MANIFEST} is missing)")
    return root


#: An export folder's sidecar (``eagle_iad.expert.export.SIDECAR``; named here to keep this module light).
EXPORT_SIDECAR = "eagle-export.json"
#: How a message names each export format.
EXPORT_NAMES = {"onnx": "ONNX", "openvino": "OpenVINO"}


def export_format(root: Path) -> str | None:
    """The format (``onnx``, ``openvino``) of the export in ``root``, ``None`` where it holds no export sidecar
    (``"unknown"`` where the sidecar cannot be read or names no format)."""
    sidecar = root / EXPORT_SIDECAR
    if not sidecar.is_file():
        return None
    try:
        record = json.loads(sidecar.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return "unknown"
    fmt = record.get("format") if isinstance(record, dict) else None
    return fmt if isinstance(fmt, str) and fmt in EXPORT_NAMES else "unknown"


def read_manifest(directory: str | os.PathLike[str], verify: bool = True) -> dict[str, Any]:
    """Read and check ``model.json`` (format, schema version, thresholds, checksum) without the tensors.

    ``verify=False`` skips the threshold and checksum checks, for :func:`eagle_iad.expert.store.load`,
    which makes them itself after the more specific field and tensor checks.
    """
    root = model_root(directory)
    path = root / MANIFEST
    try:
        data = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelFormatError(f"{path}: corrupt manifest ({exc})") from exc
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ModelFormatError(f"{path}: not an EAGLE-IAD expert model (format is not {FORMAT!r})")
    version = data.get("schema_version")
    if not isinstance(version, int):
        raise ModelFormatError(f"{path}: schema_version is missing")
    if version > SCHEMA_VERSION:
        raise ModelFormatError(
            f"{root}: model schema {version} was written by a newer eagle-iad; this eagle-iad {__version__} reads "
            f"model schemas {OLDEST_SCHEMA} to {SCHEMA_VERSION}; upgrade eagle-iad"
        )
    if version < OLDEST_SCHEMA:
        raise ModelFormatError(
            f"{root}: model schema {version} is older than this eagle-iad reads ({OLDEST_SCHEMA}); refit the model"
        )
    if verify:
        check_thresholds(data, root)
        check_checksum(data, root)
    return data
