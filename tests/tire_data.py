"""Where the tests find the MVTec 3D-AD tire images: the one place that looks at ``../shared``.

This workplace keeps a copy at ``../shared/data/mvtec3d-tire`` (MVTec AD layout, 300x400); a user's
clone has none, so every test that needs it skips with a one-line reason. ``EAGLE_NO_SHARED=1``
hides the copy even where it exists, so CI can run a suite exactly as a fresh clone would
(``make test`` does that for the TypeScript suites, whose fixture must never need the tire set).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

#: Setting this to 1 makes every test behave as if ``../shared`` were absent.
NO_SHARED_ENV = "EAGLE_NO_SHARED"
SHARED_TIRE = Path(__file__).resolve().parents[2] / "shared" / "data" / "mvtec3d-tire"


def tire_root() -> Path | None:
    """The tire copy's root (holding ``tire/``), or None when it is absent or hidden."""
    if os.environ.get(NO_SHARED_ENV) == "1":
        return None
    return SHARED_TIRE if (SHARED_TIRE / "tire").is_dir() else None


def tire_skip_reason() -> str:
    if os.environ.get(NO_SHARED_ENV) == "1":
        return f"tire images hidden by {NO_SHARED_ENV}=1 (as in a fresh clone)"
    return f"tire images (MVTec 3D-AD) not present at {SHARED_TIRE}, as in a fresh clone"


#: Where the tests read tire images; only meaningful when ``needs_tire`` lets a test run.
TIRE = tire_root() or SHARED_TIRE
#: Skips a test (or module) when the tire images are not there.
needs_tire = pytest.mark.skipif(tire_root() is None, reason=tire_skip_reason())
