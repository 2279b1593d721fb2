"""The evaluation figures: the score histogram (the paper's Figure 4) and the boxes-vs-truth grid.

The figure answers the question an engineer asks before trusting a threshold: do the normal and
anomalous test scores separate, and how many images fall in the low-confidence band
[tau, s_max) that TGPS hands to the language model with a softened prompt?

The boxes grid answers the next question: when the expert flags a part, do the red boxes the user
and the MLLM are shown sit on the real defect (green outline), and how much larger are they?

Only the object API (:class:`matplotlib.figure.Figure` with the Agg canvas) is used, never
``pyplot``: no global backend is selected, no figure registry grows, and the function is safe to
call from a server thread or next to code that uses another backend.
"""

from __future__ import annotations

import contextlib
import math
import os
import tempfile
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from PIL import Image

from eagle_iad.atomic import new_file_mode

__all__ = ["BoxPanel", "boxes_grid", "grid_figure", "save_figure", "score_histogram"]

#: (label, colour) of the three score groups, drawn in this order so the anomalous bars are on top.
_GROUPS = (
    ("training (leave-own-out)", "#7f7f7f"),
    ("normal test", "#1f77b4"),
    ("anomalous test", "#d62728"),
)
_MIN_BINS = 10
_MAX_BINS = 60


def _finite(values: Sequence[float] | npt.NDArray[np.floating], name: str) -> npt.NDArray[np.float64]:
    arr = np.asarray(values, dtype=np.float64).ravel()
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains non-finite values (NaN or inf)")
    return arr


def _shared_bins(groups: list[npt.NDArray[np.float64]]) -> npt.NDArray[np.float64]:
    """One set of bin edges for all groups, so bar heights are comparable between them.

    About 2*sqrt(n) bins, kept between 10 and 60: enough to show the shape of a few hundred
    scores without turning a large training set into a comb.
    """
    pooled = np.concatenate(groups)
    lo, hi = float(pooled.min()), float(pooled.max())
    if hi <= lo:  # all scores equal: give the single bar some width
        pad = 0.05 * max(abs(lo), 1.0)
        lo, hi = lo - pad, hi + pad
    n_bins = int(np.clip(round(2.0 * math.sqrt(pooled.size)), _MIN_BINS, _MAX_BINS))
    return np.linspace(lo, hi, n_bins + 1)


def _draw(
    fig: Figure,
    groups: list[npt.NDArray[np.float64]],
    tau: float,
    s_max: float,
    title: str,
) -> None:
    ax = fig.add_subplot(1, 1, 1)
    present = [g for g in groups if g.size]
    if present:
        bins = _shared_bins(present)
        for (label, colour), scores in zip(_GROUPS, groups, strict=True):
            if scores.size == 0:
                continue
            ax.hist(scores, bins=bins.tolist(), color=colour, alpha=0.45, label=f"{label} (n = {scores.size})")
    else:
        ax.text(0.5, 0.5, "no scores", transform=ax.transAxes, ha="center", va="center", color="0.4")
    if s_max > tau:  # docs/METHOD.md §2: the band is [tau, s_max), empty when tau >= s_max
        ax.axvspan(tau, s_max, color="#ffbf00", alpha=0.18, label="low-confidence band", zorder=0)
    ax.axvline(tau, color="black", linestyle="--", linewidth=1.5, label=f"tau = {tau:.4g}")
    ax.axvline(s_max, color="#b8860b", linestyle=":", linewidth=1.8, label=f"s_max = {s_max:.4g}")
    ax.set_xlabel("anomaly score")
    ax.set_ylabel("images")
    ax.set_title(title)
    ax.legend(loc="upper right", fontsize="small", framealpha=0.85)
    fig.tight_layout()


