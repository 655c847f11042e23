"""A gate check and the verdict, and how a check is read from its interval (three outcomes).

``Check`` is one row of the verdict: value, interval (two-sided 1 - 2 alpha, each end a
one-sided bound), threshold, p-values and the outcome (tunegate/evaluation/outcomes.py). The
builders here make a check from an interval (`bounded_check`, `floor_check`,
`rate_check`); `finish` judges harm over every check at once. Pure.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Literal

import numpy as np

from tunegate.core.params import GateParams
from tunegate.evaluation.metrics import with_ci
from tunegate.evaluation.outcomes import (
    Bounded,
    Outcome,
    VerdictOutcome,
    describe,
    interval_alpha,
    settle,
    verdict_outcome,
)
from tunegate.evaluation.stats import adjust


@dataclass
class Check:
    name: str
    metric: str
    value: float
    ci: tuple[float, float] | None
    threshold: str
    passed: bool
    """Shown: the evidence clears the threshold."""
    p_value: float | None = None
    p_adjusted: float | None = None
    reason: str = ""
    test: str = ""
    """The statistical test behind p_value, for A/B checks."""
    undecided: bool = False
    """Not passed, and no harm shown either: not enough evidence."""
    p_harm: float | None = None
    """One-sided p-value of harm (the limit crossed the bad way); None for a check judged on its value."""
    p_harm_adjusted: float | None = None
    harm: str = ""
    """What harm shown means, for the reason when it is."""
    items: int | None = None
    """The items the check was judged on."""
    mdd: float | None = None
    """The smallest distance from the limit these items detect at power 0.8."""
    needed: int | None = None
    """Items that would settle the check at power 0.8 (when not passed)."""
    context: dict[str, float] | None = None
    """A floor's metric for the reference models (base or production, prompting, classical):
    reported beside the check, never judged (tunegate/evaluation/floor_context.py)."""

    @property
    def outcome(self) -> Outcome:
        return "passed" if self.passed else "undecided" if self.undecided else "failed"

    def to_dict(self) -> dict:
        return asdict(self) | {"outcome": self.outcome}


@dataclass
class Verdict:
    baseline_kind: Literal["production", "base"]
    checks: list[Check] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    """What was looked at but not judged (e.g. slices too small to test)."""
    noted: list[Check] = field(default_factory=list)
    """Declared checks this data cannot judge (e.g. out-of-scope recall without out-of-scope
    rows): shown with the reason, neither passed nor failed, never counted as a pass."""

    @property
    def outcome(self) -> VerdictOutcome:
        return verdict_outcome([c.outcome for c in self.checks])

    @property
    def approved(self) -> bool:
        return self.outcome == "approved"

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if c.outcome == "failed"]

    @property
    def undecided(self) -> list[Check]:
        return [c for c in self.checks if c.outcome == "undecided"]

    def summary(self) -> str:
        noted = f" ({len(self.noted)} noted, not judged: {', '.join(c.name for c in self.noted)})"
        noted = noted if self.noted else ""
        n = len(self.checks)
        if self.outcome == "approved":
            return f"approved: all {n} checks passed{noted}"
        if self.outcome == "rejected":
            first = self.failed[0] if self.failed else self.checks[0] if self.checks else None
            why = f"; first: {first.name} ({first.reason})" if first else ""
            return f"rejected: {len(self.failed)} of {n} checks failed{why}{noted}"
        open_ = "; ".join(
            f"{c.name} ({'about ' + str(c.needed) + ' items' if c.needed else 'no size settles it'})"
            for c in self.undecided
        )
        return f"not enough evidence: {len(self.undecided)} of {n} checks undecided: {open_}{noted}"

    def to_dict(self) -> dict:
        return {
            "approved": self.approved,
            "outcome": self.outcome,
            "baseline_kind": self.baseline_kind,
            "checks": [c.to_dict() for c in self.checks],
            "notes": list(self.notes),
            "noted": [c.to_dict() for c in self.noted],
        }


def _finite(*values: float) -> bool:
    return all(isinstance(v, float | int) and math.isfinite(v) for v in values)


def bounded_check(
    name: str,
    metric: str,
    bound: Bounded,
    n: int,
    harm: str,
    distance: float | None = None,
    unit: str = "items",
) -> Check:
    """A check read from its interval (tunegate/evaluation/outcomes.py): passed when the interval shows
    it; otherwise its p-value of harm waits for `finish`, and the items that would settle it
    are sized from its spread, for an estimate `distance` from the limit (default: where it is)."""
    op = ">" if bound.better == "above" else "<="
    check = Check(name, metric, bound.value, (bound.lo, bound.hi), f"{op} {bound.limit:g}", bound.shown)
    if not bound.finite:
        return replace(check, reason="metric is not a number")
    gap = bound.value - bound.limit if distance is None else distance
    plan = settle(bound.se, n, bound.alpha, gap)
    check.p_harm, check.harm, check.items = bound.p_harm, harm, n
    if plan is not None and not check.passed:
        check.mdd, check.needed = plan.mdd, plan.needed
        check.reason = describe(plan, n, unit)
    return check


def floor_check(name: str, metric: str, est, floor: float, n: int, alpha: float) -> Check:
    """A mean score's lower bound against its floor."""
    bound = Bounded(est.value, est.lo, est.hi, floor, "above", alpha)
    check = bounded_check(name, metric, bound, n, f"{metric} is shown under the floor")
    check.threshold = f">= {floor}"
    check.passed = bound.finite and est.lo >= floor
    return check


