"""Where ``eagle fit --out`` may write: never over a user's files, one ``eagle: error:`` line otherwise.

Each refused target is checked before any work starts (the data path given does not exist, so a
later check would fail with a different message), exits 2 with one line naming the folder, and
leaves the previous model exactly as it was.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import unprivileged_cli, wait_s
from expert_fakes import FAKE_CONFIG, FakeExtractor, noise_pngs

from eagle_iad.cli import main
from eagle_iad.expert import fit, save

SRC = Path(__file__).resolve().parents[1] / "src"


def _fit_args(out: str) -> list[str]:
    return ["fit", "--data", "/nonexistent-eagle-data", "--layout", "mvtec", "--category", "x", "--out", out, "--quiet"]


def _files(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("previous")
    expert = fit(noise_pngs(root / "train", 3, seed=5), "cat", FAKE_CONFIG, extractor=FakeExtractor())
    return save(expert.model, root / "model")


def _case_file(work: Path, model: Path) -> tuple[str, str]:
    (work / "notes.txt").write_text("keep me")
    return str(work / "notes.txt"), f"{work / 'notes.txt'}: exists and is not a directory; refusing to replace it"


def _case_user_folder(work: Path, model: Path) -> tuple[str, str]:
    (work / "thesis").mkdir()
    (work / "thesis" / "thesis.txt").write_text("three years")
    return str(work / "thesis"), f"{work / 'thesis'}: holds 1 entry and is not an EAGLE-IAD model"


def _case_cwd(work: Path, model: Path) -> tuple[str, str]:
    os.chdir(model)
    return ".", ".: is the current directory (or holds it); give a new folder such as ./model"


def _case_root(work: Path, model: Path) -> tuple[str, str]:
    return "/", "/: refusing to write a model over the filesystem root; give a new folder"


def _case_symlink(work: Path, model: Path) -> tuple[str, str]:
    (work / "link").symlink_to(model, target_is_directory=True)
    return str(work / "link"), f"{work / 'link'}: is a symbolic link; give the folder itself or a new folder"


def _case_below_a_file(work: Path, model: Path) -> tuple[str, str]:
    (work / "plain").write_text("a file")
    return str(work / "plain" / "deep" / "model"), f"because {work / 'plain'} is not a directory"


CASES: dict[str, Callable[[Path, Path], tuple[str, str]]] = {
    "existing file": _case_file,
    "folder with user files": _case_user_folder,
    "current directory": _case_cwd,
    "filesystem root": _case_root,
    "symlink to the model": _case_symlink,
    "parent is a file": _case_below_a_file,
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_fit_refuses_an_output_it_must_not_replace(
    case: str, model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    before_model = _files(model_dir)
    out, expected = CASES[case](tmp_path, model_dir)
    before_work = _files(tmp_path)
    assert main(_fit_args(out)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("eagle: error: ") and expected in err, err
    assert _files(model_dir) == before_model and _files(tmp_path) == before_work
    assert not [p for p in tmp_path.rglob(".*") if ".tmp-" in p.name or ".old-" in p.name]


def test_fit_refuses_an_unwritable_parent(model_dir: Path, tmp_path: Path) -> None:
    """A read-only parent folder: one line, exit 2, the model in it untouched."""
    command = unprivileged_cli()
    locked = tmp_path / "locked"
    locked.mkdir()
    shutil.copytree(model_dir, locked / "model")
    before = _files(locked / "model")
    os.chmod(locked, 0o555)
    try:
        env = {**os.environ, "PYTHONPATH": str(SRC)}
        result = subprocess.run([*command, *_fit_args(str(locked / "model"))], capture_output=True, text=True,
                                env=env, cwd=tmp_path, timeout=wait_s(300))  # fmt: skip
        assert result.returncode == 2, result.stderr
        assert result.stderr == f"eagle: error: {locked / 'model'}: cannot write in {locked} (permission denied)\n"
        assert _files(locked / "model") == before
        assert sorted(p.name for p in locked.iterdir()) == ["model"]
    finally:
        os.chmod(locked, 0o755)


def test_fit_into_a_previous_model_or_an_empty_folder_is_allowed(model_dir: Path, tmp_path: Path) -> None:
    from eagle_iad.expert.store import check_replaceable

    (tmp_path / "empty").mkdir()
    assert check_replaceable(tmp_path / "empty") == tmp_path / "empty"
    assert check_replaceable(model_dir) == model_dir
    assert check_replaceable(tmp_path / "new" / "deep" / "model") == tmp_path / "new" / "deep" / "model"


def test_json_output_never_holds_nan(capsys: pytest.CaptureFixture[str]) -> None:
    from eagle_iad.cli import dumps

    text = dumps({"tau": float("nan"), "scores": [1.0, float("inf"), -float("inf")], "nested": {"x": (2.5,)}})
    assert json.loads(text) == {"tau": None, "scores": [1.0, None, None], "nested": {"x": [2.5]}}
    assert "NaN" not in text and "Infinity" not in text
