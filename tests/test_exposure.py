"""Per-image exposure (issue 29): each input's grey mean and spread become ImageNet's before the backbone.

The default for new fits; ``--preset paper`` and every model saved before the setting keep the pixels'
own. Checked against a float64 reference computation, for the invariance that is its reason to exist
(a darker, flatter photograph of the same thing gives the same input), in every preprocessing mode,
and through the fit options, the CLI and a save/load. The exported graph's float32 form is held to the
torch path by the export parity tests (tests/test_export.py fits its models at the defaults).
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from expert_fakes import FAKE_CONFIG, FakeExtractor, noise_pngs

from eagle_iad.cli import main
from eagle_iad.errors import ConfigError
from eagle_iad.expert import Expert, ExpertConfig, fit, load, save
from eagle_iad.expert.preprocess import (
    EXPOSURE_MEAN,
    EXPOSURE_MIN_SPREAD,
    EXPOSURE_SPREAD,
    expose,
    input_size_for,
    normalise,
    prepare,
)
from eagle_iad.fit_options import EXPOSURES, fit_options
from eagle_iad.images import IMAGENET_MEAN, IMAGENET_STD


def _reference(rgb: np.ndarray) -> np.ndarray:
    """The definition in float64: (x - mean) * (0.226 / max(spread, 1/255)) + 0.449, then ImageNet's per channel."""
    x = rgb.astype(np.float64) / 255.0
    gain = np.mean(IMAGENET_STD) / max(x.std(), 1.0 / 255.0)
    exposed = (x - x.mean()) * gain + np.mean(IMAGENET_MEAN)
    return ((exposed - np.asarray(IMAGENET_MEAN)) / np.asarray(IMAGENET_STD)).transpose(2, 0, 1)


def _dark(seed: int, shape: tuple[int, int] = (48, 64)) -> np.ndarray:
    """A dark, low-contrast photograph like tire's (grey level about 19 of 255)."""
    rng = np.random.default_rng(seed)
    return np.clip(rng.normal(19, 12, (*shape, 3)), 0, 255).astype(np.uint8)


def test_the_constants_are_imagenets_channel_averages() -> None:
    assert abs(EXPOSURE_MEAN - 0.449) < 1e-12
    assert abs(EXPOSURE_SPREAD - (0.229 + 0.224 + 0.225) / 3) < 1e-12
    assert EXPOSURE_MIN_SPREAD == 1 / 255


def test_normalise_with_exposure_equals_the_float64_definition() -> None:
    rgb = _dark(0)
    got = normalise(rgb, "image").numpy()
    np.testing.assert_allclose(got, _reference(rgb), rtol=0, atol=2e-6)
    # exposed pixels, before ImageNet's per-channel step, have the target mean and spread
    exposed = expose(rgb.astype(np.float32) / 255, "image").astype(np.float64)
    assert exposed.mean() == pytest.approx(EXPOSURE_MEAN, abs=1e-6)
    assert exposed.std() == pytest.approx(EXPOSURE_SPREAD, abs=1e-6)


def test_none_is_the_pixels_own() -> None:
    rgb = _dark(1)
    plain = (rgb.astype(np.float32) / np.float32(255.0) - np.float32(IMAGENET_MEAN)) / np.float32(IMAGENET_STD)
    assert torch.equal(normalise(rgb, "none"), torch.from_numpy(np.ascontiguousarray(plain.transpose(2, 0, 1))))
    arr = rgb.astype(np.float32) / 255
    assert expose(arr, "none") is arr


def test_a_darker_flatter_photograph_gives_the_same_input() -> None:
    """What exposure is for: gain and offset of the whole image (colours kept) no longer reach the backbone."""
    arr = _dark(2).astype(np.float32) / 255
    darker = arr * np.float32(0.6) + np.float32(0.01)
    np.testing.assert_allclose(expose(darker, "image"), expose(arr, "image"), rtol=0, atol=3e-6)
    # without it the two inputs differ by about the gain
    assert float(np.abs(expose(darker, "none") - expose(arr, "none")).max()) > 0.05


