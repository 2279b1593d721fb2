"""How an image becomes the expert's network input, and how its map comes back (docs/METHOD.md).

The preprocessing is part of a fitted model: a memory bank only means something for inputs made
the same way, so the mode and its sizes are saved in the model's config and chosen at fit time.

Modes (a :class:`~eagle_iad.registry.Registry`, ``PREPROCESSORS``; one :class:`Preprocessor` class each,
holding everything that differs between modes: its own settings checks, the views of one image,
the input size, the backbone's build size and the export form, so no other module asks which mode
a model uses):

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
``scale``
    Each image at its own aspect ratio and one pixel scale: every side times the factor that puts the
    training images' median long side at ``size`` (``pixel_scale``, fixed at fit time), rounded to a
    multiple of 32. Nothing is stretched, so an image cropped or turned differently from the others keeps
    its shapes' proportions and size; the patch grid differs from image to image (the memory bank does not
    care). On images of one size it is the same input as ``resize`` (up to rare rounding ties of the
    aspect ratio, docs/METHOD.md). An exported graph has one input
    size, so this mode is not exported.
``center-crop`` (the paper's setting, ``--preset paper``)
    Resize the shorter side to ``resize``, centre-crop ``crop`` (torchvision's ``Resize`` +
    ``CenterCrop``). What lies outside the crop is *not inspected*; the geometry reports that area
    so pictures can show it as such instead of as normal.

Every mode's input pixels then take the model's ``exposure`` (:func:`expose`): ``image`` (the default)
gives each image one brightness and contrast before the backbone sees it; ``none`` (``--preset paper``)
keeps the pixels' own.

A plugin adds a mode by registering a :class:`Preprocessor` (``@preprocessor("name")`` on the class);
its name becomes a ``--preprocess`` choice and a service fit option (docs/ARCHITECTURE.md).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, TypeVar

import numpy as np
import torch
from PIL import Image

from eagle_iad.errors import ConfigError, ImageError, ModelFormatError, one_of
from eagle_iad.expert.geometry import FEATURE_STRIDE as FEATURE_STRIDE
from eagle_iad.expert.geometry import CenterCrop as CenterCrop
from eagle_iad.expert.geometry import Tiles as Tiles
from eagle_iad.expert.geometry import ViewGeometry as ViewGeometry
from eagle_iad.expert.geometry import WholeFrame as WholeFrame
from eagle_iad.fit_options import EXPOSURES, MAX_INPUT_SIDE
from eagle_iad.images import IMAGENET_MEAN, IMAGENET_STD, Geometry, to_tensor
from eagle_iad.registry import Registry, plugin_hint

#: Both input sides are multiples of this, so every stride-2 layer of the backbones sees an even size
#: (EfficientNet's static "same" padding then equals what it was built with) and the stride-16 stage
#: tiles the input exactly.
INPUT_MULTIPLE = 32


def _round_side(value: float) -> int:
    return max(INPUT_MULTIPLE, round(value / INPUT_MULTIPLE) * INPUT_MULTIPLE)


def input_size_for(height: int, width: int, size: int) -> tuple[int, int]:
    """The fixed ``(H, W)`` input for images of this shape: long side ``size``, aspect kept, multiples of 32."""
    if height >= width:
        return size, _round_side(size * width / height)
    return _round_side(size * height / width), size


#: ``exposure`` ``image``: every input's grey mean and spread (over its pixels and channels, in ``[0, 1]``)
#: become ImageNet's, averaged over the channels: the brightness and contrast the backbone was trained on.
EXPOSURE_MEAN = float(np.mean(IMAGENET_MEAN))
EXPOSURE_SPREAD = float(np.mean(IMAGENET_STD))
#: A spread below one grey level counts as one: a flat image is not amplified into its noise (or divided by 0).
EXPOSURE_MIN_SPREAD = 1.0 / 255.0


def expose(arr: np.ndarray, exposure: str) -> np.ndarray:
    """``H x W x 3`` float32 pixels in ``[0, 1]`` at the model's exposure (docs/METHOD.md, "Exposure").

    Why: on a dark product (tire, grey level 19 of 255) ImageNet features barely respond, and a normal
    image photographed a little darker or flatter than the training images scores above them as a
    whole; one gain and offset per image, the same for every channel, removes both. Measured on tire and elpv it
    raised image AUROC on both (docs/MEASUREMENTS.md). Statistics in float64; the exported graph
    (expert/export.py) computes the same in float32.
    """
    if exposure == "none":
        return arr
    if exposure != "image":
        raise ConfigError(f"unknown exposure {exposure!r}; choose one of {one_of(EXPOSURES)}")
    mean = float(arr.mean(dtype=np.float64))
    spread = float(arr.std(dtype=np.float64))
    gain = EXPOSURE_SPREAD / max(spread, EXPOSURE_MIN_SPREAD)
    out: np.ndarray = (arr - np.float32(mean)) * np.float32(gain) + np.float32(EXPOSURE_MEAN)
    return out


def normalise(rgb: np.ndarray, exposure: str) -> torch.Tensor:
    """uint8 ``H x W x 3`` RGB → ``3 x H x W`` float32 at ``exposure`` with ImageNet statistics (as the exported graph).

    ``exposure`` has no default: a mode that overrides ``prepare`` must pass the model's, or be told so.
    """
    arr: np.ndarray = expose(np.asarray(rgb, dtype=np.float32) / np.float32(255.0), exposure)
    normalised = (arr - np.asarray(IMAGENET_MEAN, dtype=np.float32)) / np.asarray(IMAGENET_STD, dtype=np.float32)
    return torch.from_numpy(np.ascontiguousarray(normalised.transpose(2, 0, 1)))


def resize_rgb(rgb: np.ndarray, height: int, width: int) -> np.ndarray:
    """uint8 RGB resized to ``height x width``, PIL bilinear (the torch path and an export host alike)."""
    if rgb.shape[:2] == (height, width):
        return rgb
    # PIL's bilinear filter antialiases when shrinking, like the centre-crop path always did.
    return np.asarray(Image.fromarray(rgb).resize((width, height), Image.Resampling.BILINEAR))


class PreprocessSettings(Protocol):
    """The settings a mode reads (an :class:`~eagle_iad.expert.config.ExpertConfig` has them all).

    A protocol, not the config class, so this module needs nothing from the modules that use it.
    """

    @property
    def preprocess(self) -> str: ...
    @property
    def size(self) -> int: ...
    @property
    def input_hw(self) -> tuple[int, int] | None: ...
    @property
    def tile(self) -> int: ...
    @property
    def tile_overlap(self) -> int: ...
    @property
    def resize(self) -> int: ...
    @property
    def crop(self) -> int: ...
    @property
    def pixel_scale(self) -> float | None: ...
    @property
    def exposure(self) -> str: ...


@dataclass(frozen=True)
class ExportForm:
    """What the exported graph needs of a mode: its uint8 input size and the views cut from it.

    ``tile`` 0: the whole input is the one view; otherwise ``tile x tile`` views at ``origins``.
    """

    input_hw: tuple[int, int]
    origins: tuple[tuple[int, int], ...]
    tile: int


class Preprocessor(ABC):
    """One preprocessing mode: how an image becomes network input views, and every fact that follows.

    The uint8 host form (:meth:`host_pixels`) is the mode's definition: the torch path normalises
    those pixels (:meth:`prepare`), an export's host feeds them to the graph, which normalises and cuts
    the same views (:meth:`export_form`), so the two cannot differ.
    """

    #: True: the input size is fixed at fit time from the training images' aspect (``input_hw``).
    sized_from_images: bool = True
    #: True: every image gives the same patch grid (``input_hw``), which a map offset, an exported graph and
    #: a fixed patch count per training image rely on; False: each image's grid follows its own shape.
    fixed_grid: bool = True

    def fitted_fields(self, config: PreprocessSettings, shapes: list[tuple[int, int]]) -> dict[str, float]:
        """Settings beyond ``input_hw`` the mode fixes from the training images' ``(H, W)`` at fit time."""
        return {}

    def validate(self, config: PreprocessSettings) -> None:
        """Refuse settings this mode cannot use (checked with the rest in ``ExpertConfig.validate``)."""
        check_side("size", config.size)

    def input_hw(self, config: PreprocessSettings) -> tuple[int, int]:
        """The whole network input ``(H, W)`` of every image of a model."""
        return _input_hw(config)

    def origins(self, config: PreprocessSettings) -> tuple[tuple[int, int], ...]:
        """Top-left corners of the views cut from the input (one view, the whole input, by default)."""
        return ((0, 0),)

    def views_per_image(self, config: PreprocessSettings) -> int:
        """How many network inputs one image becomes, hence its patch count = views x grid."""
        return 1

    def backbone_image_size(self, config: PreprocessSettings) -> int:
        """The square size the backbone is built for (only its 'same' padding depends on it: any multiple of 32)."""
        return INPUT_MULTIPLE * 7

    @abstractmethod
    def host_pixels(self, rgb: np.ndarray, config: PreprocessSettings) -> tuple[np.ndarray, ViewGeometry]:
        """The uint8 ``H x W x 3`` input (``input_hw``) of one image, and how its map goes back to the frame."""

    def prepare(self, rgb: np.ndarray, config: PreprocessSettings) -> tuple[torch.Tensor, ViewGeometry]:
        """The ``V x 3 x h x w`` views of one image (same ``h x w`` for every image of a model) and their geometry."""
        pixels, geometry = self.host_pixels(rgb, config)
        return normalise(pixels, config.exposure)[None], geometry

    def export_form(self, config: PreprocessSettings) -> ExportForm:
        """The graph's input size and views (export.py's ``DeployGraph`` and sidecar)."""
        return ExportForm(self.input_hw(config), self.origins(config), 0)


