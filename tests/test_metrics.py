"""Tests of eagle_iad.eval: metrics against scikit-learn and a slow PRO reference, and the figure."""

from __future__ import annotations

from collections import deque
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sklearn.metrics import roc_auc_score

from eagle_iad.eval.metrics import (
    ThresholdMetrics,
    aupro,
    auroc,
    pixel_auroc,
    pro_curve,
    threshold_metrics,
)
from eagle_iad.eval.plots import score_histogram

# --------------------------------------------------------------------------- AUROC


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4, 5, 6, 7])
def test_auroc_matches_sklearn_with_ties(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 400))
    labels = rng.integers(0, 2, size=n)
    labels[0], labels[1] = 0, 1  # both classes present
    # Few distinct values -> many ties, including ties across the two classes.
    scores = rng.integers(0, 6, size=n).astype(float) + 0.3 * labels * rng.random(n).round(1)
    assert auroc(labels, scores) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)


@pytest.mark.parametrize("seed", [10, 11, 12])
def test_auroc_matches_sklearn_continuous_and_inputs(seed: int) -> None:
    rng = np.random.default_rng(seed)
    labels = rng.random(300) < 0.3
    scores = rng.normal(size=300) + labels
    expected = roc_auc_score(labels, scores)
    assert auroc(labels, scores) == pytest.approx(expected, abs=1e-12)
    # Plain Python sequences work too.
    assert auroc(labels.astype(int).tolist(), scores.tolist()) == pytest.approx(expected, abs=1e-12)


def test_auroc_edge_values() -> None:
    assert auroc([0, 0, 1, 1], [0.1, 0.2, 0.3, 0.4]) == 1.0
    assert auroc([0, 0, 1, 1], [0.4, 0.3, 0.2, 0.1]) == 0.0
    assert auroc([0, 1, 0, 1], [0.5, 0.5, 0.5, 0.5]) == 0.5


@pytest.mark.parametrize("labels", [[0, 0, 0], [1, 1], [True]])
def test_auroc_single_class_raises(labels: list[int]) -> None:
    with pytest.raises(ValueError, match="only one class is present"):
        auroc(labels, [0.5] * len(labels))


def test_auroc_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="0/1 or boolean"):
        auroc([0, 255], [0.1, 0.2])
    with pytest.raises(ValueError, match="non-finite"):
        auroc([0, 1], [0.1, float("nan")])
    with pytest.raises(ValueError, match="2 labels but 3 scores"):
        auroc([0, 1], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="no samples"):
        auroc([], [])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_pixel_auroc_matches_sklearn_on_concatenated_pixels(seed: int) -> None:
    rng = np.random.default_rng(seed)
    shapes = [(8, 8), (5, 11), (16, 4)]
    masks = [rng.random(s) < 0.2 for s in shapes]
    maps = [rng.integers(0, 8, size=s) / 4.0 + m for s, m in zip(shapes, masks, strict=True)]
    labels = np.concatenate([m.ravel() for m in masks])
    scores = np.concatenate([a.ravel() for a in maps])
    assert pixel_auroc(masks, maps) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)


def test_pixel_auroc_accepts_0_255_masks_and_checks_shapes() -> None:
    mask = np.zeros((4, 4), dtype=np.uint8)
    mask[1:3, 1:3] = 255
    assert pixel_auroc([mask], [mask.astype(float)]) == 1.0
    with pytest.raises(ValueError, match="shape"):
        pixel_auroc([mask], [np.zeros((4, 5))])
    with pytest.raises(ValueError, match="only one class"):
        pixel_auroc([np.zeros((3, 3), bool)], [np.zeros((3, 3))])


# --------------------------------------------------------------------------- AUPRO reference


def _components_8(mask: np.ndarray) -> list[np.ndarray]:
    """Connected components by breadth-first flood fill (independent of scipy)."""
    seen = np.zeros(mask.shape, dtype=bool)
    regions: list[np.ndarray] = []
    h, w = mask.shape
    for r0 in range(h):
        for c0 in range(w):
            if not mask[r0, c0] or seen[r0, c0]:
                continue
            region = np.zeros(mask.shape, dtype=bool)
            queue = deque([(r0, c0)])
            seen[r0, c0] = True
            while queue:
                r, c = queue.popleft()
                region[r, c] = True
                for dr in (-1, 0, 1):
                    for dc in (-1, 0, 1):
                        rr, cc = r + dr, c + dc
                        if 0 <= rr < h and 0 <= cc < w and mask[rr, cc] and not seen[rr, cc]:
                            seen[rr, cc] = True
                            queue.append((rr, cc))
            regions.append(region)
    return regions


