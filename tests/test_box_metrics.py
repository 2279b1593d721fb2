"""Box and map quality measures against values worked out by hand on hand-made masks and boxes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from expert_fakes import FAKE_CONFIG, FakeExtractor, noise_pngs
from matplotlib.backends.backend_agg import FigureCanvasAgg
from PIL import Image

from eagle_iad.data import Sample
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
from eagle_iad.eval.expert_eval import evaluate_expert, grid_rows, pool_boxes
from eagle_iad.eval.plots import BoxPanel, boxes_grid, grid_figure
from eagle_iad.eval.report import box_table
from eagle_iad.expert import fit
from eagle_iad.tgps.regions import Box
from eagle_iad.verdict import make_verdict


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


# --------------------------------------------------------------------------- eval-expert end to end


def _blob_sample(directory: Path, index: int, seed: int, defect_type: str, with_mask: bool = True) -> Sample:
    """A noise image with a bright 16 x 12 block near its centre and the block's 0/255 mask."""
    rng = np.random.default_rng(seed)
    rgb = rng.integers(0, 256, (80, 96, 3), dtype=np.uint8)
    mask = np.zeros((80, 96), dtype=np.uint8)
    y0, x0 = 30 + index, 36 + 2 * index
    rgb[y0 : y0 + 12, x0 : x0 + 16] = 255
    mask[y0 : y0 + 12, x0 : x0 + 16] = 255
    directory.mkdir(parents=True, exist_ok=True)
    image = directory / f"{defect_type}_{index}.png"
    Image.fromarray(rgb).save(image)
    mask_path = None
    if with_mask:
        mask_path = directory / f"{defect_type}_{index}_mask.png"
        Image.fromarray(mask).save(mask_path)
    return Sample(image, 1, "cat", "test", defect_type, mask_path)


def test_evaluate_expert_writes_box_metrics_grid_and_report(tmp_path: Path) -> None:
    expert = fit(noise_pngs(tmp_path / "train", 6, seed=1), "cat", FAKE_CONFIG, extractor=FakeExtractor())
    normals = [Sample(p, 0, "cat", "test") for p in noise_pngs(tmp_path / "good", 4, seed=2)]
    anomalous = [_blob_sample(tmp_path / "bad", i, 10 + i, "spot" if i % 2 else "cut") for i in range(5)]
    anomalous.append(_blob_sample(tmp_path / "bad", 9, 30, "unlabelled", with_mask=False))
    samples = normals + anomalous
    out = tmp_path / "eval"
    evaluation = evaluate_expert(expert, samples, out)

    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["boxes"]) == {
        "n_anomalous_with_mask", "pointing_accuracy", "mean_best_iou", "n_anomalous_with_boxes",
        "median_area_ratio", "touch_rate", "n_normal", "normal_boxes", "normal_images_with_boxes",
    }  # fmt: skip
    assert "box_results" not in metrics and "per_image" not in metrics

    # Independently: the product's verdict boxes for every image, measured one by one.
    expected_results = []
    normal_counts = []
    rows = [json.loads(line) for line in (out / "scores.jsonl").read_text().splitlines()]
    # Same batches as the evaluation (fewer than its 32 per call), so the maps are bit-identical.
    results = expert.inspect_many([s.path for s in samples])
    for sample, row, result in zip(samples, rows, results, strict=True):
        verdict = make_verdict(expert, str(sample.path), result)
        assert row["boxes"] == [b.to_dict() for b in verdict.boxes]
        if sample.label == 0:
            normal_counts.append(len(verdict.boxes))
            assert "box_metrics" not in row
        elif sample.mask_path is not None:
            mask = np.asarray(Image.open(sample.mask_path)) > 127
            expected_results.append(evaluate_image_boxes(result.anomaly_map, mask, verdict.boxes))
            assert row["box_metrics"] == expected_results[-1].to_dict()
        else:
            assert "box_metrics" not in row and row["mask"] is None
    assert metrics["boxes"] == summarise_boxes(expected_results, normal_counts).to_dict()
    assert metrics["boxes"]["n_anomalous_with_mask"] == 5
    assert metrics["boxes"]["n_normal"] == 4
    assert pool_boxes([evaluation, evaluation]).normal_boxes == 2 * sum(normal_counts)

    with Image.open(out / "boxes_grid.png") as im:
        im.load()
        assert im.format == "PNG" and im.size[0] >= 400
    report = (out / "report.md").read_text()
    assert "| pointing accuracy (map peak on the defect) |" in report
    assert "| image AUROC |" in report and "| AUPRO (FPR <= 0.3) |" in report
    assert "[boxes_grid.png](boxes_grid.png)" in report and "[histogram.png](histogram.png)" in report
    assert f"| false alarms at tau | {metrics['at_tau']['fp']} of 4 normal |" in report


