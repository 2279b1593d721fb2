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


#: Parameters of the released checkpoints the real-size builders copy (model cards): the builders'
#: configs must give these counts, so a GPU run times the size it claims. MiniCPM-V 4.6 is not listed:
#: its vision tower's size is an assumption (benchmarks/mllm.py says so).
RELEASED_PARAMS = {"qwen3_vl": 8.77e9, "glm4v": 10.29e9, "gemma3": 4.30e9}


@pytest.mark.parametrize("family", ["qwen3_vl", "glm4v", "gemma3", "minicpmv4_6"])
def test_real_size_configs_build_the_released_shapes(family: str, tmp_path: Path) -> None:
    """The GPU path's model builder, checked without a GPU: the config builds a model (on the meta
    device, no memory) with the released parameter count, the family's layer pattern and CAAS layers."""
    import torch
    from transformers import AutoModelForImageTextToText

    from eagle_iad.mllm.caas import default_caas_layers
    from eagle_iad.mllm.hf import attention_layers
    from eagle_iad.testing.tiny import TINY_BUILDERS

    sys.path.insert(0, str(BENCHMARKS))
    try:
        import mllm
    finally:
        sys.path.remove(str(BENCHMARKS))
    tiny = TINY_BUILDERS[family](tmp_path / family)
    config = mllm.real_size_config(family, tiny)
    with torch.device("meta"):
        model = AutoModelForImageTextToText.from_config(config)
    params = sum(p.numel() for p in model.parameters())
    if family in RELEASED_PARAMS:
        assert params == pytest.approx(RELEASED_PARAMS[family], rel=0.005)
    text = config.get_text_config()
    layers = attention_layers(text)
    hybrid = None if len(layers) == text.num_hidden_layers else layers
    caas = default_caas_layers(text.num_hidden_layers, config.model_type, hybrid)
    expected = {"qwen3_vl": (12, 18), "glm4v": (13, 20), "gemma3": (11, 17), "minicpmv4_6": (11, 15)}[family]
    assert (caas[0], caas[-1]) == expected
    if family == "gemma3":  # five sliding layers, then a global one
        assert [text.layer_types[i] for i in (4, 5, 11)] == ["sliding_attention", "full_attention", "full_attention"]
    if family == "minicpmv4_6":  # Qwen3.5: attention at every fourth layer
        assert layers == tuple(range(3, 32, 4)) and caas == (11, 15)
    shrunk = mllm.real_size_config(family, tiny, shrink=True)
    assert shrunk.get_text_config().num_hidden_layers == 4
    assert shrunk.get_text_config().hidden_size == text.hidden_size
