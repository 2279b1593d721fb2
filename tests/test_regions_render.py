"""TGPS visual prompt: anomaly map → boxes (regions.py) → pictures (render.py), docs/METHOD.md §2."""

from __future__ import annotations

import json
import math
import os
import stat
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from eagle_iad.errors import ConfigError
from eagle_iad.images import Geometry
from eagle_iad.tgps.regions import Box, binary_mask, extract_regions, merge_boxes
from eagle_iad.tgps.render import (
    RENDER_STYLES,
    heatmap_overlay,
    label_boxes,
    line_width,
    render,
    save_png,
)

RED = (255, 0, 0)


def _rect_map(shape: tuple[int, int], *rects: tuple[int, int, int, int, float]) -> np.ndarray:
    """Zero map with rectangles ``(x0, y0, x1, y1, value)`` (x1/y1 exclusive)."""
    out = np.zeros(shape, dtype=np.float32)
    for x0, y0, x1, y1, value in rects:
        out[y0:y1, x0:x1] = value
    return out


def _as_tuple(box: Box) -> tuple[int, int, int, int]:
    return (box.x0, box.y0, box.x1, box.y1)


def _random_rgb(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(height, width, 3), dtype=np.uint8)


# --------------------------------------------------------------------------------------------
# regions


def test_rectangular_blob_gives_its_exact_box() -> None:
    amap = _rect_map((100, 200), (50, 20, 90, 40, 3.5))
    boxes = extract_regions(amap)
    assert boxes == [Box(x0=50, y0=20, x1=90, y1=40, peak=1.0, area=40 * 20, score=3.5)]


def test_gaussian_blob_box_is_the_two_thirds_level_set() -> None:
    # exp(-r^2 / (2 s^2)) >= 2/3  <=>  r <= s * sqrt(2 ln 1.5) = 7.20 px for s = 8: a radius-7 disc.
    height, width, cx, cy, sigma = 120, 160, 70, 50, 8.0
    yy, xx = np.mgrid[0:height, 0:width]
    amap = 5.0 * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * sigma**2))
    (box,) = extract_regions(amap)
    assert _as_tuple(box) == (cx - 7, cy - 7, cx + 8, cy + 8)
    assert box.peak == pytest.approx(1.0)
    assert box.area == int(((xx - cx) ** 2 + (yy - cy) ** 2 <= 2 * sigma**2 * math.log(1.5)).sum())


def test_two_nearby_blobs_merge_far_ones_do_not() -> None:
    # 400x500: 2% of the diagonal is 12.8 px, regions need > 200 px. A and B are 5 px apart
    # (no overlap, IoU 0) with centres 10 px apart, so they merge; C is far away.
    amap = _rect_map(
        (400, 500),
        (100, 100, 105, 160, 1.0),
        (110, 100, 115, 160, 0.9),
        (300, 100, 305, 160, 0.8),
    )
    boxes = extract_regions(amap)
    assert [_as_tuple(b) for b in boxes] == [(100, 100, 115, 160), (300, 100, 305, 160)]
    assert boxes[0].peak == pytest.approx(1.0)
    assert boxes[0].area == 600
    assert boxes[1].peak == pytest.approx(0.8)
    # Moving B 10 px further (centres 20 px apart) keeps them separate.
    amap = _rect_map((400, 500), (100, 100, 105, 160, 1.0), (120, 100, 125, 160, 0.9))
    assert [_as_tuple(b) for b in extract_regions(amap)] == [(100, 100, 105, 160), (120, 100, 125, 160)]


def _gamma_shape(shape: tuple[int, int]) -> np.ndarray:
    """A Γ-shaped region (top bar + right bar) with bounding box (50, 50, 100, 100)."""
    amap = np.zeros(shape, dtype=np.float32)
    amap[50:55, 50:100] = 1.0
    amap[50:100, 95:100] = 1.0
    return amap


