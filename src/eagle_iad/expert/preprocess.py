"""How an image becomes the expert's network input, and how its map comes back (docs/METHOD.md).

The preprocessing is part of a fitted model: a memory bank only means something for inputs made
the same way, so the mode and its sizes are saved in the model's config and chosen at fit time.

Modes (a registry, ``PREPROCESSORS``):

``resize`` (default)
    The whole frame, no crop: the image is resized to one fixed ``H x W`` input chosen at fit time
    from the training images' aspect ratio (long side ``size``, both sides multiples of 32). Every
    pixel of the original is inside what the expert sees; the map comes back with one bilinear
    resize. An image of another aspect ratio than the training images is stretched to that input,
    which keeps it whole (a crop would silently drop its borders).
``tile``
    For large images (about 2000 px and up) where a defect of a few dozen pixels would shrink to a
    pixel or two in a whole-frame resize: the image is resized to a larger fixed input (long side
    ``size``, e.g. 1024) and cut into overlapping ``tile x tile`` squares, each embedded on its own
    (bounded activation memory, the receptive field of the training tiles). Patch grids are stitched
    back by their maximum where tiles overlap, so the image score stays the maximum patch score.
``center-crop`` (the paper's setting, ``--preset paper``)
    Resize the shorter side to ``resize``, centre-crop ``crop`` (torchvision's ``Resize`` +
    ``CenterCrop``). What lies outside the crop is *not inspected*; the geometry reports that area
    so pictures can show it as such instead of as normal.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from eagle_iad.errors import ConfigError
from eagle_iad.images import IMAGENET_MEAN, IMAGENET_STD, Geometry

if TYPE_CHECKING:  # pragma: no cover
    from eagle_iad.expert.patchcore import ExpertConfig

#: Both input sides are multiples of this, so every stride-2 layer of the backbones sees an even size
#: (EfficientNet's static "same" padding then equals what it was built with) and the stride-16 stage
#: tiles the input exactly.
INPUT_MULTIPLE = 32
#: The feature grid's stride in input pixels (the backbones' shallow stage).
FEATURE_STRIDE = 8


def _round_side(value: float) -> int:
    return max(INPUT_MULTIPLE, round(value / INPUT_MULTIPLE) * INPUT_MULTIPLE)


def input_size_for(height: int, width: int, size: int) -> tuple[int, int]:
    """The fixed ``(H, W)`` input for images of this shape: long side ``size``, aspect kept, multiples of 32."""
    if height >= width:
        return size, _round_side(size * width / height)
    return _round_side(size * height / width), size


def _normalise(rgb: np.ndarray) -> torch.Tensor:
    arr: np.ndarray = np.asarray(rgb, dtype=np.float32) / np.float32(255.0)
    normalised = (arr - np.asarray(IMAGENET_MEAN, dtype=np.float32)) / np.asarray(IMAGENET_STD, dtype=np.float32)
    return torch.from_numpy(np.ascontiguousarray(normalised.transpose(2, 0, 1)))


def _resize_rgb(rgb: np.ndarray, height: int, width: int) -> np.ndarray:
    if rgb.shape[:2] == (height, width):
        return rgb
    # PIL's bilinear filter antialiases when shrinking, like the centre-crop path always did.
    return np.asarray(Image.fromarray(rgb).resize((width, height), Image.Resampling.BILINEAR))


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


#: ``prepare(rgb, config) -> (views, geometry)``: ``views`` is ``V x 3 x h x w`` (same ``h x w`` for
#: every image of a model, so batches stack).
Preprocessor = Callable[[np.ndarray, "ExpertConfig"], tuple[torch.Tensor, ViewGeometry]]


def _input_hw(config: ExpertConfig) -> tuple[int, int]:
    if config.input_hw is None:
        raise ConfigError("this model's input size was never set (fit sets it from the training images)")
    return int(config.input_hw[0]), int(config.input_hw[1])


def _prepare_resize(rgb: np.ndarray, config: ExpertConfig) -> tuple[torch.Tensor, ViewGeometry]:
    height, width = rgb.shape[:2]
    ih, iw = _input_hw(config)
    return _normalise(_resize_rgb(rgb, ih, iw))[None], WholeFrame(height, width, ih, iw)


def tile_origins(input_height: int, input_width: int, tile: int, overlap: int) -> tuple[tuple[int, int], ...]:
    """Top-left corners of ``tile`` squares covering the input, neighbours overlapping by >= ``overlap``.

    Corners are on the feature grid (multiples of 8) so stitched patches line up; the last tile of a
    row or column is flush with the edge, so every input pixel is covered.
    """

    def starts(extent: int) -> list[int]:
        if extent <= tile:
            return [0]
        stride = max(FEATURE_STRIDE, (tile - overlap) // FEATURE_STRIDE * FEATURE_STRIDE)
        points = list(range(0, extent - tile, stride))
        points.append(extent - tile)
        return points

    return tuple((top, left) for top in starts(input_height) for left in starts(input_width))


def _prepare_tile(rgb: np.ndarray, config: ExpertConfig) -> tuple[torch.Tensor, ViewGeometry]:
    height, width = rgb.shape[:2]
    ih, iw = _input_hw(config)
    tile = config.tile
    whole = _normalise(_resize_rgb(rgb, ih, iw))
    origins = tile_origins(ih, iw, tile, config.tile_overlap)
    views = torch.stack([whole[:, top : top + tile, left : left + tile] for top, left in origins])
    return views.contiguous(), Tiles(height, width, ih, iw, tile, origins)


def _prepare_center_crop(rgb: np.ndarray, config: ExpertConfig) -> tuple[torch.Tensor, ViewGeometry]:
    from eagle_iad.images import to_tensor

    tensor, geometry = to_tensor(rgb, config.resize, config.crop)
    return tensor[None], CenterCrop(geometry)


PREPROCESSORS: dict[str, Preprocessor] = {
    "resize": _prepare_resize,
    "tile": _prepare_tile,
    "center-crop": _prepare_center_crop,
}


def register_preprocessor(name: str, prepare: Preprocessor) -> None:
    """Add a preprocessing mode (its name becomes a ``--preprocess`` choice)."""
    PREPROCESSORS[name] = prepare


def prepare(rgb: np.ndarray, config: ExpertConfig) -> tuple[torch.Tensor, ViewGeometry]:
    """The network input views of one RGB image under ``config``'s preprocessing, and their geometry."""
    try:
        prepare_fn = PREPROCESSORS[config.preprocess]
    except KeyError as exc:
        raise ConfigError(
            f"unknown preprocessing {config.preprocess!r}; choose one of {', '.join(PREPROCESSORS)}"
        ) from exc
    return prepare_fn(rgb, config)


def backbone_image_size(config: ExpertConfig) -> int:
    """The square size the backbone is built for (only its 'same' padding depends on it: any multiple of 32)."""
    return config.crop if config.preprocess == "center-crop" else INPUT_MULTIPLE * 7
