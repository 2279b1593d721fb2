"""``eagle eval``'s options a researcher expects: a missing expert's fit shown and configurable, ``--attention``
with too few tokens refused, ``--limit``'s seeded balanced draw, ``--category``, and attention.png's curves.

The expert is the real code behind a weight-free feature extractor (tests/expert_fakes.py), and only the
``expert`` condition runs (no MLLM), so each run takes seconds.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
from expert_fakes import FAKE_CONFIG, FakeExtractor, noise_pngs

import eagle_iad.expert
from eagle_iad.cli import main
from eagle_iad.errors import ConfigError
from eagle_iad.eval.protocol import WorkItem, limit_items
from eagle_iad.eval.runner import RunStore
from eagle_iad.expert import Expert, fit, save

FIT_WARNING = "the low-confidence band is empty (tau == s_max): CAAS never acts"


def _data(root: Path, categories: tuple[str, ...] = ("part",)) -> Path:
    """A folder-layout dataset: per category 3 training normals, 2 normal and 2 ``crack`` test images."""
    for index, category in enumerate(categories):
        noise_pngs(root / category / "train" / "good", 3, seed=10 * index + 1)
        noise_pngs(root / category / "test" / "good", 2, seed=10 * index + 2)
        noise_pngs(root / category / "test" / "crack", 2, seed=10 * index + 3)
    return root


@pytest.fixture
def fake_experts(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """``eagle eval``'s fits use the fake extractor (recording the config each got and adding a warning), and
    loads return the expert fitted or saved for the folder's category; ``configs`` lists the configs they got."""
    experts: dict[str, Expert] = {}
    configs: list[Any] = []
    real_fit = eagle_iad.expert.fit

    def fake_fit(paths: list[Path], category: str, config: Any, show_progress: bool = False) -> Expert:
        configs.append(config)
        small = dataclasses.replace(FAKE_CONFIG, seed=config.seed, rule=config.rule, rule_params=config.rule_params)
        expert = real_fit(paths, category, small, extractor=FakeExtractor(), show_progress=show_progress)
        expert.model.warnings.append(FIT_WARNING)
        experts[category] = expert
        return expert

    monkeypatch.setattr(eagle_iad.expert, "fit", fake_fit)
    monkeypatch.setattr(
        eagle_iad.expert, "load_expert", lambda directory, runtime="torch": experts[Path(directory).name]
    )
    return {"experts": experts, "configs": configs}


def _saved_model(models: Path, category: str, experts: dict[str, Expert]) -> None:
    expert = fit(noise_pngs(models.parent / f"train-{category}", 3, seed=5), category, FAKE_CONFIG,
                 extractor=FakeExtractor())  # fmt: skip
    save(expert.model, models / category)
    experts[category] = expert


def _eval(data: Path, models: Path, out: Path, *extra: str) -> list[str]:
    return ["eval", "--data", str(data), "--layout", "folder", "--models", str(models), "--conditions", "expert",
            "--out", str(out), *extra]  # fmt: skip


# --------------------------------------------------------------------------- finding 4: the automatic fit


