"""``python -m eagle_iad.testing.tiny FAMILY OUT``: a tiny random MLLM a person can try the CLI with,
which says its answers are noise; and docs/MLLM.md lists every tiny builder."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from eagle_iad.atomic import new_file_mode, new_folder_mode
from eagle_iad.cli import main as cli_main

pytest.importorskip("transformers")

from eagle_iad.testing.tiny import NOTE_NAME, TINY_BUILDERS, main

DOCS = Path(__file__).resolve().parents[1] / "docs"


def test_tiny_command_builds_a_loadable_model_and_says_it_is_noise(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from eagle_iad.mllm import load_backend

    out = tmp_path / "tiny-qwen"
    assert main(["qwen2_5_vl", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "random noise" in printed and "never read its answers as a verdict" in printed
    assert f"--mllm hf:{out}" in printed  # the next command to type
    assert "random noise" in (out / NOTE_NAME).read_text(encoding="utf-8")
    backend = load_backend(f"hf:{out}", device="cpu")
    assert backend.name == f"hf:{out}"
    assert [p.name for p in tmp_path.iterdir()] == ["tiny-qwen"]  # no staging folder left beside it
    # every file follows the umask, as eagle's outputs do (model.safetensors came out 0600, the rest 0644)
    modes = {p.name: p.stat().st_mode & 0o777 for p in out.iterdir()}
    assert modes["model.safetensors"] == new_file_mode() and set(modes.values()) == {new_file_mode()}, modes
    assert out.stat().st_mode & 0o777 == new_folder_mode()
    # whoever uses the folder later is told too: on load, and in each verdict
    image = tmp_path / "a.png"
    Image.fromarray(np.full((32, 32, 3), 128, np.uint8)).save(image)
    argv = ["inspect", str(image), "--mllm", f"hf:{out}", "--condition", "baseline", "--max-new-tokens", "1"]
    assert cli_main([*argv, "--json"]) == 0
    captured = capsys.readouterr()
    assert f"eagle: warning: {out} is a tiny random test model" in captured.err and "random noise" in captured.err
    (verdict,) = json.loads(captured.out)
    assert verdict["metadata"]["random_test_model"] is True


def test_tiny_command_never_writes_into_a_folder_with_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    real = tmp_path / "Qwen2.5-VL-7B-Instruct"
    real.mkdir()
    (real / "config.json").write_text("{}", encoding="utf-8")
    assert main(["qwen2_5_vl", str(real)]) == 2
    assert "not an empty folder" in capsys.readouterr().err
    assert [p.name for p in real.iterdir()] == ["config.json"]
    with pytest.raises(SystemExit):
        main(["no_such_family", str(tmp_path / "x")])


def test_mllm_doc_lists_every_tiny_builder_and_how_to_build_one() -> None:
    text = (DOCS / "MLLM.md").read_text(encoding="utf-8")
    tests = text[text.index("## Tests\n") :]
    tests = tests[: tests.index("\n## ", 1)]
    listed = set(re.findall(r"^\| `([a-z0-9_]+)` \|", tests, flags=re.MULTILINE))
    assert listed == set(TINY_BUILDERS)
    assert "python -m eagle_iad.testing.tiny" in text and "random noise" in text


def test_quiet_hides_the_libraries_bars_too(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``--quiet`` promises no progress bars (docs/USAGE.md); transformers' "Loading weights" bar showed anyway."""
    from huggingface_hub.utils import are_progress_bars_disabled

    out = tmp_path / "tiny-qwen"
    assert main(["qwen2_5_vl", str(out)]) == 0
    image = tmp_path / "a.png"
    Image.fromarray(np.full((32, 32, 3), 128, np.uint8)).save(image)
    argv = ["inspect", str(image), "--mllm", f"hf:{out}", "--condition", "baseline", "--max-new-tokens", "1", "--json"]
    capsys.readouterr()
    assert cli_main(argv) == 0
    assert "Loading weights: 100%" in capsys.readouterr().err  # the bar this test looks for, shown without --quiet
    assert cli_main([*argv, "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "Loading weights" not in err and "it/s]" not in err, err
    assert err.startswith(f"eagle: warning: {out} is a tiny random test model")  # what --quiet keeps
    assert not are_progress_bars_disabled()  # an in-process caller's bars are back afterwards


@pytest.mark.parametrize("family", ["qwen3_vl", "glm4v"])
def test_no_processor_kwargs_warning_from_a_template_without_a_thinking_switch(
    family: str, tiny_mllm_dirs: dict[str, Path]
) -> None:
    """``enable_thinking=False`` went to templates that do not read it, so transformers passed it to the
    processor with "Kwargs passed to `processor.__call__` have to be in `processor_kwargs` dict" on stderr."""
    import os
    import subprocess
    import sys

    from conftest import wait_s

    from eagle_iad.data import get_layout

    image = str(get_layout("elpv").samples(None, "mono", "test")[0].path)
    command = [sys.executable, "-m", "eagle_iad.cli", "inspect", image, "--condition", "baseline",
               "--mllm", f"hf:{tiny_mllm_dirs[family]}", "--max-new-tokens", "2", "--json"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=wait_s(300), check=False)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)[0]["condition"] == "baseline"
    assert "processor_kwargs" not in done.stderr and "Kwargs passed" not in done.stderr


def test_a_template_that_reads_the_thinking_switch_still_gets_it() -> None:
    """Only the keywords a template names are dropped: a Thinking checkpoint's template keeps enable_thinking."""
    from types import SimpleNamespace

    from eagle_iad.mllm.families.base import read_template_kwargs

    wanted = {"enable_thinking": False}
    reads = SimpleNamespace(chat_template="{% if enable_thinking is defined and not enable_thinking %}x{% endif %}")
    assert read_template_kwargs(reads, wanted) == wanted
    assert read_template_kwargs(SimpleNamespace(chat_template={"default": "{{ messages }}"}), wanted) == {}
    assert read_template_kwargs(SimpleNamespace(chat_template=None), wanted) == wanted  # nothing to read: all
