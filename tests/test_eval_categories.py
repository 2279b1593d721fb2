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
