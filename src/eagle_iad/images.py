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
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, UnidentifiedImageError

# The pixel limit (EAGLE_MAX_PIXELS overrides it), re-exported: declared where the help screens read it.
from eagle_iad.choices import DEFAULT_MAX_PIXELS as DEFAULT_MAX_PIXELS
from eagle_iad.errors import DataError, EagleError, ImageError, ImageTooElongatedError, ImageTooLargeError

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


def _read(source: ImageSource) -> bytes:
    """The file's bytes (an upload's as given); :class:`ImageError` naming a missing file or a folder."""
    if isinstance(source, bytes):
        return source
    name = _describe(source)
    path = Path(source)
    if not path.exists():
        raise ImageError(f"{name}: file not found")
    if not path.is_file():
        raise ImageError(f"{name}: not a regular file")
    return path.read_bytes()


def _open(source: ImageSource, data: bytes | None = None) -> Image.Image:
    name = _describe(source)
    data = _read(source) if data is None else data
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


def frame_count(source: ImageSource) -> int:
    """How many frames (an animation's, a multi-page TIFF's) the file holds; :func:`load_rgb` decodes the first only.

    A JPEG is one picture even where Pillow opens it as MPO (a camera's JPEG carrying a preview or a second view):
    nothing of the part is left out, and the Node client's local runtime counts it so too.
    """
    image = _open(source)
    try:
        if image.format == "MPO":
            return 1
        return int(getattr(image, "n_frames", 1) or 1)
    except (OSError, ValueError, SyntaxError, EOFError):  # a damaged later frame: the first one still decoded
        return 1
    finally:
        image.close()


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


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: Colour samples an sBIT chunk lists first, by PNG colour type (grey, RGB, palette, grey + alpha, RGBA); the
#: alpha's entry, if any, follows them and is not read (alpha is dropped).
_SBIT_COLOURS = {0: 1, 2: 3, 3: 3, 4: 1, 6: 3}


@dataclass(frozen=True)
class PngDepth:
    """A PNG's sample depth (``IHDR``), colour type and significant bits (``sBIT``; ``None`` without one)."""

    depth: int
    colour_type: int
    significant: int | None


def png_depth(data: bytes) -> PngDepth | None:
    """The depth, colour type and ``sBIT`` of a PNG's bytes (the chunks before its image data); ``None`` for
    another format. ``significant`` is the largest colour channel's entry; an entry out of ``1..depth`` (which
    the PNG standard forbids) is ignored as if the chunk were absent.

    Why: a machine-vision camera's Mono12 frame (0..4095) saved as a 16-bit PNG, read the usual way (divided by
    65535), keeps 16 grey levels of 256 (tire: image AUROC 0.71 against 0.85 from the same pixels as 8-bit); the
    ``sBIT`` chunk is where a file says how many of its bits carry data (:func:`low_aligned`).
    """
    if not data.startswith(_PNG_SIGNATURE) or len(data) < 33 or data[12:16] != b"IHDR":
        return None
    depth, colour_type = data[24], data[25]
    significant = None
    pos = 8
    while pos + 8 <= len(data):
        length = int.from_bytes(data[pos : pos + 4], "big")
        kind = data[pos + 4 : pos + 8]
        if kind in (b"IDAT", b"IEND"):
            break
        body = data[pos + 8 : pos + 8 + length]
        channels = _SBIT_COLOURS.get(colour_type, 0)
        if kind == b"sBIT" and channels and len(body) >= channels:
            entries = list(body[:channels])
            significant = max(entries) if all(1 <= v <= depth for v in entries) else None
        pos += 12 + length
    return PngDepth(depth, colour_type, significant)


def low_aligned(samples: np.ndarray, significant: int | None) -> bool:
    """Whether 16-bit ``samples`` hold ``significant``-bit data in their low bits (0..4095 for 12 bits, as
    machine-vision cameras write it) rather than in their top bits (as the PNG standard has a writer do).

    Why both tests: every sample below ``2 ** significant`` says the low bits, but a very dark frame written the
    standard way (its data shifted up, low bits zero or repeating the top ones) is below it too; such a frame's
    samples are all multiples of ``2 ** (16 - significant)``, which real low-aligned data (noise in its lowest
    bit) never is. A frame both ways could be is read the standard way, as it was before ``sBIT`` was read.
    """
    if significant is None or not 1 <= significant < 16 or samples.size == 0:
        return False
    if int(samples.max()) > (1 << significant) - 1:
        return False
    return bool((samples % (1 << (16 - significant))).any())


def _to_rgb8(image: Image.Image, significant: int | None = None) -> np.ndarray:
    """Convert any PIL mode to 8-bit RGB, scaling high bit depths instead of clipping them.

    A 16-bit grey image is divided by 65535, or by ``2 ** significant - 1`` where its PNG ``sBIT`` chunk says
    that many bits carry data and the samples hold them in their low bits (:func:`low_aligned`).
    """
    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(image, dtype=np.float64)
        if mode.startswith("I;16"):
            full = (1 << significant) - 1 if significant is not None and low_aligned(arr, significant) else 65535
            arr = arr / float(full)
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


