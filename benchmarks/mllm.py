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

On a CUDA machine, ``--real-size OUT.json`` times the newer families at the size of a released
checkpoint (random bf16 weights; :data:`REAL_SIZES` names each checkpoint): per family, the prefill
(one generated token), the decode time per token, and CAAS's overhead on each, plain vs CAAS in the
model's default layers. ``--families`` picks some; ``--shrink`` keeps the widths but cuts the depth
(a CPU smoke test of the same builders: ``tests/test_hybrid_bench.py``).

    .venv/bin/python benchmarks/mllm.py --real-size runs/families.json [--families qwen3_vl,gemma3] [--runs 5]
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
from eagle_iad.testing.tiny import TINY_BUILDERS, build_tiny_llava, build_tiny_qwen2_5_vl
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


def _setting(what: str, device: str, image: tuple[int, int], tokens: int, runs: int) -> dict[str, Any]:
    """What a GPU figure was measured on, written beside it (device, library versions, prompt size)."""
    import platform

    import transformers

    return {
        "what": what,
        "device": torch.cuda.get_device_name(0) if device.startswith("cuda") else "cpu",
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "image": list(image),
        "tokens": tokens,
        "runs": runs,
    }


def bench_qwen7b(out: Path, runs: int, tokens: int, image: tuple[int, int]) -> dict[str, Any]:
    """One inspection's prompt through transformers plain, transformers CAAS and vLLM; ms per route as JSON."""
    import gc

    from eagle_iad.atomic import atomic_write_text

    images = prompt_images(*image)
    what = "one EAGLE inspection prompt (query + boxed copy), random Qwen2.5-VL-7B-size model, bf16, greedy"
    result = _setting(what, "cuda", image, tokens, runs) | {"ms": {}}
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


#: Published sizes of one released checkpoint per newer family (text, vision, top-level settings, the
#: processor's image size), put onto the tiny checkpoint's config (its tokenizer, processor and chat
#: template are kept: random weights time exactly like trained ones). MiniCPM-V 4.6's text model is
#: its config class's Qwen3.5 default; its vision tower is assumed SigLIP-400M-sized (the released
#: config was not available here).
REAL_SIZES: dict[str, dict[str, Any]] = {
    "qwen3_vl": {
        "checkpoint": "Qwen/Qwen3-VL-8B-Instruct",
        "text": {"hidden_size": 4096, "intermediate_size": 12288, "num_hidden_layers": 36, "num_attention_heads": 32,
                 "num_key_value_heads": 8, "head_dim": 128, "vocab_size": 151936,
                 "rope_parameters": {"rope_type": "default", "mrope_section": [24, 20, 20], "rope_theta": 5000000.0,
                                     "mrope_interleaved": True}},
        "vision": {"depth": 27, "hidden_size": 1152, "intermediate_size": 4304, "num_heads": 16,
                   "out_hidden_size": 4096, "patch_size": 16, "num_position_embeddings": 2304,
                   "deepstack_visual_indexes": [8, 16, 24]},
        "top": {},
    },
    "glm4v": {
        "checkpoint": "zai-org/GLM-4.1V-9B-Thinking",
        "text": {"hidden_size": 4096, "intermediate_size": 13696, "num_hidden_layers": 40, "num_attention_heads": 32,
                 "num_key_value_heads": 2, "vocab_size": 151552,
                 "rope_parameters": {"rope_type": "default", "mrope_section": [8, 12, 12], "rope_theta": 10000.0,
                                     "partial_rotary_factor": 0.5}},
        "vision": {"depth": 24, "hidden_size": 1536, "intermediate_size": 13696, "num_heads": 12,
                   "out_hidden_size": 4096, "image_size": 336, "patch_size": 14},
        "top": {},
    },
    "gemma3": {
        "checkpoint": "google/gemma-3-4b-it",
        "text": {"hidden_size": 2560, "intermediate_size": 10240, "num_hidden_layers": 34, "num_attention_heads": 8,
                 "num_key_value_heads": 4, "head_dim": 256, "query_pre_attn_scalar": 256, "sliding_window": 1024,
                 "vocab_size": 262208},
        "vision": {"hidden_size": 1152, "intermediate_size": 4304, "num_hidden_layers": 27, "num_attention_heads": 16,
                   "image_size": 896, "patch_size": 14},
        "top": {"mm_tokens_per_image": 256, "tie_word_embeddings": True},
        "processor": {"image_processor": {"size": {"height": 896, "width": 896}}, "image_seq_length": 256},
    },
    "minicpmv4_6": {
        "checkpoint": "openbmb/MiniCPM-V-4.6 (text: MiniCPMV4_6Config's Qwen3.5 default; vision: SigLIP-400M size)",
        "text": {"hidden_size": 4096, "intermediate_size": 12288, "num_hidden_layers": 32, "num_attention_heads": 16,
                 "num_key_value_heads": 4, "head_dim": 256, "linear_key_head_dim": 128, "linear_value_head_dim": 128,
                 "linear_num_key_heads": 16, "linear_num_value_heads": 32, "vocab_size": 248320},
        "vision": {"hidden_size": 1152, "intermediate_size": 4304, "num_hidden_layers": 27, "num_attention_heads": 16,
                   "image_size": 448, "patch_size": 14},
        "top": {"image_size": 448, "insert_layer_id": 6},
        "processor": {"image_processor": {"scale_resolution": 448, "patch_size": 14}},
    },
}  # fmt: skip
#: How each family spells its layer counts, and the layer pattern its text config derives from them.
_VISION_DEPTH = {"qwen3_vl": "depth", "glm4v": "depth"}


