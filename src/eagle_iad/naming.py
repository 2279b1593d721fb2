"""File names for the pictures written per input image: readable, and unique within one call.

Why: ``eagle inspect good/000.png logical/000.png --out o`` once wrote both images' pictures to
``o/000_box.png``, and the first verdict linked the second image's picture. Every place that names
pictures after their input (CLI, service, reports) goes through :func:`picture_stems`.
"""

from __future__ import annotations

import hashlib
import os
import re
import unicodedata
from collections import Counter
from collections.abc import Sequence
from pathlib import PurePath

#: The one rule for a category's name, the CLI's and the service's alike (it names a folder under the
#: models directory and appears in URLs): 1-64 of ``A-Z a-z 0-9 _ . -``, starting with a letter or digit.
CATEGORY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
CATEGORY_NAME_RULE = "1-64 letters, digits, '_', '.', '-', starting with a letter or digit, without '..'"


def category_name_problem(name: str) -> str | None:
    """Why ``name`` cannot be a category's name (``None`` if it can); the CLI and the service both ask here."""
    if CATEGORY_NAME.fullmatch(name) and ".." not in name:  # fullmatch: "$" alone lets "mono\n" through
        return None
    return f"invalid category name {printable(name)!r}: use {CATEGORY_NAME_RULE}"


#: Longest file-name stem a picture gets, in UTF-8 bytes: with ``_heatmap.png`` and a temporary file's
#: prefix and suffix it stays well below the 255 bytes most filesystems allow in one name.
MAX_STEM_BYTES = 100


#: Longest file name most file systems allow in one name, in bytes (ext4, XFS, btrfs, tmpfs: NAME_MAX).
NAME_MAX = 255


def fit_name(stem: str, tail: str, limit: int = NAME_MAX) -> str:
    """``stem + tail``, whole characters cut off the end of ``stem`` until it is at most ``limit`` bytes in
    the file system's encoding (a name over NAME_MAX is refused: "File name too long")."""
    while stem and len(os.fsencode(stem + tail)) > limit:
        stem = stem[:-1]
    return stem + tail


#: Unicode categories written as escapes: controls, format characters (RTL overrides), lone surrogates (a
#: file name that is not UTF-8) and the line and paragraph separators.
_ESCAPED = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})


def _escape(char: str) -> str:
    return char.encode("unicode_escape", "backslashreplace").decode("ascii")


def printable(name: str) -> str:
    """``name`` with control and format characters (newlines, escape sequences, RTL overrides) as ``\\xNN``.

    Why: a file name is the user's data, and a terminal acts on escape sequences in it; the text output
    shows them escaped, as the JSON output does.
    """
    return "".join(char if unicodedata.category(char) not in _ESCAPED else _escape(char) for char in name)


def _short(stem: str, key: str) -> str:
    """``stem`` cut to :data:`MAX_STEM_BYTES` UTF-8 bytes (whole characters) plus 8 hex digits of ``key``'s hash."""
    if len(stem.encode("utf-8")) <= MAX_STEM_BYTES:
        return stem
    cut = stem.encode("utf-8")[: MAX_STEM_BYTES - 9].decode("utf-8", errors="ignore")
    return f"{cut}-{hashlib.sha256(key.encode('utf-8', 'surrogateescape')).hexdigest()[:8]}"


def _repeated(stems: Sequence[str]) -> list[int]:
    counts = Counter(stems)
    return [index for index, stem in enumerate(stems) if counts[stem] > 1]


def _tell_by_suffix(stems: list[str], names: Sequence[str]) -> None:
    """Add its suffix (lower case, ``_bmp``) to each stem shared by names that differ in their suffix, in place.

    Why: ``img.bmp``, ``img.tif`` and ``img.webp`` in one folder got ``img-4400d78e``, ``img-551f81aa``, ...,
    pictures nobody can tell apart without opening the verdict; their suffix says which is which.
    """
    suffixes = [PurePath(name).suffix.lower().lstrip(".") for name in names]
    groups: dict[str, list[int]] = {}
    for i in _repeated(stems):
        groups.setdefault(stems[i], []).append(i)
    for indices in groups.values():
        if len({suffixes[i] for i in indices}) > 1:
            for i in indices:
                stems[i] = f"{stems[i]}_{suffixes[i]}" if suffixes[i] else stems[i]


def picture_stems(names: Sequence[str]) -> list[str]:
    """One file-name stem per input name, all different.

    A stem no other input shares stays the file's own stem (``000``). Inputs that share one are named
    by their path relative to the deepest folder they have in common, separators replaced by ``_``
    (``good/000.png`` and ``logical/000.png`` give ``good_000`` and ``logical_000``). Whatever is still
    equal but for the suffix takes it (``img.bmp``, ``img.tif`` give ``img_bmp``, ``img_tif``); whatever is
    still equal (the same file given twice) gets ``-`` and 8 hex digits of a hash of its position and
    absolute path. A stem longer than :data:`MAX_STEM_BYTES` (a 248-character
    name, or 120 x "é") is cut there and given 8 hex digits of its path's hash, so it stays unique.
    """
    absolute = [os.path.abspath(name) for name in names]
    stems = [PurePath(name).stem or "image" for name in names]
    clashing = _repeated(stems)
    if clashing:
        try:
            common = os.path.commonpath([os.path.dirname(absolute[i]) for i in clashing])
        except ValueError:  # different drives (Windows): no folder in common
            common = ""
        for i in clashing:
            relative = os.path.relpath(absolute[i], common) if common else absolute[i].lstrip(os.sep)
            parts = [part for part in PurePath(relative).with_suffix("").parts if part not in ("", os.sep)]
            stems[i] = "_".join(parts).replace(":", "") or "image"
    _tell_by_suffix(stems, names)
    stems = [_short(stem, absolute[i]) for i, stem in enumerate(stems)]
    for i in _repeated(stems):
        digest = hashlib.sha256(f"{i}:{absolute[i]}".encode("utf-8", "surrogateescape")).hexdigest()[:8]
        stems[i] = f"{stems[i]}-{digest}"
    return stems


def plural(count: int, noun: str, many: str | None = None) -> str:
    """``count`` and the noun in the number it takes: "1 false alarm", "2 false alarms", "0 images".

    Why: reports said "1 false alarms". ``many`` is the plural where adding an ``s`` is wrong ("boxes").
    """
    return f"{count} {noun if count == 1 else (many or noun + 's')}"
