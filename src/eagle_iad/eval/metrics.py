"""Image- and pixel-level anomaly-detection metrics, numpy only.

* :func:`auroc` / :func:`pixel_auroc` -- ROC AUC with ties counted as half (identical to
  ``sklearn.metrics.roc_auc_score``), computed from integer true/false-positive counts so the
  result does not depend on floating-point summation order even for millions of pixels.
* :func:`aupro` -- the MVTec AD per-region-overlap metric. Pixel AUROC is dominated by large
  defects (a big scratch contributes thousands of pixels, a small pit a handful); PRO averages
  the *per-region* overlap, so every defect counts equally, and it is integrated only up to a
  low false-positive rate (30 % by default) because an inspection threshold is never operated
  beyond that.
* :func:`threshold_metrics` -- what an operator sees at one fixed decision threshold ``tau``.

Convention everywhere: label/mask ``True`` (or 1) means anomalous, and a *higher* score means
*more* anomalous; a sample is flagged when ``score >= tau``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import ndimage

__all__ = [
    "ThresholdMetrics",
    "aupro",
    "auroc",
    "pixel_auroc",
    "pro_curve",
    "threshold_metrics",
]

#: Anything numpy can turn into an array: a list of numbers, a tuple, an ndarray, ...
ArrayLike = npt.ArrayLike
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

#: 8-connectivity, as in the official MVTec AD evaluation: diagonal neighbours belong to the same
#: defect region, so a thin diagonal crack counts as one region, not many single pixels.
_EIGHT_CONNECTED = np.ones((3, 3), dtype=np.int8)


# --------------------------------------------------------------------------- input checking


def _as_scores(values: ArrayLike, name: str) -> FloatArray:
    """1-D float64 copy of ``values``; non-finite scores are refused rather than silently ranked."""
    arr = np.asarray(values, dtype=np.float64).ravel()
    if not np.all(np.isfinite(arr)):
        bad = int(np.count_nonzero(~np.isfinite(arr)))
        raise ValueError(f"{name} contains {bad} non-finite value(s) (NaN or inf); scores must be finite")
    return arr


def _as_labels(values: ArrayLike, name: str) -> BoolArray:
    """1-D boolean labels from bools or 0/1 numbers.

    Anything else (e.g. 0/255, -1/1, or scores passed by mistake) is refused: guessing which value
    is "anomalous" would silently invert the metric.
    """
    arr = np.asarray(values).ravel()
    if arr.dtype == np.bool_:
        return arr
    if arr.size and not np.isin(arr, (0, 1)).all():
        found = np.unique(arr)[:5].tolist()
        raise ValueError(f"{name} must be 0/1 or boolean (1 = anomalous); found values such as {found}")
    return arr.astype(np.bool_)


def _as_mask(values: ArrayLike, index: int) -> BoolArray:
    """2-D boolean ground-truth mask; any non-zero pixel is anomalous (masks are often 0/255 PNGs)."""
    arr = np.asarray(values)
    if arr.ndim != 2:
        raise ValueError(f"mask {index} must be 2-D (H x W), got shape {arr.shape}")
    return arr if arr.dtype == np.bool_ else arr != 0


def _as_map(values: ArrayLike, index: int, shape: tuple[int, ...]) -> FloatArray:
    """2-D float64 anomaly map that must match its mask's shape and be finite."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.shape != shape:
        raise ValueError(f"anomaly map {index} has shape {arr.shape} but its mask has shape {shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"anomaly map {index} contains non-finite values (NaN or inf)")
    return arr


def _pairs(masks: Sequence[ArrayLike], maps: Sequence[ArrayLike]) -> list[tuple[BoolArray, FloatArray]]:
    """Validated (mask, map) pairs; images may differ in size from one another."""
    if len(masks) != len(maps):
        raise ValueError(f"got {len(masks)} masks but {len(maps)} anomaly maps")
    if len(masks) == 0:
        raise ValueError("no images: masks and anomaly maps are empty")
    out: list[tuple[BoolArray, FloatArray]] = []
    for i, (m, a) in enumerate(zip(masks, maps, strict=True)):
        mask = _as_mask(m, i)
        out.append((mask, _as_map(a, i, mask.shape)))
    return out


# --------------------------------------------------------------------------- AUROC


def _auroc(labels: BoolArray, scores: FloatArray, what: str) -> float:
    """ROC AUC of already-validated inputs (see :func:`auroc`)."""
    if labels.shape != scores.shape:
        raise ValueError(f"{what}: {labels.size} labels but {scores.size} scores")
    if labels.size == 0:
        raise ValueError(f"{what}: no samples")
    n_pos = int(np.count_nonzero(labels))
    n_neg = int(labels.size - n_pos)
    if n_pos == 0 or n_neg == 0:
        present = "anomalous" if n_pos else "normal"
        raise ValueError(
            f"{what}: AUROC is undefined when only one class is present "
            f"(all {labels.size} samples are {present}); it needs both normal and anomalous samples"
        )
    # Walk the ROC curve from the highest threshold down. Only the last position of each block of
    # equal scores is a real operating point, so tied scores become one diagonal step whose
    # trapezoid counts each tied (positive, negative) pair as one half -- exactly sklearn's rule.
    order = np.argsort(scores)[::-1]
    sorted_scores = scores[order]
    sorted_labels = labels[order]
    ends = np.r_[np.flatnonzero(np.diff(sorted_scores)), sorted_scores.size - 1]
    tp = np.r_[0, np.cumsum(sorted_labels, dtype=np.int64)[ends]]
    fp = (ends + 1) - tp[1:]
    fp = np.r_[0, fp]
    # Twice the area, in integers: sum of d(FP) * (TP_i + TP_{i-1}). Exact up to ~4e9 samples.
    twice_area = int(np.sum(np.diff(fp) * (tp[1:] + tp[:-1])))
    return twice_area / (2.0 * n_pos * n_neg)


def auroc(labels: ArrayLike, scores: ArrayLike) -> float:
    """Area under the ROC curve of ``scores`` for binary ``labels`` (1/True = anomalous).

    Equal to ``sklearn.metrics.roc_auc_score(labels, scores)``, including ties: a tied
    (anomalous, normal) pair counts as half a correct ordering, which is the probability that a
    random anomalous sample outscores a random normal one with ties broken by a fair coin.

    Raises:
        ValueError: if only one class is present (the AUC is undefined, and returning 0.5 or NaN
            would hide a broken evaluation split), if lengths differ, if labels are not 0/1 or
            boolean, or if any score is NaN/inf.
    """
    return _auroc(_as_labels(labels, "labels"), _as_scores(scores, "scores"), "auroc")


def pixel_auroc(masks: Sequence[ArrayLike], maps: Sequence[ArrayLike]) -> float:
    """AUROC over every pixel of every image: ``masks[i]`` (H x W, non-zero = anomalous) against
    ``maps[i]`` (H x W anomaly scores).

    Images may have different sizes; all pixels are pooled, so large images and large defects
    weigh more (use :func:`aupro` for a per-defect view).

    Raises:
        ValueError: on empty input, mismatched shapes, non-finite scores, or if the pooled pixels
            contain only one class (e.g. no test image has any defect pixel).
    """
    pairs = _pairs(masks, maps)
    labels = np.concatenate([m.ravel() for m, _ in pairs])
    scores = np.concatenate([a.ravel() for _, a in pairs])
    return _auroc(labels, scores, "pixel_auroc")


# --------------------------------------------------------------------------- AUPRO


def _region_weights(mask: BoolArray) -> tuple[FloatArray, int]:
    """Per-pixel PRO increment (1 / region area inside each region, 0 elsewhere) and region count.

    Summing these weights over the pixels above a threshold gives the sum over regions of
    (covered area / region area), i.e. the numerator of PRO, in one pass.
    """
    labelled, n_regions = ndimage.label(mask, structure=_EIGHT_CONNECTED)
    weights = np.zeros(mask.shape, dtype=np.float64)
    if n_regions:
        areas = np.bincount(labelled.ravel(), minlength=n_regions + 1).astype(np.float64)
        inv = np.zeros_like(areas)
        inv[1:] = 1.0 / areas[1:]
        weights = inv[labelled]
    return weights, int(n_regions)


def _check_counts(n_normal: int, n_regions: int) -> None:
    if n_regions == 0:
        raise ValueError("aupro: no ground-truth defect region in any mask; PRO is undefined")
    if n_normal == 0:
        raise ValueError("aupro: no normal (mask False) pixel in any image; the false-positive rate is undefined")


def _exact_curve(pairs: list[tuple[BoolArray, FloatArray]]) -> tuple[FloatArray, FloatArray]:
    """(FPR, PRO) at every distinct score, as the official MVTec AD evaluation computes it.

    Each pixel carries an FPR increment (1 if normal) and a PRO increment (1/area of its region);
    sorting all pixels by score, highest first, and taking cumulative sums gives the curve for
    every threshold at once, in O(N log N) -- exact, unlike a threshold grid, which can miss the
    steep low-FPR part that the 30 % limit makes matter most.
    """
    n_pixels = sum(a.size for _, a in pairs)
    scores = np.empty(n_pixels, dtype=np.float64)
    normal = np.empty(n_pixels, dtype=np.bool_)
    pro_inc = np.empty(n_pixels, dtype=np.float64)
    n_regions = 0
    start = 0
    for mask, amap in pairs:
        stop = start + amap.size
        weights, k = _region_weights(mask)
        scores[start:stop] = amap.ravel()
        normal[start:stop] = ~mask.ravel()
        pro_inc[start:stop] = weights.ravel()
        n_regions += k
        start = stop
    n_normal = int(np.count_nonzero(normal))
    _check_counts(n_normal, n_regions)

    order = np.argsort(scores)[::-1]
    scores = scores[order]
    fp = np.cumsum(normal[order], dtype=np.int64)
    pro = np.cumsum(pro_inc[order])
    # Threshold at each distinct score: keep the last pixel of every block of equal scores.
    keep = np.r_[np.diff(scores) != 0, True]
    fpr = np.r_[0.0, fp[keep] / n_normal]
    pro_curve = np.r_[0.0, np.clip(pro[keep] / n_regions, 0.0, 1.0)]
    return fpr, pro_curve


def _grid_curve(pairs: list[tuple[BoolArray, FloatArray]], num_thresholds: int) -> tuple[FloatArray, FloatArray]:
    """(FPR, PRO) at ``num_thresholds`` evenly spaced thresholds, streaming image by image.

    Only a histogram per threshold bin is kept, so memory does not grow with the number of
    pixels -- the fallback for data sets too large to sort in one piece. Every point lies exactly
    on the exact curve; only the points between grid thresholds are missing.
    """
    filled = [a for _, a in pairs if a.size]
    if not filled:
        _check_counts(0, 0)
    lo = min(float(a.min()) for a in filled)
    hi = max(float(a.max()) for a in filled)
    thresholds = np.linspace(lo, hi, num_thresholds)
    fp_hist = np.zeros(num_thresholds, dtype=np.int64)
    pro_hist = np.zeros(num_thresholds, dtype=np.float64)
    n_regions = 0
    n_normal = 0
    for mask, amap in pairs:
        # bin j holds scores in [t_j, t_{j+1}); "score >= t_j" is then "bin >= j".
        bins = np.searchsorted(thresholds, amap.ravel(), side="right") - 1
        normal = ~mask.ravel()
        weights, k = _region_weights(mask)
        fp_hist += np.bincount(bins[normal], minlength=num_thresholds)
        pro_hist += np.bincount(bins, weights=weights.ravel(), minlength=num_thresholds)
        n_regions += k
        n_normal += int(np.count_nonzero(normal))
    _check_counts(n_normal, n_regions)
    # Cumulate from the highest threshold down, so the curve runs from FPR 0 to FPR 1.
    fp = np.cumsum(fp_hist[::-1])
    pro = np.cumsum(pro_hist[::-1])
    fpr = np.r_[0.0, fp / n_normal]
    pro_curve = np.r_[0.0, np.clip(pro / n_regions, 0.0, 1.0)]
    return fpr, pro_curve


def pro_curve(
    masks: Sequence[ArrayLike], maps: Sequence[ArrayLike], num_thresholds: int | None = None
) -> tuple[FloatArray, FloatArray]:
    """The PRO-vs-FPR curve behind :func:`aupro`, from (0, 0) to (1, 1) with FPR non-decreasing.

    Exposed so a report can plot it. ``num_thresholds`` as in :func:`aupro`.
    """
    pairs = _pairs(masks, maps)
    if num_thresholds is None:
        return _exact_curve(pairs)
    if isinstance(num_thresholds, bool) or not isinstance(num_thresholds, int | np.integer):
        raise ValueError(f"num_thresholds must be an integer >= 2 or None, got {num_thresholds!r}")
    if num_thresholds < 2:
        raise ValueError(f"num_thresholds must be >= 2 (or None for the exact curve), got {num_thresholds}")
    return _grid_curve(pairs, int(num_thresholds))


def _area_up_to(x: FloatArray, y: FloatArray, limit: float) -> float:
    """Trapezoid area under the polyline (x, y) from x[0] to ``limit``.

    ``x`` is non-decreasing and ends at or beyond ``limit``. The curve is cut at exactly
    ``limit`` by linear interpolation on the segment that crosses it, so the result does not
    depend on where the last threshold happened to fall. Vertical runs (repeated x) add nothing.
    """
    inside = int(np.searchsorted(x, limit, side="right"))  # points with x <= limit
    xs = x[:inside]
    ys = y[:inside]
    if xs[-1] < limit and inside < x.size:
        x0, x1, y0, y1 = x[inside - 1], x[inside], y[inside - 1], y[inside]
        y_cut = y0 + (limit - x0) * (y1 - y0) / (x1 - x0)
        xs = np.r_[xs, limit]
        ys = np.r_[ys, y_cut]
    return float(np.sum(np.diff(xs) * (ys[1:] + ys[:-1])) / 2.0)


def aupro(
    masks: Sequence[ArrayLike],
    maps: Sequence[ArrayLike],
    fpr_limit: float = 0.3,
    num_thresholds: int | None = None,
) -> float:
    """Normalised area under the per-region-overlap curve up to ``fpr_limit`` (MVTec AD AUPRO).

    For a threshold t, a pixel is predicted anomalous when its score is >= t (equivalently > the
    next lower distinct score). Then

    * PRO(t) = mean over all ground-truth regions -- connected components, 8-connectivity, of
      every mask -- of (predicted pixels in the region / region area);
    * FPR(t) = predicted pixels among all normal pixels (mask False) of *all* images, fully
      normal images included, so false alarms on good parts are penalised.

    The PRO-vs-FPR curve is integrated with the trapezoid rule from FPR 0 to ``fpr_limit``
    (interpolated at exactly ``fpr_limit``) and divided by ``fpr_limit``, so a perfect map scores
    1.0 and a random one about ``fpr_limit / 2``.

    Args:
        masks: ground-truth masks, one H x W per image (non-zero = defect); sizes may differ
            between images but each must match its map.
        maps: anomaly maps, same shapes as ``masks``, higher = more anomalous.
        fpr_limit: upper FPR of the integration, in (0, 1].
        num_thresholds: ``None`` (default) evaluates every distinct score exactly, as the
            official evaluation does. An integer evaluates only that many evenly spaced
            thresholds, streaming image by image with constant memory -- an approximation for
            data sets too large to sort at once.

    Raises:
        ValueError: on empty or mismatched input, non-finite scores, a ``fpr_limit`` outside
            (0, 1], no defect region at all, or no normal pixel at all.
    """
    if not 0.0 < fpr_limit <= 1.0:
        raise ValueError(f"fpr_limit must be in (0, 1], got {fpr_limit}")
    fpr, pro = pro_curve(masks, maps, num_thresholds)
    return _area_up_to(fpr, pro, float(fpr_limit)) / float(fpr_limit)


# --------------------------------------------------------------------------- fixed threshold


@dataclass(frozen=True)
class ThresholdMetrics:
    """Image-level decision quality at one threshold (flag anomalous when ``score >= tau``).

    Rates with a zero denominator are defined as 0.0 rather than NaN so they can be written to
    JSON and compared without special cases (scikit-learn's ``zero_division=0`` convention):

    * ``precision`` = TP / (TP + FP); 0.0 when nothing is flagged.
    * ``recall`` (true-positive rate) = TP / (TP + FN); 0.0 when there is no anomalous image.
    * ``f1`` = harmonic mean of precision and recall; 0.0 when both are 0.
    * ``false_alarm_rate`` = FP / #normal; 0.0 when there is no normal image.
    * ``balanced_accuracy`` = (TPR + TNR) / 2 when both classes are present; with a single class
      it is the rate of that class alone (as scikit-learn's ``balanced_accuracy_score`` does),
      so a normal-only check set still reports how many good parts pass.
    """

    tau: float
    balanced_accuracy: float
    precision: float
    recall: float
    f1: float
    false_alarm_rate: float
    tp: int
    fp: int
    tn: int
    fn: int

    @property
    def n_anomalous(self) -> int:
        """Number of anomalous images (TP + FN)."""
        return self.tp + self.fn

    @property
    def n_normal(self) -> int:
        """Number of normal images (TN + FP)."""
        return self.tn + self.fp

    def as_dict(self) -> dict[str, Any]:
        """Plain dict (floats and ints) for JSON reports."""
        return {
            "tau": self.tau,
            "balanced_accuracy": self.balanced_accuracy,
            "precision": self.precision,
            "recall": self.recall,
            "f1": self.f1,
            "false_alarm_rate": self.false_alarm_rate,
            "tp": self.tp,
            "fp": self.fp,
            "tn": self.tn,
            "fn": self.fn,
        }


def _ratio(num: int, den: int) -> float:
    return num / den if den else 0.0


def threshold_metrics(labels: ArrayLike, scores: ArrayLike, tau: float) -> ThresholdMetrics:
    """Confusion counts and rates when images with ``score >= tau`` are flagged anomalous.

    ``>=`` matches how the expert applies its threshold, so a score exactly at ``tau`` is
    flagged here as it would be in production. See :class:`ThresholdMetrics` for how undefined
    rates are reported.

    Raises:
        ValueError: on empty input, mismatched lengths, labels that are not 0/1 or boolean,
            non-finite scores, or a NaN ``tau`` (an infinite ``tau`` is allowed: flag nothing
            or everything).
    """
    y = _as_labels(labels, "labels")
    s = _as_scores(scores, "scores")
    if y.shape != s.shape:
        raise ValueError(f"threshold_metrics: {y.size} labels but {s.size} scores")
    if y.size == 0:
        raise ValueError("threshold_metrics: no samples")
    tau = float(tau)
    if np.isnan(tau):
        raise ValueError("threshold_metrics: tau is NaN")
    flagged = s >= tau
    tp = int(np.count_nonzero(flagged & y))
    fp = int(np.count_nonzero(flagged & ~y))
    fn = int(np.count_nonzero(~flagged & y))
    tn = int(np.count_nonzero(~flagged & ~y))
    precision = _ratio(tp, tp + fp)
    recall = _ratio(tp, tp + fn)
    f1 = 2.0 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    class_rates = [r for r, n in ((recall, tp + fn), (_ratio(tn, tn + fp), tn + fp)) if n > 0]
    return ThresholdMetrics(
        tau=tau,
        balanced_accuracy=float(sum(class_rates) / len(class_rates)),
        precision=precision,
        recall=recall,
        f1=f1,
        false_alarm_rate=_ratio(fp, fp + tn),
        tp=tp,
        fp=fp,
        tn=tn,
        fn=fn,
    )
