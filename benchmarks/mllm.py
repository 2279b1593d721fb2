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

On a CUDA machine, ``--qwen7b OUT.json`` instead times one inspection with a randomly initialised
model of the real Qwen2.5-VL-7B size (28 layers, width 3584, 32-block vision tower; bf16) through
transformers plain, transformers CAAS and vLLM (when importable, serving the same checkpoint), and
writes the figures as JSON. The checkpoint (~16 GB) is written to a temporary directory.

    .venv/bin/python benchmarks/mllm.py --qwen7b runs/qwen7b.json [--runs 5] [--tokens 16] [--image 448 448]
"""

from __future__ import annotations

import argparse
import json
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


#: Qwen2.5-VL-7B-Instruct's published dimensions (config.json of the hub checkpoint).
QWEN25_VL_7B_TEXT: dict[str, Any] = {
    "hidden_size": 3584,
    "intermediate_size": 18944,
    "num_hidden_layers": 28,
    "num_attention_heads": 28,
    "num_key_value_heads": 4,
    "vocab_size": 152064,
    "max_position_embeddings": 128000,
    "rms_norm_eps": 1e-6,
    "rope_parameters": {"rope_type": "default", "mrope_section": [16, 24, 24], "rope_theta": 1000000.0},
}
QWEN25_VL_7B_VISION: dict[str, Any] = {
    "depth": 32,
    "hidden_size": 1280,
    "intermediate_size": 3420,
    "num_heads": 16,
    "out_hidden_size": 3584,
    "patch_size": 14,
    "spatial_merge_size": 2,
    "temporal_patch_size": 2,
    "window_size": 112,
    "fullatt_block_indexes": [7, 15, 23, 31],
}


def build_random_qwen7b(out_dir: Path, max_pixels: int) -> Path:
    """A random bf16 Qwen2.5-VL of the 7B size, with the tiny checkpoint's byte tokenizer and processor.

    Random weights time exactly like trained ones (same shapes, same kernels); the tokenizer only
    has to cover the prompt. Built on the GPU (initialising 8 B parameters on a CPU takes minutes).
    """
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    build_tiny_qwen2_5_vl(out_dir)  # tokenizer, processor, chat template; weights replaced below
    config = Qwen2_5_VLConfig.from_pretrained(out_dir)
    for key, value in QWEN25_VL_7B_TEXT.items():
        setattr(config.text_config, key, value)
    for key, value in QWEN25_VL_7B_VISION.items():
        setattr(config.vision_config, key, value)
    config.tie_word_embeddings = False
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = Qwen2_5_VLForConditionalGeneration._from_config(config, dtype=torch.bfloat16).eval()
    for stale in out_dir.glob("model*.safetensors*"):
        stale.unlink()
    model.save_pretrained(out_dir)
    del model
    torch.cuda.empty_cache()
    processor_config = out_dir / "processor_config.json"
    data = json.loads(processor_config.read_text())
    data["image_processor"]["size"] = {"longest_edge": max_pixels, "shortest_edge": 56 * 56}
    processor_config.write_text(json.dumps(data, indent=2))
    return out_dir


def vllm_route(model_dir: Path, images: dict[str, np.ndarray], tokens: int) -> tuple[Callable[[], int], str]:
    """vLLM's offline engine on the same checkpoint and the same chat messages the ``openai:`` backend sends."""
    import vllm
    from vllm import LLM, SamplingParams

    from eagle_iad.mllm.openai_compat import OpenAIBackend

    messages = OpenAIBackend("http://unused", "m").request_body(ITEMS, images, GenerateOptions())["messages"]
    llm = LLM(model=str(model_dir), dtype="bfloat16", max_model_len=8192, gpu_memory_utilization=0.5, seed=0,
              limit_mm_per_prompt={"image": 2})  # fmt: skip
    params = SamplingParams(temperature=0.0, max_tokens=tokens, min_tokens=tokens, ignore_eos=True)

    def run() -> int:
        out = llm.chat(messages, params, use_tqdm=False)
        return len(out[0].outputs[0].token_ids)

    return run, str(vllm.__version__)


def bench_qwen7b(out: Path, runs: int, tokens: int, image: tuple[int, int]) -> dict[str, Any]:
    """One inspection's prompt through transformers plain, transformers CAAS and vLLM; ms per route as JSON."""
    import gc
    import platform

    import transformers

    from eagle_iad.atomic import atomic_write_text

    images = prompt_images(*image)
    result: dict[str, Any] = {
        "what": "one EAGLE inspection prompt (query + boxed copy), random Qwen2.5-VL-7B-size model, bf16, greedy",
        "device": torch.cuda.get_device_name(0),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "image": list(image),
        "tokens": tokens,
        "runs": runs,
        "ms": {},
    }
    with tempfile.TemporaryDirectory(prefix="eagle_qwen7b_") as tmp:
        model_dir = build_random_qwen7b(Path(tmp) / "qwen7b", max_pixels=image[0] * image[1])
        backend = HFBackend(model_dir, device="cuda", dtype=torch.bfloat16, vision_attention="sdpa")
        backend.model.generation_config.min_new_tokens = tokens
        result["params"] = sum(p.numel() for p in backend.model.parameters())
        result["prompt_tokens"] = len(backend.prepare(ITEMS, images).input_ids)
        result["caas_layers"] = list(backend.resolve_layers(CaasSettings()))
        routes: list[tuple[str, Callable[[], int]]] = [
            ("transformers plain", backend_route(backend, images, GenerateOptions(max_new_tokens=tokens))),
            ("transformers caas", backend_route(backend, images, GenerateOptions(max_new_tokens=tokens,
                                                                                 caas=CaasSettings()))),
        ]  # fmt: skip
        result["ms"].update(interleaved_median_ms(routes, runs, tokens))
        del backend, routes
        gc.collect()
        torch.cuda.empty_cache()
        try:
            run, version = vllm_route(model_dir, images, tokens)
        except ImportError as exc:
            result["vllm"] = None
            result["vllm_note"] = f"vLLM not importable: {exc}"
        else:
            result["vllm"] = version
            result["ms"].update(interleaved_median_ms([("vllm", run)], runs, tokens))
    plain = result["ms"]["transformers plain"]
    result["ratio_to_plain"] = {name: ms / plain for name, ms in result["ms"].items()}
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, json.dumps(result, indent=2) + "\n")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=7, help="timed runs per route (median reported)")
    parser.add_argument("--tokens", type=int, default=16, help="tokens generated per run")
    parser.add_argument("--hidden", type=int, default=512, help="text width of the larger models")
    parser.add_argument("--layers", type=int, default=8, help="decoder layers of the larger models")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (1: stable on a shared box)")
    parser.add_argument("--image", type=int, nargs=2, default=(56, 84), metavar=("H", "W"), help="query image size")
    parser.add_argument("--qwen7b", metavar="OUT.json", help="CUDA only: the 7B-size timing (see above) as JSON")
    args = parser.parse_args()
    if args.qwen7b:
        if not torch.cuda.is_available():
            parser.exit(2, "benchmarks/mllm.py: error: --qwen7b needs a CUDA GPU (torch sees none)\n")
        figures = bench_qwen7b(Path(args.qwen7b), args.runs, args.tokens, (args.image[0], args.image[1]))
        print(json.dumps(figures["ms"], indent=2))
        return
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
