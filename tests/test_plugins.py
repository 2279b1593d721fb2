"""A threshold rule added the documented way (one function, one registration, ``EAGLE_PLUGINS``)
works end to end in other processes: ``eagle fit`` and ``eagle serve`` as subprocesses.

The computed tau must equal the plugin's own function on the stored training scores, so the test
fails if the rule's parameter is lost or defaulted anywhere between the flag/option and the rule.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import wait_s
from test_service import ServeProcess, call, multipart

from eagle_iad.data import get_layout
from eagle_iad.tgps.thresholds import THRESHOLD_RULES

REPO = Path(__file__).resolve().parents[1]
PLUGINS = Path(__file__).resolve().parent / "plugins"


def _midrange(scores: list[float], w: float) -> float:
    """The plugin's rule, computed here (importing the plugin would register it in this process too)."""
    values = np.asarray(scores, dtype=np.float64)
    median = float(np.median(values))
    return median + w * (float(values.max()) - median)


@pytest.fixture
def plugin_env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    path = os.pathsep.join([str(REPO / "src"), str(PLUGINS), os.environ.get("PYTHONPATH", "")])
    monkeypatch.setenv("PYTHONPATH", path)
    monkeypatch.setenv("EAGLE_PLUGINS", "midrange_rule")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    return dict(os.environ)


@pytest.fixture(scope="module")
def cells() -> list[Path]:
    return [s.path for s in get_layout("elpv").samples(None, "mono", "train")][:6]


def test_plugin_rule_through_the_cli(tmp_path: Path, plugin_env: dict[str, str]) -> None:
    assert "midrange" not in THRESHOLD_RULES  # only the subprocesses load the plugin
    out = tmp_path / "model"
    command = [sys.executable, "-m", "eagle_iad.cli", "fit", "--layout", "elpv", "--category", "mono",
               "--limit-train", "6", "--coreset-ratio", "0.05", "--rule", "midrange", "--w", "0.25",
               "--out", str(out), "--quiet"]  # fmt: skip
    done = subprocess.run(command, env=plugin_env, capture_output=True, text=True, timeout=wait_s(600))
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    manifest = json.loads((out / "model.json").read_text())
    scores = manifest["training"]["scores"]
    assert summary["rule"] == manifest["thresholds"]["rule"] == "midrange"
    assert manifest["thresholds"]["params"] == {"w": 0.25}
    assert summary["tau"] == manifest["thresholds"]["tau"] == _midrange(scores, 0.25)
    help_text = subprocess.run([*command[:4], "--help"], env=plugin_env, capture_output=True, text=True).stdout
    assert "--w W" in help_text and "read by rule midrange" in help_text
    bad = subprocess.run([*command[:-5], "--w", "2", "--out", str(tmp_path / "bad"), "--quiet"], env=plugin_env,
                         capture_output=True, text=True, timeout=wait_s(600))  # fmt: skip
    assert (bad.returncode, bad.stderr.splitlines()[-1]) == (2, "eagle: error: midrange w must be in [0, 1], got 2.0")


def test_plugin_rule_through_the_service(tmp_path: Path, plugin_env: dict[str, str], cells: list[Path]) -> None:
    models = tmp_path / "models"
    models.mkdir()
    server = ServeProcess(["--models", str(models), "--state-dir", str(tmp_path / "state"),
                           "--db", str(tmp_path / "history.sqlite3"), "--log-level", "warning"])  # fmt: skip
    try:
        status, _, spec = call("GET", f"{server.base}/openapi.json")
        body = spec["paths"]["/v1/categories/{name}/fit"]["post"]["requestBody"]["content"]
        assert body["application/json"]["schema"]["properties"]["options"]["$ref"] == "#/components/schemas/FitOptions"
        options = spec["components"]["schemas"]["FitOptions"]["properties"]
        assert "midrange" in options["rule"]["enum"] and options["w"]["default"] == 0.5
        assert body["multipart/form-data"]["schema"]["properties"]["w"] == options["w"]
        form, ctype = multipart({"rule": "midrange", "w": "0.25", "coreset_ratio": "0.05"},
                                [("files", p.name, p.read_bytes(), "image/png") for p in cells])  # fmt: skip
        status, _, started = call("POST", f"{server.base}/v1/categories/mid/fit", body=form, content_type=ctype)
        assert status == 202, started
        deadline = time.monotonic() + wait_s(600)
        job_url = f"{server.base}/v1/jobs/{started['job']['id']}"
        while (job := call("GET", job_url)[2])["state"] in ("queued", "running"):
            assert time.monotonic() < deadline
            time.sleep(0.5)
        assert job["state"] == "succeeded", job
        status, _, category = call("GET", f"{server.base}/v1/categories/mid")
        assert status == 200 and category["rule"] == "midrange" and category["rule_params"] == {"w": 0.25}
        assert category["tau"] == _midrange(category["training_scores"]["values"], 0.25)
        one = [("files", "a.png", cells[0].read_bytes(), "image/png")]
        form, ctype = multipart({"rule": "midrange", "w": "often"}, one)
        status, _, refused = call("POST", f"{server.base}/v1/categories/bad/fit", body=form, content_type=ctype)
        assert status == 400 and refused["error"]["message"] == "fit option w: 'often' is not a float"
    finally:
        server.stop()
