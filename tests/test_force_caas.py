"""``--force-caas`` on ``eagle inspect``, ``eagle eval`` and ``eagle attention``: one flag, recorded everywhere.

A researcher looks at CAAS's effect on any image, not only those in the expert's low-confidence band; what
that produced must never read as the product's band rule: the verdict (``metadata.caas_rule``,
``answered_by.caas``), an eval run's ``run.json`` configuration, its records and its report say "forced",
and a run resumed with the other value is refused (another experiment). The expert is fitted on real elpv
cells and the MLLM is the tiny random Qwen2.5-VL; a training cell scores below tau, so it is outside the band.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import copy_elpv_cells

from eagle_iad.cli import main
from eagle_iad.cli.flags import FORCE_CAAS_HELP
from eagle_iad.eval.runner import RESULTS
from eagle_iad.pipeline import CAAS_FORCED

pytestmark = pytest.mark.usefixtures("torch_single_thread")


@pytest.fixture(scope="module")
def cells(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_elpv_cells(tmp_path_factory.mktemp("force_cells"))


@pytest.fixture(scope="module")
def models(cells: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``<models>/cells``: the expert fitted on the six training cells."""
    out = tmp_path_factory.mktemp("force_models")
    assert main(["fit", "--data", str(cells), "--layout", "folder", "--category", "cells",
                 "--out", str(out / "cells"), "--quiet"]) == 0  # fmt: skip
    return out


def _inspect_json(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, object]:
    capsys.readouterr()
    code = main(["inspect", *argv, "--max-new-tokens", "2", "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    verdicts = json.loads(captured.out)
    assert len(verdicts) == 1
    return dict(verdicts[0])


def test_inspect_force_caas_applies_and_records_it_outside_the_band(
    cells: Path, models: Path, tiny_mllm_dirs: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    image = str(sorted((cells / "cells" / "train" / "good").iterdir())[0])  # a training cell: below tau
    common = [image, "--model", str(models / "cells"), "--mllm", f"hf:{tiny_mllm_dirs['qwen2_5_vl']}"]
    plain = _inspect_json(capsys, *common)
    assert plain["in_band"] is False and plain["caas_applied"] is False
    assert plain["metadata"]["caas_rule"] == "band"  # type: ignore[index]
    assert plain["answered_by"]["caas"] == "not needed (outside the band)"  # type: ignore[index]
    forced = _inspect_json(capsys, *common, "--force-caas")
    assert forced["in_band"] is False and forced["caas_applied"] is True
    assert forced["metadata"]["caas_rule"] == "forced"  # type: ignore[index]
    assert forced["answered_by"]["caas"] == CAAS_FORCED == "applied (forced outside the band)"  # type: ignore[index]
    assert forced["caas_settings"]["scaled_layers"] == [1, 2]  # type: ignore[index]
    # The text says so too, in the tag and in the answered-by line.
    capsys.readouterr()
    assert main(["inspect", *common, "--force-caas", "--max-new-tokens", "2"]) == 0
    out = capsys.readouterr().out
    assert "  CAAS (forced)  " in out and f"CAAS {CAAS_FORCED}" in out


def test_force_caas_that_could_not_act_is_refused_before_any_model(
    cells: Path, models: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    image = str(sorted((cells / "cells" / "test" / "good").iterdir())[0])
    capsys.readouterr()
    assert main(["inspect", image, "--model", str(models / "cells"), "--force-caas"]) == 2
    assert "--force-caas needs --mllm" in capsys.readouterr().err
    # The MLLM spec is never loaded (a folder that does not exist): the refusal comes first.
    missing = f"hf:{tmp_path / 'no-model'}"
    assert main(["inspect", image, "--model", str(models / "cells"), "--mllm", missing,
                 "--condition", "tgps", "--force-caas"]) == 2  # fmt: skip
    err = capsys.readouterr().err
    assert "--force-caas acts in the eagle condition only (CAAS is never applied in tgps)" in err
    run = tmp_path / "run"
    assert main(["eval", "--data", str(cells), "--layout", "folder", "--models", str(models), "--mllm", missing,
                 "--conditions", "baseline,tgps", "--force-caas", "--out", str(run)]) == 2  # fmt: skip
    assert "CAAS is never applied in baseline, tgps" in capsys.readouterr().err
    assert not run.exists()


def test_eval_force_caas_is_part_of_the_run_and_its_records(
    cells: Path, models: Path, tiny_mllm_dirs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    args = ["eval", "--data", str(cells), "--layout", "folder", "--models", str(models), "--max-new-tokens", "2",
            "--mllm", f"hf:{tiny_mllm_dirs['qwen2_5_vl']}", "--conditions", "eagle", "--out", str(run)]  # fmt: skip
    assert main([*args, "--force-caas"]) == 0
    config = json.loads((run / "run.json").read_text())["config"]
    assert config["force_caas"] is True
    rows = [json.loads(line) for line in (run / RESULTS).read_text().splitlines()]
    assert len(rows) == 6 and all(row["caas_applied"] for row in rows)
    for row in rows:  # each record says which rule sent it to CAAS
        assert row["answered_by"]["caas"] == ("applied" if row["in_band"] else CAAS_FORCED)
    assert any(not row["in_band"] for row in rows)
    assert "CAAS forced (--force-caas)" in (run / "report.md").read_text()
    # The same --out without it is another experiment: refused, naming the option, nothing appended.
    before = (run / RESULTS).read_text()
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "different configuration (changed: force_caas)" in err and "--force-caas applies CAAS" in err
    assert (run / RESULTS).read_text() == before
    # A run without it records no force_caas key (its hash is that of runs made before the option existed).
    plain = tmp_path / "plain"
    assert main([*args[:-1], str(plain)]) == 0
    assert "force_caas" not in json.loads((plain / "run.json").read_text())["config"]
    assert "CAAS forced" not in (plain / "report.md").read_text()


@pytest.mark.parametrize("command", ["inspect", "eval", "attention"])
def test_force_caas_help_is_declared_once(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main([command, "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--force-caas" in text and " ".join(FORCE_CAAS_HELP.split()) in text
