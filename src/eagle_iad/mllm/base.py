"""Backend protocol, reply record and the registry of backends by spec string.

The pipeline and the eval runner only see :class:`Backend`: content items + decoded RGB images in,
:class:`Reply` out. Backends are chosen by a spec string so a CLI flag or a config file can name
one: ``hf:<hub id or local path>`` (in-process transformers) or ``openai:http://host:port/v1#model``
(an OpenAI-compatible server). Adding a backend is one module and one :func:`register_backend`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

import numpy as np

from eagle_iad.errors import ConfigError
from eagle_iad.mllm.caas import CaasSettings
from eagle_iad.registry import Registry
from eagle_iad.tgps.prompt import ContentItem


@dataclass(frozen=True)
class GenerateOptions:
    """Per-request generation options.

    Decoding is greedy (deterministic answers are what an inspection tool must give, and what makes
    CAAS effects measurable). ``caas`` = ``None`` means plain attention; the pipeline passes settings
    only when the expert score is in the low-confidence band. ``capture_attention`` records the
    first generated token's attention to the query image per decoder layer (docs/METHOD.md §4).
    """

    max_new_tokens: int = 128
    greedy: bool = True
    caas: CaasSettings | None = None
    capture_attention: bool = False

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise ConfigError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if not self.greedy:
            raise ConfigError("only greedy decoding is supported (answers must be reproducible)")


@dataclass
class AttentionCapture:
    """First generated token's attention to the query image, per decoder layer (mean over heads).

    ``span`` is all of the query image's visual-token ranges. ``per_layer[layer]`` holds one weight
    per *grid* token, in row-major order of ``grid`` ``(t, h, w)`` (time outermost), so
    :meth:`layer_map` can place each token in its image cell; for single-view families that is
    every query-image token in prompt order, for tiled families the base/global view's tokens
    only (see the family modules). ``share[layer]`` is the total attention mass on *all* of the
    query image's visual tokens (tiles included).
    """

    span: tuple[tuple[int, int], ...]
    grid: tuple[int, int, int]
    per_layer: dict[int, np.ndarray]
    share: dict[int, float]
    #: ``(x0, y0, x1, y1)`` region of the original query image the grid covers (``None`` = all of it).
    coverage: tuple[int, int, int, int] | None = None

    def layer_map(self, layer: int) -> np.ndarray:
        """The layer's attention on the visual grid, ``(h, w)`` (mean over temporal slices)."""
        t, h, w = self.grid
        values = self.per_layer[layer]
        if values.size != t * h * w:
            raise ValueError(f"{values.size} query-image tokens do not fit grid {self.grid}")
        return np.asarray(values.reshape(t, h, w).mean(axis=0), dtype=np.float32)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AttentionCapture:
        """Inverse of :meth:`to_dict` (for reports built from stored verdicts)."""
        t, h, w = (int(v) for v in data["grid"])
        raw = data["span"]
        # Records written before multi-range spans stored one ``[start, end]`` pair.
        pairs = [raw] if raw and not isinstance(raw[0], (list, tuple)) else raw
        coverage = data.get("coverage")
        return cls(
            span=tuple((int(start), int(end)) for start, end in pairs),
            grid=(t, h, w),
            per_layer={int(k): np.asarray(v, dtype=np.float32) for k, v in data["per_layer"].items()},
            share={int(k): float(v) for k, v in data["share"].items()},
            coverage=None
            if coverage is None
            else (int(coverage[0]), int(coverage[1]), int(coverage[2]), int(coverage[3])),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "span": [list(pair) for pair in self.span],
            "grid": list(self.grid),
            "per_layer": {str(k): v.tolist() for k, v in self.per_layer.items()},
            "share": {str(k): v for k, v in self.share.items()},
            "coverage": None if self.coverage is None else list(self.coverage),
        }


#: The note ``python -m eagle_iad.testing.tiny`` leaves in a tiny random model's folder: a backend that
#: loads such a folder says, on load and in every reply's metadata, that its answers are random noise.
RANDOM_MODEL_NOTE = "EAGLE-TINY-RANDOM-MODEL.txt"
#: The mark such a model's answers carry wherever they go: a reply's metadata, ``eagle serve-mllm``'s
#: ``/v1/models`` entry and each completion's ``eagle`` record (so an ``openai:`` client learns it over
#: HTTP), an eval run's ``run.json``, records, ``metrics.json`` and report.
RANDOM_MODEL_MARK = "random_test_model"


def backend_warnings(backend: object) -> list[str]:
    """What a command says on stderr once a backend is loaded (``eagle: warning: ...``), e.g. that it is a
    tiny random test model; a backend with nothing to say (no ``warnings`` attribute) has none.

    One reading for every command (inspect, attention, serve-mllm) and for a hybrid's two sides, so none of
    them is left silent by a backend that keeps its warnings elsewhere."""
    return list(getattr(backend, "warnings", ()) or ())


