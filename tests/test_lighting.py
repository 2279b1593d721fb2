"""The training images' exposure a model records (model schema 12) and the warning a photo far outside it carries.

Why: the exposure step sets every input's grey mean and spread to ImageNet's before the backbone, so a washed-out
tire frame (mean grey 118 against the training images' 19) was inspected with no word that it was taken under
other light (docs/METHOD.md, "Exposure").
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from expert_fakes import FAKE_CONFIG, FakeExtractor, noise_pngs
from PIL import Image
from tire_data import TIRE as TIRE_ROOT
from tire_data import needs_tire

from eagle_iad.cli import main
from eagle_iad.errors import ModelFormatError
from eagle_iad.expert import Expert, fit, load, save
from eagle_iad.expert.lighting import (
    FACTOR,
    NOT_RECORDED,
    ExposureRange,
    exposure_line,
    exposure_warning,
    image_statistics,
    statistics_warning,
)
from eagle_iad.images import load_rgb
from eagle_iad.pipeline import inspect_records

TIRE = TIRE_ROOT / "tire"


def _dim(path: Path, out: Path, gain: float, offset: float = 0.0) -> Path:
    """A copy of ``path`` with every sample times ``gain`` plus ``offset`` (clipped): other light on the same part."""
    rgb = load_rgb(path).astype(np.float64)
    Image.fromarray(np.clip(rgb * gain + offset, 0, 255).astype(np.uint8)).save(out)
    return out


@pytest.fixture(scope="module")
def lit_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("lighting")
    expert = fit(noise_pngs(root / "train", 4, seed=3), "cat", FAKE_CONFIG, extractor=FakeExtractor())
    return save(expert.model, root / "model")


def test_statistics_are_the_samples_mean_and_spread() -> None:
    rgb = np.random.default_rng(0).integers(0, 256, (31, 17, 3), dtype=np.uint8)
    mean, spread = image_statistics(rgb)
    assert mean == pytest.approx(float(rgb.mean(dtype=np.float64)), rel=1e-12)
    assert spread == pytest.approx(float(rgb.std(dtype=np.float64)), rel=1e-9)
    assert image_statistics(np.full((4, 4, 3), 7, dtype=np.uint8)) == (7.0, 0.0)


def test_the_rule_warns_beyond_the_factor_each_way_and_not_within() -> None:
    trained = ExposureRange(239, (18.9, 21.3), (9.4, 18.3))
    assert statistics_warning(trained, 18.6, 9.9) is None  # tire's darkest normal test image
    assert statistics_warning(trained, 21.3 * FACTOR - 0.01, 12.0) is None
    cases = {
        (118.0, 40.0): "far brighter than",  # the tester's washed-out frame
        (2.0, 1.3): "far darker than",  # nearly black
        (20.0, 4.0): "far flatter (less contrast) than",
        (20.0, 40.0): "far more contrasted than",
    }
    for (mean, spread), how in cases.items():
        warning = statistics_warning(trained, mean, spread)
        assert warning is not None and f"it is {how} any of them" in warning, (mean, spread, warning)
        assert warning.startswith(f"a photo of mean grey {mean:.1f} and spread {spread:.1f} inspected by a model whose")
    # near white the distance from white is what counts: 230 is 25 levels from it and 240 15, against 35 for the
    # brightest training image (35 / 2 = 17.5)
    bright = ExposureRange(400, (59.0, 220.0), (14.0, 47.0))
    assert statistics_warning(bright, 230.0, 20.0) is None
    assert "far brighter" in (statistics_warning(bright, 240.0, 20.0) or "")


def test_a_range_of_few_images_is_widened_by_its_own_width() -> None:
    """Four elpv training cells (means 59 to 112) say little of how bright a normal cell may be: a test cell of mean
    185.6 passes them, while the same range seen in 400 images calls it far brighter."""
    few = ExposureRange(4, (59.4, 112.1), (16.9, 26.6))
    assert statistics_warning(few, 185.6, 35.5) is None
    many = ExposureRange(400, (59.4, 112.1), (16.9, 26.6))
    assert "far brighter" in (statistics_warning(many, 185.6, 35.5) or "")
    assert "far darker" in (statistics_warning(few, 12.0, 20.0) or "")


def test_a_fit_records_its_images_range_and_a_washed_out_or_black_photo_is_warned(
    lit_model: Path, tmp_path: Path
) -> None:
    manifest = json.loads((lit_model / "model.json").read_text())
    trained = [image_statistics(load_rgb(path)) for path in noise_pngs(tmp_path / "again", 4, seed=3)]
    means, spreads = [m for m, _ in trained], [s for _, s in trained]
    assert manifest["training"]["exposure"] == {
        "images": 4,
        "mean": [min(means), max(means)],
        "spread": [min(spreads), max(spreads)],
    }
    expert = Expert(load(lit_model), extractor=FakeExtractor())
    assert expert.model.train_exposure == ExposureRange(4, (min(means), max(means)), (min(spreads), max(spreads)))
    normal = noise_pngs(tmp_path / "query", 1, seed=9)[0]
    washed = _dim(normal, tmp_path / "washed.png", 0.3, 175)
    black = _dim(normal, tmp_path / "black.png", 0.05)
    on_normal, on_washed, on_black, on_bytes, on_frame = inspect_records(
        expert, [normal, washed, black, washed.read_bytes(), load_rgb(washed)], category="cat"
    )
    assert on_normal.warnings is None
    assert on_washed.warnings is not None and len(on_washed.warnings) == 1
    assert "it is far brighter than any of them" in on_washed.warnings[0]
    assert on_black.warnings is not None and "it is far darker than any of them" in on_black.warnings[0]
    assert on_bytes.warnings == on_frame.warnings == on_washed.warnings  # an upload, a station's decoded frame


def test_the_cli_prints_the_exposure_warning(
    lit_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("eagle_iad.expert.patchcore.extractor_for", lambda config: FakeExtractor())
    black = _dim(noise_pngs(tmp_path, 1, seed=9)[0], tmp_path / "black.png", 0.05)
    assert main(["inspect", str(black), "--model", str(lit_model), "--quiet", "--json"]) == 0
    (warning,) = json.loads(capsys.readouterr().out)[0]["warnings"]
    assert warning.startswith("a photo of mean grey ") and "far darker" in warning


def test_a_model_saved_before_schema_12_warns_about_no_exposure(lit_model: Path, tmp_path: Path) -> None:
    model = load(lit_model)
    older = save(type(model)(**{**model.__dict__, "train_exposure": None}), tmp_path / "older")
    data = json.loads((older / "model.json").read_text())
    assert data["training"]["exposure"] is None
    assert load(older).train_exposure is None
    black = _dim(noise_pngs(tmp_path, 1, seed=9)[0], tmp_path / "black.png", 0.05)
    (record,) = inspect_records(Expert(load(older), extractor=FakeExtractor()), [black], category="cat")
    assert record.warnings is None
    assert exposure_warning(None, load_rgb(black)) is None


def test_a_stored_range_is_checked(lit_model: Path, tmp_path: Path) -> None:
    from eagle_iad.expert.manifest import manifest_checksum

    folder = tmp_path / "edited"
    folder.mkdir()
    for name in ("model.json", "tensors.safetensors"):
        (folder / name).write_bytes((lit_model / name).read_bytes())
    data = json.loads((folder / "model.json").read_text())
    data["training"]["exposure"]["mean"] = [90.0, 20.0]
    data["checksum"] = manifest_checksum(data)
    (folder / "model.json").write_text(json.dumps(data))
    with pytest.raises(ModelFormatError, match=r"training.exposure.mean must be \[low, high\] with 0 <= low <= high"):
        load(folder)


def test_a_teach_widens_the_range_by_its_images(
    lit_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from eagle_iad.expert.teach import TeachImage, teach

    monkeypatch.setattr("eagle_iad.expert.patchcore.extractor_for", lambda config: FakeExtractor())
    folder = tmp_path / "taught"
    folder.mkdir()
    for name in ("model.json", "tensors.safetensors"):
        (folder / name).write_bytes((lit_model / name).read_bytes())
    before = load(folder).train_exposure
    assert before is not None
    # darker, within the rule's factor (a frame twice as dark warns and is left out of the range: the test below)
    darker = _dim(noise_pngs(tmp_path, 1, seed=11)[0], tmp_path / "darker.png", 0.7)
    mean, spread = image_statistics(load_rgb(darker))
    assert mean < before.mean[0] and spread < before.spread[0]
    teach(folder, [TeachImage("darker.png", darker)], why="test", by="tester", force=True)
    after = load(folder).train_exposure
    assert after == ExposureRange(5, (mean, before.mean[1]), (spread, before.spread[1]))


@needs_tire
def test_no_normal_tire_test_image_warns_and_a_washed_out_or_black_one_does(tmp_path: Path) -> None:
    """The rule's figures on real photographs (docs/METHOD.md, "Exposure"): tire's training images against its
    normal test images as they are, washed out (six times the light) and nearly black (a tenth of it)."""
    trained = ExposureRange.of(load_rgb(path) for path in sorted((TIRE / "train" / "good").glob("*.png")))
    assert trained is not None
    tests = [load_rgb(path) for path in sorted((TIRE / "test" / "good").glob("*.png"))]
    assert [exposure_warning(trained, rgb) for rgb in tests] == [None] * len(tests)
    for gain in (6.0, 0.1):
        for rgb in tests:
            other = np.clip(rgb.astype(np.float64) * gain, 0, 255).astype(np.uint8)
            assert exposure_warning(trained, other) is not None


def test_a_teach_does_not_widen_the_range_by_an_image_the_rule_calls_far_outside_and_says_so(
    lit_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """rev1 finding 8: a (forced) teach of a nearly black frame must not widen the range to it, or frames like it
    would never warn again; it is taught, the range is widened by the other images only, and the teach's warnings
    name it. A black frame inspected after the teach still warns."""
    from eagle_iad.expert.teach import TeachImage, teach

    monkeypatch.setattr("eagle_iad.expert.patchcore.extractor_for", lambda config: FakeExtractor())
    folder = tmp_path / "taught"
    folder.mkdir()
    for name in ("model.json", "tensors.safetensors"):
        (folder / name).write_bytes((lit_model / name).read_bytes())
    before = load(folder).train_exposure
    assert before is not None
    darker = _dim(noise_pngs(tmp_path / "a", 1, seed=11)[0], tmp_path / "darker.png", 0.7)
    black = _dim(noise_pngs(tmp_path / "b", 1, seed=12)[0], tmp_path / "black.png", 0.05)
    assert statistics_warning(before, *image_statistics(load_rgb(black))) is not None
    mean, spread = image_statistics(load_rgb(darker))
    result = teach(folder, [TeachImage("darker.png", darker), TeachImage("black.png", black)], why="test",
                   by="tester", force=True)  # fmt: skip
    after = load(folder).train_exposure
    assert after == ExposureRange(5, (mean, before.mean[1]), (spread, before.spread[1]))
    assert [image["name"] for image in result.entry["images"]][1].endswith("black.png")  # taught all the same
    [said] = [w for w in result.entry["warnings"] or [] if "exposure" in w]
    assert said.startswith("black.png: taught, but its exposure (mean grey ") and "did not widen the range" in said
    again = _dim(noise_pngs(tmp_path / "c", 1, seed=13)[0], tmp_path / "again.png", 0.05)
    (record,) = inspect_records(Expert(load(folder), extractor=FakeExtractor()), [again], category="cat")
    assert record.warnings is not None and any("far darker" in w for w in record.warnings), record.warnings


def _with_exposure(lit_model: Path, folder: Path, exposure: object) -> Path:
    """A copy of ``lit_model`` whose manifest records ``exposure``, signed as a save signs it."""
    from eagle_iad.expert.manifest import manifest_checksum

    folder.mkdir()
    for name in ("model.json", "tensors.safetensors"):
        (folder / name).write_bytes((lit_model / name).read_bytes())
    data = json.loads((folder / "model.json").read_text())
    data["training"]["exposure"] = exposure
    data["checksum"] = manifest_checksum(data)
    (folder / "model.json").write_text(json.dumps(data))
    return folder


def test_the_exposure_line_gives_the_ranges_and_the_widened_factors() -> None:
    # four images: 2 x 2^(2/5) = 2.64 for a mean range doubling, 2 x 1.25^(2/5) = 2.19 for the spreads
    assert exposure_line(ExposureRange(4, (40.0, 80.0), (10.0, 12.5))) == (
        "mean grey 40.0 to 80.0, spread 10.0 to 12.5 (4 images); a photo warns beyond them by a factor of 2.64 (mean) "
        "or 2.19 (spread)"
    )
    # hundreds of images: the factor is FACTOR's 2
    assert exposure_line(ExposureRange(210, (19.04, 21.26), (9.4, 18.3))) == (
        "mean grey 19.0 to 21.3, spread 9.4 to 18.3 (210 images); a photo warns beyond them by a factor of 2.00 "
        "(mean) or 2.01 (spread)"
    )
    assert exposure_line(ExposureRange(1, (50.0, 50.0), (0.0, 0.0))).startswith(
        "mean grey 50.0 to 50.0, spread 0.0 to 0.0 (1 image); a photo warns beyond them by a factor of 2.00 (mean) "
    )
    assert exposure_line(None) == NOT_RECORDED
    assert NOT_RECORDED == "not recorded (the model was saved before schema 12; a refit records it)"


def test_eagle_info_prints_the_training_exposure_in_one_line(
    lit_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    known = _with_exposure(lit_model, tmp_path / "known", {"images": 4, "mean": [40.0, 80.0], "spread": [10.0, 12.5]})
    assert main(["info", "--model", str(known)]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["training"]["exposure"] == {"images": 4, "mean": [40.0, 80.0], "spread": [10.0, 12.5]}
    assert err == (
        "eagle: training exposure: mean grey 40.0 to 80.0, spread 10.0 to 12.5 (4 images); a photo warns beyond them "
        "by a factor of 2.64 (mean) or 2.19 (spread)\n"
    )
    older = _with_exposure(lit_model, tmp_path / "older", None)  # as a model saved before schema 12 reads
    assert main(["info", "--model", str(older)]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["training"]["exposure"] is None
    assert err == "eagle: training exposure: not recorded (the model was saved before schema 12; a refit records it)\n"
    bad = _with_exposure(lit_model, tmp_path / "bad", {"images": 4, "mean": [90.0, 20.0], "spread": [10.0, 12.5]})
    assert main(["info", "--model", str(bad)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err == (
        f"eagle: error: {bad / 'model.json'}: malformed manifest (training.exposure.mean must be [low, high] with "
        "0 <= low <= high <= 255, not [90.0, 20.0])\n"
    )


def test_the_category_answer_carries_the_exposure_range_and_its_factors(lit_model: Path, tmp_path: Path) -> None:
    """What the console's category page shows: null for a model that recorded none, a malformed range refused."""
    from eagle_iad.service.routes_categories import describe

    known = _with_exposure(lit_model, tmp_path / "known", {"images": 4, "mean": [40.0, 80.0], "spread": [10.0, 12.5]})
    shown = describe(known, with_scores=False)["training_exposure"]
    assert shown == {
        "images": 4, "mean": [40.0, 80.0], "spread": [10.0, 12.5],
        "mean_factor": pytest.approx(2 * 2 ** 0.4), "spread_factor": pytest.approx(2 * 1.25 ** 0.4),
    }  # fmt: skip
    assert describe(_with_exposure(lit_model, tmp_path / "older", None), with_scores=False)["training_exposure"] is None
    bad = _with_exposure(lit_model, tmp_path / "bad", {"images": 0, "mean": [40.0, 80.0], "spread": [10.0, 12.5]})
    with pytest.raises(ValueError, match=r"training.exposure.images must be a whole number >= 1, not 0"):
        describe(bad, with_scores=False)
