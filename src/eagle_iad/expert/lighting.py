"""How bright and how contrasted a model's training photographs were, and the warning a photo far outside carries.

Why: the exposure step (expert/preprocess.py, ``expose``) sets every input's grey mean and spread to ImageNet's
before the backbone, so a washed-out frame (tire: mean grey 118 against the training images' 19) or a nearly
black one reaches the model looking like any other and is scored with no sign that it was taken under other
light: its clipped highlights or its noise, amplified by the step's gain, can score as defects or hide them.
So a fit records the range of its training images' raw statistics (before the exposure step, on the decoded
pixels), a teach widens it by the taught images' (but for those the rule calls far outside it:
expert/teach.py ``_taught_exposure``), and a verdict on a photo far outside it says so
(docs/METHOD.md, "Exposure": what is measured, the rule and its figures).

What is measured, per image: the mean and the standard deviation ("spread") of every decoded 8-bit sample, the
three channels together (what the exposure step itself measures, at full resolution instead of the network
input's). Both come from the image's 256-bin histogram with integer sums, so the Node local runtime
(clients/ts/src/local/lighting.ts) computes the very same doubles.

What is kept: the range, ``{images, mean: [low, high], spread: [low, high]}``, not each image's values. Why:
the rule reads only the extremes, and a teach merges ranges exactly; a training image far outside the others
is named by the fit's outlier warning (it scores far above them), which is where a wrong frame in the training
folder should be caught, not here.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

#: The full scale of a decoded sample: a mean is compared both as darkness (its distance from 0) and as
#: brightness (its distance from this), so that "twice as dark" and "twice as close to white" count alike.
FULL_SCALE = 255.0

#: A photo warns when its mean, its distance from white, or its spread lies more than this factor beyond the
#: training images' range (below low / factor or above high x factor; the factor widened for few images:
#: :data:`WIDENING`). Why 2: on the full training sets the normal test images that come closest reach 1.02 (tire:
#: the darkest test image's mean against the darkest of 210 training images) and 1.07 (elpv poly: a test cell's
#: spread against the flattest training cell's); but on elpv, whose cells' means span 59 to 220, a model of a few
#: cells knows a narrow range, and 1.5 warned on up to 42% of the normal test cells for an unlucky draw of 4
#: training cells. Every washed-out tire frame (six times the light: mean 118 against 19) lies 5.0 or more past the
#: range, and every nearly black one (a tenth of the light) 12.7 or more on tire and 3.7 on elpv (docs/METHOD.md,
#: "Exposure", has every figure). A factor, not a margin in grey levels: tire's training means span 19.0 to 21.3,
#: elpv's 59 to 220, and a margin right for one is wrong for the other.
FACTOR = 2.0

#: A range seen in few images is widened before the factor: each side by the range's own width on a log scale
#: times WIDENING / (images + 1), i.e. the factor becomes FACTOR x (high / low) ^ (WIDENING / (images + 1)). Why: the
#: expected gap between the largest of n draws and the next draw is about the range's width / (n + 1), so a model
#: of 4 elpv cells knows far less of what normal light is than one of 441, and its range says so; on a training set
#: of hundreds the widening is a factor under 1.01. With it, of 300 draws of 4 elpv training cells the unluckiest
#: warns on 2% of the normal test cells (5% without it), 0.04% on average; from 12 cells on, none.
WIDENING = 2.0


def image_statistics(rgb: np.ndarray) -> tuple[float, float]:
    """``(mean, spread)`` of every sample of a decoded uint8 image, in grey levels (0-255).

    From the 256-bin histogram with exact integer sums (no float accumulation whose order could differ between
    runtimes): mean = sum / n, spread = sqrt(max(0, sum of squares / n - mean^2)), each an IEEE double operation.
    """
    counts = np.bincount(np.asarray(rgb, dtype=np.uint8).ravel(), minlength=256).astype(np.int64)
    levels = np.arange(256, dtype=np.int64)
    n = int(counts.sum())
    if n == 0:
        return 0.0, 0.0
    total, squares = int(counts @ levels), int(counts @ (levels * levels))
    mean = total / n
    return mean, math.sqrt(max(0.0, squares / n - mean * mean))


@dataclass(frozen=True)
class ExposureRange:
    """The range of a model's training images' raw statistics (:func:`image_statistics`)."""

    images: int
    mean: tuple[float, float]
    spread: tuple[float, float]

    @staticmethod
    def of(rgbs: Iterable[np.ndarray]) -> ExposureRange | None:
        """The range over decoded images; ``None`` for none."""
        found = [image_statistics(rgb) for rgb in rgbs]
        if not found:
            return None
        means, spreads = [m for m, _ in found], [s for _, s in found]
        return ExposureRange(len(found), (min(means), max(means)), (min(spreads), max(spreads)))

    def merged(self, other: ExposureRange | None) -> ExposureRange:
        """This range widened by ``other``'s (a teach's images)."""
        if other is None:
            return self
        return ExposureRange(
            self.images + other.images,
            (min(self.mean[0], other.mean[0]), max(self.mean[1], other.mean[1])),
            (min(self.spread[0], other.spread[0]), max(self.spread[1], other.spread[1])),
        )

    def to_dict(self) -> dict[str, Any]:
        return {"images": self.images, "mean": list(self.mean), "spread": list(self.spread)}

    def factors(self) -> tuple[float, float]:
        """How far beyond its mean range and its spread range a photo may lie before it warns: :data:`FACTOR`,
        widened for a range of few images (:data:`WIDENING`). The mean's is its darkness's (the brightness side,
        measured from white, widens alike by its own range: by less for a range whose middle lies below mid-grey)."""
        return _factor(*self.mean, self.images), _factor(*self.spread, self.images)

    def summary(self) -> dict[str, Any]:
        """The range and its warning factors, as the service's category answer gives them (the console shows them)."""
        mean_factor, spread_factor = self.factors()
        return {**self.to_dict(), "mean_factor": mean_factor, "spread_factor": spread_factor}

    @staticmethod
    def parse(raw: object, field: str) -> ExposureRange:
        """A stored range (``training.exposure``, an export's ``verdict.exposure``); ``ValueError`` naming ``field``
        for anything else (a hand-edited or corrupt range must not be read as another)."""
        if not isinstance(raw, dict):
            raise ValueError(f"{field} must be an object, not {type(raw).__name__}")
        images = raw.get("images")
        if isinstance(images, bool) or not isinstance(images, int) or images < 1:
            raise ValueError(f"{field}.images must be a whole number >= 1, not {images!r}")
        pairs = []
        for key in ("mean", "spread"):
            value = raw.get(key)
            if (
                not isinstance(value, list)
                or len(value) != 2
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
                or not all(math.isfinite(v) and 0 <= v <= FULL_SCALE for v in value)
                or value[0] > value[1]
            ):
                raise ValueError(f"{field}.{key} must be [low, high] with 0 <= low <= high <= 255, not {value!r}")
            pairs.append((float(value[0]), float(value[1])))
        return ExposureRange(images, pairs[0], pairs[1])


