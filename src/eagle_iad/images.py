"""Safe image decoding and the expert's resize/crop transform with its exact inverse.

Industrial images arrive in every format a camera or a dataset can produce (16-bit PNG, palette
GIF, RGBA, grayscale, EXIF-rotated JPEG), and some arrive broken. Everything is funnelled through
:func:`load_rgb`, which either returns 8-bit RGB or raises :class:`ImageError` naming the file and
the problem, and which refuses oversized images *before* decoding them so a hostile or mistaken
100-megapixel upload cannot exhaust memory.

The expert sees a resized, centre-cropped view; :class:`Geometry` remembers how that view was cut
so anomaly maps and boxes can be drawn on the original image (docs/METHOD.md §1).
"""

from __future__ import annotations

import io
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, UnidentifiedImageError

# The pixel limit (EAGLE_MAX_PIXELS overrides it), re-exported: declared where the help screens read it.
from eagle_iad.choices import DEFAULT_MAX_PIXELS as DEFAULT_MAX_PIXELS
from eagle_iad.errors import ImageError, ImageTooElongatedError, ImageTooLargeError

#: Smallest accepted side; below this the 3x3-aggregated 28x28 grid would be pure interpolation.
MIN_SIDE = 16
#: Largest accepted ratio of the longer to the shorter side. The expert scales the shorter side up
#: to its resize before cropping, so the work grows with this ratio: a 1 KB 20000x16 PNG would cost
#: gigabytes. 32:1 still admits line-scan strips (e.g. 8192x256). Override with ``EAGLE_MAX_ASPECT``.
DEFAULT_MAX_ASPECT = 32.0

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

ImageSource = str | os.PathLike[str] | bytes


def _env_number(name: str, parse: type[int] | type[float], default: float) -> float:
    """A limit from the environment, or ``default``; a malformed value is an error naming the variable."""
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        return parse(raw)
    except ValueError as exc:
        kind = "an integer" if parse is int else "a number"
        raise ImageError(f"{name} must be {kind}, got {raw!r}") from exc


def max_pixels() -> int:
    """The pixel limit in force (the environment may lower or raise it)."""
    value = int(_env_number("EAGLE_MAX_PIXELS", int, DEFAULT_MAX_PIXELS))
    if value <= 0:
        raise ImageError(f"EAGLE_MAX_PIXELS must be positive, got {value}")
    return value


def max_aspect() -> float:
    """The aspect-ratio limit in force (longer side / shorter side; ``EAGLE_MAX_ASPECT`` may change it)."""
    value = _env_number("EAGLE_MAX_ASPECT", float, DEFAULT_MAX_ASPECT)
    if not value >= 1.0 or value == float("inf"):
        raise ImageError(f"EAGLE_MAX_ASPECT must be a finite number >= 1, got {os.environ.get('EAGLE_MAX_ASPECT')}")
    return value


def _describe(source: ImageSource) -> str:
    return "uploaded image" if isinstance(source, bytes) else str(source)


