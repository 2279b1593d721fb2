"""The name an inspection keeps for its upload: exactly the user's (Unicode, spaces), folders kept (same-named
files stay distinct), never a path out; the pictures' file names are made safe apart from it."""

from __future__ import annotations

import pytest

from eagle_iad.service.routes_inspect import storage_stem, upload_name


@pytest.mark.parametrize(
    ("sent", "kept"),
    [
        ("003.png", "003.png"),
        ("cut/003.png", "cut/003.png"),
        ("hole\\\\003.png", "hole/003.png"),
        ("../../evil name.png", "evil name.png"),
        ("/abs/./lot 7//cut/003.png", "abs/lot 7/cut/003.png"),
        ("a/b/c/d/e/003.png", "c/d/e/003.png"),
        ("cut/.hidden.png", "cut/.hidden.png"),
        ("cut/..", "cut"),
        ("../..", "upload.png"),
        ("", "upload.png"),
        ("  /  ", "upload.png"),
        (None, "upload.png"),
        ("Zelle 7 (Charge B) ä.png", "Zelle 7 (Charge B) ä.png"),
        ("Los 3/Zelle #7 & 8 100%.png", "Los 3/Zelle #7 & 8 100%.png"),
        ("批次/电池片 12.png", "批次/电池片 12.png"),
        ('=HYPERLINK("x").png', '=HYPERLINK("x").png'),  # kept: the CSV export defuses it
        ("+1.png", "+1.png"),
        ("-1.png", "-1.png"),
        ("@a.png", "@a.png"),
        ("bad\nname\x1b[31m.png", "bad\\nname\\x1b[31m.png"),  # a terminal or log line cannot be fooled
        ("gnp.\u202eexe.png", "gnp.\\u202eexe.png"),  # nor a reader, by an RTL override
        ("x" * 300 + ".png", "x" * 255),
    ],
)
def test_upload_name_is_kept_as_sent(sent: str | None, kept: str) -> None:
    assert upload_name(sent) == kept


@pytest.mark.parametrize(
    ("name", "stem"),
    [
        ("003.png", "003"),
        ("cut/003.png", "003"),
        ("Zelle 7 (Charge B) ä.png", "Zelle_7__Charge_B___"),
        ("Los 3/Zelle #7 & 8 100%.png", "Zelle__7___8_100_"),
        ("cut/.hidden.png", "hidden"),
        ("电池片.png", "___"),
        ("..png", "image"),
        ("x" * 300, "x" * 80),
    ],
)
def test_pictures_are_stored_under_a_safe_stem(name: str, stem: str) -> None:
    assert storage_stem(name) == stem