#: What a model saved before schema 12 (or an export of one) says of its training images' exposure.
NOT_RECORDED = "not recorded (the model was saved before schema 12; a refit records it)"


def exposure_line(trained: ExposureRange | None) -> str:
    """A model's training exposure in one line (``eagle info``): the ranges and the factors a photo must lie
    beyond to warn; :data:`NOT_RECORDED` for a model that kept none.

    Why the factors and not only the ranges: what an engineer asks is "will this photo warn", and the factor is
    widened for few images, so 2 alone would understate it for a model of four.
    """
    if trained is None:
        return NOT_RECORDED
    mean_factor, spread_factor = trained.factors()
    images = f"{trained.images} image{'s' if trained.images != 1 else ''}"
    return (
        f"mean grey {trained.mean[0]:.1f} to {trained.mean[1]:.1f}, spread {trained.spread[0]:.1f} to "
        f"{trained.spread[1]:.1f} ({images}); a photo warns beyond them by a factor of {mean_factor:.2f} (mean) or "
        f"{spread_factor:.2f} (spread)"
    )


def _factor(low: float, high: float, images: int) -> float:
    """How far beyond ``[low, high]``, seen in ``images`` images, a value may lie: :data:`FACTOR`, widened by the
    range's own width for a range of few images (:data:`WIDENING`)."""
    if low <= 0:
        return FACTOR
    return FACTOR * float((high / low) ** (WIDENING / (images + 1)))


def _outside(value: float, low: float, high: float, images: int) -> str | None:
    """``below`` / ``above`` where ``value`` lies more than :func:`_factor` beyond ``[low, high]``, else ``None``."""
    factor = _factor(low, high, images)
    if value * factor < low:
        return "below"
    if value > high * factor:
        return "above"
    return None


def exposure_warning(trained: ExposureRange | None, rgb: np.ndarray | None) -> str | None:
    """A verdict's warning when the photo's brightness or contrast lies far outside the training images'.

    ``None`` when it lies within, or either is unknown (a model saved before schema 12, a decoded frame not given).
    """
    if trained is None or rgb is None:
        return None
    return statistics_warning(trained, *image_statistics(rgb))


def statistics_warning(trained: ExposureRange, mean: float, spread: float) -> str | None:
    """:func:`exposure_warning` for a photo of these statistics (:func:`image_statistics`); ``None``: within.

    The mean is judged first, both as darkness and as distance from white, since a frame too dark or too bright
    also loses contrast; then the spread alone (a flat or harsh frame at the usual brightness).
    """
    low, high = trained.mean
    n = trained.images
    darkness = _outside(mean, low, high, n)
    contrast = _outside(spread, *trained.spread, n)
    if darkness == "below":
        how = "far darker than"
    elif darkness == "above" or _outside(FULL_SCALE - mean, FULL_SCALE - high, FULL_SCALE - low, n) == "below":
        how = "far brighter than"
    elif contrast == "below":
        how = "far flatter (less contrast) than"
    elif contrast == "above":
        how = "far more contrasted than"
    else:
        return None
    return (
        f"a photo of mean grey {mean:.1f} and spread {spread:.1f} inspected by a model whose training images' mean "
        f"grey lies from {low:.1f} to {high:.1f} and spread from {trained.spread[0]:.1f} to {trained.spread[1]:.1f}: "
        f"it is {how} any of them (by more than a factor of {FACTOR:g}), and the exposure step evens that out before "
        "the model sees it, so its clipped highlights or amplified noise can score as defects or hide them; check the "
        "camera's exposure and lighting, or fit on images taken under this light (docs/METHOD.md, 'Exposure')"
    )