def _open(source: ImageSource) -> Image.Image:
    name = _describe(source)
    if isinstance(source, bytes):
        data = source
    else:
        path = Path(source)
        if not path.exists():
            raise ImageError(f"{name}: file not found")
        if not path.is_file():
            raise ImageError(f"{name}: not a regular file")
        data = path.read_bytes()
    if len(data) == 0:
        raise ImageError(f"{name}: file is empty (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError as exc:
        raise ImageError(f"{name}: not a recognised image format") from exc
    except Image.DecompressionBombError as exc:  # PIL's own header check (twice its pixel cap)
        raise ImageTooLargeError(f"{name}: image is too large ({exc})") from exc
    except (OSError, ValueError, SyntaxError) as exc:
        raise ImageError(f"{name}: cannot be read as an image ({exc})") from exc
    return image


def _check_size(image: Image.Image, name: str, limit: int | None = None) -> None:
    """Refuse, from the header alone, what would cost too much (or make no sense) to decode and resize.

    ``limit`` overrides the pixel limit (the service passes its ``--max-pixels``); the messages name the
    file and both sides so the user sees which image and why.
    """
    width, height = image.size
    hint = " (set EAGLE_MAX_PIXELS to change it)" if limit is None else ""
    limit = max_pixels() if limit is None else limit
    if width * height > limit:
        raise ImageTooLargeError(
            f"{name}: {width}x{height} = {width * height / 1e6:.1f} megapixels exceeds the limit of "
            f"{limit / 1e6:.1f} megapixels{hint}"
        )
    if min(width, height) < MIN_SIDE:
        raise ImageError(f"{name}: {width}x{height} is too small; each side must be at least {MIN_SIDE} px")
    aspect = max(width, height) / min(width, height)
    if aspect > max_aspect():
        raise ImageTooElongatedError(
            f"{name}: {width}x{height} is too elongated (aspect ratio {aspect:.0f}:1 exceeds the limit of "
            f"{max_aspect():g}:1; set EAGLE_MAX_ASPECT to change it)"
        )


def probe(source: ImageSource, max_pixels: int | None = None) -> tuple[int, int]:
    """``(width, height)`` from the header alone, after the size, side and aspect checks of :func:`load_rgb`.

    Cheap (nothing is decoded), so callers check every input before expensive work such as loading a
    model; ``max_pixels`` overrides the pixel limit.
    """
    image = _open(source)
    try:
        _check_size(image, _describe(source), max_pixels)
        width, height = image.size
    finally:
        image.close()
    return width, height


#: An image file's encoding as a model records it and an inspection compares it (docs/METHOD.md, "Exposure"):
#: ``lossless`` (PNG, BMP, TIFF, GIF, ...), ``jpeg 4:2:0 q95`` / ``jpeg 4:2:2 q90`` / ``jpeg 4:4:4 q75`` (its
#: chroma subsampling and its quality, :func:`jpeg_quality`), ``jpeg grey q95`` (one channel), ``jpeg`` (a
#: sampling PIL does not name; the quality is left out where the file has no quantization table), ``webp``
#: (possibly lossy). Models saved on the first day of schema 10 recorded JPEGs without the quality.
LOSSLESS = "lossless"
_JPEG_SAMPLING = {0: "4:4:4", 1: "4:2:2", 2: "4:2:0"}

#: The IJG (libjpeg) luminance quantization table at quality 50, in natural order: every encoder that takes a
#: "quality" from 1 to 100 (libjpeg, libjpeg-turbo, PIL, OpenCV, most cameras' firmware) scales this one.
_IJG_LUMINANCE = (
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55,
    14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29, 51, 87, 80, 62,
    18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99,
)  # fmt: skip


def _ijg_tables() -> np.ndarray:
    """The luminance table libjpeg writes at each quality 1..100 (row q - 1), sorted: libjpeg's own scaling."""
    base = np.asarray(_IJG_LUMINANCE, dtype=np.int64)
    rows = []
    for quality in range(1, 101):
        scale = 5000 // quality if quality < 50 else 200 - 2 * quality
        rows.append(np.sort(np.clip((base * scale + 50) // 100, 1, 255)))
    return np.stack(rows)


_IJG_TABLES = _ijg_tables()


def jpeg_quality(image: Image.Image) -> int | None:
    """The quality (1-100) whose libjpeg luminance table is nearest to this JPEG's; ``None`` without a table.

    Why: the header states no quality, yet quality decides how much compression error is in the pixels, and
    a model fitted on one quality flags another (tire fitted at 95: 3 of 25 normal images flagged at 90, 25 of
    25 at 75; docs/METHOD.md, "Exposure"). An encoder that scales the IJG table (most do) gives its exact
    quality; a custom table gives the IJG quality with the nearest entries (sorted, so the order the file
    stores them in does not matter), which is what the error it leaves is comparable to.
    """
    tables = getattr(image, "quantization", None) or {}
    layers = getattr(image, "layer", None) or []  # (component id, h, v, table id); the first is luma (or grey)
    luminance = tables.get(layers[0][3] if layers and len(layers[0]) > 3 else 0)
    if luminance is None or len(luminance) != 64:
        return None
    found = np.sort(np.asarray(list(luminance), dtype=np.int64))
    distance = np.abs(_IJG_TABLES - found[None, :]).sum(axis=1)
    return int(np.argmin(distance)) + 1  # ties: the lower quality, the one whose error is at least as large


def encoding_family(encoding: str) -> str:
    """``lossless``, ``jpeg`` or ``webp``: what decides whether compression artefacts are in the pixels."""
    return encoding.split(" ", 1)[0]


def encoding_quality(encoding: str) -> int | None:
    """The JPEG quality an encoding names (``jpeg 4:2:0 q95`` -> 95); ``None`` where it names none."""
    last = encoding.rsplit(" ", 1)[-1]
    return int(last[1:]) if len(last) > 1 and last[0] == "q" and last[1:].isdigit() else None


def image_encoding(source: ImageSource) -> str:
    """How ``source`` is encoded, from its header alone (nothing is decoded): see :data:`LOSSLESS`.

    Why: a JPEG's compression error (1 to 2 grey levels at quality 95) is not in a lossless training
    image, and on a dark, low-contrast product the exposure step's gain makes it score as a defect
    (docs/METHOD.md, "Exposure"); a model records its training images' encodings and a verdict on an
    input of another says so.
    """
    image = _open(source)
    try:
        kind = (image.format or "").upper()
        if kind in ("JPEG", "MPO"):
            quality = jpeg_quality(image)
            suffix = "" if quality is None else f" q{quality}"
            if len(image.getbands()) == 1:
                return f"jpeg grey{suffix}"
            from PIL import JpegImagePlugin

            sampling = _JPEG_SAMPLING.get(JpegImagePlugin.get_sampling(image))
            return f"jpeg{suffix}" if sampling is None else f"jpeg {sampling}{suffix}"
        if kind == "WEBP":
            return "webp"
        if kind == "TIFF" and str(image.info.get("compression", "")).lower() in ("jpeg", "tiff_jpeg"):
            return "jpeg"
        return LOSSLESS
    finally:
        image.close()


def _to_rgb8(image: Image.Image) -> np.ndarray:
    """Convert any PIL mode to 8-bit RGB, scaling high bit depths instead of clipping them."""
    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(image, dtype=np.float64)
        if mode.startswith("I;16"):
            arr = arr / 65535.0
        else:
            lo, hi = float(arr.min()), float(arr.max())
            # 32-bit integer PNGs written by 16-bit tools hold 0..65535; floats are arbitrary.
            if mode == "I" and lo >= 0 and hi <= 65535:
                arr = arr / 65535.0 if hi > 255 else arr / 255.0
            else:
                arr = (arr - lo) / (hi - lo) if hi > lo else np.zeros_like(arr)
        grey = np.clip(np.rint(arr * 255.0), 0, 255).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=2)
    if mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode != "RGB":
        image = image.convert("RGB")
    return np.ascontiguousarray(np.asarray(image, dtype=np.uint8))


def load_rgb(source: ImageSource, max_pixels: int | None = None) -> np.ndarray:
    """Decode ``source`` (a path or raw bytes) to an ``H x W x 3`` uint8 array.

    Alpha is dropped (industrial cameras do not use it), palette and grayscale images are expanded,
    16-bit images are scaled to 8 bits, EXIF rotation is applied, and multi-frame files give their
    first frame. Raises :class:`ImageError` for anything that cannot be trusted. ``max_pixels``
    overrides the pixel limit (the service's ``--max-pixels``, which the environment must not undercut).
    """
    name = _describe(source)
    image = _open(source)
    _check_size(image, name, max_pixels)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image.load()
            image = ImageOps.exif_transpose(image) or image
            rgb = _to_rgb8(image)
    except ImageError:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageTooLargeError(f"{name}: image is too large ({exc})") from exc
    except (OSError, ValueError, SyntaxError) as exc:
        raise ImageError(f"{name}: image data is truncated or corrupt ({exc})") from exc
    return rgb


def load_mask(path: str | os.PathLike[str], shape: tuple[int, int]) -> np.ndarray:
    """A ground-truth defect mask as a boolean ``H x W`` array; it must have exactly the image's ``shape``.

    Any non-zero pixel is defect: MVTec AD and MVTec 3D-AD masks are 0/255, but VisA's raw masks
    and some labelling tools write small label values (1, 2, ...), which a ``> 127`` cut would
    silently read as no defect at all. On 0/255 masks both cuts agree. Resizing a mask of another
    size would move the defect under the map and corrupt every localisation number unnoticed, so
    that is refused instead.
    """
    image = _open(path)
    _check_size(image, str(path))
    try:
        image.load()
        grey = np.asarray(image.convert("L"))
    except (OSError, ValueError) as exc:
        raise ImageError(f"{path}: mask data is truncated or corrupt ({exc})") from exc
    if grey.shape != tuple(shape):
        raise ImageError(
            f"{path}: mask is {grey.shape[1]}x{grey.shape[0]} (width x height) but the image is "
            f"{shape[1]}x{shape[0]}; a mask must have exactly the image's size"
        )
    return grey > 0


@dataclass(frozen=True)
class Geometry:
    """How an original image was resized (shorter side) and centre-cropped for the expert."""

    height: int
    width: int
    resized_height: int
    resized_width: int
    top: int
    left: int
    crop: int

    @classmethod
    def for_image(cls, height: int, width: int, resize: int, crop: int) -> Geometry:
        """Geometry of torchvision's ``Resize(resize)`` then ``CenterCrop(crop)`` on an image."""
        if crop > resize:
            raise ValueError(f"crop ({crop}) must not exceed resize ({resize})")
        if height <= width:
            rh, rw = resize, int(resize * width / height)
        else:
            rh, rw = int(resize * height / width), resize
        top = round((rh - crop) / 2.0)
        left = round((rw - crop) / 2.0)
        return cls(height, width, rh, rw, top, left, crop)

    def map_to_original(self, crop_map: np.ndarray) -> np.ndarray:
        """Place a ``crop x crop`` map back into original coordinates.

        The map is pasted into the resized frame (outside the crop: the map's minimum, docs/METHOD.md §1),
        then that frame is bilinearly resized to the original size, undoing the transform.
        """
        if crop_map.shape != (self.crop, self.crop):
            raise ValueError(f"expected a {self.crop}x{self.crop} map, got {crop_map.shape}")
        frame = np.full((self.resized_height, self.resized_width), float(crop_map.min()), dtype=np.float32)
        frame[self.top : self.top + self.crop, self.left : self.left + self.crop] = crop_map
        if frame.shape == (self.height, self.width):
            return frame
        tensor = torch.from_numpy(frame)[None, None]
        out = F.interpolate(tensor, size=(self.height, self.width), mode="bilinear", align_corners=False)
        return out[0, 0].numpy()

    def crop_box_to_original(self, box: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
        """Map an ``(x0, y0, x1, y1)`` box in crop pixels to original pixels."""
        sx = self.width / self.resized_width
        sy = self.height / self.resized_height
        x0, y0, x1, y1 = box
        return ((x0 + self.left) * sx, (y0 + self.top) * sy, (x1 + self.left) * sx, (y1 + self.top) * sy)


def to_tensor(rgb: np.ndarray, resize: int, crop: int) -> tuple[torch.Tensor, Geometry]:
    """Resize the shorter side to ``resize`` (bilinear, antialiased), centre-crop ``crop``, normalise.

    Returns a ``3 x crop x crop`` float tensor with ImageNet statistics and the geometry to undo it.
    """
    height, width = rgb.shape[:2]
    geometry = Geometry.for_image(height, width, resize, crop)
    image = Image.fromarray(rgb)
    if (geometry.resized_height, geometry.resized_width) != (height, width):
        image = image.resize((geometry.resized_width, geometry.resized_height), Image.Resampling.BILINEAR)
    arr = (
        np.asarray(image, dtype=np.float32)[geometry.top : geometry.top + crop, geometry.left : geometry.left + crop]
        / 255.0
    )
    mean = np.asarray(IMAGENET_MEAN, dtype=np.float32)
    std = np.asarray(IMAGENET_STD, dtype=np.float32)
    arr = (arr - mean) / std
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1))), geometry
