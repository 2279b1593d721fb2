"""The family interface and the shared image-token-run finder."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from eagle_iad.errors import ConfigError


def image_token_runs(input_ids: Sequence[int], image_token_id: int) -> list[tuple[int, int]]:
    """Maximal runs ``[start, end)`` of ``image_token_id`` in ``input_ids``, in prompt order.

    Each image of a supported family expands to one contiguous run of its image token, and runs of
    different images are separated by other tokens (vision start/end markers, a newline), so the
    n-th run is the n-th image. Found from ids only, never by searching prompt text (SPEC §3).
    """
    runs: list[tuple[int, int]] = []
    start: int | None = None
    for index, token in enumerate(input_ids):
        if token == image_token_id:
            if start is None:
                start = index
        elif start is not None:
            runs.append((start, index))
            start = None
    if start is not None:
        runs.append((start, len(input_ids)))
    return runs


class Family(Protocol):
    """What the backend needs to know about a model family."""

    @property
    def name(self) -> str: ...

    @property
    def model_types(self) -> tuple[str, ...]: ...

    def load_processor(self, path: str | Path, **kwargs: Any) -> Any:
        """The family's processor (image processor + tokenizer + chat template)."""
        ...

    def image_token_id(self, config: Any) -> int:
        """The token id that marks visual tokens in ``input_ids``."""
        ...

    def grids(self, config: Any, inputs: Any, n_images: int) -> list[tuple[int, int, int]]:
        """Per image, the grid ``(t, h, w)`` its visual tokens lie on (row-major, time outermost)."""
        ...

    def grid_coverage(self, height: int, width: int) -> tuple[int, int, int, int] | None:
        """The ``(x0, y0, x1, y1)`` part of a ``height x width`` input the grid covers (``None``: all)."""
        ...


@dataclass(frozen=True)
class ImageSpans:
    """Token spans and grids of all images of one prompt, in prompt order."""

    spans: list[tuple[int, int]]
    grids: list[tuple[int, int, int]]


def image_spans(family: Family, config: Any, inputs: Any, input_ids: Sequence[int], n_images: int) -> ImageSpans:
    """Find one run per image and check it against the family's grid (a mismatch is a bug, not noise)."""
    runs = image_token_runs(input_ids, family.image_token_id(config))
    grids = family.grids(config, inputs, n_images)
    if len(runs) != n_images:
        raise ConfigError(f"found {len(runs)} image-token runs for {n_images} images; cannot locate the query image")
    for (start, end), (t, h, w) in zip(runs, grids, strict=True):
        if end - start != t * h * w:
            raise ConfigError(f"image-token run of {end - start} tokens does not match grid {(t, h, w)}")
    return ImageSpans(runs, grids)
