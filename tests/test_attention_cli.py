"""``eagle attention``: per-layer attention, plain MLLM vs EAGLE, on tiny real-architecture MLLMs (docs/METHOD.md §4).

The expert is fitted on six real elpv cells; the MLLMs are the tiny random Qwen2.5-VL and LLaVA-1.5
checkpoints. Metric values are checked against hand computation from the captured per-token weights
(a mask covering exactly one grid cell), and CAAS's effect on the share is checked by exact
recomputation from the very query/key tensors of the run (see :func:`test_eagle_share_is_the_exact_caas_recomputation`
for why "EAGLE share >= baseline share" is not a property random weights guarantee).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from eagle_iad.cli import main
from eagle_iad.data import get_layout
from eagle_iad.errors import ConfigError, ImageError
from eagle_iad.eval.attention_analysis import (
    CURVES_SIZE_IN,
    CURVES_WITH_MASK_SIZE_IN,
    DPI,
    OVERLAY_CELL_IN,
    AnalysisConfig,
    analyze,
    default_overlay_layers,
    load_inputs,
)
from eagle_iad.images import load_mask
from eagle_iad.mllm import AttentionCapture
from eagle_iad.mllm.attention import layer_metrics
from eagle_iad.mllm.caas import AttentionRequest, LogitProbe

pytestmark = pytest.mark.usefixtures("torch_single_thread")

#: elpv cells are 300x300. Qwen2.5-VL (tiny processor: <= 6272 px) resizes them to 56x56 = a 4x4 patch
#: grid, 2x2-merged to (1, 2, 2): one token per 150x150 quadrant. LLaVA (56 px CLIP, square: no crop)
#: has a 4x4 patch grid: one token per 75x75 block.
GRIDS = {
    "qwen2_5_vl": (1, 2, 2),
    "llava": (1, 4, 4),
    "qwen3_vl": (1, 2, 2),
    "glm4v": (1, 2, 2),
    "gemma3": (1, 2, 2),
    "minicpmv4_6": (1, 2, 2),
}
#: The hand-made mask of each family: exactly one grid cell ``(row, col)``.
MASK_CELL = {"qwen2_5_vl": (0, 1), "llava": (1, 2), "qwen3_vl": (1, 0), "glm4v": (0, 1), "gemma3": (1, 1)}
MASK_CELL["minicpmv4_6"] = (0, 0)
#: The hybrid MiniCPM-V's attention layers (1 and 3; 0 and 2 are linear attention) and default CAAS layer.
ATTENTION_LAYERS = {"minicpmv4_6": [1, 3]}
CAAS_LAYERS = {"minicpmv4_6": [1]}
#: Gemma 3's sliding layers (window 32 in the tiny model) no longer hold the image when the answer starts.
EVICTED = {"gemma3": {0, 2}}
#: Families whose 300 px query has more visual tokens than its grid (MiniCPM-V: source view + slices).
SLICED = {"minicpmv4_6"}


@pytest.fixture(scope="module")
def elpv_expert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from eagle_iad.expert import ExpertConfig, fit, save

    cells = get_layout("elpv").samples(None, "mono", "train")[:6]
    expert = fit([cell.path for cell in cells], "mono", ExpertConfig(batch_size=6))
    return save(expert.model, tmp_path_factory.mktemp("attn_expert") / "model")


@pytest.fixture(scope="module")
def cell_image() -> str:
    anomalous = next(s for s in get_layout("elpv").samples(None, "mono", "test") if s.label == 1)
    return str(anomalous.path)


def _cell_mask(path: Path, family: str, size: int = 300) -> Path:
    _, h, w = GRIDS[family]
    row, col = MASK_CELL[family]
    mask = np.zeros((size, size), dtype=np.uint8)
    mask[row * size // h : (row + 1) * size // h, col * size // w : (col + 1) * size // w] = 255
    Image.fromarray(mask).save(path)
    return path


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# --- metrics, unit level --------------------------------------------------------------------------


def test_one_cell_mask_metrics_equal_hand_computation_on_a_cropped_grid() -> None:
    """LLaVA-style: a 4x4 grid over the centre square of a 56x84 image (coverage x 14..70)."""
    values = np.array([0.01 * (k + 1) for k in range(16)], dtype=np.float32)
    values[5] = 0.5  # token 5 = row 1, col 1: the peak
    capture = AttentionCapture(
        (3, 19), (1, 4, 4), {0: values, 1: values[::-1].copy()}, {0: 0.9, 1: 0.9}, (14, 0, 70, 56)
    )
    mask = np.zeros((56, 84), dtype=bool)
    mask[14:28, 28:42] = True  # exactly token 5's cell (14x14 px), area fraction 196 / 4704
    first, second = layer_metrics(capture, mask, (56, 84))
    area = 196 / (56 * 84)
    assert first.layer == 0 and first.share == pytest.approx(0.9)
    assert first.concentration == pytest.approx(float(values[5] / values.sum()) / area, rel=1e-6)
    assert first.peak_in_mask is True
    reversed_values = values[::-1]
    assert second.concentration == pytest.approx(float(reversed_values[5] / reversed_values.sum()) / area, rel=1e-6)
    assert second.peak_in_mask is False  # its peak is token 10
    # Without a mask only the share is defined; an empty mask has no concentration.
    (plain, _) = layer_metrics(capture)
    assert plain.share == pytest.approx(0.9) and plain.concentration is None and plain.peak_in_mask is None
    (empty, _) = layer_metrics(capture, np.zeros((56, 84), dtype=bool))
    assert empty.concentration is None and empty.peak_in_mask is False
    with pytest.raises(ConfigError, match="differs"):
        layer_metrics(capture, mask, (56, 80))


def test_mask_must_match_the_image_size(tmp_path: Path, cell_image: str) -> None:
    bad = tmp_path / "mask.png"
    Image.fromarray(np.zeros((300, 200), dtype=np.uint8)).save(bad)
    with pytest.raises(ImageError, match=r"200x300 \(width x height\) but the image is 300x300; a mask must"):
        load_inputs(cell_image, bad)


def test_any_non_zero_mask_pixel_is_defect(tmp_path: Path) -> None:
    """0/1 and label-valued masks (VisA, labelling tools) mark defects as surely as 0/255 ones."""
    values = np.zeros((20, 30), dtype=np.uint8)
    values[2:5, 3:9] = [[1], [2], [255]]
    path = tmp_path / "labels.png"
    Image.fromarray(values).save(path)
    assert np.array_equal(load_mask(path, (20, 30)), values > 0)


def test_default_overlay_layers() -> None:
    assert default_overlay_layers((9, 10, 11, 12, 13, 14), range(28)) == [9, 12, 14, 27]
    assert default_overlay_layers((1, 2), range(4)) == [1, 2, 3]
    assert default_overlay_layers((1,), (1, 3)) == [1, 3]  # hybrid: the last attention layer
    assert default_overlay_layers((), range(4)) == [3]


# --- the command, end to end ----------------------------------------------------------------------


def _check_pictures(out: Path, report: dict[str, Any], with_mask: bool) -> None:
    curves = CURVES_WITH_MASK_SIZE_IN if with_mask else CURVES_SIZE_IN
    with Image.open(out / "curves.png") as im:
        assert im.size == (round(curves[0] * DPI), round(curves[1] * DPI))
    layers = report["overlay_layers"]
    cell = round(OVERLAY_CELL_IN * DPI)
    with Image.open(out / "overlays.png") as im:
        assert im.size == (cell * len(layers), cell * 2)
    for condition in ("baseline", "eagle"):
        for layer in layers:
            with Image.open(out / f"overlay_{condition}_layer{layer}.png") as im:
                assert im.size == (300, 300) and im.mode == "RGB"
    expected = {"attention.json", "curves.png", "overlays.png"} | {
        f"overlay_{c}_layer{k}.png" for c in ("baseline", "eagle") for k in layers
    }
    assert {p.name for p in out.iterdir()} == expected | {".eagle-outputs.json"}  # nothing half-written left behind
    assert sorted(report["files"]) == sorted(expected)


@pytest.mark.parametrize("family", list(GRIDS))
def test_attention_command_with_one_cell_mask_and_forced_caas(
    family: str,
    elpv_expert_dir: Path,
    cell_image: str,
    tiny_mllm_dirs: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    mask = _cell_mask(tmp_path / "mask.png", family)
    out = tmp_path / "out"
    code, stdout, err = _cli(
        capsys, "attention", cell_image, "--model", str(elpv_expert_dir), "--mllm", f"hf:{tiny_mllm_dirs[family]}",
        "--mask", str(mask), "--out", str(out), "--force-caas", "--max-new-tokens", "2", "--json",
    )  # fmt: skip
    assert code == 0, err
    report = json.loads(stdout)
    assert report == json.loads((out / "attention.json").read_text())
    assert report["schema_version"] == 1 and report["image"] == cell_image and report["mask"] == str(mask)
    assert report["mllm"] == f"hf:{tiny_mllm_dirs[family]}" and report["num_layers"] == 4
    caas = report["caas"]
    assert caas["rule"] == "forced" and caas["force_caas"] and caas["applied"]
    expected_caas = CAAS_LAYERS.get(family, [1, 2])
    assert caas["layers"] == expected_caas and caas["scaled_layers"] == expected_caas and caas["alpha"] == 0.6
    assert caas["in_band"] == (caas["tau"] <= caas["score"] < caas["s_max"])
    layers = ATTENTION_LAYERS.get(family, [0, 1, 2, 3])
    assert report["overlay_layers"] == sorted({*expected_caas, layers[-1]})
    assert set(report["conditions"]) == {"baseline", "eagle"}
    row, col = MASK_CELL[family]
    t, h, w = GRIDS[family]
    cell_index = row * w + col
    for name, condition in report["conditions"].items():
        assert condition["grid"] == list(GRIDS[family]) and condition["family"] == family
        assert condition["caas_applied"] == (name == "eagle")
        assert condition["prompt_images"][0] == "query"
        assert [entry["layer"] for entry in condition["layers"]] == layers
        for entry in condition["layers"]:
            values = np.asarray(condition["attention"]["per_layer"][str(entry["layer"])], dtype=np.float64)
            assert values.shape == (t * h * w,)
            assert 0.0 <= entry["share"] <= 1.0
            if entry["layer"] in EVICTED.get(family, set()):
                assert entry["share"] == 0.0 and not values.any()
                assert entry["concentration"] is None and entry["peak_in_mask"] is None
                continue
            if family in SLICED:
                assert entry["share"] > values.sum()  # the slices' tokens count in the share, not on the grid
            else:
                assert entry["share"] == pytest.approx(values.sum(), rel=1e-5)
            # Hand computation: one cell of h*w equal cells -> weight share of that cell * (h*w).
            assert entry["concentration"] == pytest.approx(values[cell_index] / values.sum() * (h * w), rel=1e-4)
            assert entry["peak_in_mask"] == (int(np.argmax(values)) == cell_index)
    _check_pictures(out, report, with_mask=True)


def test_attention_command_without_mask_band_rule_and_layer_choice(
    elpv_expert_dir: Path,
    cell_image: str,
    tiny_mllm_dirs: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "out"
    spec = f"hf:{tiny_mllm_dirs['qwen2_5_vl']}"
    code, stdout, err = _cli(
        capsys, "attention", cell_image, "--model", str(elpv_expert_dir), "--mllm", spec, "--out", str(out),
        "--max-new-tokens", "2", "--layers", "0,3",
    )  # fmt: skip
    assert code == 0, err
    assert "baseline: answer" in stdout and "eagle: answer" in stdout and "band rule" in stdout
    report = json.loads((out / "attention.json").read_text())
    caas = report["caas"]
    assert caas["rule"] == "band" and not caas["force_caas"]
    assert caas["applied"] == caas["in_band"] == report["conditions"]["eagle"]["caas_applied"]
    assert report["mask"] is None and report["overlay_layers"] == [0, 3]
    assert "random_test_model" not in report  # a model without the tiny builder's note: not marked
    with Image.open(out / "curves.png") as im:
        assert "Description" not in im.text
    for condition in report["conditions"].values():
        assert len(condition["layers"]) == 4
        for entry in condition["layers"]:
            assert 0.0 <= entry["share"] <= 1.0
            assert entry["concentration"] is None and entry["peak_in_mask"] is None
    _check_pictures(out, report, with_mask=False)

    # A mask of the wrong size is refused before any model is loaded, with a clear message.
    bad = tmp_path / "bad.png"
    Image.fromarray(np.zeros((300, 301), dtype=np.uint8)).save(bad)
    code, _, err = _cli(
        capsys, "attention", cell_image, "--model", str(elpv_expert_dir), "--mllm", "hf:/no/such/model",
        "--mask", str(bad), "--out", str(tmp_path / "bad"),
    )  # fmt: skip
    assert code == 2 and "must have exactly the image's size" in err and not (tmp_path / "bad").exists()
    code, _, err = _cli(
        capsys, "attention", cell_image, "--model", str(elpv_expert_dir), "--mllm", spec, "--out", str(tmp_path / "l"),
        "--max-new-tokens", "2", "--layers", "7",
    )  # fmt: skip
    assert code == 2 and "outside the model's decoder layers 0..3" in err
    code, _, err = _cli(capsys, "attention", cell_image, "--model", str(elpv_expert_dir), "--mllm", spec,
                        "--out", str(tmp_path / "m"), "--max-new-tokens", "1")  # fmt: skip
    assert code == 2 and "--max-new-tokens >= 2" in err


def test_attention_of_a_random_test_model_is_marked_in_json_and_pictures(
    elpv_expert_dir: Path,
    cell_image: str,
    tiny_mllm_dirs: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """As ``eagle eval`` marks its run: the folder holds the note ``python -m eagle_iad.testing.tiny`` leaves."""
    import shutil

    from eagle_iad.mllm.attention import RANDOM_CAPTION
    from eagle_iad.mllm.base import RANDOM_MODEL_NOTE

    model = tmp_path / "tiny-qwen"
    shutil.copytree(tiny_mllm_dirs["qwen2_5_vl"], model)
    (model / RANDOM_MODEL_NOTE).write_text("random weights\n")
    out = tmp_path / "out"
    code, _, err = _cli(
        capsys, "attention", cell_image, "--model", str(elpv_expert_dir), "--mllm", f"hf:{model}", "--out", str(out),
        "--max-new-tokens", "2", "--layers", "3",
    )  # fmt: skip
    assert code == 0, err
    report = json.loads((out / "attention.json").read_text())
    assert report["random_test_model"] is True
    assert "attention.json, curves.png and overlays.png are marked random_test_model" in err
    assert RANDOM_CAPTION == "random test model: not a measurement"
    for picture in ("curves.png", "overlays.png"):
        with Image.open(out / picture) as im:
            assert im.text["Description"] == RANDOM_CAPTION, picture
    _check_pictures(out, report, with_mask=False)  # the caption line keeps the pictures' sizes


def test_eagle_share_is_the_exact_caas_recomputation(
    elpv_expert_dir: Path, cell_image: str, hf_backends: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Why not assert "EAGLE share >= baseline share" in the CAAS layers: it is not guaranteed.

    * The two conditions see different prompts (TGPS adds the prior text and maybe the boxed copy),
      so their hidden states, and hence their attention, differ before any scaling.
    * Even for one logit row, ``(1 + alpha) * a`` raises ``e^a`` only where ``a > 0``; random weights give
      query-image logits of both signs, so the share can fall. It must rise in a head whose query-image
      logits are all positive, and fall in one where they are all negative.
    * In later CAAS layers the inputs already differ because earlier layers were scaled.

    So: recompute the first decode step's attention from the run's own query/key tensors, with the
    query columns scaled by ``1 + alpha``, and require the reported share to equal it exactly (float
    tolerance), and the per-head direction to follow the sign rule above.
    """
    from eagle_iad.expert import load_expert

    backend = hf_backends("qwen2_5_vl")
    requests: list[tuple[AttentionRequest, list[LogitProbe]]] = []
    original = backend._request

    def with_probe(prepared: Any, options: Any) -> AttentionRequest:
        request: AttentionRequest = original(prepared, options)
        probes: list[LogitProbe] = []
        request.probe = probes.append
        requests.append((request, probes))
        return request

    monkeypatch.setattr(backend, "_request", with_probe)
    rgb, _ = load_inputs(cell_image)
    alpha = 0.6
    config = AnalysisConfig(force_caas=True, max_new_tokens=2)
    report = analyze(rgb, cell_image, load_expert(elpv_expert_dir), backend, config)
    assert [bool(r.layers) for r, _ in requests] == [False, True]  # baseline, then eagle with CAAS
    request, probes = requests[1]
    assert request.span is not None and len(request.span) == 1  # Qwen: one contiguous run per image
    ((start, end),) = request.span
    eagle = {entry.layer: entry.share for entry in report.conditions["eagle"].layers}
    checked_heads = 0
    for probe in probes:
        if probe.query.shape[2] != 1 or probe.layer not in request.layers:
            continue  # only the first decode step (the captured one) of the CAAS layers
        plain = (torch.matmul(probe.query, probe.key.transpose(2, 3)) * probe.scaling)[0, :, -1, :].double()
        scaled = plain.clone()
        scaled[:, start:end] *= 1.0 + alpha
        torch.testing.assert_close(probe.logits[0, :, -1, :].double(), scaled, rtol=1e-6, atol=1e-6)
        share_scaled = torch.softmax(scaled, dim=-1)[:, start:end].sum(dim=-1)  # per head
        share_plain = torch.softmax(plain, dim=-1)[:, start:end].sum(dim=-1)
        assert eagle[probe.layer] == pytest.approx(float(share_scaled.mean()), rel=1e-5)
        for head in range(plain.shape[0]):
            span_logits = plain[head, start:end]
            if bool((span_logits > 0).all()):
                assert share_scaled[head] > share_plain[head]
                checked_heads += 1
            elif bool((span_logits < 0).all()):
                assert share_scaled[head] < share_plain[head]
                checked_heads += 1
    assert {p.layer for p in probes if p.query.shape[2] == 1} == set(range(4))
    # The seeded tiny model on this cell has heads with one-signed query-image logits, so the sign
    # rule is really exercised (the exact-share equality holds for every head regardless).
    assert checked_heads > 0