def check_side(name: str, value: int) -> None:
    """A whole-frame input side: a multiple of :data:`INPUT_MULTIPLE`, within the fit options' range."""
    if value < INPUT_MULTIPLE or value % INPUT_MULTIPLE:
        raise ConfigError(f"{name} must be a multiple of {INPUT_MULTIPLE} and at least {INPUT_MULTIPLE}, got {value}")
    if value > MAX_INPUT_SIDE:
        raise ConfigError(f"{name} {value} is above the limit of {MAX_INPUT_SIDE} input pixels")


def _input_hw(config: PreprocessSettings) -> tuple[int, int]:
    if config.input_hw is None:
        raise ConfigError("this model's input size was never set (fit sets it from the training images)")
    return int(config.input_hw[0]), int(config.input_hw[1])


#: Every preprocessing mode by name; a plugin's joins with :func:`preprocessor` (or :func:`register_preprocessor`).
PREPROCESSORS: Registry[Preprocessor] = Registry("preprocessing")

_P = TypeVar("_P", bound=type[Preprocessor])


def preprocessor(name: str) -> Callable[[_P], _P]:
    """Class decorator: register an instance of the class as preprocessing mode ``name``."""

    def decorate(cls: _P) -> _P:
        PREPROCESSORS.add(name, cls())
        return cls

    return decorate


