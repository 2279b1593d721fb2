"""The fit options table is the one source of every fit option: its choices are the implemented
parts, its defaults are ``ExpertConfig``'s, and CLI and service parse through it the same way."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from eagle_iad.cli import build_parser
from eagle_iad.errors import ConfigError
from eagle_iad.fit_options import config_overrides, fit_options, parse_fit_options


def test_choices_and_defaults_are_the_implementations() -> None:
    from eagle_iad.expert.patchcore import PRESETS, ExpertConfig
    from eagle_iad.expert.preprocess import PREPROCESSORS
    from eagle_iad.tgps.regions import REGION_RULES

    table = {o.name: o for o in fit_options()}
    assert table["preset"].choices == tuple(PRESETS)
    assert table["preprocess"].choices == tuple(PREPROCESSORS)
    assert table["region_rule"].choices == REGION_RULES
    config = ExpertConfig().to_dict()
    for option in table.values():
        if option.name != "preset" and not option.rules:
            assert config[option.name] == option.default, option.name
    assert config["rule_params"] == {}
    assert {n: o.rules for n, o in table.items() if o.rules} == {
        "k": ("ksigma", "mad"), "q": ("quantile",), "p": ("evt",), "value": ("fixed",),
    }  # fmt: skip


def test_old_names_still_work_and_mistakes_are_refused() -> None:
    assert parse_fit_options({"rule": "fixed", "tau": "2.5"}) == {"rule": "fixed", "value": 2.5}
    assert config_overrides(parse_fit_options({"k": 2, "preset": "paper", "size": "640"})) == (
        "paper", {"size": 640, "native_up_to": 0, "rule_params": {"k": 2.0}},
    )  # fmt: skip
    # a size the user gives is the size; with native_up_to given too, both stand
    assert config_overrides(parse_fit_options({"size": 224, "native_up_to": 512})) == (
        "default", {"size": 224, "native_up_to": 512},
    )  # fmt: skip
    assert config_overrides(parse_fit_options({"coreset_ratio": 0.05})) == ("default", {"coreset_ratio": 0.05})
    args = build_parser().parse_args(["fit", "--layout", "elpv", "--category", "mono", "--out", "m", "--tau", "7"])
    assert (args.value, args.k) == (7.0, None)  # unset flags stay None: the preset and ExpertConfig decide
    with pytest.raises(ConfigError) as info:
        parse_fit_options({"batch_size": 4}, service=True)  # a local resource knob, not a client's
    assert str(info.value).startswith("unknown fit options ['batch_size']; known: ['backbone', ")
    with pytest.raises(ConfigError, match=r"^fit option value is given twice"):
        parse_fit_options({"value": 1, "tau": 2})
    with pytest.raises(ConfigError, match=r"^fit option seed: 1\.5 is not a int$"):
        parse_fit_options({"seed": 1.5})
    with pytest.raises(ConfigError, match=r"^unknown region rule 'loose'; choose one of 'calibrated', 'paper'$"):
        parse_fit_options({"region_rule": "loose"})
    assert parse_fit_options({"position_baseline": "true"}) == {"position_baseline": True}


def test_a_model_saved_with_the_old_rule_settings_loads(tmp_path: Path) -> None:
    from eagle_iad.expert.patchcore import ExpertConfig

    old = json.loads((Path(__file__).parent / "data" / "schema1" / "model" / "model.json").read_text())["config"]
    assert old["rule_value"] is None and old["rule_k"] == 3.0
    assert ExpertConfig.from_dict(old).rule_params == {"k": 3.0, "q": 0.99, "p": 0.99}
    fixed = ExpertConfig.from_dict({**old, "rule": "fixed", "rule_value": 2.0})
    assert fixed.rule_params["value"] == 2.0 and "rule_value" not in fixed.to_dict()


def test_a_rule_parameter_without_default_is_asked_for_before_the_fit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from eagle_iad.cli import main

    out = tmp_path / "m"
    argv = ["fit", "--layout", "elpv", "--category", "mono", "--rule", "fixed", "--out", str(out), "--quiet"]
    assert main(argv) == 2 and not out.exists()
    assert capsys.readouterr().err.splitlines()[-1] == (
        "eagle: error: rule 'fixed' needs value (the decision threshold the fixed rule sets)"
    )


def test_a_parameter_of_another_rule_is_refused_not_ignored(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``--rule ksigma --q 0.5`` used to fit a ksigma model and drop q without a word."""
    from eagle_iad.cli import main
    from eagle_iad.expert.patchcore import ExpertConfig

    out = tmp_path / "m"
    for flags, error in (
        (["--rule", "ksigma", "--q", "0.5"], "--q is an option of rule 'quantile', not of 'ksigma'"),
        (["--q", "0.5"], "--q is an option of rule 'quantile', not of 'ksigma'"),  # the default rule
        (["--rule", "quantile", "--k", "2"], "--k is an option of rule 'ksigma' (or 'mad'), not of 'quantile'"),
        (["--rule", "evt", "--value", "2"], "--value is an option of rule 'fixed', not of 'evt'"),
    ):
        argv = ["fit", "--layout", "elpv", "--category", "mono", *flags, "--out", str(out), "--quiet"]
        assert main(argv) == 2 and not out.exists()
        assert capsys.readouterr().err.splitlines()[-1] == f"eagle: error: {error}", flags
    # the service's options and eval's --fit-option: the same check, the names as the client sent them
    with pytest.raises(ConfigError, match=r"^p is an option of rule 'evt', not of 'mad'$"):
        parse_fit_options({"rule": "mad", "p": 0.9}, service=True, strict=True)
    with pytest.raises(ConfigError, match=r"^tau is an option of rule 'fixed', not of 'quantile'$"):
        parse_fit_options({"rule": "quantile", "tau": 2})
    with pytest.raises(ConfigError, match=r"^q is an option of rule 'quantile', not of 'mad'$"):
        ExpertConfig(rule="mad", rule_params={"q": 0.5}).validate()  # the Python API
    # a rule's own parameters, and a shared one, stay fine
    assert parse_fit_options({"rule": "mad", "k": 2}) == {"rule": "mad", "k": 2.0}
    ExpertConfig(rule="quantile", rule_params={"q": 0.5}).validate()
