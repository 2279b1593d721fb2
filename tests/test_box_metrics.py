"""Box and map quality measures against values worked out by hand on hand-made masks and boxes."""

from __future__ import annotations

import numpy as np
import pytest

from eagle_iad.eval.box_metrics import (
    ImageBoxResult,
    best_box_iou,
    box_area_ratio,
    box_iou,
    boxes_touch_defect,
    evaluate_image_boxes,
    mask_components,
    points_at_defect,
    summarise_boxes,
    union_area,
)
from eagle_iad.tgps.regions import Box


def box(x0: int, y0: int, x1: int, y1: int) -> Box:
    return Box(x0=x0, y0=y0, x1=x1, y1=y1, peak=1.0, area=(x1 - x0) * (y1 - y0))


def two_defects() -> np.ndarray:
    """10 x 12 mask: a 2 x 3 block (rows 1-2, cols 1-3) and a 3-pixel diagonal (rows 6-8, cols 8-10)."""
    mask = np.zeros((10, 12), dtype=np.uint8)
    mask[1:3, 1:4] = 255  # 6 pixels, bbox (1, 1, 4, 3)
    for r, c in ((6, 8), (7, 9), (8, 10)):  # 3 pixels, one 8-connected component, bbox (8, 6, 11, 9)
        mask[r, c] = 255
    return mask


def test_components_are_eight_connected_bounding_boxes() -> None:
    assert mask_components(two_defects()) == [(1, 1, 4, 3), (8, 6, 11, 9)]
    assert mask_components(np.zeros((4, 4), dtype=bool)) == []


def test_box_iou_exact_and_disjoint() -> None:
    assert box_iou((0, 0, 4, 3), (1, 1, 4, 3)) == 0.5  # 6 / 12
    assert box_iou((8, 6, 12, 10), (8, 6, 11, 9)) == 9 / 16
    assert box_iou((0, 0, 2, 2), (2, 0, 4, 2)) == 0.0  # sharing an edge is no overlap (exclusive ends)
    assert box_iou((0, 0, 2, 2), (0, 0, 2, 2)) == 1.0


def test_best_iou_over_boxes_and_components() -> None:
    mask = two_defects()
    # (0,0,4,3) vs block: 0.5; (8,6,12,10) vs diagonal: 9/16 -- the best pair wins.
    assert best_box_iou([box(0, 0, 4, 3), box(8, 6, 12, 10)], mask) == 9 / 16
    assert best_box_iou([box(0, 0, 4, 3)], mask) == 0.5
    assert best_box_iou([], mask) == 0.0
    assert best_box_iou([box(0, 0, 4, 3)], np.zeros((10, 12), dtype=bool)) == 0.0
    # One box around both defects scores against each component alone: bbox (1,1,11,9) = 80 px,
    # block 6 px inside -> 6/80, diagonal bbox 9 px inside -> 9/80.
    assert best_box_iou([box(1, 1, 11, 9)], mask) == 9 / 80


def test_box_at_the_border_is_clipped_to_the_image() -> None:
    mask = two_defects()
    # (10,8,15,13) clips to (10,8,12,10): 4 px; against the diagonal bbox (8,6,11,9): 1 px in common,
    # union 4 + 9 - 1 = 12.
    border = box(10, 8, 15, 13)
    assert best_box_iou([border], mask) == 1 / 12
    assert union_area([border], (10, 12)) == 4
    assert boxes_touch_defect([border], mask)  # holds pixel (row 8, col 10)
    corner = np.zeros((10, 12), dtype=bool)
    corner[9, 11] = True
    assert best_box_iou([box(11, 9, 12, 10)], corner) == 1.0
    assert box_area_ratio([box(11, 9, 12, 10)], corner) == 1.0
    assert union_area([box(-3, -3, 0, 5)], (10, 12)) == 0  # wholly outside