def test_eval_expert_tells_unrecognised_images_from_those_flagged_by_score(tmp_path: Path) -> None:
    """A black frame is unrecognised (all of it beyond the noise it was fitted on): flagged without boxes.

    The report must count it apart, defects and normals separately, and its box sentence must say why
    the unrecognised and the missed defects have no boxes (they were not missed by the boxes).
    """
    expert = fit(noise_pngs(tmp_path / "train", 10, seed=1), "cat", FAKE_CONFIG, extractor=FakeExtractor())
    assert expert.model.coverage is not None  # ten images: the fit keeps its coverage
    black = tmp_path / "black"
    black.mkdir()
    Image.fromarray(np.zeros((80, 96, 3), dtype=np.uint8)).save(black / "frame.png")
    normals = [Sample(p, 0, "cat", "test") for p in noise_pngs(tmp_path / "good", 3, seed=2)]
    normals.append(Sample(black / "frame.png", 0, "cat", "test"))
    anomalous = [_blob_sample(tmp_path / "bad", i, 10 + i, "spot") for i in range(3)]
    anomalous.append(Sample(black / "frame.png", 1, "cat", "test", "blocked", None))
    out = tmp_path / "eval"
    evaluation = evaluate_expert(expert, normals + anomalous, out)

    rows = [json.loads(line) for line in (out / "scores.jsonl").read_text().splitlines()]
    unrecognised = [(r["label"], r["decision"], r["boxes"], r["foreign_share"]) for r in rows if r["unrecognised"]]
    assert unrecognised == [(0, "anomalous", [], 1.0), (1, "anomalous", [], 1.0)]
    assert all(r["unrecognised"] is False for r in rows if r["image"] != str(black / "frame.png"))
    metrics = json.loads((out / "metrics.json").read_text())
    assert (metrics["unrecognised_defects"], metrics["unrecognised_normals"]) == (1, 1)
    assert metrics["unrecognised_below_tau"] == 0
    assert (metrics["at_tau"]["tp"], metrics["at_tau"]["fn"], metrics["at_tau"]["fp"]) == (2, 2, 1)
    report = (out / "report.md").read_text()
    assert (
        "| flagged as unrecognised (not like the training images; no boxes) | 1 of 2 flagged anomalous, "
        "1 of 1 flagged normal |"
    ) in report
    assert evaluation.defects_with_boxes == 1
    assert (
        "1 of 4 anomalous images has boxes: the product boxes only the 1 flagged by score, not the 1 flagged as "
        "unrecognised nor the 2 below tau)"
    ) in report


def test_grid_and_report_claim_a_true_defect_only_where_masks_exist(tmp_path: Path) -> None:
    """elpv has no masks: the grid's title and report.md promised a green ground truth that was not drawn."""
    expert = fit(noise_pngs(tmp_path / "train", 6, seed=1), "cat", FAKE_CONFIG, extractor=FakeExtractor())
    normals = [Sample(p, 0, "cat", "test") for p in noise_pngs(tmp_path / "good", 2, seed=2)]
    unmasked = [_blob_sample(tmp_path / "bad", i, 10 + i, "spot", with_mask=False) for i in range(2)]
    masked = _blob_sample(tmp_path / "bad", 5, 15, "cut")
    cases = {
        "none": (unmasked, "cat: drawn boxes (red, by rank) (no ground-truth masks: no true defect drawn), grouped "
                 "by defect type", "Drawn boxes (red, numbered by rank) (no ground-truth masks: no true defect "
                 "drawn), grouped by defect type: [boxes_grid.png](boxes_grid.png)\n\n![boxes](boxes_grid.png)"),
        "some": ([*unmasked, masked], "cat: drawn boxes (red, by rank) and true defect (green) where masked, "
                 "grouped by defect type", "Drawn boxes (red, numbered by rank) and the true defect (green outline) "
                 "on the images with a mask, grouped by defect type: [boxes_grid.png](boxes_grid.png)\n\n"
                 "![boxes and ground truth](boxes_grid.png)"),
        "all": ([masked], "cat: drawn boxes (red, by rank) and true defect (green), grouped by defect type",
                "Drawn boxes (red, numbered by rank) and the true defect (green outline), grouped by defect type: "
                "[boxes_grid.png](boxes_grid.png)\n\n![boxes and ground truth](boxes_grid.png)"),
    }  # fmt: skip
    for name, (anomalous, title, report) in cases.items():
        out = tmp_path / name
        evaluate_expert(expert, normals + anomalous, out)
        with Image.open(out / "boxes_grid.png") as im:
            assert im.text["Description"] == title, name
        text = (out / "report.md").read_text()
        assert report in text, name
        if name == "none":
            assert "green" not in text and "ground truth" not in text


def test_eval_expert_without_coverage_says_unrecognised_is_not_judged(tmp_path: Path) -> None:
    expert = fit(noise_pngs(tmp_path / "train", 6, seed=1), "cat", FAKE_CONFIG, extractor=FakeExtractor())
    assert expert.model.coverage is None  # fewer than ten images
    samples = [Sample(p, 0, "cat", "test") for p in noise_pngs(tmp_path / "good", 2, seed=2)]
    samples.append(_blob_sample(tmp_path / "bad", 0, 10, "spot"))
    out = tmp_path / "eval"
    evaluate_expert(expert, samples, out)
    rows = [json.loads(line) for line in (out / "scores.jsonl").read_text().splitlines()]
    assert [r["unrecognised"] for r in rows] == [None, None, None]
    assert json.loads((out / "metrics.json").read_text())["unrecognised_defects"] is None
    assert (
        "| flagged as unrecognised (not like the training images; no boxes) | n/a (the model keeps no coverage: "
        "fitted on fewer than 10 images, or before the check) |"
    ) in (out / "report.md").read_text()


