"""A category's map scale: the pixel threshold and colour range, from its normal training maps.

An anomaly map is in the category's score units (nearest-neighbour distances), so one number means
the same evidence on every image of the category. Two things follow from the normal training
images' leave-own-out maps (what a new normal image's map looks like):

- ``map_tau``: the threshold rule of the image score (docs/METHOD.md), applied to the training maps'
  maxima. A pixel above it shows more evidence than any normal map is expected to, which is what
  the ``calibrated`` region rule boxes; unlike "2/3 of this image's maximum" it does not grow a box
  around a weak, diffuse map or shrink one around a strong defect.
- the colour range ``[colour_min, colour_max]``: the median training-map value (ordinary normal
  texture) at the cold end and ``map_tau`` at two thirds of the scale, so everything that is
  normal stays blue-green on every image and only evidence beyond ``map_tau`` turns red.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from eagle_iad.errors import ModelFormatError
from eagle_iad.tgps.thresholds import THRESHOLD_RULES, Thresholds, compute_thresholds

#: Where ``map_tau`` sits on the colour scale (0 = cold end, 1 = hot end).
TAU_POSITION = 2.0 / 3.0
#: Pixels kept per training map for the median (a strided sample keeps memory flat for big sets).
_SAMPLE_PER_MAP = 4096


@dataclass(frozen=True)
class MapCalibration:
    """Pixel threshold and colour range of one category's anomaly maps (score units)."""

    map_tau: float
    colour_min: float
    colour_max: float
    rule: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MapCalibration:
        try:
            calibration = cls(
                map_tau=float(data["map_tau"]),
                colour_min=float(data["colour_min"]),
                colour_max=float(data["colour_max"]),
                rule=str(data["rule"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelFormatError(f"malformed map calibration ({exc})") from exc
        values = (calibration.map_tau, calibration.colour_min, calibration.colour_max)
        if not all(np.isfinite(values)) or not calibration.colour_min < calibration.colour_max:
            raise ModelFormatError(f"map calibration must be finite with colour_min < colour_max, got {data}")
        return calibration


def score_factor(map_tau: float, tau: float) -> float:
    """Map units → the image score's scale: the factor that puts the map's threshold on tau.

    ``map_tau`` is the image rule applied to the training maps' maxima, so a map value at it is for a
    pixel what tau is for an image; scaling by ``tau / map_tau`` lets the heatmap's legend and the
    score read on one scale, the threshold at tau (docs/METHOD.md). 1 where either is not positive.
    """
    return tau / map_tau if map_tau > 0.0 and tau > 0.0 else 1.0


def legend_scale(colour_min: float, colour_max: float, map_tau: float, tau: float) -> tuple[float, float]:
    """The heatmap's colour scale on the image score's scale (see :func:`score_factor`).

    Widened as :func:`colour_range` widens one where it has no width: a tau set so small (5e-324 is
    accepted, as any tau above 0) that the scaled range underflows to a point would leave the legend
    dividing by zero, and every inspection of the category failing.
    """
    factor = score_factor(map_tau, tau)
    low, high = colour_min * factor, colour_max * factor
    return (low, high) if high > low else colour_range(low, tau)


def colour_range(low: float, tau: float) -> tuple[float, float]:
    """``[low, high]`` with ``tau`` at :data:`TAU_POSITION` of the scale (a degenerate range is widened)."""
    span = max(tau - low, 1e-6 * max(1.0, abs(tau)))
    return tau - span, tau - span + span / TAU_POSITION


def calibrate_maps(train_maps: Iterable[np.ndarray], thresholds: Thresholds) -> MapCalibration:
    """The calibration from leave-own-out training maps, with the image threshold's rule.

    A rule that says nothing about maps (``fixed``: an image threshold set by hand) leaves the maps
    to the default ``ksigma`` rule.
    """
    maxima: list[float] = []
    samples: list[np.ndarray] = []
    for values in train_maps:
        flat = np.asarray(values, dtype=np.float32).ravel()
        maxima.append(float(flat.max()))
        step = max(1, flat.size // _SAMPLE_PER_MAP)
        samples.append(flat[::step].copy())  # a copy: a strided view would keep every whole map alive
    return calibration_from(np.asarray(maxima), float(np.median(np.concatenate(samples))), thresholds)


def calibration_from(maxima: np.ndarray, low: float, thresholds: Thresholds) -> MapCalibration:
    """The calibration from the training maps' maxima (one per image) and their median pixel ``low``.

    Split from :func:`calibrate_maps` so that a taught model (expert/teach.py) recomputes ``map_tau``
    from the kept maxima plus the new images' without the old maps.
    """
    for_maps = THRESHOLD_RULES.get(thresholds.rule).for_maps
    rule = thresholds.rule if for_maps else "ksigma"
    params = dict(thresholds.params) if for_maps else {}
    map_tau = compute_thresholds(np.asarray(maxima, dtype=np.float64), rule, **params).tau
    colour_min, colour_max = colour_range(low, map_tau)
    return MapCalibration(map_tau=map_tau, colour_min=colour_min, colour_max=colour_max, rule=rule)


def map_low(calibration: MapCalibration) -> float:
    """The median training-map pixel a calibration was made from (``colour_range`` keeps it as the cold end)."""
    return calibration.colour_min


def fallback_calibration(thresholds: Thresholds) -> MapCalibration:
    """A fixed per-category colour range for models saved before calibration existed (schema 1).

    Their maps are still in score units, so the scale is anchored on the image threshold: zero
    distance at the cold end, ``tau`` at two thirds. Only the colours use it; their boxes keep the
    paper's rule, exactly as when they were fitted.
    """
    low, high = colour_range(0.0, thresholds.tau)
    return MapCalibration(map_tau=thresholds.tau, colour_min=low, colour_max=high, rule="legacy")
