"""16-bit PNGs holding fewer bits of data (``sBIT``), and the colour mode a model records (model schema 11).

Why: a Mono12 camera's frame (0..4095) saved as a 16-bit PNG was divided by 65535 and kept 16 grey levels of 256
(tire: image AUROC 0.71 against 0.85 from the same pixels as 8-bit), with no word at fit or inspect; and a
greyscale photograph of a good tire scored 126.9 (anomalous, 3 boxes) on a model fitted on colour images with no
warning, while a JPEG inspected by a PNG-fitted model is warned about (tests/test_encodings.py).
"""

from __future__ import annotations

import io
import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from expert_fakes import FAKE_CONFIG, FakeExtractor, noise_pngs
from PIL import Image

from eagle_iad.cli import main
from eagle_iad.errors import ImageError
from eagle_iad.expert import Expert, fit, load, save
from eagle_iad.expert.encodings import colour_warning, depth_warning, mixed_colour_warning
from eagle_iad.images import COLOUR, GREY, colour_mode, load_rgb, png_depth, sixteen_bit_use
from eagle_iad.pipeline import inspect_records


def _png(arr: np.ndarray, colour_type: int, significant: bytes | None = None) -> bytes:
    """A 16-bit PNG written by hand (Pillow writes no 16-bit RGB), with an ``sBIT`` chunk if given."""
    height, width = arr.shape[:2]
    rows = arr.astype(">u2").reshape(height, -1)
    raw = b"".join(b"\x00" + row.tobytes() for row in rows)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 16, colour_type, 0, 0, 0))
    sbit = b"" if significant is None else chunk(b"sBIT", significant)
    return b"\x89PNG\r\n\x1a\n" + header + sbit + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def _twelve_bit(seed: int, shape: tuple[int, int] = (40, 48)) -> tuple[np.ndarray, np.ndarray]:
    """An 8-bit grey frame and the same frame as a 12-bit camera holds it (0..4095, noise in the low bits)."""
    rng = np.random.default_rng(seed)
    eight = rng.integers(0, 256, shape, dtype=np.uint16)
    twelve = np.minimum(eight * 16 + rng.integers(0, 16, shape, dtype=np.uint16), 4095)
    return eight.astype(np.uint8), twelve


def test_a_12_bit_frame_with_sbit_keeps_its_grey_levels_and_one_without_is_read_as_before() -> None:
    _, twelve = _twelve_bit(1)
    with_sbit = load_rgb(_png(twelve, 0, b"\x0c"))
    expected = np.rint(twelve / 4095.0 * 255.0).astype(np.uint8)
    assert np.array_equal(with_sbit[..., 0], expected)
    assert len(np.unique(with_sbit)) > 200  # not 16 levels
    without = load_rgb(_png(twelve, 0))
    assert np.array_equal(without[..., 0], np.rint(twelve / 65535.0 * 255.0).astype(np.uint8))
    assert int(without.max()) <= 16
    assert png_depth(_png(twelve, 0, b"\x0c")) is not None and png_depth(_png(twelve, 0, b"\x0c")).significant == 12  # type: ignore[union-attr]
    assert png_depth(b"not a png") is None