def save_figure(
    fig: Figure, path: str | os.PathLike[str], dpi: float | None = None, description: str | None = None
) -> None:
    """Write ``fig`` as PNG atomically (temp file in the destination folder, then :func:`os.replace`).

    ``description`` goes into the PNG's ``Description`` text chunk too, where a program (or a test) reads what
    the picture's caption says without reading pixels.

    A reader (a report server, a browser refresh) never sees a half-written PNG and a crash leaves
    the previous figure intact. Missing parent folders are created. The figure needs a canvas
    (``FigureCanvasAgg(fig)``); the PNG is ``figsize * dpi`` pixels (no tight bounding box, so
    callers can rely on the size).
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            metadata = None if description is None else {"Description": description}
            fig.savefig(handle, format="png", dpi=fig.dpi if dpi is None else dpi, metadata=metadata)
            handle.flush()
            os.fsync(handle.fileno())
        # mkstemp creates the file owner-only; a figure is shared like any output (what open() would give it).
        os.chmod(tmp_name, new_file_mode())
        os.replace(tmp_name, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
        raise


def score_histogram(
    path: str | os.PathLike[str],
    train_scores: Sequence[float] | npt.NDArray[np.floating],
    normal_test_scores: Sequence[float] | npt.NDArray[np.floating],
    anomalous_test_scores: Sequence[float] | npt.NDArray[np.floating],
    tau: float,
    s_max: float,
    title: str,
) -> None:
    """Write a PNG of overlaid score histograms with the decision threshold and confidence band.

    Training scores (each training image scored against a memory bank without its own patches,
    so they are not trivially zero), normal test scores and anomalous test scores share one set
    of bins. Vertical lines mark ``tau`` and ``s_max`` and the band between them is shaded. Any
    score group may be empty and is then left out (and out of the legend).

    The file is written to a temporary file in the destination folder and moved into place with
    :func:`os.replace`, so a reader (a report server, a browser refresh) never sees a half-written
    PNG and a crash leaves the previous figure intact. Missing parent folders are created.

    Raises:
        ValueError: if a score or ``tau``/``s_max`` is NaN or infinite.
    """
    if not (math.isfinite(tau) and math.isfinite(s_max)):
        raise ValueError(f"tau and s_max must be finite, got tau={tau}, s_max={s_max}")
    groups = [
        _finite(train_scores, "train_scores"),
        _finite(normal_test_scores, "normal_test_scores"),
        _finite(anomalous_test_scores, "anomalous_test_scores"),
    ]
    fig = Figure(figsize=(7.0, 4.2), dpi=120)
    FigureCanvasAgg(fig)
    _draw(fig, groups, float(tau), float(s_max), title)

    save_figure(fig, path)


#: Longest side an image is drawn at in the grid; a 2000 px photo in a 3-inch panel gains nothing
#: from full resolution, and twelve of them at full size would cost gigabytes.
_PANEL_PIXELS = 512


@dataclass(frozen=True)
class BoxPanel:
    """One grid cell: an RGB image, its ground-truth mask (or None), the drawn boxes, a title.

    ``boxes`` are ``(x0, y0, x1, y1)`` in the image's pixels (exclusive ends), in rank order.
    """

    rgb: npt.NDArray[np.uint8]
    mask: npt.NDArray[np.bool_] | None
    boxes: Sequence[tuple[int, int, int, int]]
    title: str


def _draw_panel(ax: Any, panel: BoxPanel) -> None:
    height, width = panel.rgb.shape[:2]
    scale = min(1.0, _PANEL_PIXELS / max(height, width))
    shown = panel.rgb
    if scale < 1.0:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        shown = np.asarray(Image.fromarray(panel.rgb).resize(size, Image.Resampling.BILINEAR))
    # The extent keeps axes in original pixels, so boxes and outline need no rescaling.
    extent = (-0.5, width - 0.5, height - 0.5, -0.5)
    ax.imshow(shown, extent=extent, interpolation="bilinear")
    if panel.mask is not None and panel.mask.any():
        mask = panel.mask
        if scale < 1.0:
            mask = np.asarray(Image.fromarray(mask).resize((shown.shape[1], shown.shape[0]), Image.Resampling.NEAREST))
        ys = (np.arange(mask.shape[0]) + 0.5) * height / mask.shape[0] - 0.5
        xs = (np.arange(mask.shape[1]) + 0.5) * width / mask.shape[1] - 0.5
        ax.contour(xs, ys, mask.astype(np.float32), levels=[0.5], colors="#00e000", linewidths=1.4)
    for rank, (x0, y0, x1, y1) in enumerate(panel.boxes, start=1):
        ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, edgecolor="red", linewidth=1.6))
        ax.text(x0 - 0.5, y0 - 0.5, str(rank), color="white", fontsize=7, fontweight="bold", va="top", ha="left",
                bbox={"facecolor": "red", "edgecolor": "none", "pad": 1.0})  # fmt: skip
    ax.set_xlim(-0.5, width - 0.5)
    ax.set_ylim(height - 0.5, -0.5)
    ax.set_xticks([])
    ax.set_yticks([])


#: The grid's geometry in inches: each cell is a title band over an image box; the figure's title on top.
_CELL_WIDTH = 3.0
_IMAGE_HEIGHT = 2.6
_GAP = 0.2
_MARGIN = 0.15
_TITLE_POINTS = 7.0
_SUPTITLE_POINTS = 10.0
#: A text line's height over its font size, and a character's mean width over it (DejaVu Sans, generous).
_LINE_SPACING = 1.35
_CHAR_WIDTH = 0.62


def _wrap(text: str, width_in: float, points: float) -> list[str]:
    """``text``'s lines wrapped to ``width_in`` inches at ``points`` (long paths broken where they must)."""
    chars = max(8, int(width_in * 72 / (points * _CHAR_WIDTH)))
    lines: list[str] = []
    for line in text.split("\n"):
        lines.extend(textwrap.wrap(line, chars, break_on_hyphens=False) or [""])
    return lines


