"""Attention analysis of one image, plain MLLM vs EAGLE side by side (docs/METHOD.md §4): JSON, curves, overlays.

``eagle attention IMAGE --model DIR --mllm SPEC [--mask PNG] --out DIR`` calls :func:`analyze` and
:func:`write_report`. The image is inspected twice through the real :class:`~eagle_iad.pipeline.Eagle`
pipeline, with attention capture on:

* ``baseline`` — the MLLM alone (no expert, no prior, no boxed copy, no CAAS);
* ``eagle`` — TGPS prompt, and CAAS by the band rule ``tau <= score < s_max``, or on regardless of
  the band with ``force_caas`` (so the effect of the scaling can be looked at on any image; which
  rule was used is recorded).

Per decoder layer and condition the report holds the share of the first generated token's attention
on the query image and, with a ground-truth mask, the concentration (mass inside the mask / mask area
fraction) and whether the peak lies in the mask; metrics, grid placement and overlays are those of
:mod:`eagle_iad.mllm.attention`, so the CLI's numbers and the eval runner's cannot drift apart.

Files (all written atomically, so a reader never sees half a report): ``attention.json``
(``schema_version`` 1), ``curves.png``, ``overlay_<condition>_layer<k>.png`` at the image's own size
and ``overlays.png`` (rows = conditions, columns = layers).
"""

from __future__ import annotations

import json
import os
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from eagle_iad.atomic import atomic_write_text
from eagle_iad.choices import ATTENTION_MIN_NEW_TOKENS, ATTENTION_TOKENS_MESSAGE, caas_rule
from eagle_iad.errors import BackendError, ConfigError
from eagle_iad.eval.identity import random_test_model
from eagle_iad.eval.plots import save_figure
from eagle_iad.eval.report import RANDOM_MARK
from eagle_iad.expert.patchcore import Expert
from eagle_iad.images import load_mask, load_rgb
from eagle_iad.mllm.attention import (
    SLIDING_TAG,
    LayerAttention,
    attention_overlay,
    layer_metrics,
    mark_random,
    sliding_window_record,
)
from eagle_iad.mllm.base import AttentionCapture, Backend
from eagle_iad.mllm.caas import CaasSettings, default_caas_layers
from eagle_iad.pipeline import Eagle, EagleConfig, EagleVerdict
from eagle_iad.tgps.render import RenderStyle, save_png

SCHEMA_VERSION = 1
#: The two conditions compared, in row order of ``overlays.png``.
ANALYSIS_CONDITIONS: tuple[str, ...] = ("baseline", "eagle")
#: ``curves.png`` is ``CURVES_SIZE_IN * DPI`` pixels (one panel; two panels with a mask: taller).
DPI = 100
CURVES_SIZE_IN = (8.0, 4.0)
CURVES_WITH_MASK_SIZE_IN = (8.0, 7.0)
#: ``overlays.png`` is ``cols * OVERLAY_CELL_IN * DPI`` by ``rows * OVERLAY_CELL_IN * DPI`` pixels.
OVERLAY_CELL_IN = 2.5
_COLOURS = {"baseline": "#1f77b4", "eagle": "#d62728"}


@dataclass(frozen=True)
class AnalysisConfig:
    """What to run: CAAS settings for the ``eagle`` condition, the band rule or forced, which layers to draw."""

    caas: CaasSettings = field(default_factory=CaasSettings)
    force_caas: bool = False
    #: Layers drawn as overlays (``None``: first/middle/last CAAS layer and the last decoder layer).
    overlay_layers: tuple[int, ...] | None = None
    #: Capture needs one decode step (two generated tokens); a few more give a readable reply.
    max_new_tokens: int = 8
    style: RenderStyle = "box"

    def __post_init__(self) -> None:
        if self.max_new_tokens < ATTENTION_MIN_NEW_TOKENS:
            raise ConfigError(ATTENTION_TOKENS_MESSAGE)