def test_sbit_written_the_png_way_is_read_at_full_range() -> None:
    """The standard's writer shifts the data to the top bits: such a file, even a dark one, reads as before."""
    _, twelve = _twelve_bit(2)
    shifted = twelve << 4
    assert np.array_equal(load_rgb(_png(shifted, 0, b"\x0c")), load_rgb(_png(shifted, 0)))
    dark = (twelve // 32) << 4  # every sample below 4096, all multiples of 16: the PNG way, not the camera's
    assert np.array_equal(load_rgb(_png(dark, 0, b"\x0c")), load_rgb(_png(dark, 0)))
    assert np.array_equal(load_rgb(_png(twelve, 0, b"\x11")), load_rgb(_png(twelve, 0)))  # 17 bits: ignored


def test_a_16_bit_colour_png_whose_sbit_data_may_sit_in_the_low_bits_is_refused_naming_it(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    low = rng.integers(0, 4096, (40, 48, 3))
    path = tmp_path / "rgb12.png"
    path.write_bytes(_png(low, 2, b"\x0c\x0c\x0c"))
    with pytest.raises(ImageError, match=r"rgb12\.png: a 16-bit colour PNG whose sBIT chunk declares 12 significant"):
        load_rgb(path)
    full = rng.integers(0, 65536, (40, 48, 3))
    assert load_rgb(_png(full, 2, b"\x0c\x0c\x0c")).shape == (40, 48, 3)  # data in the top bits: read
    assert load_rgb(_png(low, 2)).max() <= 15  # no sBIT: read as before (the fit warns)


def test_a_fit_on_16_bit_frames_using_12_bits_without_sbit_warns_and_with_sbit_not(tmp_path: Path) -> None:
    plain, marked, eights = [], [], []
    for i in range(4):
        eight, twelve = _twelve_bit(10 + i, (80, 96))
        plain.append(tmp_path / f"plain{i}.png")
        plain[-1].write_bytes(_png(twelve, 0))
        marked.append(tmp_path / f"marked{i}.png")
        marked[-1].write_bytes(_png(twelve, 0, b"\x0c"))
        eights.append(tmp_path / f"eight{i}.png")
        Image.fromarray(eight).save(eights[-1])
    assert sixteen_bit_use(plain[0]) == 12
    assert sixteen_bit_use(marked[0]) is None and sixteen_bit_use(eights[0]) is None
    (warning,) = depth_warning(plain)
    assert warning.startswith("4 training images are 16-bit PNGs whose values use at most 12 of their 16 bits")
    assert "about 16 grey levels of 256" in warning and "sBIT chunk (12 significant bits)" in warning
    assert depth_warning(marked) == [] and depth_warning(eights) == []
    model = fit(plain, "cat", FAKE_CONFIG, extractor=FakeExtractor()).model
    assert any("use at most 12 of their 16 bits" in w for w in model.warnings)
    model = fit(marked, "cat", FAKE_CONFIG, extractor=FakeExtractor()).model
    assert not any("of their 16 bits" in w for w in model.warnings)


def test_colour_mode_is_read_from_the_pixels() -> None:
    rgb = np.random.default_rng(4).integers(0, 256, (20, 20, 3), dtype=np.uint8)
    assert colour_mode(rgb) == COLOUR
    grey = np.repeat(rgb[..., :1], 3, axis=2)
    assert colour_mode(grey) == GREY
    as_rgb_jpeg = io.BytesIO()
    Image.fromarray(grey).save(as_rgb_jpeg, "JPEG", quality=90)  # a grey scene in a colour JPEG
    assert Image.open(as_rgb_jpeg).mode == "RGB" and colour_mode(load_rgb(as_rgb_jpeg.getvalue())) == GREY


@pytest.fixture(scope="module")
def colour_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("colours")
    expert = fit(noise_pngs(root / "train", 4, seed=3), "cat", FAKE_CONFIG, extractor=FakeExtractor())
    return save(expert.model, root / "model")


def test_a_fit_records_its_colour_modes_and_a_greyscale_input_is_warned(colour_model: Path, tmp_path: Path) -> None:
    manifest = json.loads((colour_model / "model.json").read_text())
    assert manifest["schema_version"] >= 11
    assert manifest["training"]["colours"] == {"colour": 4}
    expert = Expert(load(colour_model), extractor=FakeExtractor())
    assert expert.model.train_colours == {"colour": 4}
    png = noise_pngs(tmp_path, 1, seed=9)[0]
    grey = tmp_path / "grey.png"
    Image.open(png).convert("L").save(grey)
    on_colour, on_grey, on_bytes, on_frame = inspect_records(
        expert, [png, grey, grey.read_bytes(), load_rgb(grey)], category="cat"
    )
    assert on_colour.warnings is None
    assert on_grey.warnings is not None and len(on_grey.warnings) == 1
    assert on_grey.warnings[0].startswith("a greyscale image inspected by a model fitted on colour images")
    assert on_bytes.warnings == on_frame.warnings == on_grey.warnings  # an upload, a station's decoded frame
    jpeg = tmp_path / "grey.jpg"
    Image.open(grey).save(jpeg, "JPEG", quality=95)
    (both,) = inspect_records(expert, [jpeg], category="cat")
    assert both.warnings is not None and [w.split(" inspected")[0] for w in both.warnings] == [
        "a JPEG (jpeg grey q95)",
        "a greyscale image",
    ]


def test_the_cli_prints_the_colour_warning(
    colour_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("eagle_iad.expert.patchcore.extractor_for", lambda config: FakeExtractor())
    grey = tmp_path / "g.png"
    Image.open(noise_pngs(tmp_path, 1, seed=9)[0]).convert("L").save(grey)
    assert main(["inspect", str(grey), "--model", str(colour_model), "--quiet"]) == 0
    assert "warning: a greyscale image inspected by a model fitted on colour images" in capsys.readouterr().out
    assert main(["inspect", str(grey), "--model", str(colour_model), "--quiet", "--json"]) == 0
    assert "greyscale image" in json.loads(capsys.readouterr().out)[0]["warnings"][0]


def test_a_model_saved_before_schema_11_warns_about_no_colour(colour_model: Path, tmp_path: Path) -> None:
    model = load(colour_model)
    older = save(type(model)(**{**model.__dict__, "train_colours": None}), tmp_path / "older")
    assert json.loads((older / "model.json").read_text())["training"]["colours"] is None
    assert load(older).train_colours is None
    grey = tmp_path / "g.png"
    Image.open(noise_pngs(tmp_path, 1, seed=9)[0]).convert("L").save(grey)
    (record,) = inspect_records(Expert(load(older), extractor=FakeExtractor()), [grey], category="cat")
    assert record.warnings is None
    assert colour_warning(None, GREY) is None and colour_warning({"grey": 2, "colour": 1}, GREY) is None
    warning = colour_warning({"grey": 3}, COLOUR)
    assert warning is not None and warning.startswith("a colour image inspected by a model fitted on greyscale")


def test_the_colour_warnings_quote_no_other_models_figures() -> None:
    # Shown on a verdict card beside the card's own score and threshold: tire's "tau 95.8" on a solar-cell card of
    # tau 154.4 read as that model's (a console tester's finding). No figure at all, so none can be another's.
    for trained, mode in (({"colour": 3}, GREY), ({"grey": 3}, COLOUR)):
        warning = colour_warning(trained, mode)
        assert warning is not None and "docs/METHOD.md, 'Input'" in warning
        assert not any(char.isdigit() for char in warning), warning


def test_stored_colours_are_checked(colour_model: Path, tmp_path: Path) -> None:
    from eagle_iad.errors import ModelFormatError
    from eagle_iad.expert.manifest import manifest_checksum

    folder = tmp_path / "edited"
    folder.mkdir()
    for name in ("model.json", "tensors.safetensors"):
        (folder / name).write_bytes((colour_model / name).read_bytes())
    data = json.loads((folder / "model.json").read_text())
    data["training"]["colours"] = {"sepia": 4}
    data["checksum"] = manifest_checksum(data)
    (folder / "model.json").write_text(json.dumps(data))
    with pytest.raises(ModelFormatError, match=r"training.colours has 'sepia'; the colour modes are"):
        load(folder)


def test_a_fit_mixing_greyscale_and_colour_warns(tmp_path: Path) -> None:
    assert mixed_colour_warning({"colour": 4}) == []
    pngs = noise_pngs(tmp_path, 4, seed=5)
    for path in pngs[:1]:
        Image.open(path).convert("L").save(path)
    model = fit(pngs, "cat", FAKE_CONFIG, extractor=FakeExtractor()).model
    assert model.train_colours == {"colour": 3, "grey": 1}
    assert any(
        w.startswith("the training images mix greyscale and colour (1 greyscale, 3 colour)") for w in model.warnings
    )


def test_the_service_reply_carries_the_colour_warning(tmp_path: Path) -> None:
    from conftest import LiveServer
    from test_service import call, multipart

    from eagle_iad.expert import ExpertConfig
    from eagle_iad.service import ServiceSettings, create_app

    models = tmp_path / "models"
    config = ExpertConfig(resize=72, crop=64, pretrain_dim=48, target_dim=32, batch_size=4)
    save(fit(noise_pngs(tmp_path / "train", 3, seed=1), "cat", config).model, models / "cat")
    settings = ServiceSettings(models_dir=models, state_dir=tmp_path / "state")
    query = noise_pngs(tmp_path / "query", 1, seed=2)[0]
    grey = io.BytesIO()
    Image.open(query).convert("L").save(grey, "PNG")
    with LiveServer(create_app(settings)) as live:
        answers = []
        for name, data in (("q.png", query.read_bytes()), ("g.png", grey.getvalue())):
            body, ctype = multipart({"category": "cat"}, [("image", name, data, "image/png")])
            status, _, answer = call("POST", f"{live.base}/v1/inspect", body=body, content_type=ctype)
            assert status == 200, answer
            answers.append(answer)
        assert answers[0]["warnings"] is None
        assert answers[1]["warnings"][0].startswith("a greyscale image inspected by a model fitted on colour images")
        stored = call("GET", f"{live.base}/v1/inspections/{answers[1]['id']}")[2]
        assert stored["warnings"] == answers[1]["warnings"]


def test_a_teach_adds_its_images_colour_modes(
    colour_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from eagle_iad.expert.teach import TeachImage, teach

    monkeypatch.setattr("eagle_iad.expert.patchcore.extractor_for", lambda config: FakeExtractor())
    folder = tmp_path / "taught"
    folder.mkdir()
    for name in ("model.json", "tensors.safetensors"):
        (folder / name).write_bytes((colour_model / name).read_bytes())
    grey = tmp_path / "g.png"
    Image.open(noise_pngs(tmp_path, 1, seed=11)[0]).convert("L").save(grey)
    teach(folder, [TeachImage("g.png", grey)], why="test", by="tester", force=True)
    assert load(folder).train_colours == {"colour": 4, "grey": 1}
