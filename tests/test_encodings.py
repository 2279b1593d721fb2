"""Training images' encodings (model schema 10) and the warning on a verdict whose input was encoded otherwise.

Why: tire's normal test images re-saved as JPEG (quality 95) all score above tau on a model fitted on the
PNGs at the default exposure (docs/METHOD.md, "Exposure"); the verdict must say its input differs.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from expert_fakes import FAKE_CONFIG, FakeExtractor, noise_pngs
from PIL import Image

from eagle_iad.cli import main
from eagle_iad.expert import Expert, fit, load, save
from eagle_iad.expert.encodings import input_warning, mixed_warning
from eagle_iad.images import frame_count, image_encoding, load_rgb
from eagle_iad.pipeline import inspect_records


def _jpeg(path: Path, out: Path, **options: int) -> Path:
    Image.open(path).convert("RGB").save(out, "JPEG", quality=95, **options)
    return out


def test_an_encoding_is_read_from_the_header(tmp_path: Path) -> None:
    png = noise_pngs(tmp_path, 1, seed=1)[0]
    assert image_encoding(png) == "lossless"
    assert image_encoding(_jpeg(png, tmp_path / "a.jpg")) == "jpeg 4:2:0 q95"
    assert image_encoding(_jpeg(png, tmp_path / "b.jpg", subsampling=0)) == "jpeg 4:4:4 q95"
    grey = io.BytesIO()
    Image.open(png).convert("L").save(grey, "JPEG")
    assert image_encoding(grey.getvalue()) == "jpeg grey q75"  # PIL's default quality


@pytest.fixture(scope="module")
def png_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("encodings")
    expert = fit(noise_pngs(root / "train", 4, seed=3), "cat", FAKE_CONFIG, extractor=FakeExtractor())
    return save(expert.model, root / "model")


def test_a_fit_records_its_training_images_encodings(png_model: Path) -> None:
    manifest = json.loads((png_model / "model.json").read_text())
    assert manifest["training"]["encodings"] == {"lossless": 4}
    assert load(png_model).train_encodings == {"lossless": 4}


def test_a_jpeg_inspected_by_a_lossless_model_is_warned_and_a_png_is_not(png_model: Path, tmp_path: Path) -> None:
    expert = Expert(load(png_model), extractor=FakeExtractor())
    png = noise_pngs(tmp_path, 1, seed=9)[0]
    jpeg = _jpeg(png, tmp_path / "q.jpg")
    on_png, on_jpeg, on_bytes, on_frame = inspect_records(
        expert, [png, jpeg, jpeg.read_bytes(), np.asarray(Image.open(png))], category="cat"
    )
    assert on_png.warnings is None
    assert on_jpeg.warnings is not None and len(on_jpeg.warnings) == 1
    assert "JPEG (jpeg 4:2:0 q95) inspected by a model fitted on lossless images" in on_jpeg.warnings[0]
    assert "compression artefacts can score as defects" in on_jpeg.warnings[0]
    assert on_bytes.warnings == on_jpeg.warnings  # an upload, as the service and a station hand it over
    assert on_frame.warnings is None  # a decoded frame's encoding is unknown
    # the scores are the pipeline's own: the warning changes no number
    assert on_jpeg.score == expert.inspect(jpeg).score


def test_a_file_of_several_frames_says_only_its_first_was_inspected(png_model: Path, tmp_path: Path) -> None:
    """An animated GIF or PNG was scored on its first frame without a word: a defect in another frame went unseen."""
    expert = Expert(load(png_model), extractor=FakeExtractor())
    png = noise_pngs(tmp_path, 3, seed=9)
    frames = [Image.open(path).convert("RGB") for path in png]
    frames[0].save(tmp_path / "anim.png", save_all=True, append_images=frames[1:2], format="PNG")
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:], format="GIF")
    on_apng, on_gif, on_bytes, on_still = inspect_records(
        expert,
        [tmp_path / "anim.png", tmp_path / "anim.gif", (tmp_path / "anim.gif").read_bytes(), png[0]],
        category="cat",
    )
    said = "only the first of the file's {} frames was inspected (an animation or a multi-page file; docs/USAGE.md, "
    said += "'Images')"
    assert on_apng.warnings == [said.format(2)]
    assert on_gif.warnings == on_bytes.warnings == [said.format(3)]
    assert on_still.warnings is None
    # The default image apart from the animation (no fcTL before IDAT, acTL: 1 frame; the APNG specification): the
    # default image is what is decoded and inspected and the animation's one frame is left out, so the file counts
    # 2, and the Node runtime counts so too (clients/ts/src/local/encodings.ts, frameCount).
    frames[0].save(tmp_path / "apart.png", save_all=True, append_images=frames[1:2], default_image=True, format="PNG")
    assert b"acTL\x00\x00\x00\x01" in (tmp_path / "apart.png").read_bytes()
    assert frame_count(tmp_path / "apart.png") == 2
    (on_apart,) = inspect_records(expert, [tmp_path / "apart.png"], category="cat")
    assert on_apart.warnings == [said.format(2)]
    assert np.array_equal(load_rgb(tmp_path / "apart.png"), np.asarray(frames[0]))  # the default image inspected


def test_the_cli_prints_the_warning(
    png_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("eagle_iad.expert.patchcore.extractor_for", lambda config: FakeExtractor())
    jpeg = _jpeg(noise_pngs(tmp_path, 1, seed=9)[0], tmp_path / "q.jpg")
    assert main(["inspect", str(jpeg), "--model", str(png_model), "--quiet"]) == 0
    assert "warning: a JPEG (jpeg 4:2:0 q95) inspected by a model fitted on lossless images" in capsys.readouterr().out
    assert main(["inspect", str(jpeg), "--model", str(png_model), "--quiet", "--json"]) == 0
    assert "compression artefacts" in json.loads(capsys.readouterr().out)[0]["warnings"][0]


def test_a_model_without_encodings_warns_about_nothing() -> None:
    """A model saved before schema 10 (or an export) does not know what it was fitted on."""
    assert input_warning(None, "jpeg 4:2:0") is None
    assert input_warning({"jpeg 4:2:0": 30}, "jpeg 4:4:4") is None  # one family: the sampling is not judged
    warning = input_warning({"jpeg 4:2:0": 30}, "lossless")
    assert warning is not None and warning.startswith("a lossless image inspected by a model fitted on jpeg images")


def test_the_warnings_speak_of_the_users_images_and_send_to_the_manual_for_figures() -> None:
    """The warnings say what can happen to the user's images; the figures measured on tire are in METHOD.md."""
    tail = (
        "; fit on images from the line's own camera, saved as it saves them "
        "(measured figures: docs/METHOD.md, 'Exposure', 'Inputs encoded otherwise')"
    )
    assert input_warning({"lossless": 30}, "jpeg 4:2:0 q95") == (
        "a JPEG (jpeg 4:2:0 q95) inspected by a model fitted on lossless images: compression artefacts can score "
        "as defects, even at a high quality" + tail
    )
    assert input_warning({"jpeg 4:2:0 q95": 30}, "lossless") == (
        "a lossless image inspected by a model fitted on jpeg images: the training images' compression artefacts "
        "are missing from it and it can score as unlike them" + tail
    )
    assert input_warning({"jpeg 4:2:0 q95": 30}, "jpeg 4:2:0 q75") == (
        "a JPEG of quality 75 (jpeg 4:2:0 q75) inspected by a model fitted on JPEGs of quality 95: it has more "
        "compression error than the training images, which can score as defects even a few quality points away" + tail
    )
    # the section the warnings name is the manual's
    method = (Path(__file__).parents[1] / "docs" / "METHOD.md").read_text(encoding="utf-8")
    assert "### Exposure (" in method and "**Inputs encoded otherwise than the training images**" in method


