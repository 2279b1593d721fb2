"""CAAS: confidence-aware attention scaling, as a transformers attention function (docs/METHOD.md §3).

Why an attention function: transformers 5 routes every decoder attention through
``ALL_ATTENTION_FUNCTIONS[config._attn_implementation]`` with the module, the rotated query/key
and the value. Registering our own function there changes *only* the attention arithmetic, for any
family that follows the functional attention API, without touching model classes. The language
model is switched to it per sub-config (``{"text_config": "eagle_caas", "vision_config": ...}``),
so the vision tower keeps its own attention and is never scaled.

What it does, per decoder layer (the layer index is the module's ``layer_idx``):

* layer selected and a CAAS request active: eager attention where the pre-softmax logits
  ``A = QK^T * scaling`` in the key columns of the query image's visual tokens (all of them, possibly
  several ranges) become
  ``(1 + alpha) * A`` *before* the additive mask, for all heads, in prefill and every decode step
  (phase ``"all"``, the default) or in decode steps only (phase ``"decode"``). Key column ``j`` is
  prompt position ``j`` while the cache holds every key; a sliding-window layer's cache (Gemma 3)
  keeps only the latest keys, so each layer counts the positions it has seen and shifts the span by
  the evicted ones (evicted image keys are simply not there to scale);
* otherwise: the delegate — SDPA for ``eagle_caas`` (fast), or the stock-equivalent eager
  computation for ``eagle_caas_eager`` (bit-identical to ``attn_implementation="eager"``; used to
  prove that alpha = 0 and out-of-band requests change nothing).

Per-request state (span, layers, alpha, attention capture) lives in a :class:`contextvars.ContextVar`,
so threads sharing one model never see each other's settings.

Masks: ``eagle_caas`` registers transformers' SDPA mask builder, so unselected layers run exactly
the stock SDPA path (boolean mask, or none when causal skipping applies); the scaled layers turn
that mask into the additive ``0 / finfo.min`` form exactly as transformers' ``eager_mask`` does.
``eagle_caas_eager`` registers ``eager_mask`` itself, like stock eager.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

from eagle_iad.choices import CAAS_PHASES, DEFAULT_CAAS_PHASE, CaasPhase
from eagle_iad.choices import DEFAULT_ALPHA as DEFAULT_ALPHA
from eagle_iad.errors import ConfigError, one_of

CAAS_ATTENTION = "eagle_caas"
CAAS_ATTENTION_EAGER = "eagle_caas_eager"
#: Qwen2.5-VL-7B (28 decoder layers): the paper's layers 9..14 (0-based, inclusive).
QWEN2_5_VL_7B_LAYERS = tuple(range(9, 15))


@dataclass(frozen=True)
class CaasSettings:
    """What a caller asks for: ``alpha``, optionally explicit layers (``None`` = model default), and
    the phase CAAS acts in (``"all"``: prefill and decoding; ``"decode"``: decoding steps only)."""

    alpha: float = DEFAULT_ALPHA
    layers: tuple[int, ...] | None = None
    phase: CaasPhase = DEFAULT_CAAS_PHASE

    def __post_init__(self) -> None:
        if not self.alpha >= 0.0:
            raise ConfigError(f"CAAS alpha must be >= 0, got {self.alpha}")
        if self.phase not in CAAS_PHASES:
            raise ConfigError(f"CAAS phase must be one of {one_of(CAAS_PHASES)}, got {self.phase!r}")
        if self.layers is not None and any(layer < 0 for layer in self.layers):
            raise ConfigError(f"CAAS layers must be 0-based non-negative indices, got {self.layers}")


def default_caas_layers(
    num_layers: int, model_type: str | None = None, attention_layers: tuple[int, ...] | None = None
) -> tuple[int, ...]:
    """Default CAAS layers: 9..14 for 28-layer Qwen2.5-VL, else round(0.32 L)..round(0.50 L) inclusive.

    The relative band reproduces 9..14 for L = 28, so other depths get the same "middle layers"
    where the paper found visual grounding to matter. ``attention_layers``: the layers that compute
    softmax attention, where a hybrid language model (MiniCPM-V 4.6's Qwen3.5: three linear-attention
    layers to one attention layer) has others; CAAS can only act on those, so the band keeps its
    attention layers, or, holding none, the attention layer nearest its middle.
    """
    if num_layers < 1:
        raise ConfigError(f"a language model needs at least one layer, got {num_layers}")
    if model_type == "qwen2_5_vl" and num_layers == 28:
        return QWEN2_5_VL_7B_LAYERS
    start = round(0.32 * num_layers)
    stop = max(start, round(0.50 * num_layers))
    band = tuple(range(start, min(stop, num_layers - 1) + 1))
    if attention_layers is None:
        return band
    if not attention_layers:
        raise ConfigError("the language model has no softmax-attention layer for CAAS to act on")
    inside = tuple(layer for layer in band if layer in attention_layers)
    if inside:
        return inside
    middle = (band[0] + band[-1]) / 2
    return (min(attention_layers, key=lambda layer: (abs(layer - middle), layer)),)


@dataclass(frozen=True)
class LogitProbe:
    """What a probe sees in one layer call: inputs and the scaled pre-mask logits (debug/tests)."""

    layer: int
    query: torch.Tensor
    key: torch.Tensor
    scaling: float
    logits: torch.Tensor
    scaled: bool
    #: Prompt position of key column 0 (non-zero only where a sliding-window cache evicted keys).
    offset: int = 0


@dataclass
class AttentionRequest:
    """Per-request attention state, installed with :func:`attention_request`.

    ``span`` is the query image's visual tokens in the prompt as disjoint ``[start, end)`` ranges
    (one range for single-view families; several when separator tokens sit between an image's
    tiles, as in Idefics3/SmolVLM image splitting); ``layers``/``alpha``/``phase`` are the resolved
    CAAS settings (empty layers = no scaling). With ``capture`` the first decode step (query length
    1 at position ``prompt_length``) records each layer's attention row over the prompt positions,
    mean over heads, into ``captured``. ``probe`` is a debugging hook called with the logits; while
    one is set every decoder layer takes the eager route (so it can see logits), SDPA layers included.
    """

    span: tuple[tuple[int, int], ...] | None = None
    layers: frozenset[int] = frozenset()
    alpha: float = 0.0
    phase: CaasPhase = DEFAULT_CAAS_PHASE
    prompt_length: int = 0
    capture: bool = False
    captured: dict[int, torch.Tensor] = field(default_factory=dict)
    probe: Callable[[LogitProbe], None] | None = None
    #: Layers whose logits were actually scaled (so a reply can prove CAAS ran where asked).
    scaled_layers: set[int] = field(default_factory=set)
    #: Per layer, the positions its calls have seen so far (prompt + generated): where its keys end.
    seen: dict[int, int] = field(default_factory=dict)


_REQUEST: contextvars.ContextVar[AttentionRequest | None] = contextvars.ContextVar("eagle_caas_request", default=None)


@contextlib.contextmanager
def attention_request(request: AttentionRequest) -> Iterator[AttentionRequest]:
    """Make ``request`` the active attention state for this thread/context, for one ``generate`` call.

    A request counts the positions each layer has seen (:attr:`AttentionRequest.seen`), so a used
    one would place its span wrongly in a second generation: it is refused rather than reused.
    """
    if request.seen or request.captured or request.scaled_layers:
        raise ValueError("an AttentionRequest serves one generate call; build a new one for the next")
    token = _REQUEST.set(request)
    try:
        yield request
    finally:
        _REQUEST.reset(token)


def active_request() -> AttentionRequest | None:
    """The attention state of the current context, if any."""
    return _REQUEST.get()


def _repeat_kv(hidden: torch.Tensor, n_rep: int) -> torch.Tensor:
    """Same expansion as transformers' ``repeat_kv`` (GQA keys/values to all query heads)."""
    if n_rep == 1:
        return hidden
    batch, kv_heads, length, dim = hidden.shape
    return (
        hidden[:, :, None, :, :]
        .expand(batch, kv_heads, n_rep, length, dim)
        .reshape(batch, kv_heads * n_rep, length, dim)
    )


