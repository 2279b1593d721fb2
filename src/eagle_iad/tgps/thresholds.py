"""The label-free TGPS threshold (docs/METHOD.md §2): tau and s_max from normal training images alone.

The rules here turn one score per training image into tau. Those scores are the expert's
leave-own-out scores (:mod:`eagle_iad.expert.leave_own_out`), which estimate what a new normal
image would score; a rule never sees a labelled anomaly.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from eagle_iad.choices import DEFAULT_RULE as DEFAULT_RULE
from eagle_iad.choices import RULES as RULES
from eagle_iad.errors import ConfigError

#: Scale that makes the median absolute deviation a consistent estimator of the standard
#: deviation for normal data, so ``mad`` with k = 3 means the same as ``ksigma`` with k = 3.
MAD_SCALE = 1.4826


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
