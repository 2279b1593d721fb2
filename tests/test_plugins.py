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
from typing import Any

import numpy as np
import pytest
from conftest import wait_s
from test_service import ServeProcess, call, inspect_request, multipart

from eagle_iad.data import get_layout
from eagle_iad.errors import ConfigError
from eagle_iad.tgps.thresholds import THRESHOLD_RULES, RuleParam

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
    help_text = " ".join(help_text.split())  # argparse wraps at the terminal's width
    assert "--w W" in help_text and "read by rule midrange" in help_text and "allowed [0, 1]" in help_text
    for value in ("2", "-3"):  # refused as the options are parsed: no fit runs, nothing blames the images
        bad = subprocess.run([*command[:-5], "--w", value, "--out", str(tmp_path / "bad"), "--quiet"], env=plugin_env,
                             capture_output=True, text=True, timeout=wait_s(600))  # fmt: skip
        assert (bad.returncode, bad.stderr) == (
            2,
            f"eagle: error: fit option w must be in [0, 1], got {float(value)}\n",
        )
        assert not (tmp_path / "bad").exists()
    # a plugin rule's parameter given with another rule would be dropped: refused, naming both rules
    other = [*command[:-7], "--rule", "ksigma", "--w", "0.25", "--out", str(tmp_path / "bad"), "--quiet"]
    bad = subprocess.run(other, env=plugin_env, capture_output=True, text=True, timeout=wait_s(600))
    assert (bad.returncode, bad.stderr) == (2, "eagle: error: --w is an option of rule 'midrange', not of 'ksigma'\n")
    assert not (tmp_path / "bad").exists()


def test_plugin_rule_reaches_ray_workers_and_their_error_is_one_clean_line(
    tmp_path: Path, plugin_env: dict[str, str]
) -> None:
    """``eagle eval --executor ray`` on a model whose rule is a plugin's: the actors load the driver's plugins
    before any work. Without the plugin, the worker's refusal reaches the user as the one line a local run
    prints (no Ray traceback, no colour codes), with the hint to load the plugin."""
    pytest.importorskip("ray", reason="Ray is an optional extra: pip install 'eagle-iad[ray]'")
    env = {**plugin_env, "RAY_worker_niceness": "0", "RAY_worker_register_timeout_seconds": str(int(wait_s(60))),
           "RAY_gcs_server_request_timeout_seconds": str(int(wait_s(60))), "RAY_USAGE_STATS_ENABLED": "0"}  # fmt: skip
    models = tmp_path / "models"

    def eagle(*argv: str, plugins: str = "midrange_rule") -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "eagle_iad.cli", *argv], env={**env, "EAGLE_PLUGINS": plugins},
                              capture_output=True, text=True, timeout=wait_s(600))  # fmt: skip

    done = eagle("fit", "--layout", "elpv", "--category", "mono", "--limit-train", "6", "--coreset-ratio", "0.05",
                 "--rule", "midrange", "--w", "0.25", "--out", str(models / "mono"), "--quiet")  # fmt: skip
    assert done.returncode == 0, done.stderr
    # poly has no model: the driver fits it (ksigma, 4 images) before the actors start; mono's is the plugin's.
    run = ("eval", "--layout", "elpv", "--models", str(models), "--conditions", "expert", "--limit", "2",
           "--limit-train", "4", "--executor", "ray", "--ray-workers", "1")  # fmt: skip
    done = eagle(*run, "--out", str(tmp_path / "with-plugin"))
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in (tmp_path / "with-plugin" / "results.jsonl").read_text().splitlines()]
    assert {r["category"] for r in records} == {"mono", "poly"} and all(r["condition"] == "expert" for r in records)
    done = eagle(*run, "--out", str(tmp_path / "without-plugin"), plugins="")
    assert done.returncode == 2
    last = done.stderr.splitlines()[-1]
    assert last.startswith(f"eagle: error: {models / 'mono' / 'model.json'}: ") and last.endswith(
        "thresholds.rule is 'midrange'; known rules: ksigma, mad, quantile, evt, fixed "
        "(a plugin's rule? load it with EAGLE_PLUGINS=module)"
    ), last
    assert "\x1b" not in done.stderr and "\\x1b" not in done.stderr and "ray::" not in done.stderr, done.stderr
    assert "Traceback" not in done.stderr, done.stderr