def _layer_types(family: str, layers: int) -> list[str] | None:
    if family == "gemma3":  # five sliding-window layers, then one global, repeated
        return ["sliding_attention" if (i + 1) % 6 else "full_attention" for i in range(layers)]
    if family == "minicpmv4_6":  # Qwen3.5: three linear-attention layers, then one attention layer
        return ["linear_attention" if (i + 1) % 4 else "full_attention" for i in range(layers)]
    return None


def real_size_config(family: str, tiny_dir: Path, shrink: bool = False) -> Any:
    """The tiny checkpoint's config at :data:`REAL_SIZES`' dimensions (``shrink``: see :func:`build_real_size`)."""
    from transformers import AutoConfig

    spec = REAL_SIZES[family]
    config = AutoConfig.from_pretrained(tiny_dir)
    data = config.to_dict()
    text = data["text_config"] | spec["text"]
    vision = data["vision_config"] | spec["vision"]
    top = dict(spec["top"])
    if shrink:
        text |= {"num_hidden_layers": 4, "vocab_size": data["text_config"]["vocab_size"]}
        vision[_VISION_DEPTH.get(family, "num_hidden_layers")] = 2
        if family == "qwen3_vl":
            vision["deepstack_visual_indexes"] = [0, 1]
        if "insert_layer_id" in top:
            top["insert_layer_id"] = 0
    layer_types = _layer_types(family, int(text["num_hidden_layers"]))
    if layer_types is not None:
        text["layer_types"] = layer_types
    data |= {"text_config": text, "vision_config": vision, "tie_word_embeddings": False, **top}
    return type(config).from_dict(data)


def build_real_size(family: str, out_dir: Path, device: str, shrink: bool = False) -> Path:
    """A random bf16 (CPU: float32) model of ``family`` at :data:`REAL_SIZES`' dimensions, saved to ``out_dir``.

    ``shrink``: keep every width but use 4 text layers and 2 vision layers and the tokenizer's own
    vocabulary, so a CPU can build and run it (minutes: a smoke run of the GPU path).
    """
    from transformers import AutoModelForImageTextToText

    TINY_BUILDERS[family](out_dir)  # tokenizer, processor, chat template; weights replaced below
    config = real_size_config(family, out_dir, shrink)
    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForImageTextToText.from_config(config, dtype=dtype).eval()
    for stale in out_dir.glob("model*.safetensors*"):
        stale.unlink()
    model.save_pretrained(out_dir)
    del model
    processor_config = out_dir / "processor_config.json"
    saved = json.loads(processor_config.read_text())
    for key, value in REAL_SIZES[family].get("processor", {}).items():
        saved[key] = saved.get(key, {}) | value if isinstance(value, dict) else value
    processor_config.write_text(json.dumps(saved, indent=2))
    return out_dir


