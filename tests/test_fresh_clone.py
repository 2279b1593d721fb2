"""What a fresh clone relies on: the CLI starts without torch, and no test needs ``../shared``.

The help screens, ``--version`` and ``eagle info`` run in a subprocess (a fresh interpreter, as a
user starts them) that reports which heavy libraries each one loaded. The option lists they show
come from ``eagle_iad.choices``; every name there must have a real implementation.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tire_data
from conftest import wait_s
from expert_fakes import FAKE_CONFIG, FakeExtractor, noise_pngs

from eagle_iad import choices
from eagle_iad.cli import build_parser

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "transformers", "faiss")

#: Runs each argv (JSON lists, one per line on stdin) through ``eagle``'s main in this one
#: interpreter and prints, after each, the heavy modules loaded so far: a fresh start per check.
PROBE = """
import json, sys
from eagle_iad.cli import main
for line in sys.stdin:
    argv = json.loads(line)
    try:
        code = main(argv)
    except SystemExit as stop:
        code = stop.code
    loaded = sorted(name for name in HEAVY if name in sys.modules)
    print("PROBE " + json.dumps({"argv": argv, "code": code, "loaded": loaded}), flush=True)
""".replace("HEAVY", repr(HEAVY))


def _probe(argvs: list[list[str]]) -> list[dict[str, object]]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run([sys.executable, "-c", PROBE], input="".join(json.dumps(a) + "\n" for a in argvs),
                            capture_output=True, text=True, env=env, timeout=wait_s(120), check=True)  # fmt: skip
    return [json.loads(line[6:]) for line in result.stdout.splitlines() if line.startswith("PROBE ")]


def _commands() -> list[str]:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sorted(sub.choices)


def test_help_version_and_info_import_no_torch_transformers_or_faiss(tmp_path: Path) -> None:
    from eagle_iad.expert import fit, save

    model = save(fit(noise_pngs(tmp_path / "train", 4, 0), "cat", FAKE_CONFIG, extractor=FakeExtractor()).model,
                 tmp_path / "model")  # fmt: skip
    argvs = [["--help"], ["--version"], *([name, "--help"] for name in _commands()), ["info", "--model", str(model)]]
    reports = _probe(argvs)
    assert [r["argv"] for r in reports] == argvs
    assert [(r["argv"], r["loaded"]) for r in reports] == [(argv, []) for argv in argvs]
    assert [r["code"] for r in reports] == [0] * len(argvs)
    assert "fit" in _commands() and "info" in _commands()


def test_info_prints_the_manifest_without_the_per_image_lists(tmp_path: Path) -> None:
    from eagle_iad.expert import fit, save

    model = save(fit(noise_pngs(tmp_path / "train", 4, 1), "cat", FAKE_CONFIG, extractor=FakeExtractor()).model,
                 tmp_path / "model")  # fmt: skip
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run([sys.executable, "-m", "eagle_iad.cli", "info", "--model", str(model)],
                            capture_output=True, text=True, env=env, timeout=wait_s(60))  # fmt: skip
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    saved = json.loads((model / "model.json").read_text())
    assert shown["category"] == "cat" and shown["format"] == "eagle-iad/expert"
    assert "images" not in shown["training"] and "scores" not in shown["training"]
    assert shown["thresholds"] == saved["thresholds"]
    missing = subprocess.run([sys.executable, "-m", "eagle_iad.cli", "info", "--model", str(tmp_path / "nope")],
                             capture_output=True, text=True, env=env, timeout=wait_s(60))  # fmt: skip
    assert missing.returncode == 2
    assert missing.stderr == f"eagle: error: {tmp_path / 'nope'}: no model directory here (run `eagle fit` first)\n"


def test_every_choice_has_an_implementation() -> None:
    from eagle_iad.eval.executors import EXECUTOR_REGISTRY
    from eagle_iad.expert.backbones import backbone_names
    from eagle_iad.expert.coreset import make_sampler
    from eagle_iad.expert.search import make_search
    from eagle_iad.pipeline import EagleConfig
    from eagle_iad.tgps.render import render
    from eagle_iad.tgps.thresholds import THRESHOLD_RULES, compute_thresholds

    assert tuple(backbone_names()) == choices.BACKBONES
    assert choices.DEFAULT_BACKBONE in choices.BACKBONES
    assert [type(make_sampler(name, 0.5, 0)).__name__ for name in choices.SAMPLERS] == [
        "ApproximateGreedyCoreset",
        "RandomSampler",
        "IdentitySampler",
    ]
    assert [make_search(name).name for name in choices.SEARCHES] == list(choices.SEARCHES)
    assert EXECUTOR_REGISTRY.names() == choices.EXECUTORS
    assert choices.DEFAULT_SEARCH in choices.SEARCHES
    scores = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0])
    rules = THRESHOLD_RULES.names()
    assert rules == ("ksigma", "mad", "quantile", "evt", "fixed")
    assert [compute_thresholds(scores, rule, value=4.5).rule for rule in rules] == list(rules)
    assert choices.DEFAULT_RULE in rules
    rgb = np.zeros((16, 16, 3), dtype=np.uint8)
    for style in choices.RENDER_STYLES:
        assert render(rgb, np.zeros((16, 16), dtype=np.float32), [], style).shape == (16, 16, 3)
    assert [EagleConfig(condition=c).condition for c in choices.CONDITIONS] == list(choices.CONDITIONS)  # type: ignore[arg-type]


def test_no_shared_hides_the_tire_copy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(tire_data.NO_SHARED_ENV, "1")
    assert tire_data.tire_root() is None
    assert tire_data.tire_skip_reason() == "tire images hidden by EAGLE_NO_SHARED=1 (as in a fresh clone)"
    monkeypatch.delenv(tire_data.NO_SHARED_ENV)
    expected = tire_data.SHARED_TIRE if (tire_data.SHARED_TIRE / "tire").is_dir() else None
    assert tire_data.tire_root() == expected


def test_only_tire_data_looks_for_the_shared_folder() -> None:
    """Every test and the Node suites' fixture find ``../shared`` through ``tire_data.py`` (so
    ``EAGLE_NO_SHARED=1`` hides it everywhere); product code never looks for it."""
    pattern = re.compile(r"""["']shared["']|\.\./shared/data""")
    files = [*REPO.glob("src/**/*.py"), *REPO.glob("tests/*.py"), *REPO.glob("clients/ts/test/*.ts"),
             *REPO.glob("web/e2e/*.ts"), *REPO.glob("web/src/**/*.ts*")]  # fmt: skip
    offenders = [
        str(path.relative_to(REPO))
        for path in files
        if path.name not in ("tire_data.py", "test_fresh_clone.py") and pattern.search(path.read_text(encoding="utf-8"))
    ]
    assert offenders == []


@pytest.mark.parametrize(("target", "served"), [("serve", "runs/console/models"), ("station", "runs/station/models")])
def test_make_serve_and_station_give_a_copy_of_the_demo_model_not_a_link(
    tmp_path: Path, target: str, served: str
) -> None:
    # A teach, threshold change or rollback replaces the category's folder whole, which a symbolic link
    # refuses: with a link, the console's "Teach these N" the README offers answered 500 not_saved.
    lines = subprocess.run(
        ["make", "-s", "-n", "-o", ".venv/.installed", "-o", "src/eagle_iad/service/webui/index.html", target],
        cwd=REPO, capture_output=True, text=True, check=True, timeout=wait_s(60),
    ).stdout.splitlines()  # fmt: skip
    setup = "\n".join(line for line in lines if "bin/eagle " not in line)
    demo = tmp_path / "runs" / "demo" / "model"
    demo.mkdir(parents=True)
    (demo / "model.json").write_text("{}")
    category = tmp_path / served / "elpv-mono"
    category.parent.mkdir(parents=True)
    category.symlink_to(os.path.relpath(demo, category.parent))  # what an earlier `make serve` left
    subprocess.run(["sh", "-ec", setup], cwd=tmp_path, check=True, timeout=wait_s(60))
    assert not category.is_symlink() and (category / "model.json").read_text() == "{}"
    (category / "model.json").write_text('{"taught": 1}')
    subprocess.run(["sh", "-ec", setup], cwd=tmp_path, check=True, timeout=wait_s(60))  # keeps what was taught
    assert (category / "model.json").read_text() == '{"taught": 1}'
    assert (demo / "model.json").read_text() == "{}"
    assert sorted(p.name for p in category.parent.iterdir()) == ["elpv-mono"]
