"""Pictures are named per input, uniquely: two ``000.png`` from different folders never overwrite each other."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from expert_fakes import FAKE_CONFIG, FakeExtractor, noise_pngs
from PIL import Image

from eagle_iad.expert import fit
from eagle_iad.naming import picture_stems
from eagle_iad.verdict import inspect_images


def test_unique_stems_stay_and_clashing_ones_take_their_folders() -> None:
    assert picture_stems(["a/000.png", "b/001.png"]) == ["000", "001"]
    assert picture_stems(["data/good/000.png", "data/logical_anomalies/000.png", "data/good/001.png"]) == [
        "good_000", "logical_anomalies_000", "001",
    ]  # fmt: skip
    assert picture_stems(["x/good/a/000.png", "x/bad/000.png"]) == ["good_a_000", "bad_000"]


def test_what_stays_equal_gets_a_short_hash() -> None:
    same = picture_stems(["cell.png", "cell.png", "cell.jpg"])
    assert len(set(same)) == 3 and same[2] == "cell_jpg"
    assert all(s.startswith("cell_png-") and len(s) == len("cell_png-") + 8 for s in same[:2])
    assert picture_stems(["cell.png", "cell.png", "cell.jpg"]) == same  # deterministic
    assert len(set(picture_stems(["upload.png"] * 4))) == 4


def test_names_equal_but_for_their_suffix_are_told_apart_by_it() -> None:
    """``img.bmp``, ``img.tif``, ``img.webp`` in one --out got opaque hashes (``img-4400d78e_box.png``)."""
    assert picture_stems(["fmt/img.bmp", "fmt/img.tif", "fmt/img.WEBP", "fmt/other.png"]) == [
        "img_bmp", "img_tif", "img_webp", "other",
    ]  # fmt: skip
    assert picture_stems(["a/img.png", "b/img.jpg"]) == ["a_img", "b_img"]  # the folders tell them apart first
    assert picture_stems(["img", "img.png"]) == ["img", "img_png"]


def test_two_same_named_images_from_different_folders_keep_their_own_pictures(tmp_path: Path) -> None:
    expert = fit(noise_pngs(tmp_path / "train", 3, seed=1), "cat", FAKE_CONFIG, extractor=FakeExtractor())
    good, bad = tmp_path / "good" / "000.png", tmp_path / "logical" / "000.png"
    rng = np.random.default_rng(3)
    for path, colour in ((good, 0), (bad, 255)):
        path.parent.mkdir(parents=True)
        rgb = rng.integers(0, 256, (80, 96, 3), dtype=np.uint8)
        rgb[20:40, 20:40] = colour
        Image.fromarray(rgb).save(path)
    out = tmp_path / "out"
    verdicts = inspect_images(expert, [good, bad], out)
    assert sorted(p.name for p in out.iterdir()) == [
        "good_000_box.png", "good_000_heatmap.png", "good_000_reference.jpg",
        "logical_000_box.png", "logical_000_heatmap.png", "logical_000_reference.jpg",
    ]  # fmt: skip
    assert verdicts[0].pictures == {
        "heatmap": str(out / "good_000_heatmap.png"), "box": str(out / "good_000_box.png"),
        "reference": str(out / "good_000_reference.jpg"),
    }  # fmt: skip
    assert verdicts[1].pictures["box"] == str(out / "logical_000_box.png")
    # each picture shows its own image: the heatmap overlays differ where the two inputs differ
    first = np.asarray(Image.open(out / "good_000_heatmap.png"))
    second = np.asarray(Image.open(out / "logical_000_heatmap.png"))
    assert not np.array_equal(first, second)