def register_preprocessor(name: str, mode: Preprocessor) -> None:
    """Add a preprocessing mode (its name becomes a ``--preprocess`` choice and a service fit option)."""
    PREPROCESSORS.add(name, mode)


def preprocessor_of(config: PreprocessSettings) -> Preprocessor:
    """The mode ``config`` names; an unknown name is a :class:`ConfigError` listing the known ones."""
    return PREPROCESSORS.get(config.preprocess)


def check_stored_mode(config: PreprocessSettings, where: object) -> None:
    """Refuse a saved model or export whose preprocessing mode is not registered, saying it may be a plugin's.

    Why: a mode a plugin registered (``EAGLE_PLUGINS``) is stored by name, and loading it later without the
    plugin is the usual cause of an unknown name; the fitted model and its export say so the same way,
    where the registry's own "unknown preprocessing" line gave no hint.
    """
    if config.preprocess not in PREPROCESSORS:
        known = ", ".join(PREPROCESSORS.names())
        raise ModelFormatError(
            f"{where}: config.preprocess is {config.preprocess!r}; known modes: {known} {plugin_hint('mode')}"
        )


@preprocessor("resize")
class Resize(Preprocessor):
    """The whole frame resized to the fitted ``input_hw``: one view."""

    def host_pixels(self, rgb: np.ndarray, config: PreprocessSettings) -> tuple[np.ndarray, ViewGeometry]:
        height, width = rgb.shape[:2]
        ih, iw = _input_hw(config)
        return np.ascontiguousarray(resize_rgb(rgb, ih, iw)), WholeFrame(height, width, ih, iw)


@preprocessor("scale")
class OwnScale(Preprocessor):
    """Each image at its own aspect ratio, every side times the fitted ``pixel_scale``: one view, its own grid."""

    fixed_grid = False

    def validate(self, config: PreprocessSettings) -> None:
        super().validate(config)
        if config.input_hw is not None and config.pixel_scale is None:  # the fit sets both, or neither is given
            raise ConfigError("preprocess 'scale' with an input_hw needs its pixel_scale too; leave both to the fit")

    def fitted_fields(self, config: PreprocessSettings, shapes: list[tuple[int, int]]) -> dict[str, float]:
        return {"pixel_scale": config.size / float(np.median([max(shape) for shape in shapes]))}

    def own_input(self, height: int, width: int, config: PreprocessSettings) -> tuple[int, int]:
        """This image's input: each side times ``pixel_scale``, rounded to a multiple of 32, within the limit."""
        if config.pixel_scale is None:
            raise ConfigError("this model's pixel scale was never set (fit sets it from the training images)")
        scale = float(config.pixel_scale)
        ih, iw = _round_side(height * scale), _round_side(width * scale)
        if max(ih, iw) > MAX_INPUT_SIDE:
            raise ImageError(
                f"image of {width}x{height} px would be {iw}x{ih} input pixels at this model's scale ({scale:.4g}), "
                f"above the limit of {MAX_INPUT_SIDE}; inspect images of about the training images' size"
            )
        return ih, iw

    def host_pixels(self, rgb: np.ndarray, config: PreprocessSettings) -> tuple[np.ndarray, ViewGeometry]:
        height, width = rgb.shape[:2]
        ih, iw = self.own_input(height, width, config)
        return np.ascontiguousarray(resize_rgb(rgb, ih, iw)), WholeFrame(height, width, ih, iw)

    def export_form(self, config: PreprocessSettings) -> ExportForm:
        raise ConfigError(
            "preprocess 'scale' gives each image its own input size, and an exported graph has one; "
            "refit with --preprocess resize to export"
        )


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