def test_a_missing_expert_fit_shows_progress_warnings_and_takes_fit_options(
    tmp_path: Path, fake_experts: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    data, models, run = _data(tmp_path / "data"), tmp_path / "models", tmp_path / "run"
    args = _eval(data, models, run, "--fit-option", "rule=quantile", "--fit-option", "q=0.9",
                 "--fit-option", "coreset-ratio=0.5", "--seed", "3")  # fmt: skip
    assert main(args) == 0
    err = capsys.readouterr().err
    assert f"fitting 'part' on 3 normal images with efficientnet_lite0 (no model in {models / 'part'})" in err
    assert f"wrote {run / 'report.md'} in " in err and "nothing left to do" not in err
    assert f"eagle: warning: {models / 'part'}: {FIT_WARNING}\n" in err
    (config,) = fake_experts["configs"]  # the options reached the fit, as `eagle fit`'s flags would
    assert (config.rule, config.rule_params, config.coreset_ratio, config.seed) == ("quantile", {"q": 0.9}, 0.5, 3)
    recorded = json.loads((run / "run.json").read_text())["config"]
    assert recorded["fit_options"] == {"coreset_ratio": 0.5, "q": 0.9, "rule": "quantile"}
    fits = json.loads((run / "fits.json").read_text())
    assert FIT_WARNING in fits["part"]["warnings"] and fits["part"]["train_images"] == 3
    report = (run / "report.md").read_text()
    assert "## Experts fitted by this run" in report and FIT_WARNING in report
    assert "coreset_ratio=0.5, q=0.9, rule=quantile" in report
    # Resumed: nothing is fitted again, the report still lists the fit this run made.
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "fitting" not in err and len(fake_experts["configs"]) == 1
    # every item was done: the rerun says so rather than "wrote ... in N s" as if it had run them
    done = f"nothing left to do: every item of this run is in {run / 'results.jsonl'}; rewrote {run / 'report.md'}\n"
    assert done in err and f"wrote {run / 'report.md'} in " not in err
    assert FIT_WARNING in (run / "report.md").read_text()


def test_fit_options_reaching_no_fit_are_said_and_a_reused_expert_is_not_listed_as_fitted(
    tmp_path: Path, fake_experts: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    data, models, run = _data(tmp_path / "data"), tmp_path / "models", tmp_path / "run"
    _saved_model(models, "part", fake_experts["experts"])
    assert main(_eval(data, models, run, "--fit-option", "size=256")) == 0
    err = capsys.readouterr().err
    assert "fitting" not in err and not fake_experts["configs"]
    assert (f"eagle: warning: --fit-option is used only for missing experts; part already had a model in {models} "
            "and were not fitted again") in err  # fmt: skip
    assert "None: every class's expert was already in --models." in (run / "report.md").read_text()


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ("size=16", "fit option size must be in [32, 4096], got 16"),  # the option table's range
        ("size=33", "size must be a multiple of 32"),  # the model's own check, as `eagle fit` makes it
        ("rule=fixed", "rule 'fixed' needs value"),
        ("bogus=1", "unknown fit options ['bogus']"),
        ("rule", "--fit-option 'rule': expected KEY=VALUE"),
    ],
)
def test_bad_fit_options_are_refused_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], option: str, message: str
) -> None:
    data, run = _data(tmp_path / "data"), tmp_path / "run"
    assert main(_eval(data, tmp_path / "models", run, "--fit-option", option)) == 2
    err = capsys.readouterr().err
    assert err.startswith("eagle: error: ") and message in err
    assert not (run / "run.json").exists() and not (tmp_path / "models").exists()


