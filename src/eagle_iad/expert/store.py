"""Saving and loading a fitted category: one directory, safetensors + JSON, atomic, versioned.

Layout of ``DIR``::

    model.json            schema, versions, config, backbone id + hash, thresholds,
                          training-score distribution, sha256 of the tensor file
    tensors.safetensors   memory bank, bank image ids, per-training-patch image id and selected flag

No pickle is involved, so a model directory from an untrusted source cannot run code. The
directory is written under a temporary name and renamed into place, so an interrupted save
leaves either the old model or the new one, never a mix. Loading verifies the schema version,
the tensor file's hash and every tensor's shape before anything uses them.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from eagle_iad import __version__
from eagle_iad.errors import ModelFormatError
from eagle_iad.expert.backbones import BackboneId
from eagle_iad.expert.manifest import FORMAT as FORMAT
from eagle_iad.expert.manifest import MANIFEST as MANIFEST
from eagle_iad.expert.manifest import SCHEMA_VERSION as SCHEMA_VERSION
from eagle_iad.expert.manifest import TENSORS as TENSORS
from eagle_iad.expert.manifest import read_manifest as read_manifest
from eagle_iad.expert.patchcore import ExpertConfig, ExpertModel
from eagle_iad.tgps.thresholds import Thresholds


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _manifest(model: ExpertModel, tensors_sha256: str) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "schema_version": SCHEMA_VERSION,
        "package_version": __version__,
        "created": model.created,
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
        },
        "timings": model.timings,
        "tensors": {"file": TENSORS, "sha256": tensors_sha256},
    }


def save(model: ExpertModel, directory: str | os.PathLike[str]) -> Path:
    """Write ``model`` to ``directory`` atomically, replacing an existing model there."""
    target = Path(directory)
    if target.exists() and not target.is_dir():
        raise ModelFormatError(f"{target}: exists and is not a directory")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        tensors_path = staging / TENSORS
        save_file(
            {
                "bank": model.bank.contiguous().float(),
                "bank_image_ids": model.bank_image_ids.to(torch.int32).contiguous(),
                "patch_image_ids": model.patch_image_ids.to(torch.int32).contiguous(),
                "selected": model.selected.to(torch.uint8).contiguous(),
            },
            str(tensors_path),
            metadata={"format": FORMAT, "schema_version": str(SCHEMA_VERSION)},
        )
        manifest_path = staging / MANIFEST
        manifest_path.write_text(json.dumps(_manifest(model, _sha256(tensors_path)), indent=2) + "\n")
        for path in (tensors_path, manifest_path):
            with path.open("rb") as handle:
                os.fsync(handle.fileno())
        os.chmod(staging, 0o755)
        _fsync_dir(staging)
        if target.exists():
            retired = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
            os.rmdir(retired)
            os.rename(target, retired)
            try:
                os.rename(staging, target)
            except BaseException:
                os.rename(retired, target)  # put the old model back: never leave no model at all
                raise
            shutil.rmtree(retired, ignore_errors=True)
        else:
            os.rename(staging, target)
        _fsync_dir(target.parent)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def _require(data: dict[str, Any], key: str, kind: type, where: Path) -> Any:
    if key not in data or not isinstance(data[key], kind):
        raise ModelFormatError(f"{where}: field {key!r} is missing or not a {kind.__name__}")
    return data[key]


def load(directory: str | os.PathLike[str]) -> ExpertModel:
    """Load and verify a model directory; every inconsistency raises :class:`ModelFormatError`."""
    root = Path(directory)
    data = read_manifest(root)
    where = root / MANIFEST
    try:
        config = ExpertConfig.from_dict(_require(data, "config", dict, where))
        backbone_data = _require(data, "backbone", dict, where)
        backbone = BackboneId(str(backbone_data["name"]), str(backbone_data["sha256"]))
        thresholds = Thresholds.from_dict(_require(data, "thresholds", dict, where))
        training = _require(data, "training", dict, where)
        tensors_meta = _require(data, "tensors", dict, where)
        grid_raw = _require(data, "grid", list, where)
        grid = (int(grid_raw[0]), int(grid_raw[1]))
        train_images = [str(x) for x in training["images"]]
        train_scores = np.asarray(training["scores"], dtype=np.float64)
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise ModelFormatError(f"{where}: malformed manifest ({exc})") from exc
    tensor_path = root / TENSORS
    if not tensor_path.is_file():
        raise ModelFormatError(f"{root}: {TENSORS} is missing")
    if _sha256(tensor_path) != tensors_meta.get("sha256"):
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
    if patch_ids.shape != selected.shape or patch_ids.shape[0] != n_images * grid[0] * grid[1]:
        problems.append("per-patch bookkeeping does not match the number of training images")
    if int(selected.sum()) != bank.shape[0]:
        problems.append("selected patches do not match the bank size")
    if train_scores.shape != (n_images,):
        problems.append("training scores do not match the number of training images")
    if problems:
        raise ModelFormatError(f"{root}: inconsistent model ({'; '.join(problems)})")
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
    )
