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

from eagle_iad.errors import BackendError, ConfigError
from eagle_iad.mllm.base import (
    HYBRID_SCHEME,
    RANDOM_MODEL_MARK,
    Backend,
    BackendSpec,
    GenerateOptions,
    Reply,
    backend_warnings,
    parse_spec,
    register_backend,
)
from eagle_iad.mllm.weights import (
    SERVED_IDENTITY_KEY,
    identity_difference,
    local_folder,
    model_identity,
    uncheckable,
)
from eagle_iad.tgps.prompt import ContentItem

Route = Literal["engine", "caas"]


class HybridBackend:
    """Two backends over the same weights: ``engine`` for plain prompts, ``caas`` for in-process attention."""

    def __init__(self, engine: Backend, caas: Backend, notes: Sequence[str] = ()) -> None:
        self.engine = engine
        self.caas = caas
        #: Said with the sides' warnings: e.g. that the two could not be checked to be the same model.
        self.notes = list(notes)

    @property
    def name(self) -> str:
        return f"hybrid(engine {self.engine.name}, caas {self.caas.name})"

    @property
    def warnings(self) -> list[str]:
        """Both backends' load warnings (a tiny random test model on either side): a command says them as
        it says a single backend's, so ``--caas-mllm hf:<tiny>`` is not silent."""
        return [*backend_warnings(self.engine), *backend_warnings(self.caas), *self.notes]

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
    note = check_same_model(spec.target, spec.model)  # before either loads: a mismatch costs no model load
    return HybridBackend(load_backend(spec.target), load_backend(spec.model, **options), [] if note is None else [note])


#: How long the engine is given to list its models for :func:`check_same_model` (it is not needed to start).
MODELS_TIMEOUT_S = 5.0


def side_identity(spec: str) -> tuple[dict[str, Any] | None, str]:
    """The :func:`model_identity` behind one side's spec, or None with the reason it cannot be known.

    ``hf:`` a folder (or a cached hub id); ``openai:`` what its server's ``/v1/models`` entry says: ``eagle
    serve-mllm`` lists the identity itself (``eagle_model``), vLLM the weights' path (``root``), read here when
    it is a folder on this machine.
    """
    from eagle_iad.mllm.openai_compat import OpenAIBackend

    parsed = parse_spec(spec)
    if parsed.scheme == "hf":
        folder = local_folder(parsed.target)
        identity = None if folder is None else model_identity(folder)
        return identity, "" if identity is not None else "not a checkpoint folder on this machine (a hub id not cached)"
    if parsed.scheme != "openai":
        return None, f"a {parsed.scheme}: backend says nothing of its weights"
    try:
        entry = OpenAIBackend(parsed.target, str(parsed.model)).model_entry(MODELS_TIMEOUT_S)
    except BackendError as exc:
        return None, str(exc)
    if entry is None:
        return None, "its server lists no such model in /v1/models"
    listed = entry.get(SERVED_IDENTITY_KEY)
    if isinstance(listed, dict):
        return listed, ""
    root = entry.get("root")
    folder = local_folder(root) if isinstance(root, str) and root else None
    identity = None if folder is None else model_identity(folder)
    if identity is None:
        return None, "its server lists neither its weights' identity nor a weights folder on this machine"
    return identity, ""


def check_same_model(engine: str, caas: str) -> str | None:
    """Refuse (:class:`ConfigError`, one line naming both sides and what differs) a hybrid whose two sides are
    different models; a warning's text where that cannot be checked; None where they are the same model.

    Why: the band's inspections (CAAS) and all others would be answered by different models, and a run's
    numbers would mix them with nothing in a record to show it (docs/MLLM.md, "hybrid": same weights on both).
    """
    left, why_left = side_identity(engine)
    right, why_right = side_identity(caas)
    if left is None or right is None:
        spec, why = (engine, why_left) if left is None else (caas, why_right)
        return _cannot_check(engine, caas, f"{spec}: {why}")
    why_not = uncheckable(left, right)
    if why_not is not None and left.get("version") != right.get("version"):
        return _cannot_check(engine, caas, why_not)  # made otherwise: no part is comparable
    difference = identity_difference(left, right)
    if difference is not None:
        raise ConfigError(
            f"--mllm {engine} and --caas-mllm {caas} are not the same model: {difference}; a hybrid "
            "answers the band's inspections with --caas-mllm and all others with --mllm, so both must hold the same "
            "checkpoint (docs/MLLM.md, hybrid)"
        )
    return None if why_not is None else _cannot_check(engine, caas, why_not)


def _cannot_check(engine: str, caas: str, why: str) -> str:
    """The warning of a hybrid whose two sides could not be shown to be the same model (it goes on)."""
    return (
        f"cannot check that --mllm {engine} and --caas-mllm {caas} hold the same model ({why}); a "
        "hybrid needs the same weights on both sides, or its band answers come from another model"
    )
