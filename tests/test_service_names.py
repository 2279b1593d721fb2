"""The name an inspection keeps for its upload: folders kept (same-named files stay distinct), never a path out."""

from __future__ import annotations

import pytest

from eagle_iad.service.routes_inspect import _safe_name


@pytest.mark.parametrize(
    ("sent", "kept"),
    [
        ("003.png", "003.png"),
        ("cut/003.png", "cut/003.png"),
        ("hole\\\\003.png", "hole/003.png"),
        ("../../evil name.png", "evil_name.png"),
        ("/abs/./lot 7//cut/003.png", "abs/lot_7/cut/003.png"),
        ("a/b/c/d/e/003.png", "c/d/e/003.png"),
        ("cut/.hidden.png", "cut/hidden.png"),
        ("cut/..", "cut"),
        ("../..", "upload.png"),
        ("", "upload.png"),
        (None, "upload.png"),
    ],
)
def test_upload_name_keeps_up_to_three_folders(sent: str | None, kept: str) -> None:
    assert _safe_name(sent) == kept
