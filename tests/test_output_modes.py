"""Outputs get the mode ``open()`` would give them (``0o666`` less the umask), not a fixed ``0o644``: a site whose
umask is ``027`` must not get world-readable defect pictures, reports or models."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

from eagle_iad.atomic import current_umask, new_file_mode, new_folder_mode

SRC = Path(__file__).resolve().parents[1] / "src"
TESTS = Path(__file__).resolve().parent

WRITER = """
import json, sys
from pathlib import Path
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from expert_fakes import FAKE_CONFIG, FakeExtractor, noise_pngs
from eagle_iad.atomic import atomic_write_text
from eagle_iad.eval.plots import save_figure
from eagle_iad.expert import fit, save
from eagle_iad.tgps.render import save_png

out = Path(sys.argv[1])
atomic_write_text(out / "report.json", "{}")
save_png(out / "x_heatmap.png", np.zeros((8, 8, 3), dtype=np.uint8))
figure = Figure(figsize=(1, 1))
FigureCanvasAgg(figure)
save_figure(figure, out / "figure.png", dpi=10)
expert = fit(noise_pngs(out / "train", 3, seed=5), "cat", FAKE_CONFIG, extractor=FakeExtractor())
save(expert.model, out / "model")
"""


def _modes(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): stat.S_IMODE(p.stat().st_mode) for p in sorted(root.rglob("*"))}


def test_outputs_follow_a_strict_umask(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), str(TESTS)])}
    done = subprocess.run(
        ["sh", "-c", 'umask 027 && exec "$0" -c "$1" "$2"', sys.executable, WRITER, str(tmp_path)],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    modes = {name: mode for name, mode in _modes(tmp_path).items() if not name.startswith("train")}
    expected_files = ["report.json", "x_heatmap.png", "figure.png", "model/model.json", "model/tensors.safetensors"]
    assert {name: modes[name] for name in expected_files} == dict.fromkeys(expected_files, 0o640)
    assert {name: modes[name] for name in ["model", "model/versions", "model/versions/1"]} == {
        "model": 0o750, "model/versions": 0o750, "model/versions/1": 0o750,
    }  # fmt: skip
    assert not any(mode & 0o007 for mode in modes.values()), json.dumps({k: oct(v) for k, v in modes.items()})


def test_the_umask_is_read_without_changing_it() -> None:
    before = os.umask(0o027)
    try:
        assert (current_umask(), new_file_mode(), new_folder_mode()) == (0o027, 0o640, 0o750)
        assert os.umask(0o027) == 0o027  # reading it left it as it was
    finally:
        os.umask(before)