@preprocessor("tile")
class Tile(Preprocessor):
    """Overlapping ``tile`` squares of the whole frame resized to the fitted ``input_hw``."""

    def validate(self, config: PreprocessSettings) -> None:
        super().validate(config)
        if config.tile < INPUT_MULTIPLE or config.tile % INPUT_MULTIPLE or config.tile > config.size:
            raise ConfigError(
                f"tile must be a multiple of {INPUT_MULTIPLE}, at least {INPUT_MULTIPLE} and at most size "
                f"({config.size}), got {config.tile}"
            )
        if not 0 <= config.tile_overlap < config.tile:
            raise ConfigError(f"tile_overlap must be in [0, tile), got {config.tile_overlap}")

    def origins(self, config: PreprocessSettings) -> tuple[tuple[int, int], ...]:
        return tile_origins(*_input_hw(config), config.tile, config.tile_overlap)

    def views_per_image(self, config: PreprocessSettings) -> int:
        return 1 if config.input_hw is None else len(self.origins(config))

    def host_pixels(self, rgb: np.ndarray, config: PreprocessSettings) -> tuple[np.ndarray, ViewGeometry]:
        height, width = rgb.shape[:2]
        ih, iw = _input_hw(config)
        geometry = Tiles(height, width, ih, iw, config.tile, self.origins(config))
        return np.ascontiguousarray(resize_rgb(rgb, ih, iw)), geometry

    def prepare(self, rgb: np.ndarray, config: PreprocessSettings) -> tuple[torch.Tensor, ViewGeometry]:
        pixels, geometry = self.host_pixels(rgb, config)
        whole, tile = normalise(pixels, config.exposure), config.tile
        views = torch.stack([whole[:, top : top + tile, left : left + tile] for top, left in self.origins(config)])
        return views.contiguous(), geometry

    def export_form(self, config: PreprocessSettings) -> ExportForm:
        return ExportForm(self.input_hw(config), self.origins(config), config.tile)


@preprocessor("center-crop")
class CenterCropMode(Preprocessor):
    """The paper's: shorter side resized to ``resize``, a centre ``crop`` square; a fixed input, whatever the images."""

    sized_from_images = False

    def validate(self, config: PreprocessSettings) -> None:
        if config.crop > config.resize:
            raise ConfigError(f"crop ({config.crop}) must not exceed resize ({config.resize})")
        if config.crop < 32 or config.crop % 16:
            raise ConfigError(f"crop must be a multiple of 16 and at least 32, got {config.crop}")

    def input_hw(self, config: PreprocessSettings) -> tuple[int, int]:
        return config.crop, config.crop

    def backbone_image_size(self, config: PreprocessSettings) -> int:
        return config.crop

    def host_pixels(self, rgb: np.ndarray, config: PreprocessSettings) -> tuple[np.ndarray, ViewGeometry]:
        height, width = rgb.shape[:2]
        geometry = Geometry.for_image(height, width, config.resize, config.crop)
        image = Image.fromarray(rgb)
        if (geometry.resized_height, geometry.resized_width) != (height, width):
            image = image.resize((geometry.resized_width, geometry.resized_height), Image.Resampling.BILINEAR)
        crop = config.crop
        pixels = np.asarray(image)[geometry.top : geometry.top + crop, geometry.left : geometry.left + crop]
        return np.ascontiguousarray(pixels), CenterCrop(geometry)

    def prepare(self, rgb: np.ndarray, config: PreprocessSettings) -> tuple[torch.Tensor, ViewGeometry]:
        if config.exposure != "none":  # the statistics are the crop's, as in the exported graph
            return super().prepare(rgb, config)
        tensor, geometry = to_tensor(rgb, config.resize, config.crop)  # torchvision's Resize + CenterCrop
        return tensor[None], CenterCrop(geometry)

    def export_form(self, config: PreprocessSettings) -> ExportForm:
        return ExportForm(self.input_hw(config), ((0, 0),), config.crop)


def prepare(rgb: np.ndarray, config: PreprocessSettings) -> tuple[torch.Tensor, ViewGeometry]:
    """The network input views of one RGB image under ``config``'s preprocessing, and their geometry."""
    return preprocessor_of(config).prepare(rgb, config)


def backbone_image_size(config: PreprocessSettings) -> int:
    """The square size the backbone is built for (only its 'same' padding depends on it: any multiple of 32)."""
    return preprocessor_of(config).backbone_image_size(config)
