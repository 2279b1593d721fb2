"""The same eval through transformers only, a serving engine only, and the hybrid (engine + CAAS in the band).

Why: the hybrid backend exists for throughput; this says what it costs or gains on one eval, and how
much of it the band takes. The eval is elpv (the ``elpv-dataset`` package; ``--limit`` images per
category, alternating labels) under the ``eagle`` condition, with a random Qwen2.5-VL of the real
architecture (``--hidden``/``--layers``). Every mode runs the eval's own worker on the same items
with the same fitted experts, greedy, ``--tokens`` new tokens; images/s is records over the summed
per-record latency (expert + MLLM), so start-up and the report are left out.

``--band F`` moves tau (on the record, through the model history, as ``eagle threshold`` does) so
that about a fraction F of the test images fall in the band ``tau <= score < s_max``: with few
training images the largest training score rarely exceeds mean + 3 std and the natural band is empty.

The engine is ``eagle serve-mllm`` over the same checkpoint in a subprocess unless ``--engine
openai:URL#model`` names a running one (e.g. vLLM serving the same checkpoint directory). Note that
``eagle serve-mllm`` runs transformers too, so against it the hybrid can only show its routing and
HTTP overhead; the speed-up comes from a real serving engine.

    .venv/bin/python benchmarks/hybrid.py [--limit 6] [--band 0.25] [--tokens 4] [--engine SPEC]
"""

from __future__ import annotations

import argparse
import functools
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_engine(model_dir: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    """``eagle serve-mllm`` on loopback, one torch thread (as this process), until /v1/models answers."""
    command = [sys.executable, "-m", "eagle_iad.cli", "serve-mllm", "--mllm", f"hf:{model_dir}", "--port",
               str(port), "--served-model-name", "tiny", "--device", "cpu", "--log-level", "warning"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    process = subprocess.Popen(command, stdout=log.open("wb"), stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"serve-mllm exited: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=5):
                return process
        except OSError:
            time.sleep(0.5)
    process.kill()
    raise RuntimeError("serve-mllm did not start within 300 s")


def set_band(models: Path, categories: list[str], items: list[Any], band: float) -> None:
    """Move each category's tau so that about ``band`` of its test images are in ``[tau, s_max)``."""
    from eagle_iad.expert import load_expert
    from eagle_iad.expert.store import change_threshold
    from eagle_iad.images import load_rgb

    for category in categories:
        expert = load_expert(models / category)
        s_max = expert.model.thresholds.s_max
        scores = sorted(expert.inspect(load_rgb(i.image)).score for i in items if i.category == category)
        below = [s for s in scores if s < s_max]
        k = max(1, round(band * len(scores)))
        if not below:
            continue
        tau = below[-min(k, len(below))]
        change_threshold(models / category, why=f"benchmarks/hybrid.py: band of about {band:.0%}", by="bench", tau=tau)


def run_mode(spec: str, config: Any, items: list[Any]) -> list[dict[str, Any]]:
    from eagle_iad.eval.runner import Worker, WorkerConfig

    worker = Worker(WorkerConfig(conditions=("eagle",), models_dir=config.models, mllm=spec,
                                 max_new_tokens=config.max_new_tokens))  # fmt: skip
    worker.backend()  # load before timing (records time only inspections)
    return list(worker.run(items, set()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit", type=int, default=6, help="test images per elpv category (default 6)")
    parser.add_argument("--limit-train", type=int, default=12, help="training images per category (default 12)")
    parser.add_argument("--band", type=float, default=0.25, help="target share of band images (default 0.25)")
    parser.add_argument("--tokens", type=int, default=4, help="new tokens per answer (default 4)")
    parser.add_argument("--hidden", type=int, default=64, help="text width of the random Qwen2.5-VL (default 64)")
    parser.add_argument("--layers", type=int, default=4, help="decoder layers (default 4)")
    parser.add_argument("--engine", help="openai:URL#model of a running engine serving the same checkpoint")
    parser.add_argument("--model-dir", help="use this checkpoint instead of building a random one")
    args = parser.parse_args()
    if not 0 < args.band < 1:
        parser.error("--band must be between 0 and 1")

    import torch

    from eagle_iad.eval.experiment import ExperimentConfig, build_items
    from eagle_iad.eval.protocol import layout_training
    from eagle_iad.eval.runner import ensure_expert, shard_by_category
    from eagle_iad.mllm import hybrid_spec
    from eagle_iad.testing.tiny import build_tiny_qwen2_5_vl

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="eagle_bench_hybrid_") as tmp:
        root = Path(tmp)
        model_dir = Path(args.model_dir) if args.model_dir else build_tiny_qwen2_5_vl(
            root / "qwen", layers=args.layers, hidden=args.hidden
        )  # fmt: skip
        config = ExperimentConfig(layout="elpv", data=None, models=str(root / "models"), conditions=("eagle",),
                                  mllm=f"hf:{model_dir}", limit=args.limit, max_new_tokens=args.tokens)  # fmt: skip
        items = build_items(config)
        categories = list(shard_by_category(items))
        for category in categories:
            training = functools.partial(layout_training, "elpv", None, category)
            ensure_expert(root / "models", category, training, args.limit_train, 0)
        set_band(root / "models", categories, items, args.band)
        engine_process = None
        engine = args.engine
        if engine is None:
            port = free_port()
            engine_process = start_engine(model_dir, port, root / "engine.log")
            engine = f"openai:http://127.0.0.1:{port}/v1#tiny"
        try:
            modes = {
                "transformers": f"hf:{model_dir}",
                "engine": engine,
                "hybrid": hybrid_spec(engine, f"hf:{model_dir}"),
            }
            results: dict[str, list[dict[str, Any]]] = {}
            for name, spec in modes.items():
                results[name] = run_mode(spec, config, items)
        finally:
            if engine_process is not None:
                engine_process.terminate()
                engine_process.wait(30)
    print(f"elpv, {len(items)} images ({args.limit}/category), eagle condition, random Qwen2.5-VL "
          f"w{args.hidden} L{args.layers}, {args.tokens} new tokens, torch {torch.__version__} CPU 1 thread; "
          f"engine {'given' if args.engine else 'eagle serve-mllm (transformers)'}")  # fmt: skip
    rates = {name: len(rows) / sum(float(r["latency_s"]) for r in rows) for name, rows in results.items()}
    reference = {r["image"]: r["reply"] for r in results["transformers"]}
    print(f"\n{'mode':<13} {'images/s':>9} {'x engine':>9} {'band share':>11} {'via CAAS':>9} {'same answers':>13}")
    for name, rows in results.items():
        band = float(np.mean([r["in_band"] for r in rows]))
        via_caas = float(np.mean([r.get("answered_by", {}).get("route") == "caas" for r in rows]))
        same = sum(reference[r["image"]] == r["reply"] for r in rows)
        ratio = rates[name] / rates["engine"]
        print(f"{name:<13} {rates[name]:>9.2f} {ratio:>9.2f} {band:>11.0%} {via_caas:>9.0%} {same:>6}/{len(rows)}")


if __name__ == "__main__":
    main()
