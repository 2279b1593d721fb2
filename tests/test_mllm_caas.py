"""CAAS through the attention-function registry, on tiny real-architecture models (docs/METHOD.md §3, §4).

Exactness is checked bit for bit: alpha = 0 and out-of-band requests against stock
``attn_implementation="eager"``; alpha > 0 against a stock eager logit computation from the very
same query/key tensors, entry by entry.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from conftest import MLLM_FAMILIES, wait_s

from eagle_iad.errors import ConfigError
from eagle_iad.mllm import CaasSettings, GenerateOptions
from eagle_iad.mllm.caas import AttentionRequest, LogitProbe, attention_request
from eagle_iad.tgps.prompt import PromptRequest, build_prompt

pytestmark = pytest.mark.usefixtures("torch_single_thread")

FAMILIES = MLLM_FAMILIES
VISION_TOWER = {
    "qwen3_vl": "model.visual",
    "glm4v": "model.visual",
    "gemma3": "model.vision_tower",
    "minicpmv4_6": "model.vision_tower",
    "minicpmv4_7": "model.vision_tower",
    "qwen2_5_vl": "model.visual",
    "qwen2_vl": "model.visual",
    "llava": "model.vision_tower",
    "idefics3": "model.vision_model",
    "smolvlm": "model.vision_model",
    "llava_next": "model.vision_tower",
    "llava_onevision": "model.vision_tower",
    "internvl": "model.vision_tower",
}
#: Tiled families: the 56x84 query image's (disjoint ranges, visual tokens). Idefics3: 2x2 tiles + global
#: view, separated by marker tokens; LLaVA-NeXT/OneVision: 16 base-view + 24 unpadded tile + 4 newline
#: positions, one range (OneVision's touches the template's and the boxed copy's: images are rendered
#: back to back); InternVL: 2 tiles + thumbnail in one <img>...</img> run; MiniCPM-V: the source view
#: and a 1x2 row of slices, each between its own markers.
TILED = {
    "minicpmv4_6": (3, 12),
    "minicpmv4_7": (3, 12),
    "idefics3": (5, 20),
    "smolvlm": (5, 20),
    "llava_next": (1, 44),
    "llava_onevision": (1, 44),
    "internvl": (1, 12),
}
#: Default CAAS layers of the 4-layer tiny models: the middle band (1, 2), except MiniCPM-V's hybrid
#: Qwen3.5 text model (linear attention in layers 0 and 2), whose band keeps its attention layer 1.
DEFAULT_LAYERS = {"minicpmv4_6": {1}, "minicpmv4_7": {1}}
ITEMS = build_prompt(PromptRequest("q.png", "anomalous", boxed_ref="q_box.png", template_ref="t.png"))
NEW_TOKENS = 3


def _columns(ranges: Any, offset: int) -> list[tuple[int, int]]:
    """Prompt ranges as key columns of a cache whose column 0 is prompt position ``offset`` (non-empty only)."""
    shifted = [(max(start - offset, 0), end - offset) for start, end in ranges]
    return [(start, end) for start, end in shifted if end > start]


@pytest.fixture(scope="module")
def stock_eager(tiny_mllm_dirs: dict[str, Path], mllm_device: str) -> Callable[[str], Any]:
    from transformers import AutoModelForImageTextToText

    cache: dict[str, Any] = {}

    def get(family: str) -> Any:
        if family not in cache:
            model = AutoModelForImageTextToText.from_pretrained(
                tiny_mllm_dirs[family], attn_implementation="eager", dtype=_dtype(mllm_device)
            )
            cache[family] = model.to(mllm_device).eval()
        return cache[family]

    return get


def _dtype(device: str) -> torch.dtype:
    return torch.bfloat16 if device.startswith("cuda") else torch.float32


def _tolerance(device: str) -> dict[str, float]:
    """Tolerance where two *different* arithmetic routes are compared (bf16 on GPU is coarse)."""
    return {"rtol": 2e-2, "atol": 2e-2} if device.startswith("cuda") else {"rtol": 1e-4, "atol": 1e-5}


def _stock_generate(model: Any, backend: Any, prepared: Any) -> tuple[list[int], torch.Tensor]:
    with torch.inference_mode():
        out = model.generate(
            **prepared.inputs.to(backend.device),
            max_new_tokens=NEW_TOKENS,
            do_sample=False,
            num_beams=1,
            return_dict_in_generate=True,
            output_logits=True,
            pad_token_id=backend.processor.tokenizer.pad_token_id,
        )
    ids = [int(i) for i in out.sequences[0, len(prepared.input_ids) :].tolist()]
    return ids, torch.stack([step[0] for step in out.logits]).float()


@pytest.mark.parametrize("family", FAMILIES)
def test_alpha_zero_and_out_of_band_equal_stock_eager(
    family: str, hf_backends: Any, stock_eager: Any, prompt_images: dict[str, np.ndarray]
) -> None:
    backend = hf_backends(family, exact_eager=True)
    stock_ids, stock_logits = _stock_generate(stock_eager(family), backend, backend.prepare(ITEMS, prompt_images))
    all_layers = backend.attention_layers
    for caas in (None, CaasSettings(alpha=0.0), CaasSettings(alpha=0.0, layers=all_layers)):
        reply, logits = backend.generate_with_logits(
            ITEMS, prompt_images, GenerateOptions(max_new_tokens=NEW_TOKENS, caas=caas)
        )
        assert reply.token_ids == stock_ids
        assert torch.equal(logits, stock_logits)
        assert reply.caas_applied == (caas is not None)
    # And alpha > 0 really changes the computation (the equalities above have power).
    _, scaled = backend.generate_with_logits(
        ITEMS, prompt_images, GenerateOptions(max_new_tokens=NEW_TOKENS, caas=CaasSettings(alpha=2.0))
    )
    assert not torch.equal(scaled, stock_logits)


@pytest.mark.parametrize("family", FAMILIES)
def test_alpha_scales_exactly_the_query_columns_in_selected_layers(
    family: str, hf_backends: Any, stock_eager: Any, prompt_images: dict[str, np.ndarray]
) -> None:
    backend = hf_backends(family, exact_eager=True)
    prepared = backend.prepare(ITEMS, prompt_images)
    template_span, query_span, boxed_span = prepared.images.spans
    assert prepared.query_index == 1
    settings = CaasSettings(alpha=0.6)
    request = backend._request(prepared, GenerateOptions(caas=settings))
    assert request.span == query_span
    selected = set(backend.resolve_layers(settings))
    assert request.layers == selected and selected == DEFAULT_LAYERS.get(family, {1, 2})
    if family in TILED:
        # Tiles + global view: the query image is several disjoint ranges, all of which are scaled.
        assert (len(query_span), sum(end - start for start, end in query_span)) == TILED[family]

    probes: list[LogitProbe] = []
    request.probe = probes.append
    vision_out: dict[str, torch.Tensor] = {}

    def hook(name: str) -> Callable[..., None]:
        def record(_module: Any, _inputs: Any, output: Any) -> None:
            vision_out[name] = (
                output[0] if isinstance(output, tuple) else getattr(output, "last_hidden_state", output)
            ).clone()

        return record

    caas_vision = backend.model.get_submodule(VISION_TOWER[family]).register_forward_hook(hook("caas"))
    stock_model = stock_eager(family)
    stock_vision = stock_model.get_submodule(VISION_TOWER[family]).register_forward_hook(hook("stock"))
    try:
        with torch.inference_mode(), attention_request(request):
            backend.model.generate(
                **prepared.inputs.to(backend.device), max_new_tokens=2, do_sample=False, pad_token_id=0
            )
        with torch.inference_mode():
            stock_model(**prepared.inputs.to(backend.device))
    finally:
        caas_vision.remove()
        stock_vision.remove()

    # Vision tower: identical output, and it never went through the CAAS function.
    assert torch.equal(vision_out["caas"], vision_out["stock"])
    # One call per attention layer (linear-attention layers of hybrid models have no logits) for the
    # prefill and for each of the 1 decode steps that feed a token back.
    assert sorted(p.layer for p in probes) == sorted(list(backend.attention_layers) * 2)
    decode = [p for p in probes if p.query.shape[2] == 1]
    assert {p.layer for p in decode} == set(backend.attention_layers)
    for probe in probes:
        reference = torch.matmul(probe.query, probe.key.transpose(2, 3)) * probe.scaling
        # Key column j is prompt position offset + j (offset > 0 only in a sliding-window layer's decode step).
        assert probe.offset == len(prepared.input_ids) + (probe.query.shape[2] == 1) - probe.key.shape[2]
        expected = reference.clone()
        if probe.layer in selected:
            assert probe.scaled
            for start, end in _columns(query_span, probe.offset):
                expected[..., start:end] = reference[..., start:end] * 1.6
                # Every range of the query image is scaled (tiles and global view alike).
                assert not torch.equal(probe.logits[..., start:end], reference[..., start:end])
        else:
            assert not probe.scaled
        # Entry for entry: scaled query columns, every other column (text, separators) untouched.
        assert torch.equal(probe.logits, expected), f"layer {probe.layer}"
        for other_start, other_end in _columns((*template_span, *boxed_span), probe.offset):
            assert torch.equal(probe.logits[..., other_start:other_end], reference[..., other_start:other_end])
    if family == "gemma3":
        # The tiny Gemma 3's 32-key window is shorter than the prompt: decoding evicted keys in the
        # sliding layers (0 and 2), and the span was shifted there rather than scaling text columns.
        assert {p.layer for p in decode if p.offset > 0} == {0, 2}


def test_query_span_follows_the_query_item_not_position(hf_backends: Any, prompt_images: dict[str, np.ndarray]) -> None:
    backend = hf_backends("qwen2_5_vl")
    baseline = build_prompt(PromptRequest("q.png"))
    prepared = backend.prepare(baseline, prompt_images)
    assert prepared.query_index == 0 and len(prepared.images.spans) == 1
    with_template = backend.prepare(build_prompt(PromptRequest("q.png", "normal", template_ref="t.png")), prompt_images)
    assert with_template.query_index == 1
    assert with_template.images.spans[1][0][0] >= with_template.images.spans[0][-1][1]
    reply = backend.generate(
        ITEMS, prompt_images, GenerateOptions(max_new_tokens=1, caas=CaasSettings(), capture_attention=True)
    )
    assert reply.attention is None and "no decode step" in reply.metadata["attention_note"]
    assert reply.caas_settings == {
        "alpha": 0.6,
        "phase": "all",
        "layers": [1, 2],
        "scaled_layers": [1, 2],
        "span": reply.metadata["image_spans"][1],
    }


@pytest.fixture(scope="module")
def stock_sdpa(tiny_mllm_dirs: dict[str, Path], mllm_device: str) -> Any:
    from transformers import AutoModelForImageTextToText

    model = AutoModelForImageTextToText.from_pretrained(
        tiny_mllm_dirs["qwen2_5_vl"],
        attn_implementation={"text_config": "sdpa", "vision_config": "eager"},
        dtype=_dtype(mllm_device),
    )
    return model.to(mllm_device).eval()


def test_sdpa_delegate_equals_stock_sdpa_and_capture_does_not_change_outputs(
    hf_backends: Any, stock_sdpa: Any, stock_eager: Any, prompt_images: dict[str, np.ndarray]
) -> None:
    backend = hf_backends("qwen2_5_vl", exact_eager=False)
    assert backend.text_attention == "eagle_caas"
    prepared = backend.prepare(ITEMS, prompt_images)
    sdpa_ids, sdpa_logits = _stock_generate(stock_sdpa, backend, prepared)
    plain, plain_logits = backend.generate_with_logits(ITEMS, prompt_images, GenerateOptions(max_new_tokens=NEW_TOKENS))
    # Out of band, unselected layers are the stock SDPA path: bit-identical.
    assert plain.token_ids == sdpa_ids and torch.equal(plain_logits, sdpa_logits)
    # alpha = 0 runs eager arithmetic in the selected layers: equal to stock up to SDPA-vs-eager rounding.
    _, zero_logits = backend.generate_with_logits(
        ITEMS, prompt_images, GenerateOptions(max_new_tokens=NEW_TOKENS, caas=CaasSettings(alpha=0.0))
    )
    _, eager_logits = _stock_generate(stock_eager("qwen2_5_vl"), backend, prepared)
    torch.testing.assert_close(zero_logits, eager_logits, **_tolerance(backend.device))
    captured, captured_logits = backend.generate_with_logits(
        ITEMS, prompt_images, GenerateOptions(max_new_tokens=NEW_TOKENS, capture_attention=True)
    )
    assert torch.equal(captured_logits, plain_logits) and captured.token_ids == plain.token_ids
    attention = captured.attention
    assert attention is not None and attention.grid == (1, 2, 3)
    assert sorted(attention.per_layer) == list(range(backend.num_layers))
    for layer, values in attention.per_layer.items():
        assert values.shape == (6,) and np.all(values >= 0)
        assert attention.share[layer] == pytest.approx(float(values.sum()))
        assert 0.0 < attention.share[layer] < 1.0


@pytest.mark.parametrize("family", FAMILIES)
def test_concurrent_requests_match_sequential(
    family: str, hf_backends: Any, prompt_images: dict[str, np.ndarray]
) -> None:
    backend = hf_backends(family)
    outer = (backend.attention_layers[0], backend.attention_layers[-1])
    jobs = [
        GenerateOptions(max_new_tokens=NEW_TOKENS, caas=CaasSettings(alpha=3.0), capture_attention=True),
        GenerateOptions(max_new_tokens=NEW_TOKENS),
        GenerateOptions(max_new_tokens=NEW_TOKENS, caas=CaasSettings(alpha=1.0, layers=outer, phase="decode")),
        GenerateOptions(max_new_tokens=NEW_TOKENS, capture_attention=True),
    ] * 2

    def run(options: GenerateOptions) -> tuple[Any, torch.Tensor]:
        result: tuple[Any, torch.Tensor] = backend.generate_with_logits(ITEMS, prompt_images, options)
        return result

    sequential = [run(options) for options in jobs[:4]] * 2
    assert not torch.equal(sequential[0][1], sequential[1][1])  # CAAS and plain really differ
    barrier = threading.Barrier(4)

    def concurrent(options: GenerateOptions) -> tuple[Any, torch.Tensor]:
        barrier.wait(timeout=wait_s(30))
        return run(options)

    with ThreadPoolExecutor(max_workers=4) as pool:
        parallel = list(pool.map(concurrent, jobs))
    for (ref_reply, ref_logits), (reply, logits) in zip(sequential, parallel, strict=True):
        assert reply.token_ids == ref_reply.token_ids
        assert torch.equal(logits, ref_logits)
        assert reply.caas_settings == ref_reply.caas_settings
        if ref_reply.attention is not None:
            assert reply.attention is not None
            for layer, values in ref_reply.attention.per_layer.items():
                np.testing.assert_array_equal(reply.attention.per_layer[layer], values)


def test_a_request_serves_one_generation(hf_backends: Any, prompt_images: dict[str, np.ndarray]) -> None:
    """A request counts the positions each layer saw; reusing it would misplace the span, so it is refused."""
    backend = hf_backends("qwen2_5_vl")
    prepared = backend.prepare(ITEMS, prompt_images)
    request = backend._request(prepared, GenerateOptions(caas=CaasSettings()))
    with torch.inference_mode(), attention_request(request):
        backend.model.generate(**prepared.inputs.to(backend.device), max_new_tokens=2, do_sample=False, pad_token_id=0)
    assert request.seen == dict.fromkeys(range(backend.num_layers), len(prepared.input_ids) + 1)
    with pytest.raises(ValueError, match="serves one generate call"), attention_request(request):
        pass


def test_no_request_outside_generate() -> None:
    from eagle_iad.mllm.caas import active_request

    assert active_request() is None
    with attention_request(AttentionRequest(span=((1, 2),))) as request:
        assert active_request() is request
        seen: list[AttentionRequest | None] = []
        thread = threading.Thread(target=lambda: seen.append(active_request()))
        thread.start()
        thread.join()
        assert seen == [None]  # other threads never inherit a request
    assert active_request() is None


@pytest.mark.parametrize("family", FAMILIES)
def test_caas_matches_an_independent_key_scaling_emulation(
    family: str, hf_backends: Any, stock_eager: Any, prompt_images: dict[str, np.ndarray]
) -> None:
    """Cross-check by a different route: RoPE is linear, so (1+alpha)·QK^T on the query columns equals
    stock eager attention whose keys at the query positions are scaled by (1+alpha) in the selected
    layers (and, through the KV cache, in every decode step)."""
    backend = hf_backends(family, exact_eager=True)
    prepared = backend.prepare(ITEMS, prompt_images)
    query_ranges = prepared.images.spans[prepared.query_index]
    alpha, layers = 0.8, tuple(backend.attention_layers[::2])  # (0, 2); (1,) for the hybrid MiniCPM-V
    reply, caas_logits = backend.generate_with_logits(
        ITEMS, prompt_images, GenerateOptions(max_new_tokens=NEW_TOKENS, caas=CaasSettings(alpha=alpha, layers=layers))
    )
    model = stock_eager(family)

    def scale_keys(_module: Any, _inputs: Any, output: torch.Tensor) -> torch.Tensor:
        # Prefill only (decode steps add no query-image keys); positions are dim 1 of k_proj's output and
        # of a per-head k_norm's, dim 2 where the heads were transposed first (Gemma 3).
        dim = 1 if output.shape[1] == len(prepared.input_ids) else 2
        if output.shape[dim] == len(prepared.input_ids):
            output = output.clone()
            for start, end in query_ranges:
                output.narrow(dim, start, end - start).mul_(1.0 + alpha)
        return output

    text_layers = [m for m in model.modules() if getattr(m, "layer_idx", None) in layers and hasattr(m, "k_proj")]
    assert sorted(m.layer_idx for m in text_layers) == list(layers)
    # Where keys are RMS-normed (Qwen3, Gemma 3), scaling k_proj's output would be normed away: scale after the norm.
    handles = [getattr(m, "k_norm", m.k_proj).register_forward_hook(scale_keys) for m in text_layers]
    try:
        ids, emulated = _stock_generate(model, backend, prepared)
    finally:
        for handle in handles:
            handle.remove()
    torch.testing.assert_close(caas_logits, emulated, **_tolerance(backend.device))
    if not backend.device.startswith("cuda"):  # bf16 rounding may flip a near-tie argmax
        assert reply.token_ids == ids
    _, plain = _stock_generate(model, backend, prepared)
    assert not torch.allclose(plain, emulated, **_tolerance(backend.device))


@pytest.mark.parametrize("family", FAMILIES)
def test_capture_maps_grid_tokens_and_shares_all_query_tokens(
    family: str, hf_backends: Any, prompt_images: dict[str, np.ndarray]
) -> None:
    """Every family: the map has one weight per grid token (base/global view for tiled families), the
    share is the mass on *all* of the query image's visual tokens, and capture leaves outputs unchanged."""
    backend = hf_backends(family, exact_eager=True)
    prepared = backend.prepare(ITEMS, prompt_images)
    image = prepared.images.images[prepared.query_index]
    plain, plain_logits = backend.generate_with_logits(ITEMS, prompt_images, GenerateOptions(max_new_tokens=2))
    reply, logits = backend.generate_with_logits(
        ITEMS, prompt_images, GenerateOptions(max_new_tokens=2, capture_attention=True)
    )
    assert torch.equal(logits, plain_logits) and reply.token_ids == plain.token_ids
    capture = reply.attention
    assert capture is not None and capture.span == image.ranges and capture.grid == image.grid
    t, h, w = image.grid
    assert sorted(capture.per_layer) == list(backend.attention_layers)
    for layer in backend.attention_layers:
        values = capture.per_layer[layer]
        assert values.shape == (t * h * w,) and np.all(values >= 0)
        assert capture.layer_map(layer).shape == (h, w)
        if family == "gemma3" and layer in (0, 2):
            # Sliding layers whose 32-key window no longer holds the image: no attention to it at all.
            assert capture.share[layer] == 0.0 and not values.any()
            continue
        if image.grid_ranges == image.ranges:
            assert capture.share[layer] == pytest.approx(float(values.sum()), rel=1e-5)
        else:
            assert capture.share[layer] > float(values.sum())
        assert 0.0 < capture.share[layer] < 1.0