def test_separate_regions_with_overlapping_boxes_merge_by_iou() -> None:
    # 200x200: centre threshold 5.66 px. B's box sits inside A's box: IoU = 960/2500 = 0.384 > 0.3,
    # centres 10 px apart, so only the IoU rule can merge them.
    amap = _gamma_shape((200, 200))
    amap[60:92, 50:80] = 0.9
    boxes = extract_regions(amap)
    assert len(boxes) == 1
    assert _as_tuple(boxes[0]) == (50, 50, 100, 100)
    assert boxes[0].peak == pytest.approx(1.0)
    assert boxes[0].area == int((amap > 0).sum())


def test_low_iou_and_distant_centres_stay_separate() -> None:
    amap = _gamma_shape((200, 200))
    amap[60:75, 50:70] = 0.9  # IoU 300/2500 = 0.12, centres 16.8 px apart
    boxes = extract_regions(amap)
    assert [_as_tuple(b) for b in boxes] == [(50, 50, 100, 100), (50, 60, 70, 75)]


def test_merge_repeats_until_stable() -> None:
    # A absorbs B (IoU 0.4); only the grown A overlaps C enough (IoU 0.33), so a second pass is needed.
    a = Box(0, 0, 10, 10, peak=1.0, area=100)
    c = Box(15, 0, 30, 10, peak=0.9, area=150)
    b = Box(0, 0, 25, 10, peak=0.8, area=250)
    merged = merge_boxes([b, c, a], image_shape=(100, 100))
    assert merged == [Box(0, 0, 30, 10, peak=1.0, area=500)]


def test_top_k_keeps_highest_peaks_sorted() -> None:
    peaks = [0.7, 1.0, 0.8, 0.95, 0.9]
    rects = [(20 + 70 * i, 40, 40 + 70 * i, 60, p) for i, p in enumerate(peaks)]
    amap = _rect_map((100, 400), *rects)
    boxes = extract_regions(amap)
    assert [b.peak for b in boxes] == pytest.approx([1.0, 0.95, 0.9])
    assert [b.x0 for b in boxes] == [90, 230, 300]
    all_boxes = extract_regions(amap, top_k=5)
    assert [b.peak for b in all_boxes] == pytest.approx([1.0, 0.95, 0.9, 0.8, 0.7])


def test_region_below_area_threshold_is_dropped() -> None:
    # 100x100: regions must be larger than 0.1% = 10 px (strictly).
    amap = _rect_map(
        (100, 100),
        (10, 10, 13, 13, 1.0),  # 9 px: dropped
        (40, 10, 42, 15, 1.0),  # exactly 10 px: dropped (strict)
        (70, 70, 74, 73, 0.9),  # 12 px: kept
    )
    boxes = extract_regions(amap)
    assert [_as_tuple(b) for b in boxes] == [(70, 70, 74, 73)]
    assert boxes[0].area == 12
    mask = binary_mask(amap)
    assert int(mask.sum()) == 12
    assert mask[70:73, 70:74].all()


def test_median_fallback_when_most_pixels_are_high() -> None:
    # Everything is >= 2/3 of the max, so the relative threshold would box the whole image.
    amap = np.full((100, 100), 0.8, dtype=np.float32)
    amap[30:40, 60:75] = 1.0
    boxes = extract_regions(amap)
    assert [_as_tuple(b) for b in boxes] == [(60, 30, 75, 40)]


def test_median_fallback_on_a_gradient_keeps_the_upper_half() -> None:
    amap = np.tile(np.linspace(0.7, 1.0, 100, dtype=np.float64), (60, 1))
    boxes = extract_regions(amap)
    assert [_as_tuple(b) for b in boxes] == [(50, 0, 100, 60)]


@pytest.mark.parametrize(
    "amap",
    [
        np.zeros((50, 50)),
        np.full((50, 50), 0.7),
        np.full((50, 50), -1.0),
        -np.abs(np.random.default_rng(0).normal(size=(50, 50))) - 0.1,
    ],
    ids=["zero", "constant", "negative-constant", "all-negative"],
)
def test_map_without_localisation_gives_no_boxes(amap: np.ndarray) -> None:
    assert extract_regions(amap) == []
    assert not binary_mask(amap).any()


