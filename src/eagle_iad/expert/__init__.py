"""PatchCore expert: fit on normal images, score new ones, save and load fitted categories."""

from pathlib import Path

from eagle_iad.expert.patchcore import Expert, ExpertConfig, ExpertModel, ExpertResult, fit
from eagle_iad.expert.store import load, save


def load_expert(directory: str | Path) -> Expert:
    """Load a saved category and its backbone, ready to inspect images."""
    return Expert(load(directory))


__all__ = ["Expert", "ExpertConfig", "ExpertModel", "ExpertResult", "fit", "load", "load_expert", "save"]
