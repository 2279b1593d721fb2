"""``benchmarks/load.py`` end to end: a real ``eagle serve`` under a few concurrent inspections.

The tire expert is fitted here on 8 training images (one thread) so the script only starts its
servers and fires 6 requests at concurrency 1 and 3; the JSON it writes is checked, not its text.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import wait_s
from tire_data import TIRE, needs_tire

from eagle_iad.data import get_layout

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "load.py"


def run_script(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=wait_s(180)
    )


def test_non_loopback_host_is_refused() -> None:
    result = run_script("--host", "0.0.0.0")
    assert result.returncode == 2
    assert "--host 0.0.0.0 is not a loopback address" in result.stderr


@needs_tire
def test_load_counts_every_inspection(tmp_path: Path) -> None:
    import torch

    from eagle_iad.expert import fit, save

    train = get_layout("mvtec").samples(TIRE, "tire", "train")[:8]
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        save(fit([s.path for s in train], "tire").model, tmp_path / "models" / "tire")
    finally:
        torch.set_num_threads(before)
    out = tmp_path / "load.json"
    result = run_script("--models", str(tmp_path / "models"), "--data", str(TIRE), "--requests", "6",
                        "--concurrency", "3", "--server-threads", "1", "--json", str(out))  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "LOST" not in result.stdout
    report = json.loads(out.read_text())
    assert report["version"] == 1 and report["requests"] == 6
    assert set(report["variants"]) == {"expert-c1", "expert-c3"}
    for variant in report["variants"].values():
        assert variant["ok"] == 6 and variant["errors"] == {} and variant["not_sent"] == 0, variant
        assert variant["history"]["added"] == 6 and variant["history"]["lost"] == 0
        latency = variant["latency_ms"]
        assert 0 < latency["p50"] <= latency["p95"] <= latency["p99"] <= latency["max"]
        assert variant["throughput_per_s"] > 0 and variant["peak_rss_mib"] > 0 and variant["vm_hwm_mib"] > 0
    assert set(report["comparisons"]) == {"expert c3 / expert c1"}
    assert not list(tmp_path.glob(".load.json.*"))  # the atomic write left no temp file