@dataclass
class Reply:
    """One generation: decoded text, generated token ids, timings and what CAAS did."""

    text: str
    token_ids: list[int]
    timings: dict[str, float]
    caas_applied: bool
    caas_settings: dict[str, Any] | None = None
    attention: AttentionCapture | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "token_ids": list(self.token_ids),
            "timings": dict(self.timings),
            "caas_applied": self.caas_applied,
            "caas_settings": self.caas_settings,
            "attention": None if self.attention is None else self.attention.to_dict(),
            "metadata": dict(self.metadata),
        }


class Backend(Protocol):
    """What every MLLM backend offers. ``images`` maps each ``ImageItem.ref`` to an RGB uint8 array."""

    @property
    def name(self) -> str: ...

    def generate(
        self, items: Sequence[ContentItem], images: Mapping[str, np.ndarray], options: GenerateOptions
    ) -> Reply: ...


@dataclass(frozen=True)
class BackendSpec:
    """A parsed backend spec: ``scheme:target[#model]``.

    For the ``hybrid`` scheme ``target`` is the engine's spec and ``model`` the CAAS backend's.
    """

    scheme: str
    target: str
    model: str | None = None


def parse_spec(spec: str) -> BackendSpec:
    """Parse ``hf:<id or path>`` / ``openai:<base url>#<model>`` into a :class:`BackendSpec`."""
    scheme, sep, rest = spec.partition(":")
    if not sep or not scheme or not rest:
        raise ConfigError(f"backend spec {spec!r} must look like 'hf:<model id or path>' or 'openai:<url>#<model>'")
    scheme = scheme.strip().lower()
    if scheme == HYBRID_SCHEME:
        engine, caas = split_hybrid_spec(spec)
        return BackendSpec(scheme, engine, caas)
    if scheme == "openai":
        target, hash_sep, model = rest.partition("#")
        if not hash_sep or not model or not target.startswith(("http://", "https://")):
            raise ConfigError(f"openai spec {spec!r} must look like 'openai:http://host:port/v1#model-name'")
        return BackendSpec(scheme, target, model)
    return BackendSpec(scheme, rest)


#: Scheme of the spec :func:`hybrid_spec` composes (``--mllm ENGINE --caas-mllm CAAS``).
HYBRID_SCHEME = "hybrid"
#: Schemes that cannot apply CAAS themselves and so cannot be a hybrid's CAAS backend.
_NO_CAAS_SCHEMES = ("openai", HYBRID_SCHEME)


def hybrid_spec(engine: str, caas: str | None) -> str:
    """One spec string for ``--mllm ENGINE --caas-mllm CAAS`` (``ENGINE`` itself when ``caas`` is ``None``).

    A single string, because the eval run's configuration (its hash decides whether a run may be
    resumed), Ray workers and the service settings all carry the MLLM as one spec. JSON inside the
    spec keeps any URL or path unambiguous.
    """
    if caas is None:
        return engine
    engine_scheme, caas_scheme = parse_spec(engine).scheme, parse_spec(caas).scheme
    if engine_scheme == HYBRID_SCHEME:
        raise ConfigError("--mllm must name one backend when --caas-mllm is given")
    if caas_scheme in _NO_CAAS_SCHEMES:
        raise ConfigError(
            f"--caas-mllm {caas!r} cannot apply CAAS (it needs in-process attention); give an in-process "
            "backend such as hf:/path/to/model"
        )
    return f"{HYBRID_SCHEME}:" + json.dumps({"caas": caas, "engine": engine}, sort_keys=True, separators=(",", ":"))


def split_hybrid_spec(spec: str) -> tuple[str, str]:
    """``(engine spec, CAAS spec)`` of a spec made by :func:`hybrid_spec`."""
    _, _, rest = spec.partition(":")
    try:
        data = json.loads(rest)
        engine, caas = data["engine"], data["caas"]
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise ConfigError(f'hybrid spec {spec!r} must be hybrid:{{"engine": SPEC, "caas": SPEC}}') from exc
    if not isinstance(engine, str) or not isinstance(caas, str):
        raise ConfigError(f"hybrid spec {spec!r}: engine and caas must be spec strings")
    return engine, caas


def served_model_name(spec: str) -> str:
    """The name clients send as ``model``: a hub id as given, a local model directory by its folder name.

    A local path would reveal the host's directory layout to every client, so only its last part is used.
    """
    parsed = parse_spec(spec)
    if parsed.scheme == HYBRID_SCHEME:  # clients see the engine's model; CAAS rides on the same weights
        return served_model_name(parsed.target)
    if parsed.model is not None:  # a proxied openai: backend keeps its upstream model name
        return parsed.model
    target = parsed.target
    path = Path(target).expanduser()
    return path.name if path.is_dir() else target


BackendFactory = Callable[..., Backend]
_F = TypeVar("_F", bound=BackendFactory)
_REGISTRY: Registry[BackendFactory] = Registry("MLLM backend")


def register_backend(scheme: str) -> Callable[[_F], _F]:
    """Decorator registering a factory ``factory(spec: BackendSpec, **options) -> Backend``."""

    def decorate(factory: _F) -> _F:
        _REGISTRY.add(scheme, factory)
        return factory

    return decorate


def registered_backends() -> Mapping[str, BackendFactory]:
    """Factories registered so far, by scheme; built-ins join when :func:`eagle_iad.mllm.load_backend` needs them."""
    return _REGISTRY.mapping()
