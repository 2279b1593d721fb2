"""The label-free TGPS threshold (docs/METHOD.md §2): tau and s_max from normal training images alone.

A training image's own patches are in the memory bank, so scoring it naively gives near-zero
distances and a useless threshold. Leave-own-out fixes that: each training image is scored with
only its *unselected* patches against the bank *minus its own entries*, which estimates what a
new normal image would score. Masking the own-image columns inside one blocked distance pass
gives all of these scores at about the cost of one ordinary scoring pass.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from eagle_iad.choices import DEFAULT_RULE as DEFAULT_RULE
from eagle_iad.choices import RULES as RULES
from eagle_iad.errors import ConfigError
from eagle_iad.expert.features import RowFile
from eagle_iad.expert.search import NearestNeighbourSearch

#: Scale that makes the median absolute deviation a consistent estimator of the standard
#: deviation for normal data, so ``mad`` with k = 3 means the same as ``ksigma`` with k = 3.
MAD_SCALE = 1.4826
#: Training patches scored per search call. A chunk costs about four copies of itself (read, the
#: search's query copy, gathered neighbours, differences): 8192 rows x 4 KiB is 128 MiB at the peak,
#: where 32768 rows held 512 MiB; the search blocks its own work in 4096 queries either way.
LOO_CHUNK_ROWS = 1 << 13


@dataclass(frozen=True)
class Thresholds:
    """Decision threshold ``tau``, largest training score ``s_max`` and how tau was chosen."""

    rule: str
    tau: float
    s_max: float
    params: dict[str, float] = field(default_factory=dict)

    def is_anomalous(self, score: float) -> bool:
        """The expert's verdict: anomalous iff ``score >= tau``."""
        return score >= self.tau

    def in_band(self, score: float) -> bool:
        """Low-confidence band that triggers CAAS: ``tau <= score < s_max`` (empty if tau >= s_max)."""
        return self.tau <= score < self.s_max

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Thresholds:
        return cls(
            rule=str(data["rule"]),
            tau=float(data["tau"]),
            s_max=float(data["s_max"]),
            params={str(k): float(v) for k, v in dict(data.get("params", {})).items()},
        )


def compute_thresholds(
    scores: np.ndarray,
    rule: str = DEFAULT_RULE,
    *,
    k: float = 3.0,
    q: float = 0.99,
    p: float = 0.99,
    value: float | None = None,
) -> Thresholds:
    """Apply a threshold rule to the leave-own-out training scores.

    ``ksigma``: mean + k * population std. ``mad``: median + k * 1.4826 * MAD. ``quantile``: the
    q-quantile (linear interpolation). ``evt``: the p-quantile of a generalised extreme value
    distribution fitted to the scores (they are per-image maxima). ``fixed``: ``value``.
    """
    data = np.asarray(scores, dtype=np.float64)
    data = data[np.isfinite(data)]
    if data.size == 0:
        raise ConfigError("no finite training scores to set a threshold from")
    s_max = float(data.max())
    if rule == "ksigma":
        tau = float(data.mean() + k * data.std())
        params = {"k": k}
    elif rule == "mad":
        median = float(np.median(data))
        tau = median + k * MAD_SCALE * float(np.median(np.abs(data - median)))
        params = {"k": k}
    elif rule == "quantile":
        if not 0.0 < q < 1.0:
            raise ConfigError(f"quantile q must be in (0, 1), got {q}")
        tau = float(np.quantile(data, q))
        params = {"q": q}
    elif rule == "evt":
        if not 0.0 < p < 1.0:
            raise ConfigError(f"evt p must be in (0, 1), got {p}")
        if data.size < 3 or float(data.std()) == 0.0:
            raise ConfigError("evt needs at least 3 distinct training scores")
        from scipy.stats import genextreme

        shape, loc, scale = genextreme.fit(data)
        tau = float(genextreme.ppf(p, shape, loc=loc, scale=scale))
        if not math.isfinite(tau):
            raise ConfigError("evt fit did not converge to a finite quantile; use another rule")
        params = {"p": p}
    elif rule == "fixed":
        if value is None or not math.isfinite(value):
            raise ConfigError("rule 'fixed' needs a finite threshold value")
        tau = float(value)
        params = {"value": tau}
    else:
        raise ConfigError(f"unknown threshold rule {rule!r}; choose one of {', '.join(RULES)}")
    return Thresholds(rule=rule, tau=tau, s_max=s_max, params=params)


@dataclass(frozen=True)
class LeaveOwnOut:
    """Leave-own-out results: one score per training image and one distance per training patch.

    ``patch_scores[i]`` is patch ``i``'s distance to the bank minus its own image's entries (selected
    patches included: their own entry is excluded with the rest of their image), what a map of that
    training image would show were it a new normal image. ``image_scores`` takes the maximum over the
    *unselected* patches only, as the threshold rule expects (docs/METHOD.md).
    """

    image_scores: np.ndarray
    patch_scores: np.ndarray


@torch.no_grad()
def leave_own_out(
    features: torch.Tensor | RowFile,
    patch_image_ids: torch.Tensor,
    selected: torch.Tensor,
    search: NearestNeighbourSearch,
    n_images: int,
    progress: Callable[[int, int], None] | None = None,
    chunk_rows: int = LOO_CHUNK_ROWS,
) -> LeaveOwnOut:
    """Score every training patch against the bank minus its own image's entries, in one chunked pass.

    ``features`` are all ``N`` training patches, ``patch_image_ids`` their image index, ``selected``
    the coreset mask; ``search`` must already be fitted on ``features[selected]`` with
    ``bank_groups = patch_image_ids[selected]``. An image whose patches were all selected (tiny
    data sets) is scored with all of its patches. Rows are processed in chunks so no copy of the
    whole feature matrix is made and ``progress(done, total)`` can report.
    """
    if n_images < 2:
        raise ConfigError("leave-own-out training scores need at least 2 training images")
    use = ~selected
    fully_selected = torch.ones(n_images, dtype=torch.bool)
    fully_selected[patch_image_ids[use].long()] = False
    if bool(fully_selected.any()):
        use = use | fully_selected[patch_image_ids.long()]
    total = features.shape[0]
    patch_scores = torch.empty(total, dtype=torch.float32)
    for start in range(0, total, chunk_rows):
        stop = min(total, start + chunk_rows)
        rows = features[start:stop]
        queries = torch.from_numpy(rows) if isinstance(rows, np.ndarray) else rows
        dist, _ = search.search(queries, exclude_groups=patch_image_ids[start:stop].long())
        patch_scores[start:stop] = dist.float()
        if progress is not None:
            progress(stop, total)
    scores = torch.full((n_images,), float("-inf"), dtype=torch.float64)
    scores.scatter_reduce_(0, patch_image_ids[use].long(), patch_scores[use].double(), reduce="amax")
    return LeaveOwnOut(image_scores=scores.numpy(), patch_scores=patch_scores.numpy())


def leave_own_out_scores(
    features: torch.Tensor | RowFile,
    patch_image_ids: torch.Tensor,
    selected: torch.Tensor,
    search: NearestNeighbourSearch,
    n_images: int,
    progress: Callable[[int, int], None] | None = None,
    chunk_rows: int = LOO_CHUNK_ROWS,
) -> np.ndarray:
    """Per training image: max over its unselected patches of the distance to the bank minus its own entries."""
    return leave_own_out(features, patch_image_ids, selected, search, n_images, progress, chunk_rows).image_scores