def test_plugin_search_paths_are_the_folders_that_hold_the_plugins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What a Ray actor is handed: the folder holding a module plugin, the one above a package plugin (absolute,
    though found through a relative path entry), nothing for a module this process cannot find."""
    from eagle_iad.registry import plugin_search_paths

    (tmp_path / "pkg_plugin").mkdir()
    (tmp_path / "pkg_plugin" / "__init__.py").write_text("")
    (tmp_path / "pkg_plugin" / "rules.py").write_text("")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(".")
    monkeypatch.syspath_prepend(str(PLUGINS))
    assert plugin_search_paths("midrange_rule, pkg_plugin.rules,no_such_eagle_plugin,") == [str(PLUGINS), str(tmp_path)]


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
        assert not any("cannot inspect here" in line for line in category["warnings"])  # the service loaded it
        # A service started without the plugin lists the category saying why it cannot inspect with it (this test
        # process has not loaded it: the listing's own code path), where it was listed as if fine before
        from eagle_iad.service.routes_categories import describe

        assert "midrange" not in THRESHOLD_RULES
        assert describe(models / "mid", with_scores=False)["warnings"][0] == (
            "cannot inspect here: its threshold rule 'midrange' is not loaded (a plugin's rule? load it with "
            "EAGLE_PLUGINS=module)"
        )
        one = [("files", "a.png", cells[0].read_bytes(), "image/png")]
        form, ctype = multipart({"rule": "midrange", "w": "often"}, one)
        status, _, refused = call("POST", f"{server.base}/v1/categories/bad/fit", body=form, content_type=ctype)
        assert status == 400 and refused["error"]["message"] == "fit option w: 'often' is not a float"
    finally:
        server.stop()


# A preprocessing mode registered the documented way (tests/plugins/gray_mode.py): ``gray`` scores an
# image by its luma, so a coloured image and its own grey picture score exactly alike. That equality
# shows the plugin's mode ran, not a built-in one, in the fit, the inspection and the export.


@pytest.fixture
def gray_env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    path = os.pathsep.join([str(REPO / "src"), str(PLUGINS), os.environ.get("PYTHONPATH", "")])
    monkeypatch.setenv("PYTHONPATH", path)
    monkeypatch.setenv("EAGLE_PLUGINS", "gray_mode")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    return dict(os.environ)


def _tinted_and_gray(cell: Path, folder: Path) -> tuple[Path, Path]:
    """A colour version of an elpv cell and the grey picture the ``gray`` mode makes of it."""
    from PIL import Image

    values = np.asarray(Image.open(cell).convert("L"), dtype=np.float32)
    tinted = np.stack([values, values * 0.6, values * 0.3], axis=2).round().astype(np.uint8)
    luma = tinted.astype(np.float32) @ np.asarray([0.299, 0.587, 0.114], dtype=np.float32)
    gray = np.repeat(np.clip(np.rint(luma), 0, 255).astype(np.uint8)[:, :, None], 3, axis=2)
    paths = folder / "tinted.png", folder / "gray.png"
    Image.fromarray(tinted).save(paths[0])
    Image.fromarray(gray).save(paths[1])
    return paths


def test_plugin_preprocessing_through_the_cli(tmp_path: Path, gray_env: dict[str, str], cells: list[Path]) -> None:
    from eagle_iad.expert.preprocess import PREPROCESSORS

    assert "gray" not in PREPROCESSORS  # only the subprocesses load the plugin

    def eagle(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "eagle_iad.cli", *argv], env=gray_env, capture_output=True,
                              text=True, timeout=wait_s(900))  # fmt: skip

    model, export = tmp_path / "model", tmp_path / "export"
    done = eagle("fit", "--layout", "elpv", "--category", "mono", "--limit-train", "6", "--coreset-ratio", "0.05",
                 "--preprocess", "gray", "--size", "128", "--out", str(model), "--quiet")  # fmt: skip
    assert done.returncode == 0, done.stderr
    manifest = json.loads((model / "model.json").read_text())
    assert manifest["config"]["preprocess"] == "gray" and manifest["config"]["input_hw"] == [128, 128]
    images = _tinted_and_gray(cells[0], tmp_path)
    done = eagle("inspect", "--model", str(model), "--json", "--quiet", *map(str, images))
    assert done.returncode == 0, done.stderr
    tinted, gray = json.loads(done.stdout)
    assert tinted["score"] == gray["score"]
    done = eagle("export", "--model", str(model), "--format", "onnx", "--out", str(export))
    assert done.returncode == 0, done.stderr
    sidecar = json.loads((export / "eagle-export.json").read_text())
    assert sidecar["preprocessing"]["mode"] == "gray" and sidecar["preprocessing"]["input_hw"] == [128, 128]
    done = eagle("inspect", "--runtime", "onnx", "--model", str(export), "--json", "--quiet", *map(str, images))
    assert done.returncode == 0, done.stderr
    exported = json.loads(done.stdout)
    assert exported[0]["score"] == exported[1]["score"] == pytest.approx(tinted["score"], rel=1e-4)
    # without the plugin, the fitted model and its export give the same hint: load it with EAGLE_PLUGINS
    bare = {k: v for k, v in gray_env.items() if k != "EAGLE_PLUGINS"}
    for folder, where in ((model, model / "model.json"), (export, export / "eagle-export.json")):
        runtime = ["--runtime", "onnx"] if folder == export else []
        done = subprocess.run([sys.executable, "-m", "eagle_iad.cli", "inspect", *runtime, "--model", str(folder),
                               "--quiet", str(images[0])], env=bare, capture_output=True, text=True,
                              timeout=wait_s(900))  # fmt: skip
        assert (done.returncode, done.stderr) == (
            2,
            f"eagle: error: {where}: config.preprocess is 'gray'; known modes: resize, scale, tile, center-crop "
            "(a plugin's mode? load it with EAGLE_PLUGINS=module)\n",
        )
    help_text = " ".join(eagle("fit", "--help").stdout.split())  # argparse wraps at the terminal's width
    assert "--preprocess PREPROCESS" in help_text and "a plugin may add more" in help_text
    bad = eagle("fit", "--layout", "elpv", "--category", "mono", "--preprocess", "grey", "--out",
                str(tmp_path / "bad"), "--quiet")  # fmt: skip
    assert bad.returncode == 2 and "unknown preprocessing 'grey'" in bad.stderr and "gray" in bad.stderr


def test_a_plugin_mode_is_in_the_api_schema_and_the_help(gray_env: dict[str, str]) -> None:
    """The schema's ``preprocess`` enum comes from the registry, as the rules' does: a client generated from it
    (and the console) may send the plugin's mode, which the service accepts."""

    def eagle(*argv: str, plugins: str = "gray_mode") -> str:
        env = {**gray_env, "EAGLE_PLUGINS": plugins}
        done = subprocess.run([sys.executable, "-m", "eagle_iad.cli", *argv], env=env, capture_output=True,
                              text=True, timeout=wait_s(300))  # fmt: skip
        assert done.returncode == 0, done.stderr
        return done.stdout

    def enums(spec: dict[str, Any]) -> tuple[list[str], list[str]]:
        form = spec["paths"]["/v1/categories/{name}/fit"]["post"]["requestBody"]["content"]["multipart/form-data"]
        options = spec["components"]["schemas"]["FitOptions"]["properties"]
        return options["preprocess"]["enum"], form["schema"]["properties"]["preprocess"]["enum"]

    built_in = ["resize", "scale", "tile", "center-crop"]
    assert enums(json.loads(eagle("openapi"))) == ([*built_in, "gray"], [*built_in, "gray"])
    assert enums(json.loads(eagle("openapi", plugins=""))) == (built_in, built_in)
    help_text = " ".join(eagle("fit", "--help").split())
    assert "choices: resize, scale, tile, center-crop, gray (a plugin may add more)" in help_text


