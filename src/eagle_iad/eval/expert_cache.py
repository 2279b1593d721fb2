"""``eagle eval``'s expert results in the run folder: each image is scored once per run, resumes included.

Why: every condition but ``baseline`` reads the same expert result for an image, and computing it per
condition scored each image three times with the default conditions (five with all six). The worker
(:mod:`eagle_iad.eval.runner`) asks the pipeline for it once (:func:`eagle_iad.pipeline.expert_pass`)
and keeps it here, so a run resumed after a crash does not score the image again either.

Layout: ``RUN/expert-cache/<category>/<key>.safetensors``, one file per image and model: the three
maps as tensors, and the rest of the result (score, decision, geometry, nearest reference) as JSON
in the file's metadata with the format version and what the key was made from. The key hashes the
image's path and bytes (SHA-256), the model's identity (SHA-256 of its ``model.json``: a refit or a
threshold change is another model) and the package version, so a stale result is never found rather
than found and rejected. A file is written atomically; one that cannot be read, is of another format
version or was made for another key is scored again and replaced. No pickle: tensors and JSON only.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import SafetensorError, safe_open
from safetensors.numpy import save

from eagle_iad.atomic import atomic_write_bytes
from eagle_iad.expert.geometry import geometry_from_dict, geometry_to_dict
from eagle_iad.expert.patchcore import ExpertResult

#: ``RUN/<CACHE_DIR>``: where a run keeps its expert results.
CACHE_DIR = "expert-cache"
FORMAT = "eagle-iad expert result"
#: Bumped when the stored fields change; a file of another version is scored again.
VERSION = 1
_ARRAYS = ("patch_scores", "crop_map", "anomaly_map")


@dataclass(frozen=True)
class CacheKey:
    """What an expert result depends on: the image (path and bytes), the model, the code."""

    image: str
    image_sha256: str
    model_sha256: str
    package_version: str

    def digest(self) -> str:
        """The file name's hash (format version included, so a new format never reads an old file)."""
        text = json.dumps({**asdict(self), "format": FORMAT, "version": VERSION}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:32]


def encode(result: ExpertResult, key: CacheKey) -> bytes | None:
    """One safetensors file for ``result``; ``None`` when its geometry cannot be stored (a plugin's)."""
    geometry = geometry_to_dict(result.geometry)
    if geometry is None:
        return None
    fields = {"score": result.score, "is_anomalous": result.is_anomalous, "in_band": result.in_band,
              "geometry": geometry, "reference_image": result.reference_image,
              "reference_row": result.reference_row, "foreign_share": result.foreign_share}  # fmt: skip
    record = {"format": FORMAT, "version": VERSION, "key": asdict(key), "result": fields}
    arrays = {name: np.ascontiguousarray(getattr(result, name)) for name in _ARRAYS}
    return save(arrays, metadata={"record": json.dumps(record, sort_keys=True)})


def read(path: Path, key: CacheKey) -> ExpertResult | None:
    """The result stored at ``path`` for ``key``; ``None`` when absent, unreadable or not for this key."""
    try:
        with safe_open(str(path), framework="numpy") as handle:
            record: dict[str, Any] = json.loads((handle.metadata() or {})["record"])
            if (record.get("format"), record.get("version"), record.get("key")) != (FORMAT, VERSION, asdict(key)):
                return None
            arrays = {name: handle.get_tensor(name) for name in _ARRAYS}
        fields = record["result"]
        return ExpertResult(
            score=float(fields["score"]),
            is_anomalous=bool(fields["is_anomalous"]),
            in_band=bool(fields["in_band"]),
            geometry=geometry_from_dict(fields["geometry"]),
            reference_image=int(fields["reference_image"]),
            reference_row=int(fields["reference_row"]),
            foreign_share=None if fields["foreign_share"] is None else float(fields["foreign_share"]),
            **arrays,
        )
    except FileNotFoundError:
        return None
    except (OSError, SafetensorError, KeyError, TypeError, ValueError):
        return None  # a damaged or foreign file: scored again, and replaced by put()


class ExpertCache:
    """``RUN/expert-cache``: :meth:`get` a stored result, :meth:`put` a new one (atomically)."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)

    def path(self, category: str, key: CacheKey) -> Path:
        return self.folder / category / f"{key.digest()}.safetensors"

    def get(self, category: str, key: CacheKey) -> ExpertResult | None:
        return read(self.path(category, key), key)

    def put(self, category: str, key: CacheKey, result: ExpertResult) -> None:
        data = encode(result, key)
        if data is not None:
            atomic_write_bytes(self.path(category, key), data)
