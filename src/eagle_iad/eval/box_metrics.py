"""How well the expert's map and drawn boxes point at the real defect (docs/METHOD.md, issue 9).

Image AUROC, pixel AUROC and AUPRO rank scores; none of them says whether the *pictures* a user
and the MLLM see are right. These measures do, for anomalous test images with a ground-truth mask:

* **pointing accuracy** -- the map's single hottest pixel lies on the defect. The first pixel in
  row-major order wins a tie (``np.argmax``), so a flat map does not score by luck of many maxima.
* **best-box IoU** -- the IoU of the best pair of (drawn box, bounding box of one 8-connected mask
  component); 0 when nothing is drawn. Components, not the whole mask, because one box per defect
  is the goal: two scratches far apart should not be rewarded with one box spanning both.
* **box-to-defect area ratio** -- pixels covered by the union of the boxes over defect pixels;
  1 is a perfect fit of a rectangular defect, 20 means the user must search twenty times the
  defect's area. Only defined when boxes were drawn (median over those images).
* **touch rate** -- share of images where some box contains at least one defect pixel.

and, over normal test images, how many boxes are drawn at all (the product draws none on a normal
verdict; a box on a good part is a false lead).

Boxes are anything with integer ``x0, y0, x1, y1`` in image pixels with ``x1``/``y1`` exclusive
(:class:`eagle_iad.tgps.regions.Box`); parts outside the image are clipped. Masks use any
non-zero pixel as defect, 8-connectivity as in :mod:`eagle_iad.eval.metrics`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
from scipy import ndimage

__all__ = [
    "BoxLike",
    "BoxMetrics",
    "ImageBoxResult",
    "best_box_iou",
    "box_area_ratio",
    "box_iou",
    "boxes_touch_defect",
    "evaluate_image_boxes",
    "mask_components",
    "points_at_defect",
    "summarise_boxes",
    "union_area",
]

#: 8-connectivity, as the MVTec AD evaluation (and :func:`eagle_iad.eval.metrics.aupro`) counts regions.
_EIGHT_CONNECTED = np.ones((3, 3), dtype=np.int8)

Corners = tuple[int, int, int, int]
BoolArray = npt.NDArray[np.bool_]


class BoxLike(Protocol):
    """A rectangle in image pixels, ``x1``/``y1`` exclusive (e.g. :class:`~eagle_iad.tgps.regions.Box`)."""

    @property
    def x0(self) -> int: ...
    @property
    def y0(self) -> int: ...
    @property
    def x1(self) -> int: ...
    @property
    def y1(self) -> int: ...


def _as_mask(mask: npt.ArrayLike) -> BoolArray:
    arr = np.asarray(mask)
    if arr.ndim != 2:
        raise ValueError(f"mask must be 2-D (H x W), got shape {arr.shape}")
    return arr if arr.dtype == np.bool_ else arr != 0


def _corners(box: BoxLike) -> Corners:
    return int(box.x0), int(box.y0), int(box.x1), int(box.y1)


def _clipped(box: BoxLike, shape: tuple[int, int]) -> Corners:
    """The box clipped to an ``H x W`` image (possibly empty: x1 <= x0 or y1 <= y0)."""
    x0, y0, x1, y1 = _corners(box)
    height, width = shape
    return max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)


def box_iou(a: Corners, b: Corners) -> float:
    """Intersection over union of two ``(x0, y0, x1, y1)`` rectangles (exclusive ends); 0 if disjoint."""
    ix = min(a[2], b[2]) - max(a[0], b[0])
    iy = min(a[3], b[3]) - max(a[1], b[1])
    if ix <= 0 or iy <= 0:
        return 0.0
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def mask_components(mask: npt.ArrayLike) -> list[Corners]:
    """Bounding boxes ``(x0, y0, x1, y1)`` (exclusive ends) of the mask's 8-connected components."""
    labelled, _count = ndimage.label(_as_mask(mask), structure=_EIGHT_CONNECTED)
    return [(int(xs.start), int(ys.start), int(xs.stop), int(ys.stop)) for ys, xs in ndimage.find_objects(labelled)]


def points_at_defect(anomaly_map: npt.ArrayLike, mask: npt.ArrayLike) -> bool:
    """Whether the map's maximum (first in row-major order on ties) is a defect pixel."""
    amap = np.asarray(anomaly_map, dtype=np.float64)
    defect = _as_mask(mask)
    if amap.shape != defect.shape:
        raise ValueError(f"anomaly map has shape {amap.shape} but its mask has shape {defect.shape}")
    if amap.size == 0 or not np.all(np.isfinite(amap)):
        raise ValueError("anomaly map is empty or contains NaN/inf")
    row, col = np.unravel_index(int(np.argmax(amap)), amap.shape)
    return bool(defect[row, col])


