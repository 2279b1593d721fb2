"""``--preprocess scale``: each image at its own aspect ratio and one pixel scale (issue 29's study,
docs/METHOD.md). On images of one size it is ``resize`` to the bit; on images of many sizes every image
keeps its own patch grid through fit, leave-own-out, inspection, save/load and teach; what needs one
input size (a map offset, an exported graph) is refused by name."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from eagle_iad.errors import ConfigError, ImageError
from eagle_iad.expert import Expert, ExpertConfig, fit, load, save
from eagle_iad.expert.preprocess import prepare

#: Small inputs keep the real backbone fast; real EfficientNet-Lite0 weights, everything else the product's.
CONFIG = ExpertConfig(size=64, native_up_to=0, coreset_ratio=0.25, batch_size=4)
SHAPES = [(60, 90), (90, 60), (48, 120), (75, 75), (60, 90), (66, 99), (90, 60), (54, 81), (81, 54), (72, 96)]


def _texture(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Stripes with a little noise: a pattern whose scale matters, like a tread or a weave."""
    rows = np.arange(height)[:, None]
    base = 120 + 40 * np.sin(rows / 3.0) + rng.normal(0, 6, (height, width))
    return np.clip(np.repeat(base[:, :, None], 3, axis=2), 0, 255).astype(np.uint8)


def _pngs(folder: Path, shapes: list[tuple[int, int]], seed: int) -> list[Path]:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, (height, width) in enumerate(shapes):
        paths.append(folder / f"{index:02d}.png")
        Image.fromarray(_texture(rng, height, width)).save(paths[-1])
    return paths


def _own_input(height: int, width: int, scale: float) -> tuple[int, int]:
    return max(32, round(height * scale / 32) * 32), max(32, round(width * scale / 32) * 32)


def test_on_images_of_one_size_scale_is_resize_to_the_bit(tmp_path: Path) -> None:
    paths = _pngs(tmp_path / "train", [(60, 90)] * 6, seed=1)
    resized = fit(paths, "one", replace(CONFIG, preprocess="resize"))
    scaled = fit(paths, "one", replace(CONFIG, preprocess="scale"))
    assert scaled.model.config.pixel_scale == pytest.approx(64 / 90)
    assert scaled.model.config.input_hw == resized.model.config.input_hw == (32, 64)
    assert torch.equal(scaled.model.bank, resized.model.bank)
    np.testing.assert_array_equal(scaled.model.train_scores, resized.model.train_scores)
    assert scaled.thresholds.tau == resized.thresholds.tau
    probe = _pngs(tmp_path / "probe", [(60, 90)], seed=2)[0]
    a, b = scaled.inspect(probe), resized.inspect(probe)
    assert a.score == b.score
    np.testing.assert_array_equal(a.anomaly_map, b.anomaly_map)


