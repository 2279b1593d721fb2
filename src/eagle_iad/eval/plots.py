"""The score-histogram figure (the paper's Figure 4): where tau and s_max sit among the scores.

The figure answers the question an engineer asks before trusting a threshold: do the normal and
anomalous test scores separate, and how many images fall in the low-confidence band
[tau, s_max) that TGPS hands to the language model with a softened prompt?

Only the object API (:class:`matplotlib.figure.Figure` with the Agg canvas) is used, never
``pyplot``: no global backend is selected, no figure registry grows, and the function is safe to
call from a server thread or next to code that uses another backend.
"""

from __future__ import annotations

import contextlib
import math
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

__all__ = ["save_figure", "score_histogram"]

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


def save_figure(fig: Figure, path: str | os.PathLike[str], dpi: float | None = None) -> None:
    """Write ``fig`` as PNG atomically (temp file in the destination folder, then :func:`os.replace`).

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
            fig.savefig(handle, format="png", dpi=fig.dpi if dpi is None else dpi)
            handle.flush()
            os.fsync(handle.fileno())
        # mkstemp creates the file owner-only; a figure is meant to be shared like any output.
        os.chmod(tmp_name, 0o644)
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
