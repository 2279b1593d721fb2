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


#: Loads in a row that may each find the model changed meanwhile before its version is left unknown.
VERSION_TRIES = 3


def load_versioned(directory: str | Path, runtime: str = "torch") -> tuple[Expert, int | None]:
    """:func:`load_expert` and the number of the model version loaded (what an inspection records as its
    ``model_version``; :func:`eagle_iad.expert.versions.current_version`), ``None`` for an export (no versions).

    Why the version is read before and after the load: a save swaps the model folder whole at any moment, so
    a number read once could name the model before or after the one loaded; the same number on both sides is
    the loaded model's (numbers only grow). A model changed at every try is left ``None``: unknown, not wrong.
    """
    from eagle_iad.expert.versions import current_version

    if runtime != "torch":
        return load_expert(directory, runtime), None
    for _ in range(VERSION_TRIES):
        before = current_version(directory)
        expert = load_expert(directory, runtime)
        version = current_version(directory)
        if version == before:
            return expert, version
    return expert, None


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value  # later look-ups skip this function
    return value


__all__ = [
    "Expert",
    "ExpertConfig",
    "ExpertModel",
    "ExpertResult",
    "fit",
    "load",
    "load_expert",
    "load_versioned",
    "save",
]