def finish(checks: list[Check], gate: GateParams) -> list[Check]:
    """Judge harm: the p-values of harm of every check with one, adjusted together (Holm by
    default; an adjustment only makes harm harder to show, never a pass easier). A check not
    passed fails when its adjusted p is under alpha, else it is not enough evidence. Checks
    judged on their value (license, parity, ...) fail when they do not pass. Idempotent."""
    tested = [c for c in checks if c.p_harm is not None]
    for c, pa in zip(tested, adjust([c.p_harm for c in tested], gate.correction), strict=True):
        c.p_harm_adjusted = pa
        if c.passed:
            c.undecided = False
            continue
        c.undecided = pa >= gate.alpha
        if not c.undecided:
            c.reason = f"{c.harm} (p={pa:.3g}, {gate.correction} over {len(tested)} harm tests)"
        elif not c.reason.startswith("not enough evidence"):
            c.reason = describe(None, c.items or 0) + (f": {c.reason}" if c.reason else "")
    return checks


@dataclass(frozen=True)
class Boot:
    """The bootstrap every interval uses: the same resamples and seed for every estimate, at
    the two-sided 1 - 2 alpha level whose ends are the one-sided bounds the checks read."""

    resamples: int
    seed: int
    alpha: float
    """The two-sided interval's alpha (2 x gate.alpha)."""

    @classmethod
    def of(cls, gate: GateParams, seed: int) -> Boot:
        return cls(gate.bootstrap_resamples, seed, interval_alpha(gate.alpha))

    def mean(self, values: Sequence[float] | np.ndarray):
        """The mean score with its percentile interval (accuracy, for 0/1 scores)."""
        v = np.asarray(values, dtype=float)
        return with_ci(lambda a, _: float(np.mean(a)) if len(a) else math.nan, v, v, **vars(self))


def wilson(k: float, n: int, alpha: float) -> tuple[float, float]:
    """Wilson's two-sided 1 - 2 alpha interval of a proportion (each end a one-sided bound)."""
    from statsmodels.stats.proportion import proportion_confint

    lo, hi = proportion_confint(k, n, alpha=interval_alpha(alpha), method="wilson")
    return float(lo), float(hi)


def rate_check(
    name: str, metric: str, k: int, n: int, limit: float, better: Literal["above", "below"], alpha: float,
    harm: str, unit: str = "items",
) -> Check:  # fmt: skip
    """A share of items (k of n) against its floor or ceiling, by Wilson's bounds."""
    lo, hi = wilson(k, n, alpha) if n else (math.nan, math.nan)
    rate = k / n if n else math.nan
    bound = Bounded(rate, lo, hi, limit, better, alpha)
    check = bounded_check(name, metric, bound, n, harm, unit=unit)
    if better == "above":  # a floor is met at equality, like the mean floors
        check.threshold, check.passed = f">= {limit:g}", bound.finite and lo >= limit
    return check