@dataclass
class ConditionResult:
    """One condition's verdict, captured attention and per-layer metrics."""

    verdict: EagleVerdict
    capture: AttentionCapture
    layers: list[LayerAttention]

    def to_dict(self) -> dict[str, Any]:
        verdict = self.verdict
        return {
            "reply": verdict.reply,
            "answer": verdict.answer,
            "decision": verdict.decision,
            "caas_applied": verdict.caas_applied,
            "caas_settings": verdict.caas_settings,
            "prompt_images": [item["role"] for item in verdict.prompt if item["type"] == "image"],
            "family": verdict.metadata.get("family"),
            "span": list(self.capture.span),
            "grid": list(self.capture.grid),
            "coverage": None if self.capture.coverage is None else list(self.capture.coverage),
            "layers": [entry.to_dict() for entry in self.layers],
            "attention": self.capture.to_dict(),
        }


@dataclass
class AttentionReport:
    """Everything ``attention.json`` holds, plus the arrays the pictures are drawn from."""

    image: str
    mask: str | None
    mllm: str
    conditions: dict[str, ConditionResult]
    caas: dict[str, Any]
    overlay_layers: list[int]
    num_layers: int
    #: The MLLM is a tiny random test model (:func:`eagle_iad.eval.identity.random_test_model`, the check
    #: ``eagle eval`` makes, or its replies say so): ``attention.json`` carries ``random_test_model: true``
    #: and both pictures a caption line.
    random_test_model: bool = False
    #: The model's sliding-window layers among those captured (``{"layers", "window", "note"}``,
    #: :func:`eagle_iad.mllm.attention.sliding_window_record`): their image attention is local, said in
    #: ``attention.json`` and on every picture of them; None for a model without such layers.
    sliding_window: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        mark: dict[str, Any] = {RANDOM_MARK: True} if self.random_test_model else {}  # only then, as eval's records
        if self.sliding_window is not None:
            mark["sliding_window"] = dict(self.sliding_window)
        return {
            "schema_version": SCHEMA_VERSION,
            **mark,
            "image": self.image,
            "mask": self.mask,
            "mllm": self.mllm,
            "num_layers": self.num_layers,
            "overlay_layers": list(self.overlay_layers),
            "conditions": {name: result.to_dict() for name, result in self.conditions.items()},
            "caas": dict(self.caas),
        }


def load_inputs(
    image: str | os.PathLike[str], mask: str | os.PathLike[str] | None = None
) -> tuple[np.ndarray, np.ndarray | None]:
    """The RGB image and its boolean mask (same size, else :class:`ImageError`) — before any model loads.

    Checking the mask first means a wrong mask costs the user a second, not a model load.
    """
    rgb = load_rgb(image)
    if mask is None:
        return rgb, None
    return rgb, load_mask(mask, (rgb.shape[0], rgb.shape[1]))


def caas_layers(backend: Backend, settings: CaasSettings, num_layers: int) -> tuple[int, ...]:
    """The layers CAAS scales on this backend (the backend's own resolution when it has one)."""
    resolve = getattr(backend, "resolve_layers", None)
    if callable(resolve):
        return tuple(resolve(settings))
    if settings.layers is not None:
        return tuple(sorted(set(settings.layers)))
    return default_caas_layers(num_layers)


