"""An example threshold rule added from outside the package (docs/ARCHITECTURE.md, "Adding a threshold rule").

``EAGLE_PLUGINS=midrange_rule`` (with this folder on ``PYTHONPATH``) makes ``eagle fit --rule
midrange --w 0.25`` and the service's fit option ``{"rule": "midrange", "w": 0.25}`` work.
"""

from __future__ import annotations

import numpy as np

from eagle_iad.ranges import Range
from eagle_iad.tgps.thresholds import RuleParam, threshold_rule

# The range is what makes ``--w -3`` a parse-time refusal (exit 2 / 400) instead of a fit that runs and then
# finds a tau below every training score.
W = RuleParam("w", 0.5, "midrange: weight from the median (0) to the largest score (1)", Range(0, 1))


@threshold_rule("midrange", W)
def midrange(scores: np.ndarray, w: float) -> float:
    """``median + w * (max - median)`` of the leave-own-out training scores (w already checked against its range)."""
    median = float(np.median(scores))
    return median + w * (float(scores.max()) - median)
