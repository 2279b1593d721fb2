"""Attention analysis (docs/METHOD.md §4): the first generated token's attention on the query image.

:class:`~eagle_iad.mllm.base.AttentionCapture` holds one weight per query-image token per decoder
layer. Here those weights are placed on the visual token grid, spread onto the *original* image
(only over the part of the image the grid covers: all of it for Qwen's resize, the centre square
for LLaVA's centre crop) and scored against a ground-truth defect mask: share of attention on the
query image, concentration (mass inside the mask / the mask's area fraction; 1.0 = uniform), and
whether the peak falls inside the mask.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from eagle_iad.errors import ConfigError
from eagle_iad.mllm.base import AttentionCapture
from eagle_iad.tgps.render import heatmap_overlay

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def token_cell(index: int, grid: tuple[int, int, int]) -> tuple[int, int, int]:
    """``(t, row, col)`` of the ``index``-th query-image token on ``grid`` (row-major, time outermost)."""
    t, h, w = grid
    if not 0 <= index < t * h * w:
        raise IndexError(f"token {index} outside grid {grid}")
    return index // (h * w), (index // w) % h, index % w


def upsample_to_image(
    grid_map: np.ndarray, height: int, width: int, coverage: tuple[int, int, int, int] | None = None
) -> np.ndarray:
    """Spread an ``(h, w)`` grid map onto a ``height x width`` image, cell by cell (nearest).

    Nearest (block) upsampling keeps each token's weight inside its own cell, so the map stays a
    faithful picture of where the model looked; ``coverage = (x0, y0, x1, y1)`` is the image region
    the grid covers (outside it the map is 0).
    """
    x0, y0, x1, y1 = coverage if coverage is not None else (0, 0, width, height)
    gh, gw = grid_map.shape
    rows = np.minimum((np.arange(y1 - y0) * gh) // max(y1 - y0, 1), gh - 1)
    cols = np.minimum((np.arange(x1 - x0) * gw) // max(x1 - x0, 1), gw - 1)
    out = np.zeros((height, width), dtype=np.float32)
    out[y0:y1, x0:x1] = grid_map[rows[:, None], cols[None, :]]
    return out


@dataclass(frozen=True)
class LayerAttention:
    """Per-layer attention metrics for one answer.

    ``concentration`` and ``peak_in_mask`` are ``None`` when there is no mask to score against
    (an image without ground truth) and ``concentration`` also when it is undefined (an empty
    mask, or no attention on the covered part of the image); ``peak_in_mask`` also when the image
    got no attention at all (its keys evicted from a sliding window: there is no peak). ``None`` is
    written to JSON as ``null``, where a NaN would make the file invalid for strict readers.
    """

    layer: int
    share: float
    concentration: float | None
    peak_in_mask: bool | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def layer_metrics(
    capture: AttentionCapture, mask: np.ndarray | None = None, size: tuple[int, int] | None = None
) -> list[LayerAttention]:
    """Share, concentration and peak-in-mask per layer against a boolean defect ``mask`` (original size).

    Without a mask only the share is defined (``concentration``/``peak_in_mask`` are ``None``);
    ``size`` = ``(height, width)`` of the image is then not needed either. Concentration is the
    attention mass inside the mask over the mask's area fraction (1.0 = uniform), both measured
    on the original image after block upsampling, so a mask covering exactly one grid cell gets
    ``cell weight / total weight / cell area fraction``.
    """
    if mask is None:
        return [LayerAttention(layer, capture.share[layer], None, None) for layer in sorted(capture.per_layer)]
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 2:
        raise ValueError(f"mask must be 2-D, got shape {mask.shape}")
    height, width = mask.shape
    if size is not None and size != (height, width):
        raise ConfigError(f"mask shape {mask.shape} differs from the image's (height, width) {size}")
    area = float(mask.mean())
    out = []
    for layer in sorted(capture.per_layer):
        image_map = upsample_to_image(capture.layer_map(layer), height, width, capture.coverage)
        total = float(image_map.sum())
        empty = total <= 0.0 or area == 0.0
        concentration = None if empty else float(image_map[mask].sum()) / total / area
        # No attention on the image at all (a sliding window that no longer holds it): no peak either.
        peak = np.unravel_index(int(np.argmax(image_map)), image_map.shape)
        in_mask = None if total <= 0.0 else bool(mask[peak])
        out.append(LayerAttention(layer, capture.share[layer], concentration, in_mask))
    return out


def attention_overlay(rgb: np.ndarray, capture: AttentionCapture, layer: int, alpha: float = 0.5) -> np.ndarray:
    """The layer's attention on the query image as a jet overlay on ``rgb`` (cf. the paper's Fig. 1)."""
    height, width = rgb.shape[:2]
    image_map = upsample_to_image(capture.layer_map(layer), height, width, capture.coverage)
    return heatmap_overlay(rgb, image_map, alpha=alpha)


#: The short mark of a sliding-window layer's picture (an overlay's title, a curve's tick), beside the full note.
SLIDING_TAG = "sliding window: local"


def sliding_window_note(layers: Sequence[int], window: int) -> str:
    """What a sliding-window layer's image attention means, naming the layers: the one wording of ``eagle
    attention``'s ``attention.json``, its pictures and ``eagle inspect --capture-attention``'s overlays."""
    named = ", ".join(f"L{layer}" for layer in layers)
    return (
        f"{named}: sliding-window attention (window {window} tokens): each token there sees only the last {window} "
        f"positions, so the answer's attention on an image further back is local by design: a flat overlay or a "
        "share of 0 in these layers is the window, not the model ignoring the image"
    )


def sliding_window_record(layers: dict[int, int], distance: Any = None) -> dict[str, Any]:
    """``{"layers", "window", "note"}`` of a model's sliding-window layers (``{layer: window}``; one window) whose
    window the image lies beyond, with ``distance`` (:func:`image_beyond_window`'s, or per condition) where given."""
    ordered = sorted(layers)
    window = max(layers.values())
    record: dict[str, Any] = {"layers": ordered, "window": window}
    if distance is not None:
        record["distance"] = distance
    return {**record, "note": sliding_window_note(ordered, window)}


def image_beyond_window(sliding: dict[int, int], distance: int) -> dict[int, int]:
    """The sliding-window layers (``{layer: window}``) whose window does not reach the image's first token.

    ``distance``: positions from the image's first token to the generated token attending (the capture's first
    decode step sits at the prompt's length). Such a token sees itself and the ``window - 1`` positions before
    it (the keys a sliding cache keeps), so the image's first token is out of sight from ``distance >= window``
    on. Why only then: Gemma 3's released window is 1024 tokens and an EAGLE prompt mostly fits in it; there the
    layer sees the whole image, and a flat overlay is a finding, not to be explained away by the window.
    """
    return {layer: window for layer, window in sliding.items() if distance >= window}


#: The caption line (and PNG ``Description``) of every attention picture a tiny random test model's answer gave:
#: ``eagle attention``'s ``curves.png``/``overlays.png``, ``eagle inspect --capture-attention``'s ``_attn_L*.png``,
#: ``eagle eval --attention``'s ``attention.png``. Such attention is noise, whatever it looks like.
RANDOM_CAPTION = "random test model: not a measurement"
#: Height in pixels of the caption band :func:`random_marked_overlay` adds above an overlay.
_CAPTION_BAND_PX = 36


def mark_random(fig: Figure, fontsize: float, narrow: bool = False) -> str:
    """Draw :data:`RANDOM_CAPTION` in red at ``fig``'s top (two lines when ``narrow``) and return it, for the
    PNG's ``Description``: the one marking of every attention picture of a random test model."""
    fig.suptitle(RANDOM_CAPTION.replace(": ", ":\n") if narrow else RANDOM_CAPTION, color="#d62728",
                 fontsize=fontsize, fontweight="bold")  # fmt: skip
    return RANDOM_CAPTION


def random_marked_overlay(overlay: np.ndarray) -> np.ndarray:
    """``overlay`` (RGB) under a caption band marked by :func:`mark_random`: the picture of a random model's
    attention, every pixel of the overlay kept (the band is added above it, so the picture grows by its height)."""
    import io

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from PIL import Image

    height, width = overlay.shape[:2]
    dpi = 100.0
    total = height + _CAPTION_BAND_PX
    fig = Figure(figsize=(width / dpi, total / dpi), dpi=dpi)
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0.0, 0.0, 1.0, height / total))
    ax.imshow(overlay, interpolation="nearest", aspect="auto")
    ax.set_axis_off()
    mark_random(fig, fontsize=7, narrow=width < 260)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    buffer.seek(0)
    with Image.open(buffer) as picture:
        return np.asarray(picture.convert("RGB")).copy()
