"""Metrics per defect type (issue 29): each type against all normals, checked against scikit-learn.

The pure functions are checked on seeded scores with many ties (AUROC's hard case), the expert
evaluation end to end on synthetic blob images with the fake backbone (fast), and once on the tire
images, which skip without ``../shared`` as in a fresh clone.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from expert_fakes import FAKE_CONFIG, FakeExtractor, noise_pngs
from PIL import Image
from sklearn.metrics import roc_auc_score
from tire_data import TIRE, needs_tire

from eagle_iad.data import Sample, get_layout
from eagle_iad.eval.box_metrics import ImageBoxResult, summarise_boxes
from eagle_iad.eval.expert_eval import evaluate_expert, grid_rows, per_type_report
from eagle_iad.eval.mllm_metrics import compute_metrics, discrimination, per_type_discrimination
from eagle_iad.eval.per_type import PER_TYPE_VERSION, expert_per_type
from eagle_iad.eval.report import expert_per_type_table, per_type_table
from eagle_iad.expert import fit
from eagle_iad.naming import plural
from eagle_iad.tgps.answers import UNPARSABLE

TYPES = {"cut": 7, "hole": 4, "combined": 1}


def _rows(seed: int = 3) -> list[dict[str, Any]]:
    """Normals and three defect types with scores rounded to 1 decimal, so there are many ties."""
    rng = np.random.default_rng(seed)
    rows: list[dict[str, Any]] = [
        {"label": 0, "defect_type": "good", "score": round(float(rng.normal(1.0, 0.3)), 1)} for _ in range(9)
    ]
    for shift, (name, count) in enumerate(TYPES.items()):
        for i in range(count):
            row: dict[str, Any] = {
                "label": 1,
                "defect_type": name,
                "score": round(float(rng.normal(1.1 + shift * 0.3, 0.3)), 1),
            }
            if i % 2 == 0:  # every other image has a mask
                row["box_metrics"] = ImageBoxResult(
                    bool(i % 4 == 0), 0.1 * i, None if i == 0 else 1.5 + i, True, 1
                ).to_dict()
            rows.append(row)
    return rows


def test_expert_per_type_matches_sklearn_and_exact_counts() -> None:
    rows = _rows()
    tau = 1.2
    per_type = expert_per_type(rows, tau)
    normal = [r["score"] for r in rows if r["label"] == 0]
    assert per_type["version"] == PER_TYPE_VERSION
    assert per_type["n_normal"] == 9
    assert per_type["false_alarms"] == sum(s >= tau for s in normal)
    assert list(per_type["types"]) == sorted(TYPES)  # sorted by name, same order on every run
    for name, count in TYPES.items():
        group = [r for r in rows if r["defect_type"] == name]
        scores = [r["score"] for r in group]
        got = per_type["types"][name]
        assert got["n_images"] == count
        reference = roc_auc_score([0] * len(normal) + [1] * count, normal + scores)
        assert got["image_auroc"] == pytest.approx(reference, abs=1e-12)
        caught = sum(s >= tau for s in scores)
        assert (got["caught"], got["missed"]) == (caught, count - caught)
        assert got["recall_at_tau"] == caught / count
        boxes = summarise_boxes([ImageBoxResult(**r["box_metrics"]) for r in group if "box_metrics" in r], [])
        assert got["n_with_mask"] == (count + 1) // 2 == boxes.n_anomalous_with_mask
        assert got["pointing_accuracy"] == boxes.pointing_accuracy
        assert got["mean_best_iou"] == boxes.mean_best_iou
        assert got["median_area_ratio"] == boxes.median_area_ratio


def test_expert_per_type_without_normals_or_defects() -> None:
    only_defects = [r for r in _rows() if r["label"] == 1]
    per_type = expert_per_type(only_defects, 1.0)
    assert per_type["n_normal"] == 0 and per_type["false_alarms"] == 0
    assert all(t["image_auroc"] is None for t in per_type["types"].values())  # undefined, not 0.5
    assert expert_per_type([r for r in _rows() if r["label"] == 0], 1.0)["types"] == {}
    assert per_type_report({"types": {}}) == []


def _record(label: int, defect: str, answer: str, category: str = "tire", condition: str = "eagle") -> dict[str, Any]:
    gold = "A" if label else "B"
    return {"image": f"{defect}/{answer}/{label}/{id(object())}", "question_id": "q", "condition": condition,
            "category": category, "label": label, "defect_type": defect, "qtype": "Anomaly Detection",
            "gold": gold, "answer": answer, "correct": answer == gold}  # fmt: skip


def test_mllm_per_type_each_type_against_all_normals() -> None:
    records = (
        [_record(0, "good", "B")] * 3 + [_record(0, "good", "A")]  # 1 false alarm of 4 normals
        + [_record(1, "cut", "A")] * 2 + [_record(1, "cut", "B")] * 3
        + [_record(1, "hole", "A")] * 2 + [_record(1, "hole", UNPARSABLE)]  # one unparsable hole
    )  # fmt: skip
    per_type = per_type_discrimination(records)
    assert per_type["version"] == PER_TYPE_VERSION and per_type["n_normal"] == 4 and per_type["false_alarms"] == 1
    cut, hole = per_type["types"]["cut"], per_type["types"]["hole"]
    assert (cut["n_anomalous"], cut["tp"], cut["fn"], cut["fp"], cut["tn"]) == (5, 2, 3, 1, 3)
    assert cut["accuracy_anomalous"] == 2 / 5 and cut["accuracy"] == (3 / 4 + 2 / 5) / 2
    assert (hole["n_anomalous"], hole["tp"], hole["unparsable"]) == (3, 2, 1)
    assert cut == discrimination([r for r in records if r["defect_type"] in ("good", "cut")])
    metrics = compute_metrics(records, ["eagle"])
    assert metrics["conditions"]["eagle"]["per_class"]["tire"]["per_type"] == per_type
    assert "per_type" not in metrics["conditions"]["eagle"]["overall"]  # types are per class
    head, rows = per_type_table(metrics)
    assert len(head) == len(rows[0])
    assert rows == [["eagle", "tire", "cut", "5", "40.00", "57.50", "4", "1"],
                    ["eagle", "tire", "hole", "3", "66.67", "70.83", "4", "1"]]  # fmt: skip
    old = {"conditions": {"eagle": {"per_class": {"tire": {}}}}}  # a run from before per_type
    assert per_type_table(old)[1] == []


def _blob(directory: Path, index: int, defect_type: str, with_mask: bool = True) -> Sample:
    rng = np.random.default_rng(100 + index)
    rgb = rng.integers(0, 256, (80, 96, 3), dtype=np.uint8)
    mask = np.zeros((80, 96), dtype=np.uint8)
    y0, x0 = 28 + index, 34 + index
    rgb[y0 : y0 + 12, x0 : x0 + 16] = 255 if defect_type == "bright" else 0
    mask[y0 : y0 + 12, x0 : x0 + 16] = 255
    folder = directory / defect_type
    folder.mkdir(parents=True, exist_ok=True)
    image = folder / f"{index:03d}.png"
    Image.fromarray(rgb).save(image)
    mask_path = None
    if with_mask:
        mask_path = folder / f"{index:03d}_mask.png"
        Image.fromarray(mask).save(mask_path)
    return Sample(image, 1, "cat", "test", defect_type, mask_path)


def test_evaluate_expert_per_type_in_metrics_report_and_grid(tmp_path: Path) -> None:
    expert = fit(noise_pngs(tmp_path / "train", 6, seed=1), "cat", FAKE_CONFIG, extractor=FakeExtractor())
    normals = [Sample(p, 0, "cat", "test") for p in noise_pngs(tmp_path / "good", 5, seed=2)]
    anomalous = [_blob(tmp_path / "test", i, "bright" if i < 4 else "dark") for i in range(7)]
    anomalous.append(_blob(tmp_path / "test", 9, "dark", with_mask=False))
    out = tmp_path / "eval"
    evaluation = evaluate_expert(expert, normals + anomalous, out)

    metrics = json.loads((out / "metrics.json").read_text())
    per_type = metrics["per_type"]
    assert per_type == evaluation.per_type and per_type["version"] == PER_TYPE_VERSION
    assert per_type["n_normal"] == 5 and per_type["false_alarms"] == metrics["at_tau"]["fp"]
    rows = [json.loads(line) for line in (out / "scores.jsonl").read_text().splitlines()]
    normal = [r["score"] for r in rows if r["label"] == 0]
    counts = {"bright": (4, 4), "dark": (4, 3)}  # (images, with mask)
    assert {k: (v["n_images"], v["n_with_mask"]) for k, v in per_type["types"].items()} == counts
    for name, (count, _) in counts.items():
        scores = [r["score"] for r in rows if r["defect_type"] == name]
        assert len(scores) == count
        got = per_type["types"][name]
        assert got["image_auroc"] == pytest.approx(roc_auc_score([0] * 5 + [1] * count, normal + scores), abs=1e-12)
        assert got["caught"] == sum(s >= evaluation.tau for s in scores)
        assert got["recall_at_tau"] == got["caught"] / count
    # Types together give the pooled figures: caught images and masked images add up.
    assert sum(t["caught"] for t in per_type["types"].values()) == metrics["at_tau"]["tp"]
    assert sum(t["n_with_mask"] for t in per_type["types"].values()) == metrics["boxes"]["n_anomalous_with_mask"]

    report = (out / "report.md").read_text()
    assert "## Per defect type" in report
    assert f"Each type against all 5 normal test images ({plural(per_type['false_alarms'], 'false alarm')}" in report
    assert report.count("| bright | 4 |") == 1 and report.count("| dark | 4 |") == 1
    picked = grid_rows(evaluation.per_image)
    assert [r["defect_type"] for r in picked] == ["bright"] * 4 + ["dark"] * 4  # grouped, unmasked last
    assert picked[-1]["mask"] is None
    with Image.open(out / "boxes_grid.png") as im:
        im.load()
        assert im.format == "PNG"


def test_one_false_alarm_and_one_normal_read_in_the_singular() -> None:
    """report.md said "1 false alarms"; the pluraliser (eagle_iad.naming.plural) says the number right."""
    rows = [
        {"label": 0, "defect_type": "good", "score": 2.0, "boxes": []},
        {"label": 1, "defect_type": "cut", "score": 3.0, "boxes": []},
    ]
    lines = per_type_report(expert_per_type(rows, 1.0))
    assert lines[2].startswith(
        "Each type against the 1 normal test image (1 false alarm at tau, shared by every type)."
    )
    assert [plural(n, "false alarm") for n in (0, 1, 2)] == ["0 false alarms", "1 false alarm", "2 false alarms"]
    assert plural(1, "box", "boxes") == "1 box" and plural(3, "box", "boxes") == "3 boxes"


def test_caas_flip_columns_say_they_count_only_items_where_caas_was_applied() -> None:
    from eagle_iad.eval.report import CAAS_FLIP_NOTE, caas_table

    flips = {"wrong_to_right": 2, "right_to_wrong": 1, "changed_still_wrong": 0, "unchanged": 5}
    caas = {"n": 24, "triggered": 8, "trigger_rate": 8 / 24, "flips": flips}
    head, rows = caas_table({"caas": {"overall": caas, "per_class": {}}})
    assert head == ["scope", "eagle items", "CAAS applied", "trigger rate %", "applied: wrong→right",
                    "applied: right→wrong", "applied: changed, still wrong", "applied: unchanged"]  # fmt: skip
    assert rows == [["overall", "24", "8", "33.33", "2", "1", "0", "5"]]
    assert CAAS_FLIP_NOTE.startswith("The four 'applied:' columns count only the eagle items where CAAS was applied")


def test_eval_report_expert_per_type_table() -> None:
    per_type = expert_per_type(_rows(), 1.2)
    head, rows = expert_per_type_table({"tire": {"per_type": per_type}, "old": {"n_normal": 3}})
    assert len(head) == len(rows[0]) and [r[1] for r in rows] == ["combined", "cut", "hole"]
    assert rows[1][:3] == ["tire", "cut", "7"] and rows[1][6:8] == ["9", str(per_type["false_alarms"])]


@needs_tire
def test_tire_per_type_counts_and_auroc(tmp_path: Path) -> None:
    """Two images of every tire defect type: the types are the folder names and each AUROC is sklearn's."""
    layout = get_layout("mvtec")
    train = [s.path for s in layout.samples(TIRE, "tire", "train")][:6]
    expert = fit(train, "tire", FAKE_CONFIG, extractor=FakeExtractor())
    test = layout.samples(TIRE, "tire", "test")
    folders = sorted(p.name for p in (TIRE / "tire" / "test").iterdir() if p.is_dir() and p.name != "good")
    picked = [s for s in test if s.label == 0][:4]
    for name in folders:
        picked += [s for s in test if s.defect_type == name][:2]
    evaluation = evaluate_expert(expert, picked)
    per_type = evaluation.per_type
    assert list(per_type["types"]) == folders and per_type["n_normal"] == 4
    normal = [r["score"] for r in evaluation.per_image if r["label"] == 0]
    for name in folders:
        scores = [r["score"] for r in evaluation.per_image if r["defect_type"] == name]
        got = per_type["types"][name]
        assert got["n_images"] == 2 and got["n_with_mask"] == 2  # every tire defect has a mask
        assert got["image_auroc"] == pytest.approx(roc_auc_score([0] * 4 + [1] * 2, normal + scores), abs=1e-12)
