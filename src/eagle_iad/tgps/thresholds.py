"""The label-free TGPS threshold (docs/METHOD.md §2): tau and s_max from normal training images alone.

The rules here turn one score per training image into tau. Those scores are the expert's
leave-own-out scores (:mod:`eagle_iad.expert.leave_own_out`), which estimate what a new normal
image would score; a rule never sees a labelled anomaly.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from eagle_iad.choices import DEFAULT_RULE as DEFAULT_RULE
from eagle_iad.errors import ConfigError
from eagle_iad.ranges import Range
from eagle_iad.registry import Registry

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


#: A rule's function: ``rule(scores, **params) -> tau`` over the finite leave-own-out scores.
RuleFunction = Callable[..., float]


@dataclass(frozen=True)
class RuleParam:
    """A threshold rule's parameter: what the ``eagle fit`` flag, the service option and the form show.

    ``default`` ``None`` means the rule needs the value given (``fixed``). Rules that share a
    parameter (``k`` of ``ksigma`` and ``mad``) must give it the same default and type.
    """

    name: str
    default: float | None
    help: str
    #: The values that can give a usable threshold, checked when the fit options are parsed (before
    #: any work) and again when a rule runs; the help text and the OpenAPI schema state it.
    range: Range | None = None


@dataclass(frozen=True)
class ThresholdRule:
    name: str
    function: RuleFunction
    params: tuple[RuleParam, ...] = ()
    #: False for a rule that says nothing about maps (``fixed``): the map threshold then uses the default rule.
    for_maps: bool = True


#: Every threshold rule by name; :func:`threshold_rule` fills it.
THRESHOLD_RULES: Registry[ThresholdRule] = Registry("threshold rule")


def threshold_rule(name: str, *params: RuleParam, for_maps: bool = True) -> Callable[[RuleFunction], RuleFunction]:
    """Register ``function(scores, **params) -> tau`` as rule ``name``.

    How to add one, in the package or from outside it: docs/ARCHITECTURE.md, "Adding a threshold rule".
    """

    def decorate(function: RuleFunction) -> RuleFunction:
        for param in params:
            other = rule_params().get(param.name)
            if other is not None and other.default != param.default:
                raise ConfigError(
                    f"threshold rule {name!r}: parameter {param.name!r} defaults to {param.default}, but another "
                    f"rule gives it {other.default}"
                )
        THRESHOLD_RULES.add(name, ThresholdRule(name, function, tuple(params), for_maps))
        return function

    return decorate


def rule_params() -> dict[str, RuleParam]:
    """Every registered rule's parameters by name (a shared one once), in registration order."""
    found: dict[str, RuleParam] = {}
    for rule in THRESHOLD_RULES.names():
        for param in THRESHOLD_RULES.get(rule).params:
            found.setdefault(param.name, param)
    return found


def rules_using(param: str) -> tuple[str, ...]:
    """The rules that read ``param`` (the CLI help and the service schema say which)."""
    return tuple(r for r in THRESHOLD_RULES.names() if any(p.name == param for p in THRESHOLD_RULES.get(r).params))


def check_rule_params(rule: str, given: Iterable[str], spell: Callable[[str], str] = str) -> None:
    """Refuse a parameter the user gave that belongs to another rule than ``rule``.

    Why: ``--rule ksigma --q 0.5`` used to fit and save a model with ksigma's k, the q silently
    dropped, so the user believed they had tuned the threshold. Only names given count (a rule's
    default is no one's choice); an unknown name is left to the caller's own message. ``spell``
    writes a name as the user wrote it (``--q`` on the command line, ``q`` in a service body).
    """
    own = {p.name for p in THRESHOLD_RULES.get(rule).params}
    for name in given:
        owners = rules_using(name)
        if owners and name not in own:
            others = " (or " + ", ".join(repr(r) for r in owners[1:]) + ")" if len(owners) > 1 else ""
            raise ConfigError(f"{spell(name)} is an option of rule {owners[0]!r}{others}, not of {rule!r}")


