"""The warnings a usable model carries about its threshold, and how they follow the model as it changes.

Split from the fit (expert/fitting.py) because three changes make them: a fit computes them, and a
teach (expert/teach.py) or a threshold change (expert/store.py, ``change_threshold``) moves the
training scores or tau they were computed from. A warning kept from the fit would then say what is no
longer true ("only 8 training images" after ten were taught) or miss what now is (an empty band under
a tau set by hand).
"""

from __future__ import annotations

import numpy as np

from eagle_iad.expert.patchcore import ExpertModel
from eagle_iad.tgps.thresholds import Thresholds

#: How a refit's note of the model it replaced begins (expert/store.py's ``refit_notice``; here, not there, since
#: store imports this module).
REFIT_NOTICE = "this fit replaces "

#: Below this many training images a fit still works but the threshold is a rough guess (a warning says so).
FEW_IMAGES = 10

#: Above this many times s_max a tau is far past where any normal part scores: a warning says it flags only
#: parts scoring that far out, likely none. The console's tuner uses the same factor, served to it as
#: ``far_above_s_max`` of ``/healthz`` (web/src/logic/tuning.ts, ``offScale``; the Inspect cards' scale leaves such a
#: tau out, logic/scale.ts), but calls a value "flags nothing", and asks to confirm it, only when it
#: is also above every score the console knows (labelled parts, evaluation images), which the model does not
#: hold: a tau past twice s_max but below a defect's known score is warned about here ("likely") and still
#: counted by the tuner, since it flags that defect.
FAR_ABOVE_S_MAX = 2.0


def fit_warnings(n_images: int, scores: np.ndarray, thresholds: Thresholds | None = None) -> list[str]:
    """What is degenerate about a usable fit, for the user to read (the CLI prints, the service returns them)."""
    warnings = []
    if n_images < FEW_IMAGES:
        warnings.append(
            f"only {n_images} training images: tau rests on {n_images} leave-own-out scores, so expect false alarms "
            f"until the model is fitted on more normal images (at least {FEW_IMAGES})"
        )
    if n_images >= 2 and float(np.ptp(scores)) == 0.0:
        warnings.append(
            f"every training image scores {float(scores[0])!r}: the images vary too little to set a threshold"
        )
    # Below FEW_IMAGES the rule's tau is nearly always above every score (no score of n lies more than
    # sqrt(n - 1) standard deviations above their mean, so the default ksigma's k = 3 puts tau above
    # all of n <= 10), and the warning above already says tau is rough.
    if thresholds is not None and n_images >= FEW_IMAGES and thresholds.tau >= thresholds.s_max:
        warnings.append(
            f"tau ({thresholds.tau:.4g}) is not below the largest training score s_max ({thresholds.s_max:.4g}), so "
            "the low-confidence band tau <= score < s_max is empty: no verdict is marked unsure and CAAS never "
            "acts (docs/METHOD.md, 'Decision and low-confidence band'); the verdicts themselves are unaffected"
        )
    if thresholds is not None and scores.size > 0:
        warnings.extend(far_threshold_warnings(scores, thresholds))
    return warnings


def far_threshold_warnings(scores: np.ndarray, thresholds: Thresholds) -> list[str]:
    """A tau outside the training scores by so much that it decides nothing useful, in words.

    Why a warning and not a refusal: such a tau is valid (a line may want the expert's flags off for a
    while, or every part stopped), recorded with who and why, and restorable; ``eagle threshold`` and the
    API keep accepting it, but the model says what it does wherever its warnings are shown (the CLI's
    output, the service's category answer, the console's category page).
    """
    tau, lowest = thresholds.tau, float(scores.min())
    if tau <= lowest:
        return [
            f"tau ({tau:.4g}) is at or below the lowest training score ({lowest:.4g}): every training image, "
            "each a normal part, scores at or above it, so nearly every part inspected is flagged anomalous"
        ]
    if tau > FAR_ABOVE_S_MAX * thresholds.s_max:
        return [
            f"tau ({tau:.4g}) is more than {FAR_ABOVE_S_MAX:g} times the largest training score s_max "
            f"({thresholds.s_max:.4g}): only a part scoring that far above every normal one is flagged, so the "
            "expert likely flags nothing, defects included"
        ]
    return []


def rewarned(model: ExpertModel, scores: np.ndarray, thresholds: Thresholds) -> list[str]:
    """``model``'s warnings once its training scores become ``scores`` and its thresholds ``thresholds``.

    The threshold warnings the model carries for its present state are found by computing them again
    from its saved scores and thresholds (the same function on the same numbers gives the same words),
    not by matching their wording, and replaced by those of the new state. The rest describe the fit
    (a stretch of differing aspect ratios, a coreset chosen from a sample) and stay. A model whose
    threshold warnings were worded by an older release keeps them as they are, since they cannot be
    told from the fit's others. A refit's note of what the model it replaced held is the fit version's
    record and is dropped.
    """
    present = fit_warnings(len(model.train_scores), model.train_scores, model.thresholds)
    # A refit's note of the model it replaced (expert/store.py, REFIT_NOTICE) describes that save, not this model.
    kept = [warning for warning in model.warnings if warning not in present and not warning.startswith(REFIT_NOTICE)]
    return fit_warnings(len(scores), scores, thresholds) + kept