def test_a_flat_image_takes_the_mean_grey_not_a_division_by_zero() -> None:
    flat = np.full((32, 32, 3), 0.2, dtype=np.float32)
    out = expose(flat, "image")
    assert np.all(np.isfinite(out)) and np.allclose(out, EXPOSURE_MEAN, atol=1e-7)
    # a spread under one grey level is amplified as if it were one grey level, not into its noise
    nearly = flat.copy()
    nearly[0, 0, 0] += 0.5 / 255
    got = expose(nearly, "image")
    spread = float(nearly.astype(np.float64).std())
    assert spread < EXPOSURE_MIN_SPREAD
    assert float(got[0, 0, 0] - got[1, 1, 1]) == pytest.approx(
        0.5 / 255 * EXPOSURE_SPREAD / EXPOSURE_MIN_SPREAD, rel=1e-5
    )


@pytest.mark.parametrize(
    "config",
    [
        ExpertConfig(preprocess="resize", size=64, input_hw=input_size_for(48, 64, 64)),
        ExpertConfig(preprocess="tile", size=64, tile=32, tile_overlap=8, input_hw=input_size_for(48, 64, 64)),
        ExpertConfig(preprocess="center-crop", resize=48, crop=32),
        ExpertConfig(preprocess="scale", size=64, pixel_scale=1.0),
    ],
    ids=["resize", "tile", "center-crop", "scale"],
)
def test_every_mode_exposes_its_whole_input_once(config: ExpertConfig) -> None:
    """Statistics over the mode's whole input (all tiles together, the crop alone), as the exported graph does."""
    rgb = _dark(3)
    views, _ = prepare(rgb, config)
    plain, _ = prepare(rgb, replace(config, exposure="none"))
    assert views.shape == plain.shape
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    pixels = (plain * std + mean).double()  # the input in [0, 1], as the mode cut it
    if config.preprocess == "tile":  # the statistics are the whole input's, before it is cut into tiles
        whole = torch.from_numpy(_reference_input(rgb, config))
        centre, spread = whole.mean(), whole.std(unbiased=False)
    else:
        centre, spread = pixels.mean(), pixels.std(unbiased=False)
    expected = (pixels - centre) * (EXPOSURE_SPREAD / max(float(spread), EXPOSURE_MIN_SPREAD)) + EXPOSURE_MEAN
    np.testing.assert_allclose((views * std + mean).double().numpy(), expected.numpy(), rtol=0, atol=3e-6)


def _reference_input(rgb: np.ndarray, config: ExpertConfig) -> np.ndarray:
    from eagle_iad.expert.preprocess import preprocessor_of

    pixels, _ = preprocessor_of(config).host_pixels(rgb, config)
    return pixels.astype(np.float64) / 255.0


def test_the_setting_is_declared_once_and_old_models_read_as_none() -> None:
    option = next(o for o in fit_options() if o.name == "exposure")
    assert (option.default, option.choices) == ("image", EXPOSURES) == ("image", ("image", "none"))
    assert ExpertConfig().exposure == "image"
    assert ExpertConfig.from_preset("paper").exposure == "none"
    saved = ExpertConfig().to_dict()
    del saved["exposure"]
    assert ExpertConfig.from_dict(saved).exposure == "none"
    with pytest.raises(ConfigError, match=r"^unknown exposure 'auto'; choose one of 'image', 'none'$"):
        ExpertConfig(exposure="auto").validate()


