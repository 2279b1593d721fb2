"""Inputs are checked before a model loads, and eval-expert says how many defect images had no mask.

The model path given to the CLI here does not exist: if a command loaded it before looking at the
images, the error would name the model; the expected message names the bad image instead.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from expert_fakes import FAKE_CONFIG, FakeExtractor, noise_pngs
from PIL import Image

from eagle_iad.cli import main
from eagle_iad.data import Sample
from eagle_iad.eval.expert_eval import evaluate_expert
from eagle_iad.expert import fit


def _truncated_png(path: Path) -> Path:
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(path)
    path.write_bytes(path.read_bytes()[:-400])
    return path


@pytest.mark.parametrize("mllm", [False, True])
def test_inspect_checks_images_before_the_model_loads(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], mllm: bool
) -> None:
    good = noise_pngs(tmp_path, 1, seed=1)[0]
    bad = _truncated_png(tmp_path / "bad.png")
    extra = ["--mllm", "hf:/nonexistent-mllm"] if mllm else []
    assert main(["inspect", str(good), str(bad), "--model", str(tmp_path / "no-model"), *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"eagle: error: {bad}: image data is truncated or corrupt") and err.count("\n") == 1, err


def test_eval_expert_checks_images_before_the_model_loads(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "data"
    noise_pngs(root / "part" / "train" / "good", 2, seed=1)
    noise_pngs(root / "part" / "test" / "good", 2, seed=2)
    (root / "part" / "test" / "crack").mkdir(parents=True)
    thin = root / "part" / "test" / "crack" / "thin.png"
    Image.new("RGB", (20_000, 16)).save(thin)
    args = ["eval-expert", "--data", str(root), "--layout", "folder", "--category", "part",
            "--model", str(tmp_path / "no-model"), "--out", str(tmp_path / "ev"), "--quiet"]  # fmt: skip
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err == (f"eagle: error: {thin}: 20000x16 is too elongated (aspect ratio 1250:1 exceeds the limit of 32:1; "
                   "set EAGLE_MAX_ASPECT to change it)\n")  # fmt: skip
    assert not (tmp_path / "ev").exists()


def test_eval_expert_counts_defect_images_without_masks(tmp_path: Path) -> None:
    expert = fit(noise_pngs(tmp_path / "train", 3, seed=1), "cat", FAKE_CONFIG, extractor=FakeExtractor())
    normal = noise_pngs(tmp_path / "normal", 2, seed=2)
    defects = noise_pngs(tmp_path / "defect", 3, seed=3)
    mask = tmp_path / "mask.png"
    box = np.zeros((80, 96), dtype=np.uint8)
    box[10:30, 10:30] = 255
    Image.fromarray(box).save(mask)
    samples = [Sample(p, 0, "cat", "test") for p in normal] + [
        Sample(defects[0], 1, "cat", "test", "crack", mask),
        Sample(defects[1], 1, "cat", "test", "crack", None),
        Sample(defects[2], 1, "cat", "test", "crack", None),
    ]
    evaluation = evaluate_expert(expert, samples, tmp_path / "out")
    assert evaluation.defects_without_mask == 2 and evaluation.pixel_auroc is not None
    assert json.loads((tmp_path / "out" / "metrics.json").read_text())["defects_without_mask"] == 2
