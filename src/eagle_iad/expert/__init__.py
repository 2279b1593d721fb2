"""PatchCore expert: fit on normal images, score new ones, save and load fitted categories.

The public names load their modules on first use (PEP 562), so importing a light submodule such
as ``eagle_iad.expert.manifest`` (``eagle info``) does not pull in torch through this package.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pathlib import Path

    from eagle_iad.expert.config import ExpertConfig
    from eagle_iad.expert.fitting import fit
    from eagle_iad.expert.patchcore import Expert, ExpertModel, ExpertResult
    from eagle_iad.expert.store import load, save

_LAZY = {
    "Expert": "patchcore",
    "ExpertConfig": "config",
    "ExpertModel": "patchcore",
    "ExpertResult": "patchcore",
    "fit": "fitting",
    "load": "store",
    "save": "store",
}


def load_expert(directory: str | Path, runtime: str = "torch") -> Expert:
    """Load a saved category and its backbone (``torch``), or an export folder (``onnx``, ``openvino``)."""
    if runtime != "torch":
        from eagle_iad.expert.runtime import GraphExpert

        return GraphExpert(directory, runtime)
    from eagle_iad.expert.patchcore import Expert
    from eagle_iad.expert.store import load

    return Expert(load(directory))


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value  # later look-ups skip this function
    return value


__all__ = ["Expert", "ExpertConfig", "ExpertModel", "ExpertResult", "fit", "load", "load_expert", "save"]