def test_a_fit_on_mixed_encodings_warns(tmp_path: Path) -> None:
    assert mixed_warning({"lossless": 4}) == []
    assert "mix encodings (2 jpeg 4:2:0, 4 lossless)" in mixed_warning({"jpeg 4:2:0": 2, "lossless": 4})[0]
    pngs = noise_pngs(tmp_path, 4, seed=3)
    paths = [*pngs[:2], *(_jpeg(p, p.with_suffix(".jpg")) for p in pngs[2:])]
    model = fit(paths, "cat", FAKE_CONFIG, extractor=FakeExtractor()).model
    assert model.train_encodings == {"jpeg 4:2:0 q95": 2, "lossless": 2}
    assert any("mix encodings" in warning for warning in model.warnings)


def test_a_jpegs_quality_is_read_from_its_quantization_table(tmp_path: Path) -> None:
    """Every quality PIL (libjpeg) and OpenCV write is read back exactly: the header states none."""
    cv2 = pytest.importorskip("cv2", reason="OpenCV (the camera extra) is not installed")
    rgb = np.asarray(Image.open(noise_pngs(tmp_path, 1, seed=2)[0]).convert("RGB"))
    for quality in range(1, 101):
        pil = io.BytesIO()
        Image.fromarray(rgb).save(pil, "JPEG", quality=quality)
        assert image_encoding(pil.getvalue()) == f"jpeg 4:2:0 q{quality}"
    ok, opencv = cv2.imencode(".jpg", rgb, [cv2.IMWRITE_JPEG_QUALITY, 85])
    assert ok and image_encoding(opencv.tobytes()) == "jpeg 4:2:0 q85"


