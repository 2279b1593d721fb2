"""What CAAS and attention capture cost, as ratios to stock generation on the same model and prompt.

Random models of the real architectures (built with :mod:`eagle_iad.testing.tiny` into a temp dir):
the test-sized Qwen2.5-VL and LLaVA-1.5 (width 64, 4 layers: the ratios there are mostly Python
overhead per attention call) and a larger one of each (default width 512, 8 layers, so matmuls
take real time). One prompt for every route: the TGPS anomalous prompt with the query image and its
boxed copy. Every route generates exactly ``--tokens`` tokens (``min_new_tokens``, so a random
model's early EOS cannot make a route look fast), greedy, processor included, and the reported
time is the median of ``--runs`` runs after one warm-up, routes interleaved within each round.

Routes:
  stock sdpa      transformers' own SDPA attention (the reference, ratio 1.00)
  stock eager     transformers' own eager attention
  caas off        ``eagle_caas`` out of band: no CAAS request, SDPA in every layer (alpha not applied)
  caas on         ``eagle_caas`` with CAAS in the model's default layers (eager arithmetic there)
  capture         ``eagle_caas`` out of band with attention capture (first decode step, all layers)
  caas+capture    both

    .venv/bin/python benchmarks/mllm.py [--runs 7] [--tokens 16] [--hidden 512] [--layers 8] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from eagle_iad.mllm import CaasSettings, GenerateOptions
from eagle_iad.mllm.hf import HFBackend
from eagle_iad.testing.tiny import build_tiny_llava, build_tiny_qwen2_5_vl
from eagle_iad.tgps.prompt import PromptRequest, build_prompt

ITEMS = build_prompt(PromptRequest("q.png", "anomalous", boxed_ref="q_box.png"))


def prompt_images(height: int, width: int) -> dict[str, np.ndarray]:
    """A random query image and its boxed copy (a red box), as the pipeline would send them."""
    rng = np.random.default_rng(0)
    query = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    boxed = query.copy()
    boxed[height // 4 : 3 * height // 4, width // 4 : width // 4 + 2] = (255, 0, 0)
    return {"q.png": query, "q_box.png": boxed}


def interleaved_median_ms(routes: list[tuple[str, Callable[[], int]]], runs: int, tokens: int) -> dict[str, float]:
    """Median wall time per route over ``runs`` rounds, routes interleaved within each round.

    One warm-up call per route first. Interleaving spreads the load of a shared machine (other
    processes come and go) evenly over the routes, where timing route after route would charge a
    busy minute to whichever route ran in it. Every call must generate exactly ``tokens`` tokens.
    """
    for name, fn in routes:
        if fn() != tokens:
            raise RuntimeError(f"{name}: generated a different number of tokens than {tokens}")
    times: dict[str, list[float]] = {name: [] for name, _ in routes}
    for _ in range(runs):
        for name, fn in routes:
            start = time.perf_counter()
            generated = fn()
            times[name].append(time.perf_counter() - start)
            if generated != tokens:
                raise RuntimeError(f"{name}: generated {generated} tokens, expected {tokens}")
    return {name: 1000.0 * statistics.median(values) for name, values in times.items()}


def stock_route(
    model_dir: Path, attention: str, backend: HFBackend, images: dict[str, np.ndarray], tokens: int
) -> Callable[[], int]:
    """transformers' own model with ``attention`` in the language model; inputs and kwargs as the backend's."""
    from transformers import AutoModelForImageTextToText

    model = AutoModelForImageTextToText.from_pretrained(
        model_dir, attn_implementation={"text_config": attention, "vision_config": "sdpa"}, dtype=torch.float32
    ).eval()
    model.generation_config.min_new_tokens = tokens

    def run() -> int:
        prepared = backend.prepare(ITEMS, images)  # same processor work as the backend's generate
        with torch.inference_mode():
            out = model.generate(
                **prepared.inputs,
                max_new_tokens=tokens,
                do_sample=False,
                num_beams=1,
                return_dict_in_generate=True,
                output_logits=True,
                pad_token_id=backend.processor.tokenizer.pad_token_id,
            )
        return int(out.sequences.shape[1]) - len(prepared.input_ids)

    return run


def backend_route(backend: HFBackend, images: dict[str, np.ndarray], options: GenerateOptions) -> Callable[[], int]:
    """The product path: ``HFBackend.generate`` with the given options."""

    def run() -> int:
        reply = backend.generate(ITEMS, images, options)
        if options.capture_attention and reply.attention is None:
            raise RuntimeError("capture requested but nothing was captured")
        if options.caas is not None and not reply.caas_applied:
            raise RuntimeError("CAAS requested but not applied")
        return len(reply.token_ids)

    return run


def bench_model(
    name: str, model_dir: Path, images: dict[str, np.ndarray], runs: int, tokens: int
) -> list[dict[str, Any]]:
    """All routes on one model; rows with ms and the ratio to stock SDPA."""
    backend = HFBackend(model_dir, device="cpu", dtype=torch.float32, vision_attention="sdpa")
    backend.model.generation_config.min_new_tokens = tokens
    prompt_tokens = len(backend.prepare(ITEMS, images).input_ids)
    routes: list[tuple[str, Callable[[], int]]] = [
        ("stock sdpa", stock_route(model_dir, "sdpa", backend, images, tokens)),
        ("stock eager", stock_route(model_dir, "eager", backend, images, tokens)),
        ("caas off", backend_route(backend, images, GenerateOptions(max_new_tokens=tokens))),
        ("caas on", backend_route(backend, images, GenerateOptions(max_new_tokens=tokens, caas=CaasSettings()))),
        ("capture", backend_route(backend, images, GenerateOptions(max_new_tokens=tokens, capture_attention=True))),
        (
            "caas+capture",
            backend_route(
                backend, images, GenerateOptions(max_new_tokens=tokens, caas=CaasSettings(), capture_attention=True)
            ),
        ),
    ]
    layers = backend.resolve_layers(CaasSettings())
    timings = interleaved_median_ms(routes, runs, tokens)
    rows: list[dict[str, Any]] = [{"model": name, "route": route, "ms": timings[route]} for route, _ in routes]
    reference = rows[0]["ms"]
    for row in rows:
        row["ratio"] = row["ms"] / reference
        row["detail"] = f"{backend.num_layers} layers, CAAS {list(layers)}, prompt {prompt_tokens} tok"
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=7, help="timed runs per route (median reported)")
    parser.add_argument("--tokens", type=int, default=16, help="tokens generated per run")
    parser.add_argument("--hidden", type=int, default=512, help="text width of the larger models")
    parser.add_argument("--layers", type=int, default=8, help="decoder layers of the larger models")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (1: stable on a shared box)")
    parser.add_argument("--image", type=int, nargs=2, default=(56, 84), metavar=("H", "W"), help="query image size")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    images = prompt_images(*args.image)
    print(
        f"torch {torch.__version__}, CPU, {torch.get_num_threads()} thread(s); {args.tokens} new tokens; "
        f"median of {args.runs} runs; image {args.image[0]}x{args.image[1]} + boxed copy"
    )
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="eagle_bench_mllm_") as tmp:
        root = Path(tmp)
        models = [
            ("qwen2.5-vl w64 L4", build_tiny_qwen2_5_vl(root / "qwen_tiny")),
            ("llava-1.5 w64 L4", build_tiny_llava(root / "llava_tiny")),
            (
                f"qwen2.5-vl w{args.hidden} L{args.layers}",
                build_tiny_qwen2_5_vl(root / "qwen_big", layers=args.layers, hidden=args.hidden),
            ),
            (
                f"llava-1.5 w{args.hidden} L{args.layers}",
                build_tiny_llava(root / "llava_big", layers=args.layers, hidden=args.hidden),
            ),
        ]
        for name, model_dir in models:
            rows += bench_model(name, model_dir, images, args.runs, args.tokens)
    print(f"\n{'model':<22} {'route':<13} {'ms':>9} {'x sdpa':>7}  detail")
    previous = None
    for row in rows:
        if previous is not None and row["model"] != previous:
            print()
        previous = row["model"]
        detail = row["detail"] if row["route"] == "stock sdpa" else ""
        print(f"{row['model']:<22} {row['route']:<13} {row['ms']:>9.1f} {row['ratio']:>7.2f}  {detail}")


if __name__ == "__main__":
    main()