def compute_thresholds(scores: np.ndarray, rule: str = DEFAULT_RULE, **params: float | None) -> Thresholds:
    """Apply a threshold rule to the leave-own-out training scores.

    ``params`` may hold every rule's parameters (the fit options carry them all); the rule reads its
    own, with its defaults for those not given, and records them with tau. A name no rule knows is
    an error, so a typo is not silently ignored.
    """
    spec = THRESHOLD_RULES.get(rule)
    unknown = set(params) - set(rule_params())
    if unknown:
        raise ConfigError(f"unknown threshold rule parameters {sorted(unknown)}; known: {', '.join(rule_params())}")
    data = np.asarray(scores, dtype=np.float64)
    data = data[np.isfinite(data)]
    if data.size == 0:
        raise ConfigError("no finite training scores to set a threshold from")
    own = {p.name: params[p.name] if params.get(p.name) is not None else p.default for p in spec.params}
    for param in spec.params:
        if param.range is not None and own[param.name] is not None:
            param.range.check(f"{rule} {param.name}", own[param.name])
    tau = float(spec.function(data, **own))
    if not math.isfinite(tau):
        given = ", ".join(f"{name} {value:g}" for name, value in own.items() if value is not None)
        raise ConfigError(
            f"threshold rule {rule!r}{f' with {given}' if given else ''} gave a non-finite threshold ({tau}) from "
            f"{data.size} finite training scores: the rule or its parameters are the likely cause; choose another "
            "value or rule"
        )
    recorded = {name: float(value) for name, value in own.items() if value is not None}
    return Thresholds(rule=rule, tau=tau, s_max=float(data.max()), params=recorded)


#: k < 0 would put tau below the centre of the normal scores (most normals "anomalous"); above 100
#: no normal variation could ever reach it.
_K = RuleParam("k", 3.0, "k for ksigma and mad: how many standard deviations above the centre", Range(0, 100))
_PROBABILITY = Range(0, 1, low_open=True, high_open=True)


@threshold_rule("ksigma", _K)
def _ksigma(data: np.ndarray, k: float) -> float:
    """Mean + k * population std."""
    return float(data.mean() + k * data.std())


@threshold_rule("mad", _K)
def _mad(data: np.ndarray, k: float) -> float:
    """Median + k * 1.4826 * MAD (robust to a few outlying training scores)."""
    median = float(np.median(data))
    return median + k * MAD_SCALE * float(np.median(np.abs(data - median)))


@threshold_rule("quantile", RuleParam("q", 0.99, "q for the quantile rule", _PROBABILITY))
def _quantile(data: np.ndarray, q: float) -> float:
    """The q-quantile (linear interpolation)."""
    return float(np.quantile(data, q))


@threshold_rule("evt", RuleParam("p", 0.99, "p for the evt rule", _PROBABILITY))
def _evt(data: np.ndarray, p: float) -> float:
    """The p-quantile of a generalised extreme value distribution fitted to the scores (per-image maxima)."""
    if data.size < 3 or float(data.std()) == 0.0:
        raise ConfigError("evt needs at least 3 distinct training scores")
    from scipy.stats import genextreme

    shape, loc, scale = genextreme.fit(data)
    tau = float(genextreme.ppf(p, shape, loc=loc, scale=scale))
    if not math.isfinite(tau):
        raise ConfigError("evt fit did not converge to a finite quantile; use another rule")
    return tau


@threshold_rule(
    "fixed",
    # Scores are distances (>= 0), so a threshold of 0 or less calls every image anomalous.
    RuleParam("value", None, "the decision threshold the fixed rule sets", Range(0, None, low_open=True)),
    for_maps=False,
)
def _fixed(data: np.ndarray, value: float | None) -> float:
    """A threshold set by hand: ``value``."""
    if value is None or not math.isfinite(value):
        raise ConfigError("rule 'fixed' needs a finite threshold value")
    return float(value)


#: The built-in rule names, in order (plugins add to :data:`THRESHOLD_RULES`, not to this).
RULES: tuple[str, ...] = THRESHOLD_RULES.names()


#: How many standard deviations of the normal training scores count as "close to the threshold".
NEAR_SPREADS = 1.0


def near_margin(train_scores: np.ndarray) -> float | None:
    """The margin around tau within which a verdict deserves a second look, on either side.

    Why: a score just under tau is as doubtful as one just over it, and a normal scoring far below tau is
    not doubtful at all; the console once cautioned on every card and on neither of those. One standard
    deviation of the training scores (the unit the default ``ksigma`` rule measures tau in) is how far a
    normal part's score typically moves, so a score closer to tau than that could have fallen either
    side. ``None`` without at least two finite training scores (an exported model keeps none).
    """
    finite = np.asarray(train_scores, dtype=np.float64)
    finite = finite[np.isfinite(finite)]
    if finite.size < 2:
        return None
    spread = float(finite.std())
    return NEAR_SPREADS * spread if spread > 0 else None


def is_near(score: float | None, tau: float | None, margin: float | None) -> bool | None:
    """``|score - tau| < margin``: close enough to the threshold for a second look; ``None`` when unknown."""
    if score is None or tau is None or margin is None or not math.isfinite(score):
        return None
    return abs(score - tau) < margin