def test_union_area_counts_overlaps_once() -> None:
    boxes = [box(0, 0, 4, 3), box(8, 6, 12, 10), box(2, 0, 6, 2)]  # 12 + 16 + 8 - 4 (overlap of 1st and 3rd)
    assert union_area(boxes, (10, 12)) == 32
    assert box_area_ratio(boxes, two_defects()) == 32 / 9
    assert box_area_ratio([], two_defects()) is None
    assert box_area_ratio(boxes, np.zeros((10, 12), dtype=bool)) is None


def test_touch_needs_a_defect_pixel_inside_a_box() -> None:
    mask = two_defects()
    assert boxes_touch_defect([box(5, 5, 7, 6), box(0, 0, 2, 2)], mask)  # second box holds (1, 1)
    assert not boxes_touch_defect([box(5, 5, 7, 6)], mask)
    assert not boxes_touch_defect([box(9, 6, 11, 7)], mask)  # inside the diagonal's bbox, no defect pixel
    assert not boxes_touch_defect([], mask)


def test_pointing_uses_the_first_maximum() -> None:
    mask = two_defects()
    amap = np.zeros((10, 12))
    amap[7, 9] = 3.0
    assert points_at_defect(amap, mask)
    amap[0, 0] = 5.0
    assert not points_at_defect(amap, mask)
    tie = np.zeros((10, 12))
    tie[0, 5] = tie[1, 1] = 1.0  # row-major: (0, 5) comes first and is not a defect pixel
    assert not points_at_defect(tie, mask)
    with pytest.raises(ValueError, match=r"shape \(10, 11\) but its mask has shape \(10, 12\)"):
        points_at_defect(np.zeros((10, 11)), mask)


def test_evaluate_image_and_summary_exact() -> None:
    mask = two_defects()
    hot_diagonal = np.zeros((10, 12))
    hot_diagonal[8, 10] = 1.0
    cold = np.zeros((10, 12))
    cold[0, 0] = 1.0
    r1 = evaluate_image_boxes(hot_diagonal, mask, [box(0, 0, 4, 3), box(8, 6, 12, 10)])
    assert r1 == ImageBoxResult(pointed=True, best_iou=9 / 16, area_ratio=28 / 9, touches=True, n_boxes=2)
    r2 = evaluate_image_boxes(cold, mask, [])  # a missed defect: no boxes
    assert r2 == ImageBoxResult(pointed=False, best_iou=0.0, area_ratio=None, touches=False, n_boxes=0)
    corner = np.zeros((10, 12), dtype=bool)
    corner[9, 11] = True
    hot_corner = np.zeros((10, 12))
    hot_corner[9, 11] = 2.0
    r3 = evaluate_image_boxes(hot_corner, corner, [box(11, 9, 12, 10)])
    assert r3 == ImageBoxResult(pointed=True, best_iou=1.0, area_ratio=1.0, touches=True, n_boxes=1)

    summary = summarise_boxes([r1, r2, r3], [0, 3, 1, 0]).to_dict()
    assert summary == {
        "n_anomalous_with_mask": 3,
        "pointing_accuracy": 2 / 3,
        "mean_best_iou": pytest.approx((9 / 16 + 0.0 + 1.0) / 3, abs=1e-15),
        "n_anomalous_with_boxes": 2,
        "median_area_ratio": pytest.approx((28 / 9 + 1.0) / 2, abs=1e-15),
        "touch_rate": 2 / 3,
        "n_normal": 4,
        "normal_boxes": 4,
        "normal_images_with_boxes": 2,
    }


def test_summary_without_masks_or_images() -> None:
    summary = summarise_boxes([], []).to_dict()
    assert summary == {
        "n_anomalous_with_mask": 0,
        "pointing_accuracy": None,
        "mean_best_iou": None,
        "n_anomalous_with_boxes": 0,
        "median_area_ratio": None,
        "touch_rate": None,
        "n_normal": 0,
        "normal_boxes": 0,
        "normal_images_with_boxes": 0,
    }


def test_empty_mask_is_refused_per_image() -> None:
    with pytest.raises(ValueError, match="mask has no defect pixel"):
        evaluate_image_boxes(np.zeros((4, 4)), np.zeros((4, 4), dtype=bool), [])