def test_plugin_preprocessing_through_the_service(tmp_path: Path, gray_env: dict[str, str], cells: list[Path]) -> None:
    models, data = tmp_path / "models", tmp_path / "data"
    models.mkdir()
    (data / "cells").mkdir(parents=True)
    for path in cells:
        (data / "cells" / path.name).write_bytes(path.read_bytes())
    server = ServeProcess(["--models", str(models), "--data-root", str(data), "--state-dir", str(tmp_path / "state"),
                           "--db", str(tmp_path / "history.sqlite3"), "--log-level", "warning"])  # fmt: skip
    try:
        options = {"preprocess": "gray", "size": 128, "coreset_ratio": 0.05}
        body = json.dumps({"folder": "cells", "options": options}).encode()
        status, _, started = call("POST", f"{server.base}/v1/categories/gray/fit", body=body,
                                  content_type="application/json")  # fmt: skip
        assert status == 202, started
        deadline = time.monotonic() + wait_s(600)
        job_url = f"{server.base}/v1/jobs/{started['job']['id']}"
        while (job := call("GET", job_url)[2])["state"] in ("queued", "running"):
            assert time.monotonic() < deadline
            time.sleep(0.5)
        assert job["state"] == "succeeded", job
        assert json.loads((models / "gray" / "model.json").read_text())["config"]["preprocess"] == "gray"
        from eagle_iad.service.routes_categories import describe

        assert describe(models / "gray", with_scores=False)["warnings"][0] == (  # listed without the plugin
            "cannot inspect here: its preprocessing mode 'gray' is not loaded (a plugin's mode? load it with "
            "EAGLE_PLUGINS=module)"
        )
        tinted, gray = (inspect_request(server.base, p.read_bytes(), category="gray", filename=p.name)
                        for p in _tinted_and_gray(cells[0], tmp_path))  # fmt: skip
        assert tinted[0] == gray[0] == 200, (tinted, gray)
        assert tinted[2]["score"] == gray[2]["score"]
        body = json.dumps({"folder": "cells", "options": {"preprocess": "grey"}}).encode()
        status, _, refused = call("POST", f"{server.base}/v1/categories/bad/fit", body=body,
                                  content_type="application/json")  # fmt: skip
        assert status == 400 and "unknown preprocessing 'grey'" in refused["error"]["message"]
    finally:
        server.stop()


