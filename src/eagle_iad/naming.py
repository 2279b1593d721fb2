"""File names for the pictures written per input image: readable, and unique within one call.

Why: ``eagle inspect good/000.png logical/000.png --out o`` once wrote both images' pictures to
``o/000_box.png``, and the first verdict linked the second image's picture. Every place that names
pictures after their input (CLI, service, reports) goes through :func:`picture_stems`.
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from collections.abc import Sequence
from pathlib import PurePath


def _repeated(stems: Sequence[str]) -> list[int]:
    counts = Counter(stems)
    return [index for index, stem in enumerate(stems) if counts[stem] > 1]


def picture_stems(names: Sequence[str]) -> list[str]:
    """One file-name stem per input name, all different.

    A stem no other input shares stays the file's own stem (``000``). Inputs that share one are named
    by their path relative to the deepest folder they have in common, separators replaced by ``_``
    (``good/000.png`` and ``logical/000.png`` give ``good_000`` and ``logical_000``). Whatever is still
    equal (the same file given twice, ``000.png`` next to ``000.jpg``) gets ``-`` and 8 hex digits of
    a hash of its position and absolute path.
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
    for i in _repeated(stems):
        digest = hashlib.sha256(f"{i}:{absolute[i]}".encode()).hexdigest()[:8]
        stems[i] = f"{stems[i]}-{digest}"
    return stems
