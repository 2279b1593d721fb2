"""Draw the TGPS visual prompt: the query image with the suspected defects marked (docs/METHOD.md).

The default marks each box with a red rectangle, which is what the MLLM's prompt text refers to
("the query image with red bounding box"). The frame is drawn just *outside* the box so the defect
pixels themselves stay visible to the model; where the box touches the image border the frame is
pushed inwards so every side stays visible. Contour, heatmap and mask renderings are selectable
alternatives. Everything works on a copy: the caller's original image is never modified, because
the same array is also sent to the MLLM as the unmarked query image.

Only Pillow, numpy and a matplotlib colormap are used (no OpenCV, no pyplot, no GUI backend).
"""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from PIL import Image, ImageDraw, ImageFont, PngImagePlugin
from scipy import ndimage

from eagle_iad.atomic import new_file_mode
from eagle_iad.choices import RENDER_STYLES as RENDER_STYLES
from eagle_iad.choices import RenderStyle as RenderStyle
from eagle_iad.errors import ConfigError
from eagle_iad.tgps.regions import Box, binary_mask

RED = np.array([255, 0, 0], dtype=np.float32)


def line_width(height: int, width: int) -> int:
    """Stroke width: about 0.5% of the shorter side, at least 2 px so it survives MLLM resizing."""
    return max(2, round(0.005 * min(height, width)))


def _check_inputs(rgb: np.ndarray, anomaly_map: np.ndarray) -> None:
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"image must be an H x W x 3 uint8 array, got shape {rgb.shape} dtype {rgb.dtype}")
    if anomaly_map.shape != rgb.shape[:2]:
        raise ValueError(
            f"anomaly map shape {anomaly_map.shape} does not match image shape {rgb.shape[:2]}; "
            "map it back to original coordinates first (Geometry.map_to_original)"
        )


def _blend(base: np.ndarray, colour: np.ndarray, alpha: float) -> np.ndarray:
    """``(1 - alpha) * base + alpha * colour`` rounded to uint8.

    float32 and no clipping keep multi-megapixel overlays fast; both inputs lie in [0, 255] and
    alpha in [0, 1], so the convex combination cannot leave the uint8 range.
    """
    out = base.astype(np.float32)
    out *= np.float32(1.0 - alpha)
    out += np.float32(alpha) * np.asarray(colour, dtype=np.float32)
    np.rint(out, out=out)
    return out.astype(np.uint8)


def _draw_boxes(out: np.ndarray, boxes: list[Box], width: int) -> None:
    """Paint a ``width``-px red frame around each box, inside the image bounds (in place)."""
    height, img_width = out.shape[:2]
    for box in boxes:
        # Clip first: a box is in image coordinates, but be robust to one that is not.
        x0, x1 = max(0, min(box.x0, img_width)), max(0, min(box.x1, img_width))
        y0, y1 = max(0, min(box.y0, height)), max(0, min(box.y1, height))
        if x1 <= x0 or y1 <= y0:
            continue
        # Outer edge: the box grown by the stroke width, clamped to the image; the frame then
        # covers the ring between that edge and the same rectangle shrunk by the stroke width.
        ox0, oy0 = max(0, x0 - width), max(0, y0 - width)
        ox1, oy1 = min(img_width, x1 + width), min(height, y1 + width)
        out[oy0 : min(oy0 + width, oy1), ox0:ox1] = 255, 0, 0
        out[max(oy1 - width, oy0) : oy1, ox0:ox1] = 255, 0, 0
        out[oy0:oy1, ox0 : min(ox0 + width, ox1)] = 255, 0, 0
        out[oy0:oy1, max(ox1 - width, ox0) : ox1] = 255, 0, 0