def test_cli_refuses_an_unknown_exposure(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--layout", "elpv", "--category", "mono", "--exposure", "auto", "--out", str(tmp_path / "m")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err  # argparse quotes the choices from Python 3.12.8 on
    assert "argument --exposure: invalid choice: 'auto' (choose from " in err and "image" in err and "none" in err


def test_a_fitted_model_keeps_its_exposure_and_inspects_the_same_after_a_reload(tmp_path: Path) -> None:
    """Fitted with exposure, saved and loaded: the setting travels with the model, and a darker copy of a
    training image scores as that image does (the bank saw the same input)."""
    paths = noise_pngs(tmp_path / "train", 6, seed=4)
    config = replace(FAKE_CONFIG, exposure="image")
    expert = fit(paths, "noise", config, extractor=FakeExtractor())
    save(expert.model, tmp_path / "model")
    manifest = json.loads((tmp_path / "model" / "model.json").read_text())
    assert manifest["config"]["exposure"] == "image"
    loaded = Expert(load(tmp_path / "model"), extractor=FakeExtractor())
    assert loaded.model.config.exposure == "image"
    from PIL import Image

    rgb = np.asarray(Image.open(paths[0]).convert("RGB"), dtype=np.float32)
    darker = tmp_path / "darker.png"
    Image.fromarray(np.round(rgb * 0.5).astype(np.uint8)).save(darker)
    before, again, dark = (e.inspect(p) for e, p in ((expert, paths[0]), (loaded, paths[0]), (loaded, darker)))
    assert again.score == before.score
    # halving every pixel (and rounding to uint8) leaves the exposed input within rounding of the original
    assert dark.score == pytest.approx(before.score, abs=0.05 * max(before.score, 1e-3) + 1e-3)
    plain = fit(paths, "noise", FAKE_CONFIG, extractor=FakeExtractor())
    assert plain.inspect(darker).score > 2 * plain.inspect(paths[0]).score + 1e-3


class _Exposure(torch.nn.Module):
    def forward(self, image: torch.Tensor) -> torch.Tensor:
        from eagle_iad.expert.export import graph_exposure

        return graph_exposure(image.to(torch.float32) / 255.0)


@pytest.mark.parametrize("runtime", ["onnx", "openvino"])
def test_the_exported_exposure_matches_the_host_on_large_bright_flat_inputs(tmp_path: Path, runtime: str) -> None:
    """The graph's float32 statistics against the host's float64 ones where float32 sums err most: a bright,
    low-contrast 2048 x 2048 input (the gain is large and multiplies the centre's error) and a dark one."""
    ort = pytest.importorskip("onnxruntime", reason="the deploy extra is not installed")
    rng = np.random.default_rng(7)
    bright = np.clip(rng.normal(250, 3, (1, 2048, 2048, 3)), 0, 255).astype(np.uint8)
    dark = np.clip(rng.normal(19, 12, (1, 2048, 2048, 3)), 0, 255).astype(np.uint8)
    path = tmp_path / "exposure.onnx"
    program = torch.onnx.export(
        _Exposure().eval(), (torch.zeros(1, 64, 64, 3, dtype=torch.uint8),), dynamo=True, input_names=["image"],
        output_names=["exposed"], verbose=False,
        dynamic_shapes={"image": {1: torch.export.Dim("h", min=32, max=4096),
                                  2: torch.export.Dim("w", min=32, max=4096)}},
    )  # fmt: skip
    assert program is not None
    program.save(str(path))
    if runtime == "onnx":
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])

        def run(image: np.ndarray) -> np.ndarray:
            return np.asarray(session.run(["exposed"], {"image": image})[0])
    else:
        pytest.importorskip("openvino", reason="the deploy extra is not installed")
        from eagle_iad.expert.runtime import compile_openvino

        compiled = compile_openvino(path)  # the thread keeps its signal stack (eagle_iad.signal_stack)

        def run(image: np.ndarray) -> np.ndarray:
            return np.asarray(compiled({"image": image})[compiled.output("exposed")])

    for image in (bright, dark):
        host = expose(image[0].astype(np.float32) / np.float32(255.0), "image")
        got = run(image)[0]
        # float32 rounding of (x - centre) x gain alone is about 2.5e-6 here (gain 19 on the bright image); one
        # plain or two-step float32 mean of 12.6 million values was off by about 4e-4
        assert float(np.abs(got - host).max()) < 1e-5