# --- diagnoses that name the plugin, not the user's images or data --------------------------------


def test_a_rule_whose_tau_is_below_every_training_score_is_blamed_not_the_images() -> None:
    """A plugin rule without a range, given a nonsense parameter: tau below every score. The refusal names
    the rule and its parameters; identical images (every score 0) still get the images' diagnosis."""
    from eagle_iad.expert.fitting import _check_threshold
    from eagle_iad.expert.patchcore import ExpertConfig
    from eagle_iad.tgps.thresholds import compute_thresholds, threshold_rule

    threshold_rule("shifted", RuleParam("shift", 0.0, "test: added to the median"))(
        lambda scores, shift: float(np.median(scores)) + shift
    )
    try:
        scores = np.asarray([30.0, 40.0, 50.0, 60.0])
        thresholds = compute_thresholds(scores, "shifted", shift=-105.5)
        with pytest.raises(ConfigError) as info:
            _check_threshold(thresholds, scores, ExpertConfig())
        assert str(info.value) == (
            "rule shifted with shift -105.5 gives tau -60.5, below the lowest training score 30 (training scores 30 "
            "to 60, median 45), so every normal training image would be called anomalous: the rule or its "
            "parameters are the likely cause (the training images do vary); choose another value or rule"
        )
        # a positive tau below every training score flags every normal training image just the same: refused
        # (docs/ARCHITECTURE.md, "Adding a threshold rule"), where it used to be saved with a warning
        thresholds = compute_thresholds(scores, "shifted", shift=-20.0)
        with pytest.raises(ConfigError) as info:
            _check_threshold(thresholds, scores, ExpertConfig())
        assert str(info.value) == (
            "rule shifted with shift -20 gives tau 25, below the lowest training score 30 (training scores 30 to "
            "60, median 45), so every normal training image would be called anomalous: the rule or its parameters "
            "are the likely cause (the training images do vary); choose another value or rule"
        )
        for shift in (-15.0, 0.0):  # tau at the lowest score, or inside the scores: the rule's to choose
            _check_threshold(compute_thresholds(scores, "shifted", shift=shift), scores, ExpertConfig())
        with pytest.raises(ConfigError) as info:
            compute_thresholds(scores, "shifted", shift=float("inf"))
        assert str(info.value) == (
            "threshold rule 'shifted' with shift inf gave a non-finite threshold (inf) from 4 finite training scores: "
            "the rule or its parameters are the likely cause; choose another value or rule"
        )
        zeros = np.zeros(4)
        with pytest.raises(ConfigError, match="the images are identical or show no variation"):
            _check_threshold(compute_thresholds(zeros, "shifted"), zeros, ExpertConfig())
    finally:
        THRESHOLD_RULES.remove("shifted")