def _regions_in_boxes(mask: np.ndarray, boxes: list[Box]) -> np.ndarray:
    """Keep only the mask's regions that lie in one of ``boxes``.

    The boxes are the top-k after merging; without this the contour and mask styles would also
    show the weaker regions the box style leaves out, and the styles would disagree.
    """
    if not boxes:
        return np.zeros_like(mask)
    inside = np.zeros_like(mask)
    for box in boxes:
        inside[max(box.y0, 0) : max(box.y1, 0), max(box.x0, 0) : max(box.x1, 0)] = True
    labels, _count = ndimage.label(mask, structure=np.ones((3, 3), dtype=bool))
    wanted = np.unique(labels[inside & mask])
    return np.isin(labels, wanted[wanted > 0])


def heatmap_overlay(
    rgb: np.ndarray,
    anomaly_map: np.ndarray,
    alpha: float = 0.5,
    scale: tuple[float, float] | None = None,
    inspected: np.ndarray | None = None,
) -> np.ndarray:
    """Jet colormap of the map, alpha-blended over a copy of ``rgb``.

    With ``scale = (low, high)`` (the category's calibrated colour range) the same value has the same
    colour on every image of the category, values beyond the range saturate; without it the map is
    min/max-normalised per image (attention maps, which have no units). A constant map without a
    scale is drawn as the colormap's low end. Pixels outside ``inspected`` (a user-chosen crop) are
    hatched grey instead of coloured: the expert said nothing about them, which is not "normal".
    """
    _check_inputs(rgb, anomaly_map)
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    values = np.asarray(anomaly_map, dtype=np.float64)
    if not np.all(np.isfinite(values)):
        raise ValueError("anomaly map contains NaN or infinite values")
    if scale is not None:
        lo, hi = float(scale[0]), float(scale[1])
        if not hi > lo:
            raise ValueError(f"colour scale must have low < high, got {scale}")
        norm = np.clip((values - lo) / (hi - lo), 0.0, 1.0)
    else:
        lo, hi = float(values.min()), float(values.max())
        norm = (values - lo) / (hi - lo) if hi > lo else np.zeros_like(values)
    # bytes=True looks the colours up in the colormap's 8-bit table directly: identical within
    # one grey level and ~25x faster than float RGBA on a multi-megapixel image.
    colours = np.asarray(colormaps["jet"](norm, bytes=True)[..., :3], dtype=np.float32)
    out = _blend(rgb, colours, alpha)
    if inspected is not None:
        hatch_uninspected(out, rgb, inspected)
    return out


