"""The two real data sets the expert studies measure on, selected the same way by every study.

Tire (MVTec 3D-AD, RGB) is read from ``../shared/data/mvtec3d-tire`` and may be absent (a user's
clone has no ``../shared``); elpv ships with its PyPI package. Without a training limit, elpv uses the
demo's 200 seeded cells (``eagle demo --limit-train``), so the figures match what a new user sees, and
tire all of its training images.
"""

from __future__ import annotations

import sys
from pathlib import Path

from eagle_iad.data import Sample, get_layout
from eagle_iad.data.selection import select_test, select_training
from eagle_iad.errors import EagleError

TIRE = Path(__file__).resolve().parents[2] / "shared" / "data" / "mvtec3d-tire"
ELPV_TRAIN = 200


def real_set(
    name: str, limit_train: int | None, limit_test: int | None, seed: int, elpv_category: str = "mono", tag: str = ""
) -> tuple[list[Sample], list[Sample]] | None:
    """Seeded training and ratio-keeping test samples of ``tire`` or ``elpv``; None (said on stderr) without tire."""
    if name == "tire":
        if not TIRE.exists():
            print(f"[{tag}] skipping tire: no data at {TIRE}", file=sys.stderr)
            return None
        layout, root, category, default_train = get_layout("mvtec"), TIRE, "tire", None
    elif name == "elpv":
        layout, root, category, default_train = get_layout("elpv"), None, elpv_category, ELPV_TRAIN
    else:
        raise EagleError(f"unknown dataset {name!r}; known: tire, elpv")
    train = select_training(layout.samples(root, category, "train"), limit_train or default_train, seed)
    test = select_test(layout.samples(root, category, "test"), limit_test, seed)
    return train, test