def _check_wide_colour(image: Image.Image, png: PngDepth | None, name: str) -> None:
    """Refuse a 16-bit colour (or grey + alpha) PNG whose ``sBIT`` says its data may sit in the low bits.

    Why: Pillow reads such a PNG by each sample's high byte, so its low bits are gone before :func:`low_aligned`
    could look at them; a 12-bit frame held in the low bits would keep 16 levels of 256 while a 16-bit grey PNG
    of the same data is read in full. Refused, not read differently: the TypeScript local runtime, which could
    read it, refuses it the same way, so no runtime differs silently.
    """
    if png is None or png.depth != 16 or png.colour_type in (0, 3) or png.significant is None:
        return
    n = png.significant
    if n >= 16:
        return
    high = np.asarray(image.convert("RGB"), dtype=np.uint8)
    if int(high.max()) <= ((1 << n) - 1) >> 8:
        raise ImageError(
            f"{name}: a 16-bit colour PNG whose sBIT chunk declares {n} significant bits, and whose values fit in "
            f"them: eagle reads 16-bit colour by each sample's high byte, which would leave it "
            f"{max(1, 1 << max(n - 8, 0))} levels of 256; save it as 8-bit, or as 16-bit greyscale"
        )


def sixteen_bit_use(source: ImageSource) -> int | None:
    """How many bits a 16-bit PNG read at full range uses: its largest sample's bit length (for colour, whose
    high byte alone is read, 8 plus the high byte's). ``None`` for any other image, and for a 16-bit grey PNG
    whose ``sBIT`` scaled it (:func:`low_aligned`). What a fit warns with (expert/encodings.py).
    """
    data = _read(source)
    png = png_depth(data)
    if png is None or png.depth != 16:
        return None
    image = _open(source, data)
    try:
        image.load()
        if image.mode.startswith("I;16"):
            samples = np.asarray(image, dtype=np.int64)
            if low_aligned(samples, png.significant):
                return None
            return int(samples.max()).bit_length()
        high = int(np.asarray(image.convert("RGB"), dtype=np.uint8).max())
        return 8 + high.bit_length()
    finally:
        image.close()


#: What :func:`colour_mode` calls an image whose three channels are equal at every pixel, and one whose are not.
GREY = "grey"
COLOUR = "colour"


def colour_mode(rgb: np.ndarray) -> str:
    """:data:`GREY` where every pixel of the decoded ``H x W x 3`` image has R == G == B, else :data:`COLOUR`.

    Why from the pixels, not the file's mode: a greyscale photograph saved as RGB is as grey to the backbone as
    one saved as L, and a colour JPEG of a grey scene decodes to equal channels (its chroma is exactly neutral).
    A model fitted on colour images scores a greyscale photograph of a good part far above tau (tire: 126.9
    against 81.3 for the colour original, tau 95.8), so a model records its training images' modes and a
    verdict on the other says so (expert/encodings.py).
    """
    return GREY if bool((rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all()) else COLOUR


def load_rgb(source: ImageSource, max_pixels: int | None = None) -> np.ndarray:
    """Decode ``source`` (a path or raw bytes) to an ``H x W x 3`` uint8 array.

    Alpha is dropped (industrial cameras do not use it), palette and grayscale images are expanded,
    16-bit images are scaled to 8 bits (by their PNG ``sBIT`` where it says the data sits in the low bits),
    EXIF rotation is applied, and multi-frame files give their first frame. Raises :class:`ImageError` for
    anything that cannot be trusted. ``max_pixels`` overrides the pixel limit (the service's ``--max-pixels``,
    which the environment must not undercut).
    """
    name = _describe(source)
    data = _read(source)
    image = _open(source, data)
    _check_size(image, name, max_pixels)
    png = png_depth(data)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image.load()
            _check_wide_colour(image, png, name)
            image = ImageOps.exif_transpose(image) or image
            rgb = _to_rgb8(image, None if png is None or png.depth != 16 else png.significant)
    except ImageError:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageTooLargeError(f"{name}: image is too large ({exc})") from exc
    except (OSError, ValueError, SyntaxError) as exc:
        raise ImageError(f"{name}: image data is truncated or corrupt ({exc})") from exc
    return rgb


#: At most this many unusable files are named in :func:`unusable_error`'s one error (its count says how many in all).
SHOWN_UNUSABLE = 10


def unusable_error(problems: Sequence[EagleError], total: int, what: str, outcome: str) -> EagleError:
    """One error for every input that cannot be used, named before any work so the user fixes them in one go
    instead of one run at a time: the problem itself when it is the only one, else a :class:`DataError` listing
    the first :data:`SHOWN_UNUSABLE` (``3 of the 13 training images cannot be used: a.png: ...; b.png: ...``):
    an :class:`ImageError` where every problem is one (callers that turn image problems into a 400 still do).

    ``what``: the inputs' plural noun (``training images``); ``outcome``: what was not done (``nothing was fitted``).
    """
    if len(problems) == 1:
        return problems[0]
    more = f" (the first {SHOWN_UNUSABLE} shown)" if len(problems) > SHOWN_UNUSABLE else ""
    listed = "; ".join(map(str, problems[:SHOWN_UNUSABLE]))
    kind = ImageError if all(isinstance(problem, ImageError) for problem in problems) else DataError
    return kind(f"{len(problems)} of the {total} {what} cannot be used{more}: {listed}; fix or remove them ({outcome})")


def _decode_problem(source: str | os.PathLike[str]) -> ImageError | None:
    try:
        load_rgb(source)
    except ImageError as exc:
        return exc
    return None


def decode_problems(sources: Sequence[str | os.PathLike[str]], workers: int = 1) -> list[ImageError]:
    """Decode every file once (nothing kept) and return each one's :class:`ImageError`, in order.

    ``workers`` > 1 decodes that many at a time (PIL decodes without the GIL): a training set's thousands of
    images; one at a time where a few large images would otherwise sit in memory together.
    """
    if workers <= 1 or len(sources) <= 1:
        found = [_decode_problem(source) for source in sources]
    else:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            found = list(pool.map(_decode_problem, sources))
    return [problem for problem in found if problem is not None]


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
