"""An example threshold rule added from outside the package (docs/ARCHITECTURE.md, "Adding a threshold rule").

``EAGLE_PLUGINS=midrange_rule`` (with this folder on ``PYTHONPATH``) makes ``eagle fit --rule
midrange --w 0.25`` and the service's fit option ``{"rule": "midrange", "w": 0.25}`` work.
"""

from __future__ import annotations

import numpy as np

from eagle_iad.errors import ConfigError
from eagle_iad.tgps.thresholds import RuleParam, threshold_rule


@threshold_rule("midrange", RuleParam("w", 0.5, "midrange: weight from the median (0) to the largest score (1)"))
def midrange(scores: np.ndarray, w: float) -> float:
    """``median + w * (max - median)`` of the leave-own-out training scores."""
    if not 0.0 <= w <= 1.0:
        raise ConfigError(f"midrange w must be in [0, 1], got {w}")
    median = float(np.median(scores))
    return median + w * (float(scores.max()) - median)