def test_a_restarted_run_does_not_keep_the_fits_of_its_old_configuration(
    tmp_path: Path, fake_experts: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    data, models, run = _data(tmp_path / "data"), tmp_path / "models", tmp_path / "run"
    args = _eval(data, models, run, "--fit-option", "rule=quantile", "--fit-option", "q=0.9")
    args[args.index("expert")] = "baseline,expert"
    assert main([*args, "--mllm", "hf:/nowhere"]) == 2  # the fit done, then stopped before its first record
    assert json.loads((run / "fits.json").read_text())["part"]["options"] == {"q": 0.9, "rule": "quantile"}
    assert not (run / "results.jsonl").exists() or not (run / "results.jsonl").read_text()
    capsys.readouterr()
    assert main(_eval(data, models, run, "--fit-option", "rule=mad")) == 0  # restarts afresh
    err = capsys.readouterr().err
    assert "starts afresh" in err
    assert "--fit-option is used only for missing experts; part already had a model" in err
    assert not (run / "fits.json").exists()  # not fitted by this run's configuration
    assert "quantile" not in (run / "report.md").read_text()


# --------------------------------------------------------------------------- finding 5: --attention, 1 token


def test_attention_with_one_token_is_refused_with_eagle_attentions_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data, run = _data(tmp_path / "data"), tmp_path / "run"
    assert main([*_eval(data, tmp_path / "models", run), "--attention", "--max-new-tokens", "1"]) == 2
    eval_err = capsys.readouterr().err
    assert not run.exists() and not (tmp_path / "models").exists()
    image = data / "part" / "test" / "good" / "noise_2_0.png"
    assert main(["attention", str(image), "--model", str(tmp_path / "m"), "--mllm", "hf:/nowhere",
                 "--out", str(tmp_path / "att"), "--max-new-tokens", "1"]) == 2  # fmt: skip
    assert (
        eval_err
        == capsys.readouterr().err
        == ("eagle: error: attention analysis needs --max-new-tokens >= 2 (capture reads the first decode step)\n")
    )


# --------------------------------------------------------------------------- finding 6: --limit's draw


def _item(category: str, index: int, label: int, defect: str) -> WorkItem:
    return WorkItem(category, f"/d/{category}/{defect}/{index:03d}.png", label, "anomaly", "Anomaly Detection",
                    "?", ("Yes", "No"), "A" if label else "B", defect)  # fmt: skip


def _tire_like() -> list[WorkItem]:
    """Sorted like a layout: 4 ``combined`` first (the old rule took only those), 3 more types, 8 normals."""
    items = [_item("tire", i, 1, "combined") for i in range(4)]
    items += [_item("tire", i, 1, defect) for defect in ("cut", "hole", "worn") for i in range(4)]
    return items + [_item("tire", i, 0, "good") for i in range(8)]


def test_limit_is_seeded_balanced_and_spread_over_defect_types() -> None:
    items = _tire_like()
    picked = limit_items(items, 8, seed=0)
    anomalous = [i for i in picked if i.label == 1]
    assert len(picked) == 8 and len(anomalous) == 4
    assert {i.defect_type for i in anomalous} == {"combined", "cut", "hole", "worn"}
    assert limit_items(items, 8, seed=0) == picked  # the same seed draws the same images
    draws = {tuple(i.image for i in limit_items(items, 8, seed=seed)) for seed in range(6)}
    assert len(draws) > 1  # --seed changes the draw
    assert [i for i in items if i in picked] == picked  # in the data's order
    # One class short: the other fills in; every image's questions stay together.
    few = [_item("tire", 0, 1, "cut"), *(_item("tire", i, 0, "good") for i in range(6))]
    assert sum(i.label for i in limit_items(few, 4, seed=1)) == 1 and len(limit_items(few, 4, seed=1)) == 4
    assert limit_items(items, None, seed=0) == items


def test_a_run_limited_by_the_old_rule_is_refused_and_says_why(tmp_path: Path) -> None:
    from eagle_iad.eval.experiment import ExperimentConfig

    config = ExperimentConfig(layout="folder", data="/d", models="/m", conditions=("expert",), limit=8)
    recorded = config.as_dict()
    assert "limit_selection" in recorded
    assert "limit_selection" not in dataclasses.replace(config, limit=None).as_dict()  # unlimited runs resume
    old = {k: v for k, v in recorded.items() if k != "limit_selection"}  # a run.json written before the rule
    with RunStore(tmp_path, old) as store:  # a run with a record (one without any would restart afresh)
        store.append({"image": "x", "question_id": "q", "condition": "expert"})
    with pytest.raises(ConfigError, match=r"changed: limit_selection\).*drawn by an older rule"):
        RunStore(tmp_path, recorded)
    # Adding or dropping --limit changes limit_selection too, but no image was drawn by an older rule.
    for was, now in ((None, 8), (8, None)):
        folder = tmp_path / f"limit-{was}"
        with RunStore(folder, dataclasses.replace(config, limit=was).as_dict()) as store:
            store.append({"image": "x", "question_id": "q", "condition": "expert"})
        with pytest.raises(ConfigError, match=r"changed: limit, limit_selection\)") as refused:
            RunStore(folder, dataclasses.replace(config, limit=now).as_dict())
        assert "older rule" not in str(refused.value)


def test_eval_expert_limit_test_help_says_what_it_does(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["eval-expert", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "class-balanced" not in text
    assert "keeps the split's normal/anomalous ratio" in text


def test_eval_help_gives_max_new_tokens_and_seed_a_description_and_their_declared_defaults(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from eagle_iad.eval.experiment import ExperimentConfig

    with pytest.raises(SystemExit):
        main(["eval", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    defaults = {f.name: f.default for f in dataclasses.fields(ExperimentConfig)}
    assert (defaults["max_new_tokens"], defaults["seed"]) == (32, 0)  # the help below reads the same declaration
    assert "--max-new-tokens MAX_NEW_TOKENS tokens each MLLM answer may run to (default 32; >= 2 with --attention)" in (
        text
    )
    assert (
        "--seed SEED seed of --limit's and --limit-train's subsets and of a missing expert's fit (default 0; a "
        "--fit-option seed=N overrides it for the fit)"
    ) in text


def test_eval_expert_refusing_test_images_says_what_it_left_undone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """eval-expert neither fits nor asks an MLLM: its refusal no longer says "nothing was fitted or asked yet"."""
    root = _data(tmp_path / "data")
    bad = [root / "part" / "test" / "crack" / name for name in ("a.png", "b.png")]
    for path in bad:
        path.write_bytes(b"not an image")
    args = ["eval-expert", "--data", str(root), "--layout", "folder", "--category", "part", "--model",
            str(tmp_path / "no-model"), "--out", str(tmp_path / "ev"), "--quiet"]  # fmt: skip
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("eagle: error: 2 of the 6 test images cannot be used: ")
    assert err.endswith("; fix or remove them (the model was not loaded and nothing was evaluated or written)\n")
    assert not (tmp_path / "ev").exists()


# --------------------------------------------------------------------------- finding 15: --category


def test_category_evaluates_only_the_named_ones_and_refuses_unknown_names(
    tmp_path: Path, fake_experts: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    data, models, run = _data(tmp_path / "data", ("a", "b", "c")), tmp_path / "models", tmp_path / "run"
    for name in ("a", "b", "c"):
        _saved_model(models, name, fake_experts["experts"])
    (data / "c" / "test" / "good").rename(data / "c" / "elsewhere")  # c alone cannot be evaluated
    (data / "c" / "test" / "crack").rename(data / "c" / "elsewhere2")
    assert main(_eval(data, models, run, "--category", "b", "--category", "a")) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert set(metrics["expert"]) == {"a", "b"}
    assert metrics["config"]["categories"] == ["a", "b"]
    capsys.readouterr()
    assert main(_eval(data, models, tmp_path / "run2", "--category", "a", "--category", "nope")) == 2
    assert capsys.readouterr().err == f"eagle: error: --category nope: not in {data} (its categories: a, b, c)\n"


def test_adding_a_condition_to_a_run_is_refused_with_how_to_do_it(
    tmp_path: Path, fake_experts: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    data, models, run = _data(tmp_path / "data"), tmp_path / "models", tmp_path / "run"
    _saved_model(models, "part", fake_experts["experts"])
    assert main(_eval(data, models, run)) == 0
    capsys.readouterr()
    args = _eval(data, models, run)
    args[args.index("expert")] = "expert,baseline"
    assert main([*args, "--mllm", "hf:/nowhere"]) == 2
    err = capsys.readouterr().err
    assert "changed: conditions, mllm" in err
    assert "to add conditions, run them into a new --out with the same --models and --mllm" in err


# --------------------------------------------------------------------------- finding 17: attention.png


def test_attention_figure_shows_identical_curves_and_whole_layer_ticks() -> None:
    from eagle_iad.eval.report import attention_figure

    shares = [{"0": 0.2, "1": 0.3, "2": 0.25}, {"0": 0.4, "1": 0.1, "2": 0.3}]
    records = [{"condition": condition, "correct": index == 0, "attention_share": share}
               for condition in ("tgps", "eagle") for index, share in enumerate(shares)]  # fmt: skip
    fig = attention_figure(records)
    assert fig is not None
    ax = fig.axes[0]
    fig.canvas.draw()
    labels = [text.get_text() for text in ax.get_legend().get_texts()]
    assert labels == ["eagle, wrong (n=1)", "eagle, correct (n=1)", "tgps, wrong (n=1) = eagle, wrong",
                      "tgps, correct (n=1) = eagle, correct"]  # fmt: skip
    markers = {line.get_label().split(",")[0]: line.get_marker() for line in ax.get_lines()}
    assert markers["eagle"] != markers["tgps"]
    ticks = [t for t in ax.get_xticks() if 0 <= t <= 2]
    assert ticks and all(float(t).is_integer() for t in ticks)
    assert attention_figure([{"condition": "tgps", "correct": True}]) is None