def test_inspect_capture_attention_of_a_random_test_model_captions_its_overlays(
    cell_image: str, tiny_mllm_dirs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``eagle inspect --capture-attention``'s ``_attn_L*.png`` carry the caption ``eagle attention``'s pictures do."""
    import shutil

    from eagle_iad.mllm.attention import RANDOM_CAPTION
    from eagle_iad.mllm.base import RANDOM_MODEL_NOTE

    model = tmp_path / "tiny-qwen"
    shutil.copytree(tiny_mllm_dirs["qwen2_5_vl"], model)
    argv = ["inspect", cell_image, "--condition", "baseline", "--max-new-tokens", "2", "--capture-attention", "--json"]
    code, out, err = _cli(capsys, *argv, "--mllm", f"hf:{model}", "--out", str(tmp_path / "real"))
    assert code == 0, err
    plain = json.loads(out)[0]["metadata"]["pictures"]
    (model / RANDOM_MODEL_NOTE).write_text("random weights\n")
    code, out, err = _cli(capsys, *argv, "--mllm", f"hf:{model}", "--out", str(tmp_path / "random"))
    assert code == 0, err
    marked = json.loads(out)[0]["metadata"]["pictures"]
    assert sorted(marked) == sorted(plain) and plain
    for kind in plain:
        with Image.open(plain[kind]) as real, Image.open(marked[kind]) as noise:
            assert "Description" not in real.text and noise.text["Description"] == RANDOM_CAPTION
            # the caption band sits above the overlay, whose pixels are kept
            assert noise.size == (real.size[0], real.size[1] + 36)
            assert np.array_equal(np.asarray(noise.convert("RGB"))[36:], np.asarray(real.convert("RGB")))


def test_sliding_window_layers_are_named_with_why_their_image_attention_is_flat(
    elpv_expert_dir: Path,
    cell_image: str,
    tiny_mllm_dirs: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Gemma 3's sliding layers (0 and 2 in the tiny model, window 32) no longer hold the image when the answer
    starts, so their overlays are flat by design. attention.json, curves.png, overlays.png and each of their
    per-layer pictures say which layers those are and why (they showed a flat overlay without a word); so do
    ``eagle inspect --capture-attention``'s overlays and text. A model without sliding layers says nothing."""
    from eagle_iad.mllm.attention import sliding_window_note

    note = sliding_window_note([0, 2], 32)
    assert note.startswith("L0, L2: sliding-window attention (window 32 tokens): each token there sees only the last")
    out = tmp_path / "out"
    spec = f"hf:{tiny_mllm_dirs['gemma3']}"
    code, _, err = _cli(capsys, "attention", cell_image, "--model", str(elpv_expert_dir), "--mllm", spec,
                        "--out", str(out), "--max-new-tokens", "2", "--layers", "0,1,2,3")  # fmt: skip
    assert code == 0, err
    report = json.loads((out / "attention.json").read_text())
    # the image starts 42 positions before the answer in both prompts: beyond the window of 32
    assert report["sliding_window"] == {
        "layers": [0, 2],
        "window": 32,
        "distance": {"baseline": 42, "eagle": 42},
        "note": note,
    }
    for name in ("curves.png", "overlays.png"):
        with Image.open(out / name) as im:
            assert im.text["Description"] == note, name
    for layer in range(4):
        with Image.open(out / f"overlay_baseline_layer{layer}.png") as im:
            assert im.text.get("Description") == (note if layer in (0, 2) else None), layer
    # eagle inspect: the sliding layers' overlays carry the one-layer note, and the text says it once.
    pictures = tmp_path / "inspect"
    code, stdout, err = _cli(capsys, "inspect", cell_image, "--mllm", spec, "--condition", "baseline",
                             "--capture-attention", "--max-new-tokens", "2", "--out", str(pictures))  # fmt: skip
    assert code == 0, err
    assert f"    attention: {note}" in stdout
    stem = Path(cell_image).stem
    for layer in range(4):
        with Image.open(pictures / f"{stem}_attn_L{layer}.png") as im:
            expected = sliding_window_note([layer], 32) if layer in (0, 2) else None
            assert im.text.get("Description") == expected, layer
    # Qwen2.5-VL has no sliding layers: nothing is said.
    plain = tmp_path / "plain"
    code, _, err = _cli(capsys, "attention", cell_image, "--model", str(elpv_expert_dir), "--mllm",
                        f"hf:{tiny_mllm_dirs['qwen2_5_vl']}", "--out", str(plain), "--max-new-tokens", "2")  # fmt: skip
    assert code == 0, err
    assert "sliding_window" not in json.loads((plain / "attention.json").read_text())
    with Image.open(plain / "curves.png") as im:
        assert "Description" not in im.text


def test_a_sliding_layer_whose_window_reaches_the_image_is_not_marked(
    elpv_expert_dir: Path, cell_image: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Gemma 3's released window (1024 tokens) holds a typical EAGLE prompt whole: its sliding layers then see the
    image, and a flat overlay there is a finding, not the window. A layer is marked only when the image's first
    token lies ``window`` or more positions before the generated token attending (it sees itself and the
    ``window - 1`` before): at exactly that distance the first image token's captured attention is 0 and the note
    is given with the distance; one position more of window and it is seen, with no note; with a window larger
    than the prompt, ``eagle attention`` and ``eagle inspect`` say nothing of sliding windows."""
    from eagle_iad.mllm import GenerateOptions, load_backend
    from eagle_iad.testing.tiny import build_tiny_gemma3
    from eagle_iad.tgps.prompt import ImageItem, TextItem

    items = [TextItem("Look:"), ImageItem(role="query", ref="q"), TextItem("Is it defective? Answer yes or no.")]
    rgb = (np.random.default_rng(0).random((64, 64, 3)) * 255).astype(np.uint8)
    options = GenerateOptions(max_new_tokens=2, capture_attention=True)
    probe = load_backend(f"hf:{build_tiny_gemma3(tmp_path / 'wide', sliding_window=4096)}")
    reply = probe.generate(items, {"q": rgb}, options)
    assert "sliding_window" not in reply.metadata
    distance = reply.metadata["prompt_tokens"] - reply.metadata["image_spans"][0][0][0]
    assert 0 < distance < 4096
    for window in (distance, distance + 1):
        backend = load_backend(f"hf:{build_tiny_gemma3(tmp_path / f'w{window}', sliding_window=window)}")
        reply = backend.generate(items, {"q": rgb}, options)
        assert reply.attention is not None
        first = {layer: float(row[0]) for layer, row in reply.attention.per_layer.items()}
        if window == distance:  # the image's first token is out of the sliding layers' sight
            assert reply.metadata["sliding_window"]["layers"] == [0, 2]
            assert reply.metadata["sliding_window"]["distance"] == distance
            assert first[0] == 0.0 and first[2] == 0.0 and first[1] > 0.0 and first[3] > 0.0
        else:  # every image token is in sight: nothing to explain away
            assert "sliding_window" not in reply.metadata
            assert all(value > 0.0 for value in first.values()), first
    out = tmp_path / "out"
    spec = f"hf:{tmp_path / 'wide'}"
    code, _, err = _cli(capsys, "attention", cell_image, "--model", str(elpv_expert_dir), "--mllm", spec,
                        "--out", str(out), "--max-new-tokens", "2", "--layers", "0,1,2,3")  # fmt: skip
    assert code == 0, err
    assert "sliding_window" not in json.loads((out / "attention.json").read_text())
    for name in ("curves.png", "overlays.png"):
        with Image.open(out / name) as im:
            assert "Description" not in im.text, name
    pictures = tmp_path / "inspect"
    code, stdout, err = _cli(capsys, "inspect", cell_image, "--mllm", spec, "--condition", "baseline",
                             "--capture-attention", "--max-new-tokens", "2", "--out", str(pictures))  # fmt: skip
    assert code == 0, err
    assert "sliding-window" not in stdout and "attention: L" not in stdout