def test_a_plugin_module_that_cannot_be_imported_names_the_module_search_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from eagle_iad.registry import load_plugins

    with pytest.raises(ConfigError) as info:
        load_plugins("no_such_eagle_plugin")
    assert str(info.value) == (
        "EAGLE_PLUGINS: cannot import plugin module 'no_such_eagle_plugin': No module named 'no_such_eagle_plugin'; "
        "put the folder that holds it on PYTHONPATH (Python's module search path), in every process that runs "
        "eagle (a Ray worker's too)"
    )
    (tmp_path / "broken_eagle_plugin.py").write_text("import no_such_dependency_of_a_plugin\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ConfigError) as info:
        load_plugins("broken_eagle_plugin")
    assert str(info.value) == (
        "EAGLE_PLUGINS: cannot import plugin module 'broken_eagle_plugin': No module named "
        "'no_such_dependency_of_a_plugin' (raised while importing the plugin itself)"
    )


# --- an MLLM family from a plugin (tests/plugins/tiny_vl_family.py) ---------------------------------


def test_a_family_registered_again_is_asked_first() -> None:
    """The latest registration answers for a model type, also one under a name registered before."""
    from eagle_iad.mllm.families import FAMILIES, family_for, register_family
    from eagle_iad.mllm.families.qwen2_vl import QwenVLFamily

    try:
        register_family(QwenVLFamily("test_a", ("test_type",)))
        register_family(QwenVLFamily("test_b", ("test_type",)))
        assert family_for("test_type").name == "test_b"
        again = register_family(QwenVLFamily("test_a", ("test_type",)))
        assert family_for("test_type") is again
    finally:
        FAMILIES.remove("test_a")
        FAMILIES.remove("test_b")


def test_plugin_mllm_family_loads_a_new_checkpoint_type(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A checkpoint whose ``model_type`` only a plugin's family knows (the tiny Qwen2.5-VL config under another
    type): refused without the plugin, naming EAGLE_PLUGINS; loaded and answering with it, through the family."""
    pytest.importorskip("transformers")
    from eagle_iad import registry
    from eagle_iad.mllm import GenerateOptions, load_backend
    from eagle_iad.mllm.families import FAMILIES, family_for
    from eagle_iad.testing.tiny import TINY_BUILDERS
    from eagle_iad.tgps.prompt import PromptRequest, build_prompt

    checkpoint = TINY_BUILDERS["qwen2_5_vl"](tmp_path / "tiny-vl")
    config = json.loads((checkpoint / "config.json").read_text())
    (checkpoint / "config.json").write_text(json.dumps({**config, "model_type": "eagle_tiny_vl"}))
    with pytest.raises(ConfigError, match=r"model type 'eagle_tiny_vl' is not supported .*EAGLE_PLUGINS=module"):
        family_for("eagle_tiny_vl")
    monkeypatch.syspath_prepend(str(PLUGINS))
    try:
        assert registry.load_plugins("tiny_vl_family") == ["tiny_vl_family"]
        assert "tiny_vl" in FAMILIES and family_for("eagle_tiny_vl").name == "tiny_vl"
        backend = load_backend(f"hf:{checkpoint}", vision_attention="eager")
        assert backend.family.name == "tiny_vl"
        rng = np.random.default_rng(7)
        images = {"q.png": rng.integers(0, 256, (56, 84, 3), dtype=np.uint8)}
        reply = backend.generate(build_prompt(PromptRequest("q.png")), images, GenerateOptions(max_new_tokens=2))
        assert reply.metadata["image_spans"] and isinstance(reply.text, str)
        # Its weights are the file's, not a randomly initialised decoder (transformers renames a Qwen2.5-VL
        # checkpoint's keys only for the classes it knows: inherit_checkpoint_layout gives the plugin's class them).
        import torch
        from safetensors.torch import load_file

        saved = load_file(checkpoint / "model.safetensors")
        decoder = backend.model.model.language_model.layers[1].mlp.down_proj.weight
        assert torch.equal(decoder, saved["model.layers.1.mlp.down_proj.weight"])
        assert torch.equal(backend.model.model.visual.blocks[0].mlp.down_proj.weight,
                           saved["visual.blocks.0.mlp.down_proj.weight"])  # fmt: skip
    finally:
        FAMILIES.remove("tiny_vl")
        registry._loaded.pop("tiny_vl_family", None)
        sys.modules.pop("tiny_vl_family", None)


def test_a_family_whose_image_tokens_are_wrong_is_named_with_the_counts(tmp_path: Path) -> None:
    """A plugin family whose ``image_tokens`` misses, doubles or invents visual tokens (or returns a record per image
    too many) is refused before the prompt runs, and the one line names the family, the checkpoint type and the
    counts, so the plugin's author knows what to fix (it used to say only that the tokens did not match)."""
    pytest.importorskip("transformers")
    from dataclasses import dataclass

    from eagle_iad.mllm import GenerateOptions, load_backend
    from eagle_iad.mllm.families import FAMILIES, ImageTokens, register_family
    from eagle_iad.mllm.families.qwen2_vl import Qwen25ImageOnlyProcessor, QwenVLFamily
    from eagle_iad.testing.tiny import TINY_BUILDERS
    from eagle_iad.tgps.prompt import PromptRequest, build_prompt

    @dataclass(frozen=True)
    class WrongSpans(QwenVLFamily):
        """Qwen-VL's layout, with one of the mistakes a new family's author makes."""

        mistake: str = "short"

        def image_tokens(self, config: Any, processor: Any, inputs: Any, input_ids: Any, n: int) -> list[ImageTokens]:
            (image,) = super().image_tokens(config, processor, inputs, input_ids, n)
            (start, end), grid = image.ranges[0], (1, 1, 1)
            if self.mistake == "short":  # the last two tokens left out (an off-by-one in a count)
                return [ImageTokens(((start, end - 2),), grid, ((start, start + 1),))]
            if self.mistake == "wide":  # the vision markers around the run taken too
                return [ImageTokens(((start - 1, end + 1),), grid, ((start, start + 1),))]
            if self.mistake == "twice":  # the first token in two ranges
                return [ImageTokens(((start, end), (start, start + 1)), grid, ((start, start + 1),))]
            return [image, image]  # one record per image too many

    checkpoint = TINY_BUILDERS["qwen2_5_vl"](tmp_path / "tiny")
    images = {"q.png": np.random.default_rng(3).integers(0, 256, (56, 84, 3), dtype=np.uint8)}
    prompt = build_prompt(PromptRequest("q.png"))
    expected = {
        "short": r"family 'wrong_spans' \(model_type 'qwen2_5_vl'\): the images' visual tokens do not cover the "
        r"prompt's image tokens exactly once: its image_tokens claims 4 token positions, the prompt holds 6 image "
        r"tokens \(id \d+\): 2 missing \(positions \d+, \d+\), 0 claimed twice, 0 not image tokens; each image's "
        r"ranges must hold exactly its own image tokens",
        "wide": r"family 'wrong_spans' \(model_type 'qwen2_5_vl'\): .* its image_tokens claims 8 token positions, the "
        r"prompt holds 6 image tokens \(id \d+\): 0 missing, 0 claimed twice, 2 not image tokens \(positions \d+, "
        r"\d+\);",
        "twice": r"family 'wrong_spans' \(model_type 'qwen2_5_vl'\): .* its image_tokens claims 7 token positions, "
        r"the prompt holds 6 image tokens \(id \d+\): 0 missing, 1 claimed twice \(positions \d+\), 0 not image "
        r"tokens;",
        "extra": r"family 'wrong_spans' \(model_type 'qwen2_5_vl'\): its image_tokens found 2 images' tokens for 1 "
        r"image in the prompt; cannot locate the query image",
    }
    try:
        for mistake, message in expected.items():
            register_family(WrongSpans("wrong_spans", ("qwen2_5_vl",), Qwen25ImageOnlyProcessor, mistake=mistake))
            backend = load_backend(f"hf:{checkpoint}", vision_attention="eager")
            assert backend.family.name == "wrong_spans"
            with pytest.raises(ConfigError, match=message):
                backend.generate(prompt, images, GenerateOptions(max_new_tokens=2))
    finally:
        FAMILIES.remove("wrong_spans")