def test_grid_takes_masked_images_first_and_defect_types_in_turn() -> None:
    def row(name: str, defect: str, mask: bool, label: int = 1) -> dict[str, object]:
        return {"image": name, "label": label, "defect_type": defect, "mask": name + ".m" if mask else None}

    rows = [
        row("a/0", "cut", True), row("a/1", "cut", True), row("a/2", "cut", True), row("b/0", "hole", True),
        row("c/0", "crack", False), row("g/0", "good", False, label=0),
    ]  # fmt: skip
    # Chosen types in turn (b/0 makes it in before a/3 would), then grouped by type for the grid.
    assert [r["image"] for r in grid_rows(rows, limit=4)] == ["a/0", "a/1", "a/2", "b/0"]
    assert [r["image"] for r in grid_rows(rows, limit=12)] == ["a/0", "a/1", "a/2", "b/0", "c/0"]
    assert grid_rows([row("g/0", "good", False, label=0)]) == []


def test_boxes_grid_without_panels_still_writes_a_png(tmp_path: Path) -> None:
    boxes_grid(tmp_path / "grid.png", [], "empty")
    with Image.open(tmp_path / "grid.png") as im:
        im.load()
        assert im.format == "PNG"


@pytest.mark.parametrize(
    ("shape", "name"),
    [
        ((300, 300), "defective: images/cell0007.png"),  # elpv's square cells, where titles overlapped the row above
        ((300, 400), "cut/000.png"),  # tire: wider than tall
        ((400, 120), "contamination/a_very_long_file_name_without_any_space_in_it_at_all_0001.png"),  # tall, long
    ],
)
def test_grid_titles_stay_clear_of_every_image(shape: tuple[int, int], name: str) -> None:
    """Each title's drawn box (as matplotlib lays it out) meets no image cell, no other title, and stays inside."""
    rgb = np.zeros((*shape, 3), dtype=np.uint8)
    panels = [BoxPanel(rgb, None, [(2, 2, 20, 20)], f"{name}\nscore {140 + i:.4g}, normal") for i in range(10)]
    fig = grid_figure(panels, "mono: drawn boxes (red, by rank) and true defect (green), grouped by defect type")
    canvas = fig.canvas
    assert isinstance(canvas, FigureCanvasAgg)
    canvas.draw()
    renderer = canvas.get_renderer()
    cells = [ax.get_window_extent(renderer) for ax in fig.axes]
    titles = [ax.title.get_window_extent(renderer) for ax in fig.axes]
    heading = fig.texts[0].get_window_extent(renderer)
    page = fig.bbox
    assert len(cells) == 10
    for i, title in enumerate(titles):
        assert not any(title.overlaps(cell) for cell in cells), f"title {i} meets an image"
        assert not any(title.overlaps(other) for j, other in enumerate(titles) if j != i), f"title {i} meets another"
        assert not title.overlaps(heading)
        assert page.x0 <= title.x0 and title.x1 <= page.x1 and page.y0 <= title.y0 and title.y1 <= page.y1
        assert 0 <= title.y0 - cells[i].y1 < 10  # its own image sits right under it
    for cell in cells:
        assert not cell.overlaps(heading) and page.y0 <= cell.y0


def test_eval_report_box_table_per_class_and_pooled() -> None:
    def boxes(n: int, pointing: float | None, normals: int) -> dict[str, object]:
        return {"n_anomalous_with_mask": n, "pointing_accuracy": pointing, "mean_best_iou": None if n == 0 else 0.25,
                "n_anomalous_with_boxes": n, "median_area_ratio": None if n == 0 else 2.5, "touch_rate": pointing,
                "n_normal": normals, "normal_boxes": 1, "normal_images_with_boxes": 1}  # fmt: skip

    expert = {"tire": {"boxes": boxes(4, 0.75, 5)}, "cells": {"boxes": boxes(0, None, 3)}, "old": {}}
    head, rows = box_table(expert, boxes(4, 0.75, 8))
    assert head[0] == "class" and len(head) == len(rows[0])
    assert rows == [
        ["tire", "4", "0.750", "0.250", "2.500", "0.750", "1", "1 of 5"],
        ["cells", "0", "–", "–", "–", "–", "1", "1 of 3"],
        ["all classes", "4", "0.750", "0.250", "2.500", "0.750", "1", "1 of 8"],
    ]
    assert box_table({"tire": {"boxes": boxes(4, 0.75, 5)}}, boxes(4, 0.75, 5))[1] == [
        ["tire", "4", "0.750", "0.250", "2.500", "0.750", "1", "1 of 5"]
    ]