def best_box_iou(boxes: Sequence[BoxLike], mask: npt.ArrayLike) -> float:
    """Highest IoU between any drawn box (clipped to the image) and any mask component's bounding box.

    0 when no box is drawn or the mask is empty.
    """
    defect = _as_mask(mask)
    shape = (int(defect.shape[0]), int(defect.shape[1]))
    components = mask_components(defect)
    return max((box_iou(_clipped(b, shape), c) for b in boxes for c in components), default=0.0)


def union_area(boxes: Sequence[BoxLike], shape: tuple[int, int]) -> int:
    """Pixels of an ``H x W`` image covered by at least one box (overlaps counted once)."""
    covered = np.zeros(shape, dtype=np.bool_)
    for box in boxes:
        x0, y0, x1, y1 = _clipped(box, shape)
        if x1 > x0 and y1 > y0:
            covered[y0:y1, x0:x1] = True
    return int(np.count_nonzero(covered))


def box_area_ratio(boxes: Sequence[BoxLike], mask: npt.ArrayLike) -> float | None:
    """Union area of the boxes over the defect's pixel count; ``None`` with no box or no defect pixel."""
    defect = _as_mask(mask)
    n_defect = int(np.count_nonzero(defect))
    if not boxes or n_defect == 0:
        return None
    return union_area(boxes, (int(defect.shape[0]), int(defect.shape[1]))) / n_defect


def boxes_touch_defect(boxes: Sequence[BoxLike], mask: npt.ArrayLike) -> bool:
    """Whether some box contains at least one defect pixel."""
    defect = _as_mask(mask)
    shape = (int(defect.shape[0]), int(defect.shape[1]))
    for box in boxes:
        x0, y0, x1, y1 = _clipped(box, shape)
        if x1 > x0 and y1 > y0 and defect[y0:y1, x0:x1].any():
            return True
    return False


@dataclass(frozen=True)
class ImageBoxResult:
    """The box measures of one anomalous image with a non-empty mask (JSON-ready via ``asdict``)."""

    pointed: bool
    best_iou: float
    area_ratio: float | None
    touches: bool
    n_boxes: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def evaluate_image_boxes(anomaly_map: npt.ArrayLike, mask: npt.ArrayLike, boxes: Sequence[BoxLike]) -> ImageBoxResult:
    """All per-image measures of one anomalous image; the mask must have at least one defect pixel.

    Raises:
        ValueError: if the mask is empty (no defect to point at: leave the image out instead), or
            the map and mask shapes differ.
    """
    defect = _as_mask(mask)
    if not defect.any():
        raise ValueError("mask has no defect pixel; box measures are undefined for this image")
    return ImageBoxResult(
        pointed=points_at_defect(anomaly_map, defect),
        best_iou=best_box_iou(boxes, defect),
        area_ratio=box_area_ratio(boxes, defect),
        touches=boxes_touch_defect(boxes, defect),
        n_boxes=len(boxes),
    )


@dataclass(frozen=True)
class BoxMetrics:
    """Box and map quality of one test split (or several pooled), the ``boxes`` key of metrics.json.

    Rates over anomalous images are ``None`` when no anomalous image had a non-empty mask (e.g.
    elpv, which has image labels only); the normal-image counts are always defined.
    """

    n_anomalous_with_mask: int
    pointing_accuracy: float | None
    mean_best_iou: float | None
    n_anomalous_with_boxes: int
    median_area_ratio: float | None
    touch_rate: float | None
    n_normal: int
    normal_boxes: int
    normal_images_with_boxes: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def summarise_boxes(anomalous: Sequence[ImageBoxResult], normal_box_counts: Sequence[int]) -> BoxMetrics:
    """Pool per-image results: means and rates over anomalous images, median ratio over those with boxes.

    ``normal_box_counts`` holds the number of boxes drawn on each normal test image. Pooling the
    per-image results of several categories gives the overall figures (a median cannot be averaged).
    """
    n = len(anomalous)
    ratios = [r.area_ratio for r in anomalous if r.area_ratio is not None]
    counts = [int(c) for c in normal_box_counts]
    return BoxMetrics(
        n_anomalous_with_mask=n,
        pointing_accuracy=sum(r.pointed for r in anomalous) / n if n else None,
        mean_best_iou=float(np.mean([r.best_iou for r in anomalous])) if n else None,
        n_anomalous_with_boxes=len(ratios),
        median_area_ratio=float(np.median(ratios)) if ratios else None,
        touch_rate=sum(r.touches for r in anomalous) / n if n else None,
        n_normal=len(counts),
        normal_boxes=sum(counts),
        normal_images_with_boxes=sum(1 for c in counts if c > 0),
    )
