"""The record every dataset layout produces, and the registry that names the layouts.

A layout turns a dataset root into :class:`Sample` records; everything downstream (fit, eval,
inspect) works on samples only, so a new layout is one module and one :func:`register_layout`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
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
    """

    path: Path
    label: int
    category: str
    split: Split
    defect_type: str = "good"
    mask_path: Path | None = None


class Layout(Protocol):
    """A dataset layout: how to list categories and the samples of one split."""

    name: str

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


def layout_names() -> list[str]:
    """Registered layout names, sorted."""
    return sorted(_LAYOUTS)
