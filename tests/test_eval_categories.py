"""A model of another category is refused by ``eagle eval-expert`` and ``eagle eval``, naming both.

One wrong ``--model`` in a sweep would otherwise give a plausible table of the wrong model's numbers.
``--allow-category-mismatch`` evaluates it anyway, and the report is then headed with both names.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from expert_fakes import FAKE_CONFIG, FakeExtractor, noise_pngs

import eagle_iad.expert
from eagle_iad.cli import main
from eagle_iad.errors import ConfigError
from eagle_iad.eval.runner import ensure_expert
from eagle_iad.expert import Expert, fit, save


def _data(root: Path) -> Path:
    """A folder-layout category ``part``: 2 normal and 2 ``crack`` test images."""
    noise_pngs(root / "part" / "train" / "good", 2, seed=1)
    noise_pngs(root / "part" / "test" / "good", 2, seed=2)
    noise_pngs(root / "part" / "test" / "crack", 2, seed=3)
    return root


@pytest.fixture
def mono_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Expert:
    """An expert fitted as category ``mono``, which ``load_expert`` returns whatever folder it is given."""
    expert = fit(noise_pngs(tmp_path / "train", 3, seed=1), "mono", FAKE_CONFIG, extractor=FakeExtractor())
    monkeypatch.setattr(eagle_iad.expert, "load_expert", lambda directory, runtime="torch": expert)
    return expert


def _eval_expert(tmp_path: Path, *extra: str) -> list[str]:
    return ["eval-expert", "--data", str(_data(tmp_path / "data")), "--layout", "folder", "--category", "part",
            "--model", str(tmp_path / "mono-model"), "--out", str(tmp_path / "ev"), "--quiet", *extra]  # fmt: skip


@pytest.mark.usefixtures("mono_model")
def test_eval_expert_refuses_a_model_of_another_category(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(_eval_expert(tmp_path)) == 2
    err = capsys.readouterr().err
    assert err == (
        f"eagle: error: {tmp_path / 'mono-model'} is a model of category 'mono', but --category is 'part'; give "
        "the model fitted on 'part', or --allow-category-mismatch to evaluate it on 'part' anyway (the report "
        "then names both)\n"
    )
    assert not (tmp_path / "ev").exists()


@pytest.mark.usefixtures("mono_model")
def test_allowed_mismatch_heads_the_report_with_both_categories(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(_eval_expert(tmp_path, "--allow-category-mismatch")) == 0
    capsys.readouterr()
    report = (tmp_path / "ev" / "report.md").read_text()
    assert report.startswith("# Expert evaluation: part (evaluated with a model of mono)\n")
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert (metrics["category"], metrics["data_category"]) == ("mono", "part")


def test_eval_expert_of_the_same_category_names_it_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from eagle_iad.data import get_layout
    from eagle_iad.eval.expert_eval import evaluate_expert

    expert = fit(noise_pngs(tmp_path / "train", 3, seed=1), "part", FAKE_CONFIG, extractor=FakeExtractor())
    samples = get_layout("folder").samples(_data(tmp_path / "data"), "part", "test")
    evaluation = evaluate_expert(expert, samples, tmp_path / "ev")
    assert evaluation.data_category is None
    assert (tmp_path / "ev" / "report.md").read_text().startswith("# Expert evaluation: part\n")


def test_eval_run_refuses_a_model_of_another_category_in_the_models_folder(tmp_path: Path) -> None:
    expert = fit(noise_pngs(tmp_path / "train", 3, seed=1), "mono", FAKE_CONFIG, extractor=FakeExtractor())
    save(expert.model, tmp_path / "models" / "part")

    def training() -> list[Path]:
        raise AssertionError("a saved model is not fitted again")

    with pytest.raises(ConfigError) as caught:
        ensure_expert(tmp_path / "models", "part", training, None, 0)
    assert str(caught.value) == (
        f"{tmp_path / 'models' / 'part'} is a model of category 'mono', but the run evaluates it as 'part'; "
        f"move it to {tmp_path / 'models' / 'mono'} (or delete it to fit 'part' there)"
    )
    save(expert.model, tmp_path / "models" / "mono")
    assert ensure_expert(tmp_path / "models", "mono", training, None, 0) == tmp_path / "models" / "mono"


# --------------------------------------------------------------------------- missing masks


def _mvtec_with_misnamed_masks(root: Path) -> Path:
    """An MVTec-layout category ``part`` whose 4 defect masks are named ``<stem>.png``, not ``<stem>_mask.png``."""
    import numpy as np
    from PIL import Image

    noise_pngs(root / "part" / "train" / "good", 3, seed=1)
    noise_pngs(root / "part" / "test" / "good", 3, seed=2)
    for index in range(4):
        rng = np.random.default_rng(10 + index)
        rgb = rng.integers(0, 256, (80, 96, 3), dtype=np.uint8)
        mask = np.zeros((80, 96), dtype=np.uint8)
        rgb[24:56, 28:68] = 255
        mask[24:56, 28:68] = 255
        (root / "part" / "test" / "spot").mkdir(parents=True, exist_ok=True)
        (root / "part" / "ground_truth" / "spot").mkdir(parents=True, exist_ok=True)
        Image.fromarray(rgb).save(root / "part" / "test" / "spot" / f"{index:03d}.png")
        Image.fromarray(mask).save(root / "part" / "ground_truth" / "spot" / f"{index:03d}.png")  # MVTec: _mask.png
    return root


def test_misnamed_masks_are_a_warning_and_said_in_the_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    expert = fit(noise_pngs(tmp_path / "train", 3, seed=1), "part", FAKE_CONFIG, extractor=FakeExtractor())
    monkeypatch.setattr(eagle_iad.expert, "load_expert", lambda directory, runtime="torch": expert)
    data = _mvtec_with_misnamed_masks(tmp_path / "data")
    args = ["eval-expert", "--data", str(data), "--layout", "mvtec", "--category", "part",
            "--model", str(tmp_path / "model"), "--out", str(tmp_path / "ev"), "--quiet"]  # fmt: skip
    assert main(args) == 0
    err = capsys.readouterr().err
    first = data / "part" / "ground_truth" / "spot" / "000_mask.png"
    note = (
        f"4 of 4 defect images have no mask (first looked for: {first}; masks are read as "
        "ground_truth/<defect>/<stem>_mask.png); pixel AUROC, AUPRO and the box measures leave them out"
    )
    assert f"eagle: warning: {note}\n" in err

    report = (tmp_path / "ev" / "report.md").read_text()
    assert f"**Masks:** {note}." in report
    rows = [json.loads(line) for line in (tmp_path / "ev" / "scores.jsonl").read_text().splitlines()]
    with_boxes = sum(r["label"] == 1 and bool(r["boxes"]) for r in rows)
    assert with_boxes > 0  # the bright blocks are boxed: the count below is not a trivial 0
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert metrics["at_tau"]["tp"] == 4 and metrics["unrecognised_defects"] is None  # three images keep no coverage
    assert (f"| median box / defect area | n/a: no anomalous image has a mask ({with_boxes} of 4 anomalous images "
            "have boxes: the product boxes only the 4 flagged by score) |") in report  # fmt: skip
    assert (metrics["defects_without_mask"], metrics["defects_with_boxes"]) == (4, with_boxes)


def test_correctly_named_masks_give_no_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    expert = fit(noise_pngs(tmp_path / "train", 3, seed=1), "part", FAKE_CONFIG, extractor=FakeExtractor())
    monkeypatch.setattr(eagle_iad.expert, "load_expert", lambda directory, runtime="torch": expert)
    data = _mvtec_with_misnamed_masks(tmp_path / "data")
    for mask in sorted((data / "part" / "ground_truth" / "spot").iterdir()):
        mask.rename(mask.with_name(f"{mask.stem}_mask.png"))
    args = ["eval-expert", "--data", str(data), "--layout", "mvtec", "--category", "part",
            "--model", str(tmp_path / "model"), "--out", str(tmp_path / "ev"), "--quiet"]  # fmt: skip
    assert main(args) == 0
    assert "warning" not in capsys.readouterr().err
    report = (tmp_path / "ev" / "report.md").read_text()
    assert "**Masks:**" not in report
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    masked = metrics["boxes"]["n_anomalous_with_boxes"]
    ratio = f"{metrics['boxes']['median_area_ratio']:.2f}"
    expected = f"| median box / defect area | {ratio} (over {masked} masked images with boxes; {masked} of 4"
    assert expected in report