def _eager(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float,
    dropout: float,
    request: AttentionRequest | None,
    layer: int | None,
    scale: bool,
    offset: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """transformers' eager attention, op for op, with the CAAS multiply inserted before the mask.

    ``offset``: the prompt position of key column 0, so span positions become key columns.
    """
    n_rep = int(getattr(module, "num_key_value_groups", 1))
    key_states = _repeat_kv(key, n_rep)
    value_states = _repeat_kv(value, n_rep)
    attn_weights = torch.matmul(query, key_states.transpose(2, 3)) * scaling
    if scale and request is not None and request.span is not None:
        for start, end in request.span:
            first, last = max(start - offset, 0), end - offset
            if last > first:
                attn_weights[..., first:last] = attn_weights[..., first:last] * (1.0 + request.alpha)
    if request is not None and request.probe is not None and layer is not None:
        request.probe(LogitProbe(layer, query, key_states, scaling, attn_weights.clone(), scale, offset))
    if attention_mask is not None:
        attn_weights = attn_weights + attention_mask
    attn_weights = torch.nn.functional.softmax(attn_weights, dim=-1, dtype=torch.float32).to(query.dtype)
    attn_weights = torch.nn.functional.dropout(attn_weights, p=dropout, training=module.training)
    attn_output = torch.matmul(attn_weights, value_states)
    return attn_output.transpose(1, 2).contiguous(), attn_weights


def _additive_mask(attention_mask: torch.Tensor | None, query: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
    """The eager (additive) form of an SDPA-style mask: ``where(mask, 0, finfo.min)``, as ``eager_mask``.

    ``None`` means transformers skipped the mask because plain causal attention is exact; rebuild
    it bottom-right aligned (query ``i`` sits at absolute position ``kv_len - q_len + i``).
    """
    if attention_mask is not None and attention_mask.dtype != torch.bool:
        return attention_mask
    if attention_mask is None:
        q_len, kv_len = query.shape[2], key.shape[2]
        rows = torch.arange(kv_len - q_len, kv_len, device=query.device)[:, None]
        cols = torch.arange(kv_len, device=query.device)[None, :]
        attention_mask = (cols <= rows)[None, None]
    zero = torch.zeros((), device=attention_mask.device, dtype=query.dtype)
    return torch.where(attention_mask, zero, torch.finfo(query.dtype).min)


def _record(request: AttentionRequest, layer: int, weights: torch.Tensor, offset: int) -> None:
    # batch 0, last query row (the only one in a decode step), mean over heads, over prompt positions:
    # keys a sliding window evicted (before ``offset``) got no attention.
    row = weights[0, :, -1, :].float().mean(dim=0).detach().cpu()
    request.captured[layer] = torch.nn.functional.pad(row, (offset, 0)) if offset else row


def _make_attention(delegate_eager: bool) -> Callable[..., tuple[torch.Tensor, torch.Tensor | None]]:
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    def caas_attention(
        module: torch.nn.Module,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        attention_mask: torch.Tensor | None,
        dropout: float = 0.0,
        scaling: float | None = None,
        **kwargs: Any,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        request = _REQUEST.get()
        layer = getattr(module, "layer_idx", None)
        causal = bool(getattr(module, "is_causal", True))
        if scaling is None:
            scaling = float(query.shape[-1]) ** -0.5
        offset = 0
        decoding = False
        if request is not None and layer is not None:
            # Where this layer's keys end (prompt + generated so far); the cache may hold fewer.
            seen = request.seen.get(layer, 0) + query.shape[2]
            request.seen[layer] = seen
            offset = max(seen - key.shape[2], 0)
            # A decoding step's queries lie after the prompt (a 1-token prefill chunk does not).
            decoding = seen - query.shape[2] >= request.prompt_length
        scale = (
            request is not None
            and request.span is not None
            and causal
            and layer is not None
            and layer in request.layers
            and (request.phase == "all" or decoding)
        )
        capture = (
            request is not None
            and request.capture
            and layer is not None
            and query.shape[2] == 1
            and request.seen.get(layer) == request.prompt_length + 1
        )
        probing = request is not None and request.probe is not None and layer is not None
        if kwargs.get("softcap") is not None or kwargs.get("s_aux") is not None:
            raise NotImplementedError("CAAS does not support logit soft-capping or attention sinks")
        if scale and request is not None and layer is not None:
            request.scaled_layers.add(layer)
        if scale or delegate_eager or probing:
            mask = _additive_mask(attention_mask, query, key) if causal else attention_mask
            output, weights = _eager(
                module, query, key, value, mask, scaling, dropout, request, layer, bool(scale), offset
            )
            if capture and request is not None and layer is not None:
                _record(request, layer, weights, offset)
            return output, weights
        result: tuple[torch.Tensor, torch.Tensor | None] = sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs
        )
        if capture and request is not None and layer is not None:
            # Weights for the analysis only; the returned output stays the delegate's.
            mask = _additive_mask(attention_mask, query, key) if causal else attention_mask
            _, weights = _eager(module, query, key, value, mask, scaling, 0.0, None, layer, False)
            _record(request, layer, weights, offset)
        return result

    return caas_attention


_REGISTERED = False


def register_caas_attention() -> None:
    """Register ``eagle_caas`` and ``eagle_caas_eager`` (attention + eager mask); idempotent."""
    global _REGISTERED
    if _REGISTERED:
        return
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, eager_mask, sdpa_mask

    AttentionInterface.register(CAAS_ATTENTION, _make_attention(delegate_eager=False))
    AttentionInterface.register(CAAS_ATTENTION_EAGER, _make_attention(delegate_eager=True))
    AttentionMaskInterface.register(CAAS_ATTENTION, sdpa_mask)
    AttentionMaskInterface.register(CAAS_ATTENTION_EAGER, eager_mask)
    _REGISTERED = True
