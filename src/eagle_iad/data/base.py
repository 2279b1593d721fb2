"""The record every dataset layout produces, and the registry that names the layouts.

A layout turns a dataset root into :class:`Sample` records; everything downstream (fit, eval,
inspect) works on samples only, so a new layout is one module and one :func:`register_layout`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

from eagle_iad.errors import DataError
from eagle_iad.registry import Registry

Split = Literal["train", "test"]


@dataclass(frozen=True)
class Sample:
    """One image of a dataset split.

    ``label`` is 0 for normal and 1 for anomalous; ``mask_path`` is the pixel ground truth where
    the layout has one (None for normal images and for image-label-only datasets such as elpv).
    ``mask_sought`` is the file a layout looked for and did not find (an anomalous image whose mask
    is missing, e.g. misnamed), so a report can say where it looked; None otherwise. It is not part
    of a sample's identity (left out of comparisons).
    """

    path: Path
    label: int
    category: str
    split: Split
    defect_type: str = "good"
    mask_path: Path | None = None
    mask_sought: Path | None = field(default=None, compare=False, repr=False)


class Layout(Protocol):
    """A dataset layout: how to list categories and the samples of one split."""

    name: str
    # Optional: ``mask_names``, a short text saying where and under which names the layout reads masks
    # (e.g. ``ground_truth/<defect>/<stem>_mask.png``), quoted when masks are missing (:func:`mask_names`).

    def categories(self, root: Path | None) -> list[str]:
        """Category names available under ``root``."""
        ...

    def samples(self, root: Path | None, category: str, split: Split) -> list[Sample]:
        """Samples of one split, sorted by path; raises :class:`DataError` if there are none."""
        ...


_LAYOUTS: Registry[Callable[[], Layout]] = Registry("dataset layout", DataError)


def register_layout(name: str) -> Callable[[Callable[[], Layout]], Callable[[], Layout]]:
    """Class decorator registering a layout factory under ``name``."""
    return _LAYOUTS.register(name)


def get_layout(name: str) -> Layout:
    """The layout registered as ``name``; a clear error lists the known ones."""
    return _LAYOUTS.get(name)()


def mask_names(name: str) -> str | None:
    """Where and under which names layout ``name`` reads masks; None for a layout that does not say."""
    names = getattr(get_layout(name), "mask_names", None)
    return names if isinstance(names, str) else None


def layout_names() -> list[str]:
    """Registered layout names, sorted."""
    return sorted(_LAYOUTS)