def test_ring_region_counts_its_hole_and_box_covers_it() -> None:
    amap = np.zeros((100, 100))
    amap[20:60, 20:60] = 1.0
    amap[30:50, 30:50] = 0.0
    (box,) = extract_regions(amap)
    assert _as_tuple(box) == (20, 20, 60, 60)
    assert box.area == 40 * 40
    assert int(binary_mask(amap).sum()) == 40 * 40 - 20 * 20
    assert int(binary_mask(amap, fill_holes=True).sum()) == 40 * 40


def test_diagonal_pixels_are_one_region() -> None:
    amap = np.zeros((100, 100))
    for i in range(30):
        amap[20 + i, 20 + i] = 1.0
    (box,) = extract_regions(amap)
    assert _as_tuple(box) == (20, 20, 50, 50)
    assert box.area == 30


def test_bad_maps_and_parameters_raise() -> None:
    bad = np.zeros((20, 20))
    bad[3, 3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        extract_regions(bad)
    with pytest.raises(ValueError, match="2-D"):
        extract_regions(np.zeros((4, 4, 3)))
    with pytest.raises(ValueError, match="top_k"):
        extract_regions(np.zeros((4, 4)), top_k=0)


def test_box_to_dict_is_json_ready() -> None:
    (box,) = extract_regions(_rect_map((50, 50), (5, 6, 20, 30, 2.0)))
    data = box.to_dict()
    expected = {"x0": 5, "y0": 6, "x1": 20, "y1": 30, "peak": 1.0, "area": 15 * 24, "score": 2.0, "patch_score": None}
    assert data == expected
    patches = _rect_map((50, 50), (5, 6, 20, 30, 2.0))
    patches[10, 10] = 3.5  # under the region: its largest patch score
    patches[40, 40] = 9.0  # outside it: not the region's
    (scored,) = extract_regions(_rect_map((50, 50), (5, 6, 20, 30, 2.0)), patch_values=patches)
    data = scored.to_dict()
    assert data["patch_score"] == 3.5
    assert all(type(v) in (int, float) for v in data.values())
    json.dumps(data)
    with pytest.raises(ValueError, match=r"patch values \(4, 4\) do not match the map \(50, 50\)"):
        extract_regions(_rect_map((50, 50), (5, 6, 20, 30, 2.0)), patch_values=np.zeros((4, 4)))


@pytest.mark.parametrize(("height", "width"), [(300, 400), (500, 375), (224, 224), (256, 640)])
@pytest.mark.parametrize("crop_rect", [(60, 120, 100, 150), (0, 180, 40, 224)])
def test_box_in_original_coordinates_after_geometry(
    height: int, width: int, crop_rect: tuple[int, int, int, int]
) -> None:
    geometry = Geometry.for_image(height, width, resize=256, crop=224)
    x0, y0, x1, y1 = crop_rect
    crop_map = np.zeros((224, 224), dtype=np.float32)
    crop_map[y0:y1, x0:x1] = 2.0
    original = geometry.map_to_original(crop_map)
    assert original.shape == (height, width)
    (box,) = extract_regions(original)
    expected = geometry.crop_box_to_original((x0, y0, x1, y1))
    assert np.abs(np.array(_as_tuple(box), dtype=float) - np.array(expected)).max() <= 2.0
    assert box.peak == pytest.approx(1.0)
    (ex0, ey0, ex1, ey1) = expected
    assert box.area == pytest.approx((ex1 - ex0) * (ey1 - ey0), rel=0.1)


# --------------------------------------------------------------------------------------------
# render


@pytest.mark.parametrize(
    ("height", "width", "expected"),
    [(100, 100, 2), (200, 300, 2), (600, 800, 3), (1000, 1200, 5), (2000, 1600, 8)],
)
def test_line_width_rule(height: int, width: int, expected: int) -> None:
    assert line_width(height, width) == expected


def _frame(shape: tuple[int, int], box: tuple[int, int, int, int], stroke: int) -> np.ndarray:
    """Expected frame: the ring between the box grown by ``stroke`` (clamped) and that shrunk back."""
    height, width = shape
    x0, y0, x1, y1 = box
    ox0, oy0, ox1, oy1 = (
        max(0, x0 - stroke),
        max(0, y0 - stroke),
        min(width, x1 + stroke),
        min(height, y1 + stroke),
    )
    ring = np.zeros(shape, dtype=bool)
    ring[oy0:oy1, ox0:ox1] = True
    ring[oy0 + stroke : oy1 - stroke, ox0 + stroke : ox1 - stroke] = False
    return ring


def test_box_style_paints_exactly_the_frame_and_keeps_input() -> None:
    rgb = _random_rgb(200, 300)
    before = rgb.copy()
    box = Box(50, 60, 100, 120, peak=1.0, area=3000)
    out = render(rgb, np.zeros((200, 300)), [box], "box")
    np.testing.assert_array_equal(rgb, before)
    assert out is not rgb
    ring = _frame((200, 300), (50, 60, 100, 120), stroke=2)
    assert (out[ring] == RED).all()
    np.testing.assert_array_equal(out[~ring], rgb[~ring])
    assert tuple(out[60, 48]) == RED  # on the left edge, just outside the box
    assert tuple(out[59, 75]) == RED  # on the top edge
    np.testing.assert_array_equal(out[90, 75], rgb[90, 75])  # inside: the defect stays visible
    np.testing.assert_array_equal(out[60, 50], rgb[60, 50])  # the box's own corner pixel
    np.testing.assert_array_equal(out[60, 47], rgb[60, 47])  # outside the frame


def test_box_style_default_and_stroke_on_large_image() -> None:
    rgb = np.full((1000, 1200, 3), 90, dtype=np.uint8)
    out = render(rgb, np.zeros((1000, 1200)), [Box(400, 300, 700, 600, 1.0, 1)])
    red_row = np.all(out[450] == RED, axis=1)
    assert int(red_row[:550].sum()) == 5  # left stroke: 5 px = 0.5% of 1000
    assert red_row[395:400].all() and not red_row[394] and not red_row[400]


def test_box_at_image_border_is_drawn_inside() -> None:
    rgb = _random_rgb(200, 300, seed=1)
    box = (0, 0, 50, 300 // 6)
    out = render(rgb, np.zeros((200, 300)), [Box(*box, peak=1.0, area=1)], "box")
    ring = _frame((200, 300), box, stroke=2)
    assert (out[ring] == RED).all()
    np.testing.assert_array_equal(out[~ring], rgb[~ring])
    assert tuple(out[0, 0]) == RED and tuple(out[10, 1]) == RED
    whole = render(rgb, np.zeros((200, 300)), [Box(0, 0, 300, 200, peak=1.0, area=1)], "box")
    assert tuple(whole[100, 0]) == RED and tuple(whole[100, 299]) == RED
    assert tuple(whole[0, 150]) == RED and tuple(whole[199, 150]) == RED


def test_no_boxes_leaves_image_unchanged() -> None:
    rgb = _random_rgb(64, 64)
    for style in ("box", "contour", "mask"):
        np.testing.assert_array_equal(render(rgb, np.zeros((64, 64)), [], style), rgb)


def _two_blob_case() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rgb = _random_rgb(120, 160, seed=2)
    amap = _rect_map((120, 160), (20, 20, 50, 40, 1.0), (100, 70, 140, 100, 0.9))
    strong = np.zeros((120, 160), dtype=bool)
    strong[20:40, 20:50] = True
    weak = np.zeros((120, 160), dtype=bool)
    weak[70:100, 100:140] = True
    return rgb, amap, strong, weak


def test_mask_style_tints_only_region_pixels() -> None:
    rgb, amap, strong, weak = _two_blob_case()
    before = rgb.copy()
    out = render(rgb, amap, extract_regions(amap), "mask")
    np.testing.assert_array_equal(rgb, before)
    region = strong | weak
    expected = np.rint(0.5 * rgb[region].astype(float) + 0.5 * np.array(RED)).astype(np.uint8)
    np.testing.assert_array_equal(out[region], expected)
    np.testing.assert_array_equal(out[~region], rgb[~region])


def test_mask_and_contour_follow_the_selected_boxes() -> None:
    rgb, amap, _strong, weak = _two_blob_case()
    boxes = extract_regions(amap, top_k=1)
    for style in ("mask", "contour"):
        out = render(rgb, amap, boxes, style)
        changed = np.any(out != rgb, axis=2)
        assert changed.any()
        grown_weak = ndimage.binary_dilation(weak, iterations=5)
        assert not changed[grown_weak].any(), style


def test_contour_style_outlines_just_outside_the_region() -> None:
    rgb, amap, strong, weak = _two_blob_case()
    out = render(rgb, amap, extract_regions(amap), "contour")
    region = strong | weak
    changed = np.any(out != rgb, axis=2)
    ring = ndimage.binary_dilation(region, structure=np.ones((3, 3), dtype=bool), iterations=2) & ~region
    assert (out[ring] == RED).all()
    assert not changed[~ring].any()
    assert tuple(out[19, 30]) == RED and tuple(out[18, 30]) == RED  # 2 px above the strong blob
    np.testing.assert_array_equal(out[17, 30], rgb[17, 30])
    np.testing.assert_array_equal(out[30, 35], rgb[30, 35])  # region interior stays visible


def test_heatmap_blends_jet_over_the_image() -> None:
    rgb = np.full((40, 50, 3), 200, dtype=np.uint8)
    before = rgb.copy()
    amap = np.zeros((40, 50))
    amap[10:20, 10:20] = 4.0
    out = render(rgb, amap, [], "heatmap")
    np.testing.assert_array_equal(rgb, before)
    # jet(1.0) = (0.5, 0, 0); jet(0.0) = (0, 0, 0.5).
    np.testing.assert_allclose(out[15, 15], [164, 100, 100], atol=1)
    np.testing.assert_allclose(out[30, 40], [100, 100, 164], atol=1)
    np.testing.assert_array_equal(heatmap_overlay(rgb, amap, alpha=0.5), out)
    np.testing.assert_array_equal(heatmap_overlay(rgb, amap, alpha=0.0), rgb)


def test_heatmap_of_constant_map_is_uniform() -> None:
    out = heatmap_overlay(np.zeros((10, 10, 3), dtype=np.uint8), np.full((10, 10), 3.0))
    assert (out == out[0, 0]).all()


def test_unknown_style_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as info:
        render(_random_rgb(10, 10), np.zeros((10, 10)), [], "arrows")  # type: ignore[arg-type]
    message = str(info.value)
    assert "arrows" in message
    for style in RENDER_STYLES:
        assert style in message
    assert RENDER_STYLES == ("box", "contour", "heatmap", "mask")


def test_render_rejects_mismatched_inputs() -> None:
    with pytest.raises(ValueError, match="map_to_original"):
        render(_random_rgb(10, 10), np.zeros((224, 224)), [], "box")
    with pytest.raises(ValueError, match="uint8"):
        render(np.zeros((10, 10, 3)), np.zeros((10, 10)), [], "box")


def test_save_png_is_atomic_and_round_trips(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "prompt.png"
    first = _random_rgb(30, 40, seed=3)
    save_png(target, first)
    second = _random_rgb(30, 40, seed=4)
    save_png(str(target), second)
    np.testing.assert_array_equal(np.asarray(Image.open(target).convert("RGB")), second)
    assert [p.name for p in target.parent.iterdir()] == ["prompt.png"]


def test_save_png_writes_a_picture_others_can_read(tmp_path: Path) -> None:
    # mkstemp's owner-only 0600 stayed on heatmaps and boxed pictures while every other output is 0644: a QA
    # colleague, a web server or a station sink running as another user could not open them
    old = os.umask(0o022)
    try:
        save_png(tmp_path / "x_heatmap.png", _random_rgb(20, 20, seed=1))
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "x_heatmap.png").stat().st_mode) == 0o644


def test_save_png_failure_leaves_no_temp_file(tmp_path: Path) -> None:
    with pytest.raises((TypeError, ValueError)):
        save_png(tmp_path / "bad.png", np.zeros((4, 4, 7), dtype=np.complex64))
    assert list(tmp_path.iterdir()) == []


def test_tags_of_neighbouring_boxes_never_cover_one_another() -> None:
    from eagle_iad.tgps.render import _overlaps, box_tag, tag_rectangles

    # tire good/020: #2's top-left corner lies just right of #1's and a little higher, so both tags
    # went above their corners and #2's was drawn over #1's
    boxes = [Box(125, 175, 166, 222, peak=1.0, area=1, score=81.5, patch_score=91.44),
             Box(162, 170, 181, 189, peak=0.9, area=1, score=75.5, patch_score=77.96),
             Box(180, 204, 206, 221, peak=0.8, area=1, score=74.6, patch_score=79.98),
             Box(150, 5, 170, 20, peak=0.7, area=1, score=70.0, patch_score=75.0)]  # fmt: skip
    sizes = [(60, 16)] * len(boxes)
    rects = tag_rectangles(boxes, sizes, (400, 300))
    for i, a in enumerate(rects):
        assert a[0] >= 0 and a[2] <= 300 and a[1] >= 0 and a[3] <= 400
        for b in rects[i + 1 :]:
            assert not _overlaps(a, b), (a, b)
    # the first tag keeps its place above its box's top-left corner
    assert rects[0][:2] == (125, 175 - 16 - line_width(400, 300))
    assert box_tag(1, boxes[0]) == "#1 91.44" and box_tag(2, replace(boxes[1], patch_score=None), 1.1) == "#2 83.05"
    rgb = np.zeros((400, 300, 3), dtype=np.uint8)
    drawn = label_boxes(rgb, boxes[:2])
    assert drawn.shape == rgb.shape


def test_legend_labels_keep_apart_in_rows() -> None:
    from eagle_iad.tgps.render import label_rows

    ends = [(8.0, 40.0), (250.0, 292.0)]  # the end labels, "72.75" and "175.18+"
    # the threshold alone fits between the ends; a cut 20 px left of it would cover it, so it goes a row lower;
    # a third label clear of the first row's two goes back up; one at the hot end slides inside the bar
    placed = label_rows([(200.0, 80.0), (180.0, 60.0), (60.0, 30.0), (299.0, 50.0)], ends, (8.0, 292.0), gap=5.0)
    assert placed == [(160.0, 0), (150.0, 1), (45.0, 0), (242.0, 1)]
    spans = [[*ends]] + [[] for _ in range(2)]
    for (left, row), (_centre, width) in zip(placed, [(200.0, 80.0), (180.0, 60.0), (60.0, 30.0), (299.0, 50.0)],
                                             strict=True):  # fmt: skip
        assert all(left + width + 5.0 <= a or b + 5.0 <= left for a, b in spans[row]), (left, row)
        spans[row].append((left, left + width))


def test_a_legend_mark_that_would_cover_another_is_printed_a_row_lower() -> None:
    """Only the new mark's tick and label differ, the label below the first row; the strip grows by one line."""
    from eagle_iad.tgps.render import with_legend

    picture = np.full((40, 260, 3), 200, dtype=np.uint8)
    alone = with_legend(picture, (0.0, 3.0), {"threshold": 2.0}, "map")
    apart = with_legend(picture, (0.0, 3.0), {"threshold": 2.0, "boxes": 1.0}, "map")
    close = with_legend(picture, (0.0, 3.0), {"threshold": 2.0, "boxes": 1.8}, "map")
    assert apart.shape == alone.shape  # room in the first row: the strip keeps its height
    assert close.shape[0] > alone.shape[0] and close.shape[1:] == alone.shape[1:]
    grown = close.shape[0] - alone.shape[0]  # one text line
    # the strip is white: pad the one-mark picture to the same height and look at what the second mark drew
    padded = np.concatenate([alone, np.full((grown, 260, 3), 255, dtype=np.uint8)])
    changed = np.any(close != padded, axis=2)
    bar_top, label_y = 40 + 10 + 8, 40 + 10 + 8 + 10 + 2  # the bar below the title line; its labels' first row
    tick = 8 + math.floor(1.8 / 3.0 * (260 - 16 - 1) + 0.5)
    ys, xs = np.nonzero(changed[:label_y])
    assert ys.min() >= bar_top - 4 and set(xs) <= {tick - 1, tick, tick + 1}  # its tick: a 2 px line at its x
    assert not changed[label_y : label_y + grown].any()  # nothing in the first row of labels was covered
    ys, xs = np.nonzero(changed[label_y + grown :])
    assert ys.size > 0 and abs(float(xs.mean()) - tick) < 8  # "boxes 1.80" in the second row, under its tick