def hatch_uninspected(out: np.ndarray, rgb: np.ndarray, inspected: np.ndarray) -> None:
    """Grey out and hatch (diagonal stripes) the pixels the expert did not inspect, in place."""
    if inspected.shape != out.shape[:2]:
        raise ValueError(f"inspected mask shape {inspected.shape} does not match the image {out.shape[:2]}")
    outside = ~inspected
    if not outside.any():
        return
    grey = rgb[outside].mean(axis=1, keepdims=True)
    out[outside] = _blend(np.repeat(grey, 3, axis=1), np.array([128, 128, 128], dtype=np.float32), 0.6)
    ys, xs = np.nonzero(outside)
    stripes = ((ys + xs) // 4) % 3 == 0
    out[ys[stripes], xs[stripes]] = 60, 60, 60


def render(
    rgb: np.ndarray,
    anomaly_map: np.ndarray,
    boxes: list[Box],
    style: RenderStyle = "box",
    threshold: float | None = None,
) -> np.ndarray:
    """The visual prompt image: a marked copy of the original ``rgb`` (``H x W x 3`` uint8).

    ``anomaly_map`` must be in original image coordinates and ``boxes`` should come from
    :func:`eagle_iad.tgps.regions.extract_regions` on that map (with default parameters, which
    the contour and mask styles also use). ``box`` draws red rectangles; ``contour`` a red
    outline just outside the selected regions; ``heatmap`` a jet overlay of the whole map;
    ``mask`` tints the selected regions' pixels red. Raises :class:`ConfigError` for any other
    style, since the style usually comes from a user option. ``threshold`` is the ``calibrated``
    region rule's pixel threshold, so the contour and mask styles outline the same regions as the boxes.
    """
    if style not in RENDER_STYLES:
        raise ConfigError(f"unknown render style {style!r}; allowed styles: {', '.join(RENDER_STYLES)}")
    _check_inputs(rgb, anomaly_map)
    height, width = rgb.shape[:2]
    if style == "heatmap":
        return heatmap_overlay(rgb, anomaly_map, alpha=0.5)
    out = rgb.copy()
    if style == "box":
        _draw_boxes(out, boxes, line_width(height, width))
        return out
    if style == "contour":
        regions = _regions_in_boxes(binary_mask(anomaly_map, fill_holes=True, threshold=threshold), boxes)
        stroke = line_width(height, width)
        grown = ndimage.binary_dilation(regions, structure=np.ones((3, 3), dtype=bool), iterations=stroke)
        out[grown & ~regions] = 255, 0, 0
        return out
    # style == "mask"
    regions = _regions_in_boxes(binary_mask(anomaly_map, threshold=threshold), boxes)
    out[regions] = _blend(rgb[regions], RED, 0.5)
    return out


#: zlib level of every picture written. Level 1 encodes an inspection's two pictures 3.8x faster than
#: Pillow's default 6 for files 27% larger (measured on 300 x 352 elpv pictures: 9.5 against 35.8 ms
#: an image, 147 against 116 kB): at the default 6 the encoding was a fifth of an inspection's time.
PNG_COMPRESS_LEVEL = 1


def save_png(path: str | os.PathLike[str], rgb: np.ndarray, description: str | None = None) -> None:
    """Write ``rgb`` as PNG atomically (temp file in the same directory, then ``os.replace``).

    ``description`` goes into the PNG's ``Description`` text chunk (as :func:`eagle_iad.eval.plots.save_figure`
    writes it), where a program reads what the picture's caption says without reading pixels.

    Readers (a web page, a resumed evaluation) never see a half-written picture, and a crash
    leaves either the old file or none, never a truncated one. The file gets the mode ``open()`` would give it
    (``0o666`` less the umask), like the other outputs.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            info = None
            if description is not None:
                info = PngImagePlugin.PngInfo()
                info.add_text("Description", description)
            Image.fromarray(np.ascontiguousarray(rgb)).save(
                handle, format="PNG", compress_level=PNG_COMPRESS_LEVEL, pnginfo=info
            )
            handle.flush()
            os.fsync(handle.fileno())
        # mkstemp creates the file owner-only (0600); a picture is shared like every other output (0o666 less the
        # umask, as eagle_iad.atomic writes them), or a QA colleague, a web server or a station's sink cannot open it.
        os.chmod(tmp_name, new_file_mode())
        os.replace(tmp_name, target)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # pragma: no cover - Pillow without FreeType
        return ImageFont.load_default()


def box_tag(rank: int, box: Box, map_factor: float = 1.0) -> str:
    """A box's tag text, ``#1 166.70``: its rank and :meth:`Box.strength`, as the text output prints it."""
    return f"#{rank} {box.strength(map_factor):.2f}"


Rect = tuple[int, int, int, int]


def _overlaps(a: Rect, b: Rect) -> bool:
    """Whether two rectangles share a pixel (corners inclusive, as Pillow draws them)."""
    return a[0] <= b[2] and b[0] <= a[2] and a[1] <= b[3] and b[1] <= a[3]


def tag_rectangles(boxes: list[Box], sizes: list[tuple[int, int]], shape: tuple[int, int]) -> list[Rect]:
    """Where each box's tag goes (``x0, y0, x1, y1``, inclusive as Pillow draws it), so that no tag covers another.

    A tag of ``sizes[i]`` (width, height) is tried above its box's top-left corner, then below its
    bottom-left, then at the right-hand corners, then inside the top-left; the first place free of
    the tags already placed (stronger boxes first) wins. When none is free, the tag slides down (then
    up) from above its box in steps of one pixel until it is; only a picture too small for all the
    tags leaves one on another.
    """
    height, width = shape
    gap = line_width(height, width)
    placed: list[Rect] = []
    for box, (tw, th) in zip(boxes, sizes, strict=True):

        def at(x: int, y: int, tw: int = tw, th: int = th) -> Rect:
            x = min(max(0, x), max(0, width - tw))
            y = min(max(0, y), max(0, height - th))
            return (x, y, x + tw, y + th)

        above, below = box.y0 - th - gap, box.y1
        tries = [(box.x0, above if above >= 0 else below), (box.x0, below), (box.x1 - tw, above),
                 (box.x1 - tw, below), (box.x0 + gap, box.y0 + gap)]  # fmt: skip
        options = [at(x, y) for x, y in tries]
        first = options[0]
        slides = [at(first[0], first[1] + step) for step in range(1, height)]
        slides += [at(first[0], first[1] - step) for step in range(1, height)]
        chosen = next((r for r in options + slides if not any(_overlaps(r, p) for p in placed)), first)
        placed.append(chosen)
    return placed


def label_boxes(out: np.ndarray, boxes: list[Box], map_factor: float = 1.0) -> np.ndarray:
    """Tag each box with its rank and strength (``#1 166.70``, :func:`box_tag`) near its top-left corner, on a copy.

    The strength is :meth:`Box.strength`: the region's largest patch score, on the image score's scale
    (the box over the image's highest-scoring patch carries the image's score); an export before schema 3
    gives no patch grid, so its tag is the region's map peak times ``map_factor`` (``tau / map_tau``: the
    legend's scale). The text output and the JSON's ``strength`` show the same number. Tags never
    cover one another (:func:`tag_rectangles`).

    These tags are for people; the MLLM's visual prompt keeps plain red frames, as the prompt text
    describes them.
    """
    image = Image.fromarray(out)
    draw = ImageDraw.Draw(image)
    height, width = out.shape[:2]
    font = _font(max(10, min(height, width) // 25))
    texts = [box_tag(rank, box, map_factor) for rank, box in enumerate(boxes, start=1)]
    bounds = [draw.textbbox((0, 0), text, font=font) for text in texts]
    sizes = [(int(right - left) + 4, int(bottom - top) + 4) for left, top, right, bottom in bounds]
    for text, (left, top, _r, _b), (x, y, x1, y1) in zip(texts, bounds, tag_rectangles(boxes, sizes, (height, width)),
                                                         strict=True):  # fmt: skip
        draw.rectangle((x, y, x1, y1), fill=(255, 0, 0))
        draw.text((x + 2 - left, y + 2 - top), text, fill=(255, 255, 255), font=font)
    return np.array(image)  # writable: the caller may hatch uninspected pixels on it


def draw_candidates(rgb: np.ndarray, boxes: list[Box]) -> np.ndarray:
    """Candidate regions of a NORMAL verdict, on request: dashed yellow frames, never red.

    The red frame means "the expert flags this"; a normal verdict flags nothing, so its strongest
    regions are drawn in a style that cannot be mistaken for the visual prompt.
    """
    out = rgb.copy()
    height, width = out.shape[:2]
    stroke = line_width(height, width)
    dash = max(4, 3 * stroke)
    for box in boxes:
        x0, x1 = max(0, box.x0), min(width, box.x1)
        y0, y1 = max(0, box.y0), min(height, box.y1)
        if x1 <= x0 or y1 <= y0:
            continue
        for start in range(x0, x1, 2 * dash):
            stop = min(x1, start + dash)
            out[y0 : min(y0 + stroke, y1), start:stop] = 255, 220, 0
            out[max(y1 - stroke, y0) : y1, start:stop] = 255, 220, 0
        for start in range(y0, y1, 2 * dash):
            stop = min(y1, start + dash)
            out[start:stop, x0 : min(x0 + stroke, x1)] = 255, 220, 0
            out[start:stop, max(x1 - stroke, x0) : x1] = 255, 220, 0
    return out


Span = tuple[float, float]


def label_rows(wanted: list[Span], taken: list[Span], bounds: Span, gap: float) -> list[tuple[float, int]]:
    """Where each of a legend's tick labels goes: ``(left, row)`` for each ``(centre, width)`` in ``wanted``.

    A label is centred under its tick, slid inside ``bounds`` (the bar's ends), and put in the first row
    where it keeps ``gap`` from every label already there; row 0 already holds ``taken`` (the end labels).
    Two ticks close together (the threshold and where weak boxes were cut) then read one above the other
    instead of printed over each other, and a picture whose labels fit in one row keeps its one row.
    """
    rows: list[list[Span]] = [list(taken)]
    placed: list[tuple[float, int]] = []
    for centre, width in wanted:
        left = min(max(bounds[0], centre - width / 2), bounds[1] - width)
        span = (left, left + width)
        row = next((index for index, spans in enumerate(rows)
                    if all(span[1] + gap <= a or b + gap <= span[0] for a, b in spans)), len(rows))  # fmt: skip
        if row == len(rows):
            rows.append([])
        rows[row].append(span)
        placed.append((left, row))
    return placed


def with_legend(picture: np.ndarray, scale: tuple[float, float], marks: dict[str, float], title: str) -> np.ndarray:
    """The picture with a colour bar underneath: the jet scale from ``scale[0]`` to ``scale[1]``.

    ``marks`` (e.g. ``{"tau": 1.8}``) are drawn as labelled ticks so a reader sees where the
    category's threshold lies on the same colours as the map. Labels never cover one another nor the
    end labels (:func:`label_rows`): one that would is printed a row lower, and only then does the strip
    grow, by one text line a row. The bar is as wide as the picture (at least 260 px, the picture padded
    with white when narrower).
    """
    height, width = picture.shape[:2]
    total_width = max(width, 260)
    font_size = max(10, min(16, total_width // 30))
    font = _font(font_size)
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    margin = 8
    low, high = scale
    low_label, end_label = f"{low:.2f}", f"{high:.2f}+"
    end_width = measure.textlength(end_label, font=font)
    end_left = total_width - margin - end_width
    bar_top, bar_height = height + font_size + 8, max(8, font_size)
    bar_width = total_width - 2 * margin

    def x_of(value: float) -> int:
        fraction = (min(max(value, low), high) - low) / (high - low)
        position: int = margin + math.floor(fraction * (bar_width - 1) + 0.5)
        return position

    texts = [(x_of(value), f"{name} {value:.2f}") for name, value in marks.items()]
    widths = [measure.textlength(text, font=font) for _x, text in texts]
    taken = [(margin, margin + measure.textlength(low_label, font=font)), (end_left, end_left + end_width)]
    places = label_rows([(x, w) for (x, _t), w in zip(texts, widths, strict=True)], taken,
                        (margin, total_width - margin), gap=font_size / 2)  # fmt: skip
    row_pitch = int(measure.textbbox((0, 0), "hp0", font=font)[3]) + 4  # one text line, descenders included
    rows = 1 + max((row for _left, row in places), default=0)
    strip = 3 * font_size + 22 + (rows - 1) * row_pitch
    canvas = Image.new("RGB", (total_width, height + strip), (255, 255, 255))
    canvas.paste(Image.fromarray(picture), (0, 0))
    draw = ImageDraw.Draw(canvas)
    ramp = np.linspace(0.0, 1.0, bar_width)
    colours = np.asarray(colormaps["jet"](ramp, bytes=True)[:, :3], dtype=np.uint8)
    canvas.paste(Image.fromarray(np.repeat(colours[None], bar_height, axis=0)), (margin, bar_top))
    draw.text((margin, height + 3), title, fill=(0, 0, 0), font=font)
    label_y = bar_top + bar_height + 2
    draw.text((margin, label_y), low_label, fill=(0, 0, 0), font=font)
    draw.text((end_left, label_y), end_label, fill=(0, 0, 0), font=font)
    for (x, text), (left, row) in zip(texts, places, strict=True):
        draw.line((x, bar_top - 4, x, bar_top + bar_height + 1), fill=(0, 0, 0), width=2)
        draw.text((left, label_y + row * row_pitch), text, fill=(0, 0, 0), font=font)
    return np.asarray(canvas)