def test_each_image_keeps_its_own_grid_and_the_training_scores_are_leave_own_out(tmp_path: Path) -> None:
    paths = _pngs(tmp_path / "train", SHAPES, seed=3)
    expert = fit(paths, "many", replace(CONFIG, preprocess="scale"))
    model = expert.model
    scale = 64 / 90  # the median long side is 90
    assert model.config.pixel_scale == pytest.approx(scale)
    grids = [tuple(side // 8 for side in _own_input(h, w, scale)) for h, w in SHAPES]
    counts = torch.bincount(model.patch_image_ids.long()).tolist()
    assert counts == [gh * gw for gh, gw in grids]
    # The reference: each image's unselected patches against the bank without its own rows, the largest.
    starts = np.cumsum([0, *counts[:-1]])
    for index, path in enumerate(paths):
        rgb = np.asarray(Image.open(path).convert("RGB"))
        patches = expert.embed(prepare(rgb, model.config)[0]).reshape(-1, model.bank.shape[1]).double()
        distances = torch.cdist(patches, model.bank.double())
        distances[:, model.bank_image_ids.long() == index] = float("inf")
        nearest = distances.min(dim=1).values
        free = ~model.selected[starts[index] : starts[index] + counts[index]]
        expected = float(nearest[free].max()) if bool(free.any()) else float(nearest.max())
        assert model.train_scores[index] == pytest.approx(expected, rel=1e-4)


def test_inspection_of_mixed_shapes_batched_or_alone_and_after_a_reload(tmp_path: Path) -> None:
    expert = fit(_pngs(tmp_path / "train", SHAPES, seed=4), "many", replace(CONFIG, preprocess="scale"))
    # (90, 60): a portrait image in a mostly landscape model, as many patches as the first image's, transposed.
    shapes = [(72, 150), (60, 90), (90, 60), (150, 72), (40, 40)]
    probes = _pngs(tmp_path / "probe", shapes, seed=5)
    alone = [expert.inspect(p) for p in probes]
    for result, (height, width) in zip(alone, shapes, strict=True):
        ih, iw = _own_input(height, width, 64 / 90)
        assert result.patch_scores.shape == (ih // 8, iw // 8)
        assert result.anomaly_map.shape == (height, width)
        assert result.score == float(result.patch_scores.max())
    batched = expert.inspect_many(probes, batch=5)
    each = expert.inspect_each([np.asarray(Image.open(p).convert("RGB")) for p in probes])
    for one, two, three in zip(alone, batched, each, strict=True):
        assert not isinstance(three, Exception)
        assert one.score == pytest.approx(two.score, rel=1e-5) and one.score == pytest.approx(three.score, rel=1e-5)
        assert one.patch_scores.shape == two.patch_scores.shape == three.patch_scores.shape
    save(expert.model, tmp_path / "model")
    reloaded = Expert(load(tmp_path / "model"))
    assert reloaded.inspect(probes[0]).score == pytest.approx(alone[0].score, rel=1e-6)


def test_what_needs_one_input_size_is_refused_by_name(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^position_baseline needs one patch grid for every image; preprocess "):
        replace(CONFIG, preprocess="scale", position_baseline=True).validate()
    with pytest.raises(
        ConfigError, match=r"^preprocess 'scale' with an input_hw needs its pixel_scale too; leave both"
    ):
        replace(CONFIG, preprocess="scale", input_hw=(64, 96)).validate()
    expert = fit(_pngs(tmp_path / "train", SHAPES[:4], seed=6), "few", replace(CONFIG, preprocess="scale"))
    from eagle_iad.expert.export import export_expert

    with pytest.raises(
        ConfigError, match=r"preprocess 'scale' gives each image its own input size, .*--preprocess resize"
    ):
        export_expert(expert, "onnx", tmp_path / "export")
    assert not (tmp_path / "export").exists()
    huge = np.zeros((6000, 200, 3), dtype=np.uint8)  # 6000 x 64/90 = 4266 input pixels
    with pytest.raises(ImageError, match=r"^image of 200x6000 px would be 128x4256 input pixels at this model's scale"):
        expert.inspect(huge)


def test_a_teach_of_images_of_new_shapes_grows_the_bank_by_their_own_grids(tmp_path: Path) -> None:
    from eagle_iad.expert.teach import TeachImage, teach

    expert = fit(_pngs(tmp_path / "train", SHAPES, seed=7), "many", replace(CONFIG, preprocess="scale"))
    save(expert.model, tmp_path / "model")
    new = _pngs(tmp_path / "new", [(100, 70), (60, 120)], seed=8)
    result = teach(tmp_path / "model", [TeachImage(p.name, p) for p in new], why="new sizes", by="ana")
    taught = load(tmp_path / "model")
    counts = torch.bincount(taught.patch_image_ids.long()).tolist()
    expected = [(h // 8) * (w // 8) for h, w in (_own_input(100, 70, 64 / 90), _own_input(60, 120, 64 / 90))]
    assert counts[len(SHAPES) :] == expected
    assert len(taught.train_scores) == len(SHAPES) + 2 and np.all(np.isfinite(taught.train_scores))
    assert result is not None


def test_a_fixed_input_fit_on_images_of_many_aspects_says_scale_would_keep_them(tmp_path: Path) -> None:
    many = _pngs(tmp_path / "many", SHAPES[:4], seed=9)
    warned = fit(many, "many", replace(CONFIG, preprocess="resize")).model.warnings
    assert [w for w in warned if "aspect ratios" in w] == [
        "the training images' aspect ratios (height / width) range from 0.4 to 1.5, and preprocess 'resize' "
        "stretches every image to 64x64; --preprocess scale keeps each image's own aspect at one pixel scale, which "
        "ranked defects better on images that vary (docs/MEASUREMENTS.md, 'The defects that still pass'), but "
        "cannot be exported"
    ]
    assert not [w for w in fit(many, "many", replace(CONFIG, preprocess="scale")).model.warnings if "aspect" in w]
    one = _pngs(tmp_path / "one", [(60, 90), (62, 93), (60, 90)], seed=10)  # within 10%: no warning
    assert not [w for w in fit(one, "one", replace(CONFIG, preprocess="resize")).model.warnings if "aspect" in w]
