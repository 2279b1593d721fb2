"""The hybrid benchmark and the GPU timing script: they compile, answer --help and refuse clearly.

The GPU path (``benchmarks/mllm.py --qwen7b``) needs CUDA and a 16 GB random checkpoint, so on a CPU
machine only its refusal is checked; the script body is type-checked by mypy like the rest.
"""

from __future__ import annotations

import py_compile
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import wait_s

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.mark.parametrize("script", ["hybrid.py", "mllm.py"])
def test_scripts_compile_and_answer_help(script: str, tmp_path: Path) -> None:
    py_compile.compile(str(BENCHMARKS / script), doraise=True, cfile=str(tmp_path / "x.pyc"))
    done = subprocess.run([sys.executable, str(BENCHMARKS / script), "--help"], capture_output=True, text=True,
                          timeout=wait_s(120))  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert {"mllm.py": "--qwen7b OUT.json", "hybrid.py": "--band BAND"}[script] in done.stdout


def test_qwen7b_without_cuda_is_refused_in_one_line(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is present: the refusal path does not apply")
    out = tmp_path / "q.json"
    done = subprocess.run([sys.executable, str(BENCHMARKS / "mllm.py"), "--qwen7b", str(out)], capture_output=True,
                          text=True, timeout=wait_s(120))  # fmt: skip
    assert done.returncode == 2
    assert done.stderr == "benchmarks/mllm.py: error: --qwen7b needs a CUDA GPU (torch sees none)\n"
    assert not out.exists()


def test_hybrid_band_share_is_checked_before_any_work() -> None:
    done = subprocess.run([sys.executable, str(BENCHMARKS / "hybrid.py"), "--band", "1.5"], capture_output=True,
                          text=True, timeout=wait_s(60))  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.strip().endswith("error: --band must be between 0 and 1")