def _reference_aupro(masks: list[np.ndarray], maps: list[np.ndarray], limit: float = 0.3) -> float:
    """Slow, literal PRO definition: one pass over the images per threshold."""
    regions = [(i, reg) for i, m in enumerate(masks) for reg in _components_8(m)]
    n_normal = sum(int((~m).sum()) for m in masks)
    values = np.unique(np.concatenate([a.ravel() for a in maps]))
    # "> t" at every distinct score gives every operating point; t below the minimum gives (1, 1).
    thresholds = np.r_[values[::-1], values[0] - 1.0]
    points = []
    for t in thresholds:
        predicted = [a > t for a in maps]
        pro = np.mean([(predicted[i] & reg).sum() / reg.sum() for i, reg in regions])
        fpr = sum(int((p & ~m).sum()) for p, m in zip(predicted, masks, strict=True)) / n_normal
        points.append((fpr, pro))
    area = 0.0
    for (x0, y0), (x1, y1) in pairwise(points):
        if x0 >= limit:
            break
        if x1 > limit:  # cut the crossing segment at exactly the limit
            y1 = y0 + (limit - x0) * (y1 - y0) / (x1 - x0)
            x1 = limit
        area += (x1 - x0) * (y0 + y1) / 2.0
    return area / limit


def _blob_images() -> list[np.ndarray]:
    """Two 8x8 images: one with two separate defects (a square and a diagonal crack), one normal."""
    a = np.zeros((8, 8), dtype=bool)
    a[1:3, 1:3] = True  # 4-pixel square
    for k in range(4):  # diagonal line: one region under 8-connectivity, four under 4-connectivity
        a[3 + k, 4 + k] = True
    b = np.zeros((8, 8), dtype=bool)
    return [a, b]


def test_reference_sees_diagonal_as_one_region() -> None:
    assert len(_components_8(_blob_images()[0])) == 2


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("levels", [5, 20, 0])
def test_aupro_matches_slow_reference(seed: int, levels: int) -> None:
    rng = np.random.default_rng(seed)
    masks = _blob_images()
    if levels:  # quantised scores: ties within and across normal and defect pixels
        maps = [rng.integers(0, levels, size=m.shape) / levels + 0.3 * m for m in masks]
    else:
        maps = [rng.random(m.shape) + 0.5 * m for m in masks]
    for limit in (0.3, 0.05, 1.0):
        expected = _reference_aupro(masks, maps, limit)
        assert aupro(masks, maps, fpr_limit=limit) == pytest.approx(expected, abs=1e-6)


def test_aupro_images_of_different_sizes() -> None:
    rng = np.random.default_rng(42)
    masks = [*_blob_images(), np.zeros((5, 9), dtype=bool)]
    masks[2][1:4, 6] = True
    maps = [rng.integers(0, 10, size=m.shape) / 10 + 0.2 * m for m in masks]
    assert aupro(masks, maps) == pytest.approx(_reference_aupro(masks, maps), abs=1e-6)


def test_aupro_perfect_and_inverted_maps() -> None:
    masks = _blob_images()
    perfect = [m.astype(float) for m in masks]
    assert aupro(masks, perfect) == pytest.approx(1.0, abs=1e-12)
    inverted = [1.0 - p for p in perfect]
    assert aupro(masks, inverted) == pytest.approx(0.0, abs=1e-12)


def test_aupro_normal_image_false_alarms_lower_the_score() -> None:
    masks = _blob_images()
    maps = [m.astype(float) for m in masks]
    maps[1][0, :] = 2.0  # a strong false alarm on the fully normal image
    assert aupro(masks, maps) < 1.0


def test_aupro_grid_approximates_exact() -> None:
    rng = np.random.default_rng(3)
    masks = _blob_images()
    maps = [rng.random(m.shape) + 0.6 * m for m in masks]
    exact = aupro(masks, maps)
    assert aupro(masks, maps, num_thresholds=5000) == pytest.approx(exact, abs=5e-3)
    fpr, pro = pro_curve(masks, maps, num_thresholds=50)
    assert fpr[0] == 0.0 and pro[0] == 0.0
    assert fpr[-1] == pytest.approx(1.0) and pro[-1] == pytest.approx(1.0)
    assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(pro) >= -1e-12)
    # Every grid point is one of the exact curve's points.
    efpr, epro = pro_curve(masks, maps)
    for x, y in zip(fpr, pro, strict=True):
        assert np.any(np.isclose(efpr, x, atol=1e-12) & np.isclose(epro, y, atol=1e-12))


def test_aupro_rejects_bad_input() -> None:
    masks = _blob_images()
    maps = [m.astype(float) for m in masks]
    with pytest.raises(ValueError, match="no ground-truth defect region"):
        aupro([masks[1]], [maps[1]])
    with pytest.raises(ValueError, match="no normal"):
        aupro([np.ones((2, 2), bool)], [np.ones((2, 2))])
    with pytest.raises(ValueError, match="fpr_limit"):
        aupro(masks, maps, fpr_limit=0.0)
    with pytest.raises(ValueError, match="num_thresholds"):
        aupro(masks, maps, num_thresholds=1)
    with pytest.raises(ValueError, match="empty"):
        aupro([], [])
    with pytest.raises(ValueError, match="2 masks but 1"):
        aupro(masks, maps[:1])