def grid_figure(panels: Sequence[BoxPanel], title: str, columns: int = 4) -> Figure:
    """The boxes grid as a figure (what :func:`boxes_grid` writes), laid out explicitly in inches.

    Every cell is a band for its title (wrapped to the cell's width; as tall as the longest title of
    the grid needs) over its image box, the image pinned to the box's top: a title can reach neither
    the image above it nor its neighbours', whatever the images' shape or the names' length.
    """
    if columns < 1:
        raise ValueError(f"columns must be at least 1, got {columns}")
    rows = max(1, math.ceil(len(panels) / columns))
    cols = min(columns, max(1, len(panels)))
    line = _TITLE_POINTS * _LINE_SPACING / 72
    titles = ["\n".join(_wrap(panel.title, _CELL_WIDTH - 0.1, _TITLE_POINTS)) for panel in panels]
    band = max((t.count("\n") + 1 for t in titles), default=1) * line + 0.12
    width = 2 * _MARGIN + cols * _CELL_WIDTH + (cols - 1) * _GAP
    heading = _wrap(title, width - 2 * _MARGIN, _SUPTITLE_POINTS)
    top = len(heading) * _SUPTITLE_POINTS * _LINE_SPACING / 72 + 0.2
    cell = band + _IMAGE_HEIGHT
    height = top + rows * cell + (rows - 1) * _GAP + _MARGIN
    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    fig.text(0.5, 1 - 0.1 / height, "\n".join(heading), ha="center", va="top", fontsize=_SUPTITLE_POINTS)
    if not panels:
        fig.text(0.5, 0.5, "no anomalous test image to show", ha="center", va="center", color="0.4")
    for index, (panel, text) in enumerate(zip(panels, titles, strict=True)):
        row, col = divmod(index, cols)
        left = _MARGIN + col * (_CELL_WIDTH + _GAP)
        bottom = height - top - row * (cell + _GAP) - cell
        ax = fig.add_axes((left / width, bottom / height, _CELL_WIDTH / width, _IMAGE_HEIGHT / height))
        ax.set_anchor("N")  # an image narrower or wider than the box keeps its top edge under its title
        _draw_panel(ax, panel)
        ax.set_title(text, fontsize=_TITLE_POINTS, pad=3)
    return fig


def boxes_grid(path: str | os.PathLike[str], panels: Sequence[BoxPanel], title: str, columns: int = 4) -> None:
    """Write a PNG grid: each image with its drawn boxes (red, numbered by rank) and the true defect outline (green).

    With no panels the figure says so, so the file on disk always belongs to the latest run.
    Laid out by :func:`grid_figure`; written atomically (:func:`save_figure`), the title also as the PNG's
    ``Description``.
    """
    save_figure(grid_figure(panels, title, columns), path, description=title)
