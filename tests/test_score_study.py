"""``benchmarks/score_study.py`` (issue 29): its plain scores are the product's, its folds keep a typical
image's score, its varied copies keep the defect, and its table reads its rows."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from bench_scripts import load_benchmark
from PIL import Image

from eagle_iad.data import Sample


@pytest.fixture(scope="module")
def study() -> ModuleType:
    return load_benchmark("score_study")


def test_fold_keeps_the_base_score_unless_the_other_is_more_unusual(study: ModuleType) -> None:
    base_train = np.array([10.0, 11.0, 12.0, 13.0, 14.0])  # median 12, MAD 1 -> scale 1.4826
    other_train = np.array([1.0, 2.0, 3.0, 4.0, 5.0])  # median 3, the same spread
    base_test = np.array([12.0, 12.0, 20.0])
    other_test = np.array([3.0, 9.0, 3.0])  # typical, 6 units (4.05 sigma) above, typical
    train, test = study.fold((base_train, base_test), (other_train, other_test))
    np.testing.assert_array_equal(train, base_train)  # equal spreads: a training image keeps its own score
    assert test.tolist() == [12.0, 18.0, 20.0]  # 12 + 1.4826 * (9 - 3) / 1.4826 for the second


def test_measure_counts_each_rule_and_the_one_false_alarm_ceiling(study: ModuleType) -> None:
    from eagle_iad.tgps.thresholds import compute_thresholds

    def sample(label: int, kind: str) -> Sample:
        return Sample(Path(f"{kind}.png"), label, "c", "test", kind)

    samples = [sample(0, "good")] * 4 + [sample(1, "cut")] * 2 + [sample(1, "hole")] * 2
    train = np.array([1.0, 2.0, 3.0, 2.0, 1.5])
    test = np.array([1.0, 2.0, 9.0, 3.0, 8.0, 2.5, 10.0, 4.0])
    row = study.measure(train, test, samples)
    tau = compute_thresholds(train, "ksigma").tau
    assert row["ksigma"] == {"tau": tau, "recall": 0.75, "false_alarms": 1}  # tau ~ 3.98: 9 of the normals
    # One false alarm allowed: above the second-largest normal (3.0): 8, 10 and 4 of 2.5, 8, 10, 4.
    assert row["recall_at_1fa"] == 0.75
    assert row["per_type"]["cut"]["recall"] == 0.5 and row["per_type"]["hole"]["recall"] == 1.0


def test_vary_crops_and_turns_but_keeps_the_defect_inside(study: ModuleType, tmp_path: Path) -> None:
    rgb = np.zeros((60, 80, 3), dtype=np.uint8)
    mask = np.zeros((60, 80), dtype=np.uint8)
    mask[50:58, 70:78] = 255  # a defect in the corner, which a random crop would often cut
    Image.fromarray(rgb).save(tmp_path / "a.png")
    Image.fromarray(mask).save(tmp_path / "a_mask.png")
    source = Sample(tmp_path / "a.png", 1, "c", "test", "hole", tmp_path / "a_mask.png")
    varied = study.vary([source] * 20, tmp_path / "out", seed=0)
    shapes = set()
    for item in varied:
        piece = np.asarray(Image.open(item.mask_path))
        assert int((piece > 0).sum()) == 64  # the whole defect is in every copy
        shapes.add(piece.shape)
        assert np.asarray(Image.open(item.path)).shape[:2] == piece.shape
    assert len(shapes) > 10  # sizes and orientations vary


def test_a_small_run_scores_as_the_product_does(study: ModuleType, tmp_path: Path) -> None:
    pytest.importorskip("elpv_dataset", reason="elpv-dataset is installed by make")
    args = ["--datasets", "elpv", "--sizes", "96", "--exposures", "none,image", "--limit-train", "4"]
    assert study.main([*args, "--limit-test", "6", "--out", str(tmp_path)]) == 0
    document = json.loads((tmp_path / "score_study.json").read_text())
    for label in ("96/none", "96/image"):
        assert document["checks"][f"elpv {label}"]["input_hw"] == [96, 96]  # the size named, not the cells' own 300
        assert document["checks"][f"elpv {label}"]["test_plain_vs_inspect_max_diff"] == 0.0
        assert document["checks"][f"elpv {label}"]["train_plain_vs_fit_max_diff"] == 0.0
    variants = [row["variant"] for row in document["rows"]]
    ways = ["plain", "flip", "global", "flip+global"]
    assert variants == [f"96/{e} {w}" for e in ("none", "image") for w in ways]  # no pyramid across exposures
    table = (tmp_path / "score_study.md").read_text()
    assert "| elpv | 96/none plain |" in table and "1.00x |" in table