# --------------------------------------------------------------------------- fixed threshold


def test_threshold_metrics_hand_computed() -> None:
    labels = [0, 0, 0, 0, 1, 1, 1]
    scores = [0.1, 0.4, 0.5, 0.7, 0.5, 0.9, 0.2]
    m = threshold_metrics(labels, scores, tau=0.5)  # score == tau is flagged
    assert (m.tp, m.fp, m.tn, m.fn) == (2, 2, 2, 1)
    assert m.precision == pytest.approx(0.5, abs=1e-15)
    assert m.recall == pytest.approx(2 / 3, abs=1e-15)
    assert m.f1 == pytest.approx(4 / 7, abs=1e-15)
    assert m.false_alarm_rate == pytest.approx(0.5, abs=1e-15)
    assert m.balanced_accuracy == pytest.approx(7 / 12, abs=1e-15)
    assert (m.n_normal, m.n_anomalous) == (4, 3)
    assert m.tau == 0.5
    assert m.as_dict()["tp"] == 2


def test_threshold_metrics_undefined_rates_are_zero() -> None:
    m = threshold_metrics([0, 1, 1], [0.1, 0.2, 0.3], tau=10.0)  # nothing flagged
    assert m == ThresholdMetrics(
        tau=10.0,
        balanced_accuracy=0.5,
        precision=0.0,
        recall=0.0,
        f1=0.0,
        false_alarm_rate=0.0,
        tp=0,
        fp=0,
        tn=1,
        fn=2,
    )
    normal_only = threshold_metrics([False, False, False, False], [0.1, 0.2, 0.6, 0.9], tau=0.5)
    assert normal_only.false_alarm_rate == 0.5
    assert normal_only.balanced_accuracy == 0.5  # TNR alone
    assert normal_only.recall == 0.0 and normal_only.precision == 0.0 and normal_only.f1 == 0.0


def test_threshold_metrics_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="no samples"):
        threshold_metrics([], [], 0.5)
    with pytest.raises(ValueError, match="NaN"):
        threshold_metrics([0, 1], [0.1, 0.2], float("nan"))
    with pytest.raises(ValueError, match="2 labels but 1 scores"):
        threshold_metrics([0, 1], [0.1], 0.5)


# --------------------------------------------------------------------------- histogram


def _assert_png(path: Path) -> None:
    assert path.stat().st_size > 0
    with Image.open(path) as img:
        assert img.format == "PNG"
        assert img.size[0] > 0 and img.size[1] > 0
        img.verify()
    leftovers = [p.name for p in path.parent.iterdir() if p.name.endswith(".tmp")]
    assert leftovers == []


def test_score_histogram_writes_png(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    out = tmp_path / "figs" / "hist.png"
    score_histogram(
        out,
        train_scores=rng.normal(1.0, 0.1, 200),
        normal_test_scores=rng.normal(1.05, 0.12, 40).tolist(),
        anomalous_test_scores=rng.normal(1.6, 0.3, 60),
        tau=1.3,
        s_max=1.5,
        title="bottle",
    )
    _assert_png(out)
    # Overwriting an existing figure goes through the same atomic replace.
    score_histogram(out, [1.0, 1.1], [], [2.0], tau=1.5, s_max=1.8, title="again")
    _assert_png(out)


def test_score_histogram_shades_the_band_only_when_it_exists() -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from eagle_iad.eval.plots import _draw

    def legend(tau: float, s_max: float) -> list[str]:
        fig = Figure()
        FigureCanvasAgg(fig)
        _draw(fig, [np.array([1.0, 1.2]), np.array([]), np.array([2.0])], tau, s_max, "t")
        return [text.get_text() for text in fig.axes[0].get_legend().get_texts()]

    assert "low-confidence band" in legend(tau=1.3, s_max=1.5)
    assert "low-confidence band" not in legend(tau=1.5, s_max=1.3)  # tau >= s_max: the band is empty
    assert "low-confidence band" not in legend(tau=1.5, s_max=1.5)


def test_score_histogram_handles_empty_groups(tmp_path: Path) -> None:
    out = tmp_path / "empty.png"
    score_histogram(out, [], [0.2, 0.3, 0.3], [], tau=0.25, s_max=0.4, title="only normal test")
    _assert_png(out)
    nothing = tmp_path / "nothing.png"
    score_histogram(nothing, [], [], [], tau=0.25, s_max=0.25, title="no scores")
    _assert_png(nothing)


def test_score_histogram_rejects_non_finite(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="finite"):
        score_histogram(tmp_path / "x.png", [float("inf")], [], [], tau=0.1, s_max=0.2, title="t")
    assert list(tmp_path.iterdir()) == []