@pytest.mark.parametrize("family", ["qwen2_5_vl", "gemma3"])
def test_decode_phase_scales_only_decoding_steps(
    family: str, hf_backends: Any, prompt_images: dict[str, np.ndarray]
) -> None:
    """``phase="decode"`` (the reference tool's default): the prefill, and so the first answer token, is
    stock; each decode step is scaled exactly as in ``phase="all"``. Gemma 3 adds evicted keys."""
    backend = hf_backends(family, exact_eager=True)
    prepared = backend.prepare(ITEMS, prompt_images)
    query_span = prepared.images.spans[prepared.query_index]
    plain, plain_logits = backend.generate_with_logits(ITEMS, prompt_images, GenerateOptions(max_new_tokens=NEW_TOKENS))
    everywhere, all_logits = backend.generate_with_logits(
        ITEMS, prompt_images, GenerateOptions(max_new_tokens=NEW_TOKENS, caas=CaasSettings(alpha=2.0))
    )
    decode_only, decode_logits = backend.generate_with_logits(
        ITEMS, prompt_images, GenerateOptions(max_new_tokens=NEW_TOKENS, caas=CaasSettings(alpha=2.0, phase="decode"))
    )
    assert torch.equal(decode_logits[0], plain_logits[0])  # the first token is computed in the prefill
    assert not torch.equal(all_logits[0], plain_logits[0])
    assert decode_only.caas_settings is not None and decode_only.caas_settings["phase"] == "decode"
    assert everywhere.caas_settings is not None and everywhere.caas_settings["phase"] == "all"
    assert decode_only.caas_settings["scaled_layers"] == [1, 2]

    # Logit level: no prefill call is scaled, every decode call of a selected layer is, over the query columns.
    request = backend._request(prepared, GenerateOptions(caas=CaasSettings(alpha=0.6, phase="decode")))
    probes: list[LogitProbe] = []
    request.probe = probes.append
    with torch.inference_mode(), attention_request(request):
        backend.model.generate(**prepared.inputs.to(backend.device), max_new_tokens=2, do_sample=False, pad_token_id=0)
    for probe in probes:
        decoding = probe.query.shape[2] == 1
        assert probe.scaled == (decoding and probe.layer in {1, 2})
        reference = torch.matmul(probe.query, probe.key.transpose(2, 3)) * probe.scaling
        expected = reference.clone()
        if probe.scaled:
            for start, end in _columns(query_span, probe.offset):
                expected[..., start:end] = reference[..., start:end] * 1.6
        assert torch.equal(probe.logits, expected)

    # One generated token: no decode step ran, so nothing was scaled, and that is not an error.
    single = backend.generate(
        ITEMS, prompt_images, GenerateOptions(max_new_tokens=1, caas=CaasSettings(alpha=2.0, phase="decode"))
    )
    assert single.caas_settings is not None and single.caas_settings["scaled_layers"] == []
    assert single.token_ids == plain.token_ids[:1]
    # ...and the reply does not claim CAAS it did not apply, saying why.
    assert single.caas_applied is False and "phase decode" in single.metadata["caas_not_applied"]
    assert decode_only.caas_applied is True and "caas_not_applied" not in decode_only.metadata
    with pytest.raises(ConfigError, match="CAAS phase must be one of 'all', 'decode'"):
        CaasSettings(phase="prefill")  # type: ignore[arg-type]


def test_hybrid_model_scales_and_captures_attention_layers_only(
    hf_backends: Any, prompt_images: dict[str, np.ndarray]
) -> None:
    """MiniCPM-V 4.6's Qwen3.5 text model mixes linear-attention layers (no logits) with attention layers."""
    backend = hf_backends("minicpmv4_6")
    assert backend.num_layers == 4 and backend.attention_layers == (1, 3)
    assert backend.resolve_layers(CaasSettings()) == (1,)
    assert backend.resolve_layers(CaasSettings(layers=(3, 1))) == (1, 3)
    with pytest.raises(
        ConfigError, match=r"CAAS layers \[0, 2\] compute linear attention .* attention layers are \[1, 3\]"
    ):
        backend.resolve_layers(CaasSettings(layers=(0, 1, 2)))
    reply = backend.generate(
        ITEMS, prompt_images, GenerateOptions(max_new_tokens=2, caas=CaasSettings(), capture_attention=True)
    )
    assert reply.caas_settings is not None and reply.caas_settings["scaled_layers"] == [1]
    assert reply.attention is not None and sorted(reply.attention.per_layer) == [1, 3]
