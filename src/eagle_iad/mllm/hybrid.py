"""Hybrid backend: a serving engine for plain prompts, the in-process CAAS backend for the band.

Why: a serving engine (vLLM, SGLang, ``eagle serve-mllm``) answers far faster than transformers
generation, but no engine lets a request scale attention on chosen key columns, so CAAS cannot
run there. EAGLE needs CAAS only when the expert score is in the low-confidence band
``tau <= score < s_max`` (docs/METHOD.md §5); every other prompt is plain text and images that any
engine can answer. The pipeline asks for CAAS exactly for band inspections, so routing on the
request (CAAS or attention capture wanted → in-process; otherwise → engine) is routing on the
expert's confidence, with one rule in one place.

Spec: ``hybrid:{"engine": SPEC, "caas": SPEC}``, made by :func:`eagle_iad.mllm.base.hybrid_spec`
from ``--mllm ENGINE --caas-mllm CAAS``. Every reply's metadata says which backend answered
(``backend``) and by which route (``route``: ``engine`` or ``caas``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np

from eagle_iad.errors import ConfigError
from eagle_iad.mllm.base import (
    HYBRID_SCHEME,
    RANDOM_MODEL_MARK,
    Backend,
    BackendSpec,
    GenerateOptions,
    Reply,
    backend_warnings,
    register_backend,
)
from eagle_iad.tgps.prompt import ContentItem

Route = Literal["engine", "caas"]


class HybridBackend:
    """Two backends over the same weights: ``engine`` for plain prompts, ``caas`` for in-process attention."""

    def __init__(self, engine: Backend, caas: Backend) -> None:
        self.engine = engine
        self.caas = caas

    @property
    def name(self) -> str:
        return f"hybrid(engine {self.engine.name}, caas {self.caas.name})"

    @property
    def warnings(self) -> list[str]:
        """Both backends' load warnings (a tiny random test model on either side): a command says them as
        it says a single backend's, so ``--caas-mllm hf:<tiny>`` is not silent."""
        return [*backend_warnings(self.engine), *backend_warnings(self.caas)]

    @property
    def random_test_model(self) -> bool:
        """Whether either side is a tiny random test model (then ``eagle serve-mllm`` says so to clients)."""
        return any(bool(getattr(b, RANDOM_MODEL_MARK, False)) for b in (self.engine, self.caas))

    @staticmethod
    def route(options: GenerateOptions) -> Route:
        """``caas`` when the request needs in-process attention (CAAS or capture), else ``engine``."""
        return "caas" if options.caas is not None or options.capture_attention else "engine"

    def generate(
        self, items: Sequence[ContentItem], images: Mapping[str, np.ndarray], options: GenerateOptions
    ) -> Reply:
        route = self.route(options)
        backend = self.caas if route == "caas" else self.engine
        reply = backend.generate(items, images, options)
        reply.metadata = {**reply.metadata, "backend": backend.name, "route": route}
        return reply


@register_backend(HYBRID_SCHEME)
def _hybrid_factory(spec: BackendSpec, **options: Any) -> HybridBackend:
    """Both backends load now, so a bad CAAS model fails before the first inspection, not mid-run.

    ``options`` (device, dtype, ...) are the in-process loader's and go to the CAAS backend only.
    """
    from eagle_iad.mllm import load_backend

    if spec.model is None:
        raise ConfigError("a hybrid spec carries the CAAS backend's spec as its model")
    return HybridBackend(load_backend(spec.target), load_backend(spec.model, **options))
