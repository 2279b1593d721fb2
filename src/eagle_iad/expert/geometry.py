"""Where the network inputs of one image came from, so its map can go back to the original frame.

Why apart from the preprocessing modes (expert/preprocess.py): a geometry is what an inspection's
result carries (``ExpertResult.geometry``) and what the pictures and boxes read; it does not change
with how a mode makes its pixels, so a new mode reuses these (or adds one beside them).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from eagle_iad.images import Geometry

#: The feature grid's stride in input pixels (the backbones' shallow stage).
FEATURE_STRIDE = 8


def _resize_map(values: np.ndarray, height: int, width: int) -> np.ndarray:
    if values.shape == (height, width):
        return values.astype(np.float32, copy=False)
    tensor = torch.from_numpy(np.ascontiguousarray(values, dtype=np.float32))[None, None]
    return F.interpolate(tensor, size=(height, width), mode="bilinear", align_corners=False)[0, 0].numpy()


class ViewGeometry(ABC):
    """Where the network inputs of one image came from, so its map can go back to the original."""

    height: int
    width: int

    @property
    @abstractmethod
    def input_shape(self) -> tuple[int, int]:
        """The map's shape in input pixels (after stitching views), what :meth:`to_original` takes."""

    @abstractmethod
    def stitch(self, grids: np.ndarray) -> np.ndarray:
        """``V x h x w`` patch grids of the views → one patch grid over the whole input."""

    @abstractmethod
    def to_original(self, input_map: np.ndarray) -> np.ndarray:
        """A map over the input (``input_shape``) → a map over the original ``height x width`` image."""

    def inspected(self) -> np.ndarray | None:
        """Original pixels the expert saw (``H x W`` bool); ``None`` when it saw every pixel."""
        return None

    def describe(self) -> dict[str, Any]:
        """JSON-ready summary (``eagle inspect --json`` shows it beside the map statistics)."""
        return {"input": list(self.input_shape), "whole_frame": self.inspected() is None}


@dataclass(frozen=True)
class WholeFrame(ViewGeometry):
    """One view: the whole image resized to ``input_height x input_width``."""

    height: int
    width: int
    input_height: int
    input_width: int

    @property
    def input_shape(self) -> tuple[int, int]:
        return self.input_height, self.input_width

    def stitch(self, grids: np.ndarray) -> np.ndarray:
        return np.asarray(grids[0])

    def to_original(self, input_map: np.ndarray) -> np.ndarray:
        return _resize_map(input_map, self.height, self.width)


@dataclass(frozen=True)
class Tiles(ViewGeometry):
    """Overlapping ``tile`` squares over the whole image resized to ``input_height x input_width``."""

    height: int
    width: int
    input_height: int
    input_width: int
    tile: int
    origins: tuple[tuple[int, int], ...]

    @property
    def input_shape(self) -> tuple[int, int]:
        return self.input_height, self.input_width

    def stitch(self, grids: np.ndarray) -> np.ndarray:
        cell = FEATURE_STRIDE
        out = np.full((self.input_height // cell, self.input_width // cell), -np.inf, dtype=np.float32)
        for (top, left), grid in zip(self.origins, grids, strict=True):
            gh, gw = grid.shape
            window = out[top // cell : top // cell + gh, left // cell : left // cell + gw]
            np.maximum(window, grid, out=window)
        return out

    def to_original(self, input_map: np.ndarray) -> np.ndarray:
        return _resize_map(input_map, self.height, self.width)


@dataclass(frozen=True)
class CenterCrop(ViewGeometry):
    """The paper's view: shorter side resized, a centre square cropped (wraps :class:`Geometry`)."""

    inner: Geometry

    @property
    def height(self) -> int:  # type: ignore[override]
        return self.inner.height

    @property
    def width(self) -> int:  # type: ignore[override]
        return self.inner.width

    @property
    def input_shape(self) -> tuple[int, int]:
        return self.inner.crop, self.inner.crop

    def stitch(self, grids: np.ndarray) -> np.ndarray:
        return np.asarray(grids[0])

    def to_original(self, input_map: np.ndarray) -> np.ndarray:
        return self.inner.map_to_original(input_map)

    def inspected(self) -> np.ndarray:
        """Original pixels whose centre falls inside the crop window."""
        g = self.inner
        sy, sx = g.resized_height / g.height, g.resized_width / g.width
        ys = (np.arange(g.height) + 0.5) * sy
        xs = (np.arange(g.width) + 0.5) * sx
        rows = (ys >= g.top) & (ys < g.top + g.crop)
        cols = (xs >= g.left) & (xs < g.left + g.crop)
        return rows[:, None] & cols[None, :]


def geometry_to_dict(geometry: ViewGeometry) -> dict[str, Any] | None:
    """A geometry as JSON-ready data (``eagle eval``'s expert cache stores results with it).

    ``None`` for a geometry this module does not define (a plugin's subclass included): its results
    are then not stored rather than stored as a look-alike. A new geometry here adds its case and one
    in :func:`geometry_from_dict`; tests/test_eval_expert_cache.py round-trips every subclass found here.
    """
    if type(geometry) is WholeFrame:
        return {"kind": "whole-frame", **asdict(geometry)}
    if type(geometry) is Tiles:
        return {"kind": "tiles", **asdict(geometry), "origins": [list(origin) for origin in geometry.origins]}
    if type(geometry) is CenterCrop:
        return {"kind": "center-crop", **asdict(geometry.inner)}
    return None


def geometry_from_dict(data: dict[str, Any]) -> ViewGeometry:
    """The geometry :func:`geometry_to_dict` gave ``data`` for (``ValueError`` for an unknown kind)."""
    fields = {key: value for key, value in data.items() if key != "kind"}
    kind = data.get("kind")
    if kind == "whole-frame":
        return WholeFrame(**fields)
    if kind == "tiles":
        return Tiles(**{**fields, "origins": tuple((int(top), int(left)) for top, left in fields["origins"])})
    if kind == "center-crop":
        return CenterCrop(Geometry(**fields))
    raise ValueError(f"unknown geometry kind {kind!r}")