def bench_family_phases(
    family: str, model_dir: Path, device: str, images: dict[str, np.ndarray], runs: int, tokens: int
) -> dict[str, Any]:
    """Prefill (one token) and decode (per further token) times, plain and with CAAS, interleaved."""
    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    backend = HFBackend(model_dir, device=device, dtype=dtype, vision_attention="sdpa")
    backend.model.generation_config.min_new_tokens = 1
    caas = CaasSettings()
    routes: list[tuple[str, Callable[[], int]]] = []
    for count in (1, tokens):
        plain = backend_route(backend, images, GenerateOptions(max_new_tokens=count))
        scaled = backend_route(backend, images, GenerateOptions(max_new_tokens=count, caas=caas))
        routes += [(f"plain {count}", plain), (f"caas {count}", scaled)]
    backend.model.generation_config.min_new_tokens = tokens
    ms: dict[str, float] = {}
    for count in (1, tokens):  # every route of one length generates exactly that many tokens
        backend.model.generation_config.min_new_tokens = count
        chosen = [route for route in routes if route[0].endswith(f" {count}")]
        ms.update(interleaved_median_ms(chosen, runs, count))
    decode = {kind: (ms[f"{kind} {tokens}"] - ms[f"{kind} 1"]) / max(tokens - 1, 1) for kind in ("plain", "caas")}
    figures = {
        "checkpoint": REAL_SIZES[family]["checkpoint"],
        "params": sum(p.numel() for p in backend.model.parameters()),
        "layers": backend.num_layers,
        "attention_layers": len(backend.attention_layers),
        "caas_layers": list(backend.resolve_layers(caas)),
        "prompt_tokens": len(backend.prepare(ITEMS, images).input_ids),
        "prefill_ms": {"plain": ms["plain 1"], "caas": ms["caas 1"]},
        "decode_ms_per_token": decode,
        "caas_overhead": {
            "prefill": ms["caas 1"] / ms["plain 1"],
            "decode": decode["caas"] / decode["plain"] if decode["plain"] > 0 else None,
        },
    }
    del backend
    return figures


def bench_real_size(
    out: Path | None, families: list[str], runs: int, tokens: int, image: tuple[int, int], device: str, shrink: bool
) -> dict[str, Any]:
    """:func:`bench_family_phases` for each family at its released size; written as JSON to ``out``."""
    import gc

    from eagle_iad.atomic import atomic_write_text

    images = prompt_images(*image)
    what = "one EAGLE inspection prompt (query + boxed copy), random weights at released sizes, greedy"
    result = _setting(what, device, image, tokens, runs) | {"shrink": shrink, "families": {}}
    for family in families:
        with tempfile.TemporaryDirectory(prefix=f"eagle_{family}_") as tmp:
            model_dir = build_real_size(family, Path(tmp) / family, device, shrink)
            result["families"][family] = bench_family_phases(family, model_dir, device, images, runs, tokens)
        gc.collect()
        if device.startswith("cuda"):
            torch.cuda.empty_cache()
        if out is not None:  # after every family: a run cut short keeps what it measured
            out.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(out, json.dumps(result, indent=2) + "\n")
    return result


def print_phases(result: dict[str, Any]) -> None:
    print(f"\n{'family':<13} {'prefill ms':>11} {'CAAS x':>7} {'decode ms/tok':>14} {'CAAS x':>7}  layers (CAAS)")
    for family, row in result["families"].items():
        over = row["caas_overhead"]
        decode = "-" if over["decode"] is None else f"{over['decode']:.2f}"
        print(
            f"{family:<13} {row['prefill_ms']['plain']:>11.1f} {over['prefill']:>7.2f} "
            f"{row['decode_ms_per_token']['plain']:>14.1f} {decode:>7}  {row['layers']} ({row['caas_layers']})"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=7, help="timed runs per route (median reported)")
    parser.add_argument("--tokens", type=int, default=16, help="tokens generated per run")
    parser.add_argument("--hidden", type=int, default=512, help="text width of the larger models")
    parser.add_argument("--layers", type=int, default=8, help="decoder layers of the larger models")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (1: stable on a shared box)")
    parser.add_argument("--image", type=int, nargs=2, default=(56, 84), metavar=("H", "W"), help="query image size")
    parser.add_argument("--qwen7b", metavar="OUT.json", help="CUDA only: the 7B-size timing (see above) as JSON")
    parser.add_argument("--real-size", metavar="OUT.json", help="CUDA: the newer families at released sizes, as JSON")
    parser.add_argument("--families", default=",".join(REAL_SIZES), help="with --real-size: comma-separated")
    parser.add_argument("--shrink", action="store_true", help="with --real-size: 4 text layers (runs on a CPU)")
    args = parser.parse_args()
    if args.real_size:
        families = [name for name in args.families.split(",") if name]
        unknown = sorted(set(families) - set(REAL_SIZES))
        if unknown:
            parser.exit(2, f"benchmarks/mllm.py: error: --families: unknown {unknown} (known: {list(REAL_SIZES)})\n")
        device = "cuda" if torch.cuda.is_available() else "cpu"
        if device == "cpu" and not args.shrink:
            parser.exit(
                2, "benchmarks/mllm.py: error: --real-size needs a CUDA GPU (or --shrink for a CPU smoke run)\n"
            )
        figures = bench_real_size(
            Path(args.real_size), families, args.runs, args.tokens, (args.image[0], args.image[1]), device, args.shrink
        )
        print_phases(figures)
        return
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