def test_a_jpeg_of_another_quality_than_the_training_jpegs_is_warned_both_ways() -> None:
    trained = {"jpeg 4:2:0 q95": 30}
    lower = input_warning(trained, "jpeg 4:2:0 q75")
    assert lower is not None and lower.startswith(
        "a JPEG of quality 75 (jpeg 4:2:0 q75) inspected by a model fitted on JPEGs of quality 95: it has more "
        "compression error than the training images"
    )
    higher = input_warning({"jpeg 4:2:0 q75": 3, "jpeg 4:4:4 q80": 2}, "jpeg 4:2:0 q90")
    assert higher is not None and "fitted on JPEGs of qualities 75 to 80: it has less compression error" in higher
    # within the margin, and the sampling, are not judged
    assert input_warning(trained, "jpeg 4:4:4 q93") is None
    assert input_warning(trained, "jpeg 4:2:0 q97") is None
    assert input_warning(trained, "jpeg 4:2:0 q92") is not None
    # a model of schema 10's first day recorded no quality, and a JPEG without a table has none: not judged
    assert input_warning({"jpeg 4:2:0": 30}, "jpeg 4:2:0 q75") is None
    # ... nor once a teach has added JPEGs whose quality it knows: the first 30's is still unknown
    assert input_warning({"jpeg 4:2:0": 30, "jpeg 4:2:0 q80": 5}, "jpeg 4:2:0 q95") is None
    assert input_warning(trained, "jpeg 4:2:0") is None


def test_a_model_fitted_on_jpegs_warns_on_a_lower_quality_and_not_on_its_own(tmp_path: Path) -> None:
    pngs = noise_pngs(tmp_path, 5, seed=4)
    train = [_jpeg(p, p.with_suffix(".jpg")) for p in pngs[:4]]
    expert = fit(train, "cat", FAKE_CONFIG, extractor=FakeExtractor())
    assert expert.model.train_encodings == {"jpeg 4:2:0 q95": 4}
    same = _jpeg(pngs[4], tmp_path / "same.jpg")
    low = tmp_path / "low.jpg"
    Image.open(pngs[4]).convert("RGB").save(low, "JPEG", quality=75)
    on_same, on_low = inspect_records(expert, [same, low], category="cat")
    assert on_same.warnings is None
    assert on_low.warnings is not None and "a JPEG of quality 75 (jpeg 4:2:0 q75)" in on_low.warnings[0]


def test_a_jpegs_quality_is_read_from_the_table_its_luma_uses() -> None:
    """The luminance table is the one the first component names, not table 0 by position."""
    from eagle_iad.images import jpeg_quality

    rgb = (np.arange(16 * 16 * 3) % 251).astype(np.uint8).reshape(16, 16, 3)
    data = io.BytesIO()
    Image.fromarray(rgb).save(data, "JPEG", quality=60)
    image = Image.open(io.BytesIO(data.getvalue()))
    assert jpeg_quality(image) == 60
    tables = image.quantization
    image.quantization = {0: tables[1], 1: tables[0]}  # the luma table stored under id 1
    image.layer = [(c, h, v, 1 - t) for c, h, v, t in image.layer]
    assert jpeg_quality(image) == 60


@pytest.mark.parametrize("counts", [{"lossless": 2.7}, {"lossless": True}, {"lossless": "3"}, {"lossless": 0}, [1]])
def test_stored_encodings_are_whole_counts(png_model: Path, tmp_path: Path, counts: object) -> None:
    """A hand-edited count is refused by name, not read as another number (2.7 as 2, true as 1)."""
    from eagle_iad.errors import ModelFormatError
    from eagle_iad.expert.manifest import manifest_checksum

    model = tmp_path / "model"
    model.mkdir()
    for file in png_model.iterdir():
        if file.is_file():
            (model / file.name).write_bytes(file.read_bytes())
    manifest = json.loads((model / "model.json").read_text())
    manifest["training"]["encodings"] = counts
    manifest["checksum"] = manifest_checksum(manifest)
    (model / "model.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelFormatError, match=r"malformed manifest \(training\.encodings"):
        load(model)
