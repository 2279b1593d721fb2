"""The warnings a usable model carries about its threshold, and how they follow the model as it changes.

Split from the fit (expert/fitting.py) because three changes make them: a fit computes them, and a
teach (expert/teach.py) or a threshold change (expert/store.py, ``change_threshold``) moves the
training scores or tau they were computed from. A warning kept from the fit would then say what is no
longer true ("only 8 training images" after ten were taught) or miss what now is (an empty band under
a tau set by hand).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

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

#: A tau that training images score at or above in more than this share is set inside the normal scores: a
#: warning says how many of them it calls anomalous. Why 10%: the default rule (ksigma, k = 3) never flags more
#: (Cantelli's inequality: at most 1 / (1 + k^2) of any set of numbers lies k population standard deviations or
#: more above their mean), so a fit at the defaults never carries it, while a tau typed by hand that calls
#: several normal parts in ten anomalous does (``eagle threshold --tau``, the service, the console).
FLAGGED_SHARE = 0.10

#: A training image is named as an outlier when its leave-own-out score lies more than this many robust
#: standard deviations (1.4826 x the median absolute deviation, at least :data:`SPREAD_FLOOR` of the median) above
#: the median of the other training images' scores. Why a rule on the others: a defect in the set inflates the mean
#: and standard deviation the default tau is made of (tau rose 30% with two defects and two greyscale frames among
#: 14 tire images), but hardly their median and MAD. Why 8: the largest value on the clean reference sets at the
#: defaults is 7.12 (tire, 239 images; elpv mono, 200 cells: 4.71), so neither warns (docs/METHOD.md, "Outlying
#: training images", has every set measured and what 8 does and does not catch).
OUTLIER_K = 8.0

#: The others' spread is taken as at least this share of their median. Why: on a few images the MAD can be a
#: sampling accident (nine of ten clean tire images within 1% of their median put a tenth, 9% above it, 8.6 MADs
#: out); the leave-own-out scores of normal parts vary by more than 2% of their median on every set measured.
SPREAD_FLOOR = 0.02

#: At most this many outlying training images are named in the warning, the highest first; the rest are counted.
OUTLIERS_NAMED = 10


def fit_warnings(
    n_images: int, scores: np.ndarray, thresholds: Thresholds | None = None, names: Sequence[str] | None = None
) -> list[str]:
    """What is degenerate about a usable fit, for the user to read (the CLI prints, the service returns them).

    ``names``, the training images' names in the order of ``scores``, lets the warnings name the images whose
    score is far above the others' (:func:`outlier_warnings`); without them none is named.
    """
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
    if names is not None:
        warnings.extend(outlier_warnings(names, scores))
    if thresholds is not None and scores.size > 0:
        warnings.extend(far_threshold_warnings(scores, thresholds))
    return warnings


def outliers(scores: np.ndarray) -> list[int]:
    """The indices of the training images whose score is an outlier among the others', highest score first.

    Each image is measured against the others only (their median and MAD), so that a defect does not widen the
    spread it is measured by. Below :data:`FEW_IMAGES` the others are too few for a median and MAD to say what
    is typical (the few-images warning covers such a fit): no image is named then.

    Computed in O(n log n), giving exactly (bit for bit) what ``np.median`` of ``np.delete`` per image gives
    (:func:`_outliers_by_deletion`, O(n^2): 14 s on 20,000 images, run twice per teach or threshold change):
    the median of the others is the sorted scores' middle with the image's rank skipped, which takes at most
    three values over all images; for each of them the absolute deviations of all scores are sorted once, and the
    others' MAD is their middle with the image's own deviation skipped (equal deviations are interchangeable).
    """
    values = np.asarray(scores, dtype=np.float64)
    if values.size < FEW_IMAGES:
        return []
    medians = _medians_without(values, np.arange(values.size))
    spreads = np.empty(values.size)
    for median in np.unique(medians):
        group = np.flatnonzero(medians == median)
        deviations = np.abs(values - median)
        spreads[group] = _medians_without(deviations, group)
    spreads = np.maximum(1.4826 * spreads, SPREAD_FLOOR * medians)
    found = np.flatnonzero((spreads > 0) & (values > medians + OUTLIER_K * spreads))
    return sorted((int(index) for index in found), key=lambda index: -values[index])


def _medians_without(values: np.ndarray, left_out: np.ndarray) -> np.ndarray:
    """For each index in ``left_out``, the median of ``values`` without that element, as ``np.median`` computes it
    (the middle one, or the mean of the two middle ones as ``(a + b) / 2``). O(n log n) for the sort."""
    order = np.argsort(values, kind="stable")
    ranked = values[order]
    rank = np.empty(values.size, dtype=np.intp)
    rank[order] = np.arange(values.size)
    skipped = rank[left_out]
    count = values.size - 1  # the others

    def kth(k: int) -> np.ndarray:  # the k-th smallest of the others, per left-out rank
        return ranked[np.where(k < skipped, k, k + 1)]

    if count % 2 == 1:
        return kth(count // 2)
    middle: np.ndarray = (kth(count // 2 - 1) + kth(count // 2)) / 2
    return middle


def _outliers_by_deletion(scores: np.ndarray) -> list[int]:
    """:func:`outliers` by its definition, one ``np.delete`` and two medians per image: O(n^2), kept as the
    reference the fast one is tested against."""
    values = np.asarray(scores, dtype=np.float64)
    if values.size < FEW_IMAGES:
        return []
    found = []
    for index in range(values.size):
        others = np.delete(values, index)
        median = float(np.median(others))
        spread = max(1.4826 * float(np.median(np.abs(others - median))), SPREAD_FLOOR * median)
        if spread > 0 and values[index] > median + OUTLIER_K * spread:
            found.append(index)
    return sorted(found, key=lambda index: -values[index])


def outlier_warnings(names: Sequence[str], scores: np.ndarray) -> list[str]:
    """The warning naming the training images that score far above the others, with what to do about them.

    Why a warning and not a refusal: such an image may be a normal part unlike the rest (a cell of another
    cut, a part at another angle), which the model should keep if the line makes it; only the user can tell
    it from a defect, a frame of another product, or a greyscale or turned frame that slipped into the folder.
    """
    found = outliers(scores)
    if not found:
        return []
    median = float(np.median(scores))
    listed = ", ".join(f"{names[index]} ({float(scores[index]):.4g})" for index in found[:OUTLIERS_NAMED])
    more = len(found) - OUTLIERS_NAMED
    if more > 0:
        listed += f" and {more} more"
    which = "training image scores" if len(found) == 1 else "training images score"
    return [
        f"{len(found)} {which} far above the others (median {median:.4g}; more than {OUTLIER_K:g} robust "
        f"standard deviations above the rest): {listed}. Look at {'it' if len(found) == 1 else 'each'}: a defect, "
        "a frame of another product, or a greyscale or turned frame in the training folder raises tau, so that "
        "defects like it pass; remove such an image and refit. If it shows a normal part, keep it: the model then "
        "accepts parts like it (docs/METHOD.md, 'Outlying training images')"
    ]


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
    flagged = int(np.count_nonzero(scores >= tau))  # anomalous iff score >= tau
    allowed = math.floor(FLAGGED_SHARE * scores.size)
    if flagged > allowed:
        # Above the (allowed + 1)-th highest score, at most ``allowed`` training images score at or above tau.
        bound = float(np.sort(scores)[scores.size - allowed - 1])
        return [
            f"tau ({tau:.4g}) calls {flagged} of the {scores.size} training images anomalous "
            f"({flagged / scores.size:.0%}), each a normal part: it lies inside the normal parts' scores, so expect "
            f"about that share of normal parts flagged; a tau above {bound:.4g} calls at most {FLAGGED_SHARE:.0%} of "
            "them anomalous"
        ]
    if tau > FAR_ABOVE_S_MAX * thresholds.s_max:
        return [
            f"tau ({tau:.4g}) is more than {FAR_ABOVE_S_MAX:g} times the largest training score s_max "
            f"({thresholds.s_max:.4g}): only a part scoring that far above every normal one is flagged, so the "
            "expert likely flags nothing, defects included"
        ]
    return []


def rewarned(
    model: ExpertModel, scores: np.ndarray, thresholds: Thresholds, names: Sequence[str] | None = None
) -> list[str]:
    """``model``'s warnings once its training scores become ``scores`` and its thresholds ``thresholds``.

    ``names`` are the training images' names after the change (a teach adds some); by default the model's.

    The threshold warnings the model carries for its present state are found by computing them again
    from its saved scores and thresholds (the same function on the same numbers gives the same words),
    not by matching their wording, and replaced by those of the new state. The rest describe the fit
    (a stretch of differing aspect ratios, a coreset chosen from a sample) and stay. A model whose
    threshold warnings were worded by an older release keeps them as they are, since they cannot be
    told from the fit's others. A refit's note of what the model it replaced held is the fit version's
    record and is dropped.
    """
    present = fit_warnings(len(model.train_scores), model.train_scores, model.thresholds, model.train_images)
    # A refit's note of the model it replaced (expert/store.py, REFIT_NOTICE) describes that save, not this model.
    kept = [warning for warning in model.warnings if warning not in present and not warning.startswith(REFIT_NOTICE)]
    after = model.train_images if names is None else names
    return fit_warnings(len(scores), scores, thresholds, after) + kept
