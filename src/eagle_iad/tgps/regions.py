"""Anomaly map → suspected defect boxes, the geometry half of the TGPS visual prompt (docs/METHOD.md §2).

The MLLM is shown at most a few red boxes, so the boxes must point at the *strongest* evidence
and must not fragment one defect into many small boxes. Hence: a relative threshold (2/3 of the
map's maximum) that adapts to each image's score scale; a median fallback for maps that are high
almost everywhere (a relative threshold would then box the whole image); an area filter against
speckle; and a greedy merge, strongest region first, so neighbouring fragments of one defect end
up in one box anchored on its peak.

Connected regions are *external* regions, as with OpenCV's ``RETR_EXTERNAL`` contours used by the
reference code: holes are filled before labelling, so a ring-shaped response is one region whose
area includes its hole, and anything nested in a hole belongs to the enclosing region.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage

from eagle_iad.errors import one_of

#: 8-connectivity: diagonal neighbours belong to the same region, so thin diagonal scratches are
#: not cut into single pixels.
_EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)


@dataclass(frozen=True)
class Box:
    """A suspected defect region in ORIGINAL image pixels (``x1``/``y1`` exclusive).

    ``peak`` is the largest max-normalised map value inside the region (1.0 for the strongest
    region of the image) and ranks boxes; ``area`` is the region's pixel count, holes included
    (summed over merged regions), kept for reporting how large the suspected defect is.
    """

    x0: int
    y0: int
    x1: int
    y1: int
    peak: float
    area: int
    #: The region's largest map value in the category's score units (smoothed; the boxes are cut on it).
    score: float = 0.0
    #: The region's largest *patch* score: the image score's own scale, so the region over the image's
    #: highest-scoring patch carries the image's score (what a person compares with tau). ``None`` where
    #: no patch grid is known (an export before schema 3, whose graph gives only the smoothed map).
    patch_score: float | None = None

    @property
    def width(self) -> int:
        """Width in pixels."""
        return self.x1 - self.x0

    @property
    def height(self) -> int:
        """Height in pixels."""
        return self.y1 - self.y0

    @property
    def centre(self) -> tuple[float, float]:
        """Centre ``(x, y)`` in pixel coordinates."""
        return ((self.x0 + self.x1) / 2.0, (self.y0 + self.y1) / 2.0)

    def strength(self, map_factor: float = 1.0) -> float:
        """The number a person reads for this box (text, JSON ``strength``, picture tag): one scale, the image score's.

        The largest patch score under it, so the box over the image's highest-scoring patch shows the
        image's score; where no patch grid is known (an export before schema 3), the map peak times
        ``map_factor`` (``tau / map_tau``, the legend's scale).
        """
        return self.score * map_factor if self.patch_score is None else self.patch_score

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable dict (built-in ``int``/``float``, never numpy scalars)."""
        return {
            "x0": int(self.x0),
            "y0": int(self.y0),
            "x1": int(self.x1),
            "y1": int(self.y1),
            "peak": float(self.peak),
            "area": int(self.area),
            "score": float(self.score),
            "patch_score": None if self.patch_score is None else float(self.patch_score),
        }


def _validate_map(anomaly_map: np.ndarray) -> np.ndarray:
    arr = np.asarray(anomaly_map)
    if arr.ndim != 2:
        raise ValueError(f"anomaly map must be 2-D (H x W), got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError("anomaly map is empty")
    arr = arr.astype(np.float64, copy=False)
    if not np.all(np.isfinite(arr)):
        # A NaN/inf map is an upstream bug; boxing it would silently draw nonsense.
        raise ValueError("anomaly map contains NaN or infinite values")
    return arr


def _validate_fractions(binarise_ratio: float, min_area_fraction: float) -> None:
    if not 0.0 < binarise_ratio <= 1.0:
        raise ValueError(f"binarise_ratio must be in (0, 1], got {binarise_ratio}")
    if not 0.0 <= min_area_fraction < 1.0:
        raise ValueError(f"min_area_fraction must be in [0, 1), got {min_area_fraction}")


def _normalise(arr: np.ndarray) -> np.ndarray | None:
    """Divide by the maximum; ``None`` when the map carries no localisation (max <= 0 or constant)."""
    top = float(arr.max())
    if top <= 0.0 or float(arr.min()) == top:
        return None
    return arr / top


def _binarise(norm: np.ndarray, binarise_ratio: float) -> np.ndarray:
    """Threshold at ``binarise_ratio`` of the max, or at the median when that passes over half.

    When most of the image is near the maximum (a globally shifted or very smooth map) the
    relative threshold would select almost everything and the box would be the whole image;
    the median keeps only the upper half, which still points somewhere.
    """
    passed = norm >= binarise_ratio
    if int(passed.sum()) * 2 > norm.size:
        passed = norm > float(np.median(norm))
    return passed


def _external_regions(
    norm: np.ndarray, binarise_ratio: float, min_area_fraction: float, binary: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Binarise (unless ``binary`` is given), fill holes, label; return ``(binary, labels, kept_label_ids)``.

    Kept labels are the regions whose (hole-filled) area exceeds ``min_area_fraction`` of the
    image; the strict ``>`` follows the method ("larger than 0.1%").
    """
    if binary is None:
        binary = _binarise(norm, binarise_ratio)
    filled = ndimage.binary_fill_holes(binary)
    labels, count = ndimage.label(filled, structure=_EIGHT_CONNECTED)
    if count == 0:
        return binary, labels, np.zeros(0, dtype=np.int64)
    areas = np.bincount(labels.ravel(), minlength=count + 1)[1:]
    min_area = min_area_fraction * norm.size
    kept = np.flatnonzero(areas > min_area) + 1
    return binary, labels, kept


def binary_mask(
    anomaly_map: np.ndarray,
    binarise_ratio: float = 2.0 / 3.0,
    min_area_fraction: float = 0.001,
    *,
    fill_holes: bool = False,
    threshold: float | None = None,
) -> np.ndarray:
    """The binarised pixels of the regions that survive the area filter (``H x W`` bool).

    This is exactly the mask :func:`extract_regions` boxes, so the contour and mask renderings
    show the same evidence as the boxes. With ``fill_holes`` the regions' holes are included
    (their external outline, what a contour drawing wants); without it only the pixels that
    actually passed the threshold are set (what a mask overlay wants). A map with no
    localisation (max <= 0 or constant) gives an all-False mask. ``threshold`` binarises at an
    absolute map value, as :func:`extract_regions` does for the ``calibrated`` rule.
    """
    _validate_fractions(binarise_ratio, min_area_fraction)
    arr = _validate_map(anomaly_map)
    norm = _normalise(arr)
    if norm is None:
        return np.zeros(arr.shape, dtype=bool)
    absolute = None if threshold is None else arr >= threshold
    binary, labels, kept = _external_regions(norm, binarise_ratio, min_area_fraction, absolute)
    regions = np.isin(labels, kept)
    return regions if fill_holes else regions & binary


def _iou(a: Box, b: Box) -> float:
    ix = min(a.x1, b.x1) - max(a.x0, b.x0)
    iy = min(a.y1, b.y1) - max(a.y0, b.y0)
    if ix <= 0 or iy <= 0:
        return 0.0
    inter = ix * iy
    union = a.width * a.height + b.width * b.height - inter
    return inter / union if union > 0 else 0.0


def _close(a: Box, b: Box, max_centre_distance: float) -> bool:
    (ax, ay), (bx, by) = a.centre, b.centre
    return math.hypot(ax - bx, ay - by) < max_centre_distance


def _union(a: Box, b: Box) -> Box:
    return Box(
        x0=min(a.x0, b.x0),
        y0=min(a.y0, b.y0),
        x1=max(a.x1, b.x1),
        y1=max(a.y1, b.y1),
        peak=max(a.peak, b.peak),
        area=a.area + b.area,
        score=max(a.score, b.score),
        patch_score=_larger(a.patch_score, b.patch_score),
    )


def _larger(a: float | None, b: float | None) -> float | None:
    if a is None or b is None:
        return b if a is None else a
    return max(a, b)


def _merge_pass(boxes: list[Box], merge_iou: float, max_centre_distance: float) -> list[Box]:
    """One greedy pass: strongest box first, each later box joins the first kept box it touches."""
    kept: list[Box] = []
    for box in sorted(boxes, key=lambda b: b.peak, reverse=True):
        for i, anchor in enumerate(kept):
            if _iou(anchor, box) > merge_iou or _close(anchor, box, max_centre_distance):
                kept[i] = _union(anchor, box)
                break
        else:
            kept.append(box)
    return kept


def merge_boxes(
    boxes: list[Box],
    image_shape: tuple[int, int],
    merge_iou: float = 0.3,
    merge_centre_fraction: float = 0.02,
) -> list[Box]:
    """Greedily merge overlapping or nearby boxes until no pair qualifies any more.

    A merged box grows, so it can newly overlap another kept box; passes repeat until the count
    stops changing (each pass either merges or ends, so this terminates). Result sorted by peak,
    highest first.
    """
    height, width = image_shape
    max_centre_distance = merge_centre_fraction * math.hypot(height, width)
    current = list(boxes)
    while True:
        merged = _merge_pass(current, merge_iou, max_centre_distance)
        if len(merged) == len(current):
            return merged
        current = merged


def extract_regions(
    anomaly_map: np.ndarray,
    top_k: int = 3,
    binarise_ratio: float = 2.0 / 3.0,
    min_area_fraction: float = 0.001,
    merge_iou: float = 0.3,
    merge_centre_fraction: float = 0.02,
    *,
    threshold: float | None = None,
    patch_values: np.ndarray | None = None,
) -> list[Box]:
    """Boxes around the strongest anomalous regions of a map in original image coordinates.

    Steps (docs/METHOD.md §2): normalise by the max; binarise at ``binarise_ratio`` (median fallback when
    over half the pixels pass); external 8-connected regions larger than ``min_area_fraction``
    of the image; bounding boxes; greedy merge (IoU > ``merge_iou`` or centres closer than
    ``merge_centre_fraction`` of the image diagonal), strongest first; the ``top_k`` highest
    peaks, sorted by peak descending. Returns ``[]`` when the map has no localisation (max <= 0
    or constant) or no region survives, so callers can fall back to the text-only prompt.

    With ``threshold`` (score units, the ``calibrated`` rule) the map is binarised at that absolute
    value instead of a fraction of its own maximum, and there is no median fallback: a region is
    exactly the pixels whose evidence exceeds what normal maps of the category reach.

    ``patch_values`` (the patch grid drawn cell by cell over the original image, same shape as the
    map) gives each box its ``patch_score``: the largest value under the region's own pixels.
    """
    if top_k < 1:
        raise ValueError(f"top_k must be at least 1, got {top_k}")
    if merge_iou < 0.0 or merge_centre_fraction < 0.0:
        raise ValueError("merge_iou and merge_centre_fraction must not be negative")
    _validate_fractions(binarise_ratio, min_area_fraction)
    arr = _validate_map(anomaly_map)
    if patch_values is not None and patch_values.shape != arr.shape:
        raise ValueError(f"patch values {patch_values.shape} do not match the map {arr.shape}")
    norm = _normalise(arr)
    if norm is None:
        return []
    absolute = None if threshold is None else arr >= threshold
    _binary, labels, kept = _external_regions(norm, binarise_ratio, min_area_fraction, absolute)
    if kept.size == 0:
        return []
    slices = ndimage.find_objects(labels)
    areas = np.bincount(labels.ravel())
    boxes: list[Box] = []
    for label in kept.tolist():
        ys, xs = slices[label - 1]
        # Peak from the region's own bounding-box window: few regions survive the area filter,
        # so this is far cheaper than ndimage.maximum, which sorts every pixel of the image.
        inside = labels[ys, xs] == label
        window = norm[ys, xs][inside]
        patch_score = None
        if patch_values is not None:
            top = float(patch_values[ys, xs][inside].max())
            patch_score = top if math.isfinite(top) else None
        boxes.append(
            Box(
                x0=int(xs.start),
                y0=int(ys.start),
                x1=int(xs.stop),
                y1=int(ys.stop),
                peak=float(window.max()),
                area=int(areas[label]),
                score=float(arr[ys, xs][inside].max()),
                patch_score=patch_score,
            )
        )
    merged = merge_boxes(boxes, (arr.shape[0], arr.shape[1]), merge_iou, merge_centre_fraction)
    return merged[:top_k]


#: How map pixels become boxes: ``paper`` (2/3 of the image's own map maximum, the published rule)
#: or ``calibrated`` (above the category's pixel threshold ``map_tau``).
REGION_RULES: tuple[str, ...] = ("calibrated", "paper")


@dataclass(frozen=True)
class Regions:
    """The boxes a region rule drew and the absolute map value it cut at (``None``: relative to the max)."""

    boxes: list[Box]
    threshold: float | None


def find_boxes(
    anomaly_map: np.ndarray,
    rule: str,
    map_tau: float | None,
    baseline: float | None = None,
    top_k: int = 3,
    min_area_fraction: float = 0.001,
    patch_values: np.ndarray | None = None,
) -> Regions:
    """The boxes a region rule draws on a map (original coordinates, strongest first).

    ``paper`` (or a model without calibration) binarises at 2/3 of the map's own maximum.
    ``calibrated`` binarises at the category's ``map_tau``. A map that nowhere reaches it (weak
    evidence behind an anomalous image score), or whose pixels above it form no region of the minimum
    size (a peak that barely crosses ``map_tau``: a few dozen pixels), is cut two thirds of the way from
    the category's ``baseline`` (the median normal map value) to its own maximum: the paper's 2/3-of-max
    idea with the distance map's non-zero floor taken out. The paper's own rule is never the fallback
    here: on a distance map whose floor is half its peak, 2/3 of the maximum boxed nearly the whole
    object. Should even that cut leave no region of the minimum size, the peak's own region is grown
    (the level lowered) until it covers one (:func:`_peak_level`), so an anomalous map always gets a
    box at its peak. ``min_area_fraction`` applies to the calibrated rule only (the paper fixes 0.1%):
    the threshold already rejects speckle, so the caller lets regions as small as one feature cell
    through, which matters when a large image is inspected in tiles. ``patch_values``: as in
    :func:`extract_regions`.
    """
    if rule not in REGION_RULES:
        raise ValueError(f"unknown region rule {rule!r}; choose one of {one_of(REGION_RULES)}")
    if rule == "paper" or map_tau is None:
        return Regions(extract_regions(anomaly_map, top_k=top_k, patch_values=patch_values), None)
    arr = _validate_map(anomaly_map)
    if _normalise(arr) is None:  # a flat map: nothing stands out from the rest
        return Regions([], None)
    top = float(arr.max())
    floor = map_tau if baseline is None else min(baseline, top)
    relative = floor + (2.0 / 3.0) * (top - floor)
    for threshold in (map_tau, relative) if top >= map_tau else (relative,):
        boxes = extract_regions(
            arr, top_k=top_k, min_area_fraction=min_area_fraction, threshold=threshold, patch_values=patch_values
        )
        if boxes:
            return Regions(boxes, threshold)
    threshold = _peak_level(arr, relative, min_area_fraction * arr.size)
    boxes = extract_regions(arr, top_k=1, min_area_fraction=0.0, threshold=threshold, patch_values=patch_values)
    return Regions(boxes, threshold)


def _peak_level(arr: np.ndarray, start: float, min_area: float) -> float:
    """The highest level at or below ``start`` whose region around the map's peak covers over ``min_area`` pixels.

    Bisection on the level (the region only grows as the level falls); 40 halvings bring the level within
    ``1e-12`` of the map's range of the exact one. The region is external (holes filled), 8-connected, as
    :func:`extract_regions` labels it.
    """
    peak = np.unravel_index(int(np.argmax(arr)), arr.shape)

    def area(level: float) -> int:
        labels, _count = ndimage.label(ndimage.binary_fill_holes(arr >= level), structure=_EIGHT_CONNECTED)
        return int(np.count_nonzero(labels == labels[peak]))

    low, high = float(arr.min()), min(start, float(arr.max()))
    if area(high) > min_area:
        return high
    for _ in range(40):
        middle = (low + high) / 2.0
        if area(middle) > min_area:
            low = middle
        else:
            high = middle
    return low
