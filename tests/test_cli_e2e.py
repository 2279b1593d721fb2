"""End to end through the ``eagle`` CLI on real images: fit, eval-expert, inspect, demo, errors.

The tire data is found by ``tire_data.py`` (skipped with a reason when absent, as in a user's clone);
elpv ships with its PyPI package, so those tests always run.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from PIL import Image
from tire_data import TIRE, needs_tire

from eagle_iad.cli import main
from eagle_iad.data import get_layout
from eagle_iad.expert.manifest import SCHEMA_VERSION
from eagle_iad.naming import picture_stems


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope="module")
def elpv_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("elpv") / "model"
    assert (
        main(["fit", "--layout", "elpv", "--category", "mono", "--limit-train", "40", "--out", str(out), "--quiet"])
        == 0
    )
    return out


@pytest.mark.slow
@needs_tire
def test_tire_fit_and_eval_expert_well_above_chance(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = tmp_path / "tire"
    code, out, _ = run(
        capsys, "fit", "--data", str(TIRE), "--layout", "mvtec", "--category", "tire",
        "--limit-train", "60", "--out", str(model), "--quiet",
    )  # fmt: skip
    assert code == 0
    summary = json.loads(out)
    assert summary["train_images"] == 60
    # the whole 300x400 frame at its own resolution (native_up_to 512): a 320x416 input, 40 x 52 patches
    assert summary["bank_size"] == int(60 * 40 * 52 * 0.1)
    assert summary["train_patches"] == summary["coreset_from"] == 60 * 40 * 52  # under twice coreset_points: all
    assert summary["tau"] > 0 and summary["s_max"] > 0

    ev = tmp_path / "eval"
    code, out, _ = run(
        capsys, "eval-expert", "--data", str(TIRE), "--layout", "mvtec", "--category", "tire",
        "--model", str(model), "--out", str(ev), "--quiet",
    )  # fmt: skip
    assert code == 0
    metrics = json.loads((ev / "metrics.json").read_text())
    assert metrics["n_normal"] == 25 and metrics["n_anomalous"] == 87
    assert metrics["image_auroc"] > 0.7
    assert metrics["pixel_auroc"] > 0.95
    assert metrics["aupro"] > 0.85
    assert 0.0 <= metrics["at_tau"]["false_alarm_rate"] <= 1.0
    assert metrics["boxes"]["n_anomalous_with_mask"] == 87 and metrics["boxes"]["n_normal"] == 25
    assert 0.0 <= metrics["boxes"]["pointing_accuracy"] <= 1.0
    assert (ev / "report.md").exists() and (ev / "boxes_grid.png").exists()
    rows = [json.loads(line) for line in (ev / "scores.jsonl").read_text().splitlines()]
    assert len(rows) == 112
    with Image.open(ev / "histogram.png") as im:
        assert im.size[0] > 400


@pytest.mark.slow
def test_elpv_subset_eval_well_above_chance(
    elpv_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ev = tmp_path / "eval"
    code, _, _ = run(
        capsys, "eval-expert", "--layout", "elpv", "--category", "mono", "--model", str(elpv_model),
        "--limit-test", "80", "--out", str(ev), "--quiet",
    )  # fmt: skip
    assert code == 0
    metrics = json.loads((ev / "metrics.json").read_text())
    assert metrics["n_normal"] + metrics["n_anomalous"] == 80
    assert metrics["n_normal"] == round(80 * 147 / 460)
    assert metrics["image_auroc"] > 0.75
    assert metrics["pixel_auroc"] is None and metrics["aupro"] is None  # elpv has no masks
    assert metrics["boxes"]["pointing_accuracy"] is None and metrics["boxes"]["n_anomalous_with_mask"] == 0
    assert metrics["boxes"]["n_normal"] == metrics["n_normal"]
    with Image.open(ev / "boxes_grid.png") as im:  # anomalous cells with their boxes, no outline to draw
        im.load()


def test_inspect_json_and_pictures(elpv_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    test = get_layout("elpv").samples(None, "mono", "test")
    images = [str(test[0].path), str(next(s for s in test if s.label == 1).path)]
    out_dir = tmp_path / "pictures"
    code, out, _ = run(
        capsys, "inspect", *images, "--model", str(elpv_model), "--out", str(out_dir), "--json", "--quiet"
    )
    assert code == 0
    verdicts = json.loads(out)
    assert [v["image"] for v in verdicts] == images
    manifest = json.loads((elpv_model / "model.json").read_text())
    for v in verdicts:
        assert v["tau"] == pytest.approx(manifest["thresholds"]["tau"])
        assert v["s_max"] == pytest.approx(manifest["thresholds"]["s_max"])
        assert v["decision"] == ("anomalous" if v["score"] >= v["tau"] else "normal")
        assert v["in_band"] == (v["tau"] <= v["score"] < v["s_max"])
        assert (v["width"], v["height"]) == (300, 300)
        assert len(v["boxes"]) <= 3
        for box in v["boxes"]:
            assert 0 <= box["x0"] < box["x1"] <= 300 and 0 <= box["y0"] < box["y1"] <= 300
        if v["decision"] == "normal":
            assert v["boxes"] == []
        with Image.open(v["pictures"]["box"]) as im:
            assert im.size == (300, 300) and im.mode == "RGB"
        with Image.open(v["pictures"]["heatmap"]) as im:  # the picture with its colour bar underneath
            assert im.size[0] == 300 and im.size[1] > 300 and im.mode == "RGB"
        reference = v["reference"]  # the nearest normal training image, written beside the other pictures
        assert reference["unavailable"] is None
        assert reference["image"] == manifest["training"]["images"][reference["index"]]
        boxed = Path(v["pictures"]["box"]).name
        assert Path(v["pictures"]["reference"]).name == boxed.replace("_box.png", "_reference.jpg")
        with Image.open(v["pictures"]["reference"]) as im:
            assert im.format == "JPEG" and im.size == (300, 300)  # under 512 px: kept at its size


def test_inspect_text_output_names_decision(elpv_model: Path, capsys: pytest.CaptureFixture[str]) -> None:
    image = str(get_layout("elpv").samples(None, "mono", "test")[0].path)
    code, out, _ = run(capsys, "inspect", image, "--model", str(elpv_model), "--quiet")
    assert code == 0
    assert out.startswith(f"{image}: ")
    assert "score" in out and "tau" in out and "s_max" in out
    assert "\n    nearest normal training image: " in out


def test_inspect_bad_image_is_a_clear_error(
    elpv_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"this is not a png")
    code, out, err = run(capsys, "inspect", str(bad), "--model", str(elpv_model), "--quiet")
    assert code == 2
    assert out == ""
    assert err.strip() == f"eagle: error: {bad}: not a recognised image format"


def test_inspect_of_a_folder_says_to_give_its_images(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "batch"
    folder.mkdir()
    # The images are checked before the model loads, so no model is needed to see the refusal.
    code, out, err = run(capsys, "inspect", f"{folder}/", "--model", str(tmp_path / "model"), "--quiet")
    assert code == 2
    assert out == ""
    assert err.strip() == f"eagle: error: {folder}: is a folder; eagle inspect takes image files (give {folder}/*.png)"


def test_model_from_newer_version_is_refused(
    elpv_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    copy = tmp_path / "model"
    shutil.copytree(elpv_model, copy)
    manifest = json.loads((copy / "model.json").read_text())
    manifest["schema_version"] = SCHEMA_VERSION + 1  # one past the current schema
    manifest["package_version"] = "9.0.0"
    (copy / "model.json").write_text(json.dumps(manifest))
    image = str(get_layout("elpv").samples(None, "mono", "test")[0].path)
    code, _, err = run(capsys, "inspect", image, "--model", str(copy), "--quiet")
    assert code == 2
    assert f"model schema {SCHEMA_VERSION + 1} was written by a newer eagle-iad; this eagle-iad " in err
    assert "9.0.0" not in err


def test_fit_on_missing_folder_fails_without_writing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "model"
    code, _, err = run(capsys, "fit", "--data", str(tmp_path / "nope"), "--layout", "mvtec", "--category", "x",
                       "--out", str(out), "--quiet")  # fmt: skip
    assert code == 2
    assert err.startswith("eagle: error: ") and "nope" in err
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


def test_fit_refuses_one_image_category(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = tmp_path / "data" / "widget" / "train" / "good"
    good.mkdir(parents=True)
    Image.new("RGB", (64, 64), (120, 120, 120)).save(good / "000.png")
    test_good = tmp_path / "data" / "widget" / "test" / "good"
    test_good.mkdir(parents=True)
    Image.new("RGB", (64, 64), (120, 120, 120)).save(test_good / "000.png")
    out = tmp_path / "model"
    code, _, err = run(capsys, "fit", "--data", str(tmp_path / "data"), "--layout", "mvtec", "--category", "widget",
                       "--out", str(out), "--quiet")  # fmt: skip
    assert code == 2
    assert "has 1 training image(s); at least 2 normal images are needed" in err
    assert not out.exists()


@pytest.mark.slow
def test_demo_writes_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "demo"
    argv = ("demo", "--out", str(out), "--limit-train", "30", "--limit-test", "40", "--quiet")
    code, stdout, stderr = run(capsys, *argv)
    assert code == 0
    assert stdout.strip() == f"demo report: {out / 'report.md'}"
    # A few held-out cells of each kind, named by their truth, for the README's first `eagle inspect`.
    samples = sorted((out / "samples").iterdir())
    assert [p.name.split("_")[0] for p in samples] == ["defective"] * 3 + ["normal"] * 3
    test = {s.path.name: s for s in get_layout("elpv").samples(None, "mono", "test")}
    trained = {Path(p).name for p in json.loads((out / "model" / "model.json").read_text())["training"]["images"]}
    for sample in samples:
        source = test[sample.name.split("_", 1)[1]]
        assert sample.read_bytes() == source.path.read_bytes()
        assert source.label == (1 if sample.name.startswith("defective_") else 0)
        assert source.path.name not in trained
    command = f"eagle inspect {out / 'samples'}/*.png --model {out / 'model'} --out {out / 'my-inspect'}"
    assert f"[demo] next: {command}\n" in stderr
    assert command in (out / "report.md").read_text()
    report = (out / "report.md").read_text()
    assert "| image AUROC |" in report
    assert "![score histogram](eval/histogram.png)" in report
    for name in ("eval/metrics.json", "eval/histogram.png", "model/model.json", "verdicts.json"):
        assert (out / name).is_file(), name
    verdicts = json.loads((out / "verdicts.json").read_text())
    assert len(verdicts) == 4
    for v in verdicts:
        for path in v["pictures"].values():
            assert Path(path).is_file()


@pytest.mark.usefixtures("torch_single_thread")
def test_inspect_with_mllm_eagle(
    elpv_model: Path, tiny_mllm_dirs: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    test = get_layout("elpv").samples(None, "mono", "test")
    images = [str(test[0].path), str(next(s for s in test if s.label == 1).path)]
    spec = f"hf:{tiny_mllm_dirs['qwen2_5_vl']}"
    code, out, _ = run(
        capsys, "inspect", *images, "--model", str(elpv_model), "--mllm", spec, "--max-new-tokens", "2",
        "--caas-layers", "0,3", "--alpha", "0.5", "--caas-phase", "decode", "--json", "--quiet",
    )  # fmt: skip
    assert code == 0
    verdicts = json.loads(out)
    assert [v["image"] for v in verdicts] == images
    for v in verdicts:
        assert v["condition"] == "eagle"
        assert v["in_band"] == (v["tau"] <= v["score"] < v["s_max"])
        assert v["caas_applied"] == v["in_band"]
        if v["caas_applied"]:
            assert v["caas_settings"]["layers"] == [0, 3] and v["caas_settings"]["alpha"] == 0.5
            assert v["caas_settings"]["phase"] == "decode"
        roles = [item["role"] for item in v["prompt"] if item["type"] == "image"]
        assert roles == (["query", "boxed"] if v["expert_decision"] == "anomalous" else ["query"])
        assert v["answer"] in {"A", "B", "unparsable"}
        # why no boxed copy went is in the JSON too, not only in the text
        why = "none sent (the expert called it normal: the MLLM was shown the image alone)"
        assert v["metadata"].get("visual_prompt_note") == (None if v["expert_decision"] == "anomalous" else why)
    # the text says what answered each image and what became of CAAS, from the same answered_by fields
    code, text, _ = run(
        capsys, "inspect", *images, "--model", str(elpv_model), "--mllm", spec, "--max-new-tokens", "2", "--quiet"
    )  # fmt: skip
    assert code == 0
    said = [line.strip() for line in text.splitlines() if line.startswith("    answered by: ")]
    caas = ["applied" if v["caas_applied"] else "not needed (outside the band)" for v in verdicts]
    assert said == [f"answered by: {spec} (route single), CAAS {c}" for c in caas]
    code, text, _ = run(capsys, "inspect", images[0], "--model", str(elpv_model), "--mllm", spec,
                        "--max-new-tokens", "2", "--condition", "tgps", "--quiet")  # fmt: skip
    assert code == 0 and f"    answered by: {spec} (route single), CAAS off (condition tgps)\n" in text


@pytest.mark.usefixtures("torch_single_thread")
def test_inspect_mllm_baseline_without_expert(
    tiny_mllm_dirs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image = str(get_layout("elpv").samples(None, "mono", "test")[0].path)
    spec = f"hf:{tiny_mllm_dirs['llava']}"
    code, out, _ = run(capsys, "inspect", image, "--mllm", spec, "--condition", "baseline", "--max-new-tokens", "2")
    assert code == 0 and out.startswith(f"{image}: ") and "answer" in out
    code, out, _ = run(
        capsys, "inspect", image, "--mllm", spec, "--condition", "baseline", "--max-new-tokens", "2",
        "--capture-attention", "--out", str(tmp_path), "--json",
    )  # fmt: skip
    assert code == 0
    (verdict,) = json.loads(out)
    assert verdict["attention"]["grid"] == [1, 4, 4] and verdict["attention"]["coverage"] == [0, 0, 300, 300]
    pictures = verdict["metadata"]["pictures"]
    assert sorted(pictures) == [f"attention_L{layer}" for layer in range(4)]
    with Image.open(pictures["attention_L1"]) as im:
        assert im.size == (300, 300)
    code, _, err = run(capsys, "inspect", image, "--mllm", spec, "--max-new-tokens", "2")
    assert code == 2 and "--model is required" in err
    code, _, err = run(capsys, "inspect", image, "--mllm", "hf:/no/such/model", "--condition", "baseline")
    assert code == 2 and "cannot load MLLM" in err


@pytest.mark.usefixtures("torch_single_thread")
def test_inspect_with_mllm_writes_the_expert_pictures_and_the_visual_prompt(
    elpv_model: Path, tiny_mllm_dirs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``inspect --mllm --out`` writes what ``inspect --out`` writes, plus the boxed copy the MLLM was shown;
    before, it wrote nothing (no folder, no word) without --capture-attention, and overlays only with it."""
    model = tmp_path / "model"
    shutil.copytree(elpv_model, model)
    code, _, _ = run(capsys, "threshold", "--model", str(model), "--tau", "1", "--why", "every image anomalous")
    assert code == 0  # so that each image gets boxes and a visual prompt
    test = get_layout("elpv").samples(None, "mono", "test")
    images = [str(test[0].path), str(next(s for s in test if s.label == 1).path)]
    spec = f"hf:{tiny_mllm_dirs['qwen2_5_vl']}"
    out = tmp_path / "pictures"
    argv = ["inspect", *images, "--model", str(model), "--mllm", spec, "--max-new-tokens", "2", "--out", str(out)]
    code, stdout, _ = run(capsys, *argv, "--json", "--quiet")
    assert code == 0
    verdicts = json.loads(stdout)
    stems = picture_stems(images)  # the pictures' names, as without --mllm
    for image, stem, verdict in zip(images, stems, verdicts, strict=True):
        assert verdict["expert_decision"] == "anomalous"
        assert [item["role"] for item in verdict["prompt"] if item["type"] == "image"] == ["query", "boxed"]
        pictures = verdict["metadata"]["pictures"]
        assert pictures == {
            "heatmap": str(out / f"{stem}_heatmap.png"),
            "box": str(out / f"{stem}_box.png"),
            "reference": str(out / f"{stem}_reference.jpg"),
            "visual_prompt": str(out / f"{stem}_visual_prompt.png"),
        }
        with Image.open(pictures["visual_prompt"]) as sent, Image.open(image) as original:
            assert sent.size == original.size
        # the evidence picture tags each box for a person; the MLLM is shown the boxes untagged
        with Image.open(pictures["visual_prompt"]) as sent, Image.open(pictures["box"]) as evidence:
            assert sent.tobytes() != evidence.tobytes()
    # text mode says where each picture went; a second run refreshes its own pictures
    code, stdout, _ = run(capsys, *argv, "--quiet")
    assert code == 0
    assert f"visual_prompt: {out / (stems[0] + '_visual_prompt.png')}" in stdout
    assert f"heatmap: {out / (stems[1] + '_heatmap.png')}" in stdout
    ledger = json.loads((out / ".eagle-outputs.json").read_text())
    assert f"{stems[0]}_visual_prompt.png" in json.dumps(ledger)
    # text-only drops the picture prompt by design: the text says so, as it says why tgps sent none
    code, stdout, _ = run(capsys, *argv[:-2], "--out", str(tmp_path / "text-only"), "--condition", "text-only")
    assert code == 0 and "expert anomalous" in stdout
    why = ("    visual_prompt: none sent (the text-only condition gives the MLLM no picture prompt: it was shown the "
           "image alone, with the expert's finding in words)\n")  # fmt: skip
    assert stdout.count(why) == 2 and "_visual_prompt.png" not in stdout
    # baseline runs no expert: with nothing to write, --out is refused before any model loads
    empty = tmp_path / "nothing"
    code, _, err = run(capsys, "inspect", images[0], "--mllm", spec, "--condition", "baseline", "--out", str(empty))
    assert code == 2 and "nothing to write" in err and "--capture-attention" in err
    assert not empty.exists()