def default_overlay_layers(caas: tuple[int, ...], attention_layers: Sequence[int]) -> list[int]:
    """First, middle and last CAAS layer plus the last attention layer (where the answer is formed).

    ``attention_layers``: the decoder layers with captured attention, all of them except in hybrid
    models, whose linear-attention layers have no attention weights to show.
    """
    picked = {attention_layers[-1]}
    if caas:
        picked |= {caas[0], caas[len(caas) // 2], caas[-1]}
    return sorted(picked)


def _check_overlay(overlay: list[int], attention_layers: list[int], num_layers: int) -> None:
    """Overlay layers must be layers with attention to show (all, except a hybrid model's linear ones)."""
    bad = [layer for layer in overlay if layer not in attention_layers]
    if (bad or not overlay) and attention_layers == list(range(num_layers)):
        raise ConfigError(f"--layers {bad or overlay} outside the model's decoder layers 0..{num_layers - 1}")
    if bad or not overlay:
        raise ConfigError(f"--layers {bad or overlay}: not attention layers of this model ({attention_layers} are)")


def _run(eagle: Eagle, rgb: np.ndarray, name: str, mask: np.ndarray | None, condition: str) -> ConditionResult:
    verdict = eagle.inspect(rgb, name=name)
    if verdict.attention is None:
        note = verdict.metadata.get("attention_note", "the backend does not capture attention")
        raise BackendError(f"{condition}: no attention was captured ({note})")
    capture = AttentionCapture.from_dict(verdict.attention)
    return ConditionResult(verdict, capture, layer_metrics(capture, mask, rgb.shape[:2]))


def analyze(
    rgb: np.ndarray,
    name: str,
    expert: Expert,
    backend: Backend,
    config: AnalysisConfig | None = None,
    mask: np.ndarray | None = None,
    mask_name: str | None = None,
    spec: str | None = None,
) -> AttentionReport:
    """Inspect ``rgb`` as ``baseline`` and as ``eagle`` with attention capture; per-layer metrics for both.

    ``spec`` (the ``--mllm`` spec the backend was loaded from) tells a tiny random test model, as ``eagle eval``
    tells it; a reply marked ``random_test_model`` by the backend marks the report as well.
    """
    config = config or AnalysisConfig()
    if mask is not None and mask.shape != rgb.shape[:2]:
        raise ConfigError(f"mask shape {mask.shape} differs from the image's (height, width) {rgb.shape[:2]}")
    common: dict[str, Any] = {"max_new_tokens": config.max_new_tokens, "capture_attention": True}
    runs = {
        "baseline": Eagle(None, backend, EagleConfig(condition="baseline", **common)),
        "eagle": Eagle(
            expert,
            backend,
            EagleConfig(
                condition="eagle", caas=config.caas, force_caas=config.force_caas, style=config.style, **common
            ),
        ),
    }
    known = getattr(backend, "attention_layers", None)
    if config.overlay_layers is not None and known is not None:
        # Checked before two generations run; backends that cannot say are checked after them.
        _check_overlay(list(config.overlay_layers), list(known), int(getattr(backend, "num_layers", len(known))))
    results = {condition: _run(eagle, rgb, name, mask, condition) for condition, eagle in runs.items()}
    captured = [entry.layer for entry in results["baseline"].layers]
    num_layers = int(getattr(backend, "num_layers", len(captured)))
    layers = caas_layers(backend, config.caas, num_layers)
    overlay = list(config.overlay_layers) if config.overlay_layers is not None else None
    if overlay is None:
        overlay = default_overlay_layers(layers, captured)
    _check_overlay(overlay, captured, num_layers)
    eagle_verdict = results["eagle"].verdict
    caas = {
        "rule": caas_rule(config.force_caas),
        "force_caas": config.force_caas,
        "applied": eagle_verdict.caas_applied,
        "alpha": config.caas.alpha,
        "layers": list(layers),
        "scaled_layers": (eagle_verdict.caas_settings or {}).get("scaled_layers", []),
        "score": eagle_verdict.score,
        "tau": eagle_verdict.tau,
        "s_max": eagle_verdict.s_max,
        "in_band": eagle_verdict.in_band,
        "expert_decision": eagle_verdict.expert_decision,
    }
    random_model = (spec is not None and random_test_model(spec) is not None) or any(
        result.verdict.metadata.get(RANDOM_MARK) for result in results.values()
    )
    return AttentionReport(
        name, mask_name, backend.name, results, caas, sorted(set(overlay)), num_layers, random_test_model=random_model,
        sliding_window=_sliding(results, captured),
    )  # fmt: skip


def _sliding(results: dict[str, ConditionResult], captured: list[int]) -> dict[str, Any] | None:
    """The backend's records of the sliding-window layers whose window the image lay beyond (reply metadata), over
    the conditions (their prompts differ in length, so one may reach the image and another not), narrowed to the
    captured layers; ``distance`` per condition that had such layers."""
    found = {name: r.verdict.metadata.get("sliding_window") for name, r in results.items()}
    records: dict[str, dict[str, Any]] = {name: record for name, record in found.items() if isinstance(record, dict)}
    layers = {layer: int(r["window"]) for r in records.values() for layer in r.get("layers", []) if layer in captured}
    distance = {name: int(r["distance"]) for name, r in records.items() if "distance" in r}
    return sliding_window_record(layers, distance) if layers else None


def _sliding_layers(report: AttentionReport) -> set[int]:
    return set() if report.sliding_window is None else set(report.sliding_window["layers"])


def _local(report: AttentionReport, condition: str, layer: int) -> bool:
    """Whether ``condition``'s image lay beyond ``layer``'s sliding window (its overlay is local by design)."""
    if report.sliding_window is None or layer not in report.sliding_window["layers"]:
        return False
    distance = report.sliding_window.get("distance")
    return not isinstance(distance, dict) or condition in distance


def _description(*parts: str | None) -> str | None:
    """A picture's PNG ``Description``: its caption lines (random test model, sliding window), or None."""
    lines = [part for part in parts if part]
    return "\n".join(lines) if lines else None


def _series(result: ConditionResult, key: str) -> list[float]:
    values = [getattr(entry, key) for entry in result.layers]
    return [float("nan") if value is None else float(value) for value in values]


def _shade_caas(ax: Any, layers: list[int]) -> None:
    if layers:
        ax.axvspan(min(layers) - 0.5, max(layers) + 0.5, color="#ffbf00", alpha=0.2, label="CAAS layers", zorder=0)


def draw_curves(report: AttentionReport, path: Path, with_mask: bool) -> None:
    """Per-layer share on the query image (and, with a mask, concentration) for both conditions."""
    fig = Figure(figsize=CURVES_WITH_MASK_SIZE_IN if with_mask else CURVES_SIZE_IN, dpi=DPI)
    FigureCanvasAgg(fig)
    axes = [fig.add_subplot(2 if with_mask else 1, 1, index + 1) for index in range(2 if with_mask else 1)]
    # One point per layer with attention: every decoder layer, or a hybrid model's attention layers.
    x = [entry.layer for entry in next(iter(report.conditions.values())).layers]
    sliding = _sliding_layers(report)
    for condition, result in report.conditions.items():
        axes[0].plot(x, _series(result, "share"), marker="o", color=_COLOURS.get(condition), label=condition)
    axes[0].set_ylabel("attention share on query image")
    axes[0].set_ylim(bottom=0.0)
    caas_note = "forced" if report.caas["rule"] == caas_rule(True) else "band rule"
    if not report.caas["applied"]:
        caas_note += ", not applied: score outside the band"
    axes[0].set_title(f"{Path(report.image).name}: first generated token's attention (CAAS {caas_note})")
    if with_mask:
        ax = axes[1]
        for condition, result in report.conditions.items():
            concentration = _series(result, "concentration")
            colour = _COLOURS.get(condition)
            ax.plot(x, concentration, marker="o", color=colour, label=condition, markerfacecolor="white")
            inside = [(layer, value) for layer, value, entry in zip(x, concentration, result.layers, strict=True)
                      if entry.peak_in_mask]  # fmt: skip
            if inside:
                ax.scatter(*zip(*inside, strict=True), color=colour, zorder=3, label=f"{condition}: peak in mask")
        ax.axhline(1.0, color="0.5", linestyle=":", linewidth=1.0, label="uniform")
        ax.set_ylabel("in-mask concentration")
    for ax in axes:
        _shade_caas(ax, report.caas["layers"])
        ax.set_xlabel("decoder layer" + (" (* sliding window: local attention)" if sliding else ""))
        ax.set_xticks(x, [f"{layer}*" if layer in sliding else str(layer) for layer in x])
        ax.legend(loc="best", fontsize="small", framealpha=0.85)
    caption = _mark_random(fig, report, fontsize=10)
    note = None if report.sliding_window is None else str(report.sliding_window["note"])
    if note is not None:  # below the plots, wrapped: which layers, and why their image attention is flat
        fig.text(0.01, 0.01, textwrap.fill(note, 130), fontsize=7, color="0.25", va="bottom")
    fig.tight_layout(rect=(0.0, 0.07 if note is not None else 0.0, 1.0, 1.0))
    save_figure(fig, path, description=_description(caption, note))


def _mark_random(fig: Figure, report: AttentionReport, fontsize: float, narrow: bool = False) -> str | None:
    """The random-test-model caption line at the figure's top (None, nothing drawn, for a real model)."""
    return mark_random(fig, fontsize, narrow) if report.random_test_model else None


def draw_overlay_grid(report: AttentionReport, rgb: np.ndarray, mask: np.ndarray | None, path: Path) -> None:
    """Rows = conditions, columns = selected layers; the mask's outline in white when there is one."""
    rows, cols = len(report.conditions), len(report.overlay_layers)
    sliding = _sliding_layers(report)
    fig = Figure(figsize=(cols * OVERLAY_CELL_IN, rows * OVERLAY_CELL_IN), dpi=DPI)
    FigureCanvasAgg(fig)
    for row, (condition, result) in enumerate(report.conditions.items()):
        for col, layer in enumerate(report.overlay_layers):
            ax = fig.add_subplot(rows, cols, row * cols + col + 1)
            ax.imshow(attention_overlay(rgb, result.capture, layer))
            if mask is not None and mask.any():
                ax.contour(mask.astype(np.float32), levels=[0.5], colors="white", linewidths=0.8)
            local = f"\n({SLIDING_TAG})" if _local(report, condition, layer) else ""
            ax.set_title(f"{condition} L{layer} share {result.capture.share[layer]:.3f}{local}", fontsize=8)
            ax.set_axis_off()
    caption = _mark_random(fig, report, fontsize=8, narrow=cols < 2)
    shown = sliding & set(report.overlay_layers)
    fig.tight_layout(pad=0.3, h_pad=1.5 if shown else None)  # room for the two-line titles of sliding layers
    note = None if not shown or report.sliding_window is None else str(report.sliding_window["note"])
    save_figure(fig, path, description=_description(caption, note))


def write_report(
    report: AttentionReport, rgb: np.ndarray, out_dir: Path, mask: np.ndarray | None = None
) -> dict[str, Path]:
    """Write ``attention.json``, ``curves.png``, per-layer overlays and ``overlays.png``; returns the paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    for condition, result in report.conditions.items():
        for layer in report.overlay_layers:
            # attention_overlay upsamples exactly as the metrics do: the picture shows what was scored.
            path = out_dir / f"overlay_{condition}_layer{layer}.png"
            local = _local(report, condition, layer) and report.sliding_window is not None
            note = str(report.sliding_window["note"]) if local and report.sliding_window is not None else None
            save_png(path, attention_overlay(rgb, result.capture, layer), description=note)
            paths[path.stem] = path
    paths["curves"] = out_dir / "curves.png"
    draw_curves(report, paths["curves"], with_mask=mask is not None)
    paths["overlays"] = out_dir / "overlays.png"
    draw_overlay_grid(report, rgb, mask, paths["overlays"])
    paths["attention"] = out_dir / "attention.json"
    data = report.to_dict()
    data["files"] = sorted(p.name for p in paths.values())
    # allow_nan=False: the schema promises strict JSON (undefined metrics are null, never NaN).
    atomic_write_text(paths["attention"], json.dumps(data, indent=2, allow_nan=False) + "\n")
    return paths
