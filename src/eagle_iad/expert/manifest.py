"""A saved model's ``model.json``: its name, format and schema version, read without torch.

Split from ``store.py`` (which loads the tensors and so imports torch) so that ``eagle info`` and a
service listing its categories read a manifest in milliseconds; ``store`` re-exports every name.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from eagle_iad import __version__
from eagle_iad.errors import ModelFormatError

FORMAT = "eagle-iad/expert"
SCHEMA_VERSION = 2
#: Oldest schema this version reads. Schema 1 (before whole-frame preprocessing) had no
#: ``preprocess``/``region_rule`` settings and no map calibration: it is read as the paper's centre
#: crop with the paper's box rule, so such a model inspects exactly as when it was saved.
OLDEST_SCHEMA = 1
MANIFEST = "model.json"
TENSORS = "tensors.safetensors"
#: Every file a saved model consists of; a model folder holding anything else is not replaced.
MODEL_FILES = frozenset({MANIFEST, TENSORS})


def read_manifest(directory: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and check ``model.json`` (format and schema version) without touching the tensors."""
    root = Path(directory)
    if not root.is_dir():
        raise ModelFormatError(f"{root}: no model directory here (run `eagle fit` first)")
    path = root / MANIFEST
    if not path.is_file():
        raise ModelFormatError(f"{root}: not an EAGLE-IAD model directory ({MANIFEST} is missing)")
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
            f"{root}: model schema {version} was written by eagle-iad {data.get('package_version', '?')}, "
            f"which is newer than this eagle-iad {__version__} (reads schema <= {SCHEMA_VERSION}); upgrade eagle-iad"
        )
    if version < OLDEST_SCHEMA:
        raise ModelFormatError(
            f"{root}: model schema {version} is older than this eagle-iad reads ({OLDEST_SCHEMA}); refit the model"
        )
    return data
