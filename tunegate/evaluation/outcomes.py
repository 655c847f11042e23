"""Three outcomes of a judged check, read from its interval: shown, harm shown, or not enough evidence.

A release passes a check only on evidence. Every check with an interval is judged against
its limit by the interval's ends, each a one-sided (1 - alpha) confidence bound (the
interval is the two-sided 1 - 2 alpha one, `interval_alpha`):

- **passed**: the whole interval is on the good side of the limit (a floor: the lower
  bound clears it; a ceiling or a drop limit: the upper bound stays under it; an A/B
  against production: the lower bound of candidate minus production is above -margin);
- **failed**: harm is shown, the interval lies beyond the limit. Several harm tests are
  judged at once, so their one-sided p-values are adjusted together (Holm) first;
- **not enough evidence**: neither. The check then says its minimum detectable difference
  at its size and the items that would settle it at power 0.8 (`settle`).

Pure (numpy, scipy, statsmodels through tunegate.evaluation.stats).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from scipy import stats as sps

from tunegate.core.sample_size import POWER

Outcome = Literal["passed", "failed", "undecided"]
"""A check's outcome. "undecided" is shown to people as "not enough evidence"."""
VerdictOutcome = Literal["approved", "rejected", "not_enough_evidence"]


def interval_alpha(alpha: float) -> float:
    """The two-sided interval whose ends are one-sided (1 - alpha) bounds: 1 - 2 alpha."""
    return 2 * alpha


def interval_level(alpha: float) -> str:
    """How a report names that interval, e.g. "90% CI" at alpha 0.05."""
    return f"{100 * (1 - interval_alpha(alpha)):g}% CI"


@dataclass(frozen=True)
class Bounded:
    """An estimate judged against a limit from the good side `better` ("above" for a floor or
    a non-inferiority bound, "below" for a ceiling or a drop limit)."""

    value: float
    lo: float
    hi: float
    limit: float
    better: Literal["above", "below"]
    alpha: float

    @property
    def finite(self) -> bool:
        return all(math.isfinite(x) for x in (self.value, self.lo, self.hi))

    @property
    def shown(self) -> bool:
        """The whole interval on the good side of the limit."""
        if not self.finite:
            return False
        return self.lo > self.limit if self.better == "above" else self.hi <= self.limit

    @property
    def se(self) -> float:
        """The standard error the interval implies (normal approximation of its ends)."""
        z = sps.norm.ppf(1 - self.alpha)
        return max((self.hi - self.lo) / (2 * z), 0.0) if self.finite else math.nan

    @property
    def p_harm(self) -> float:
        """One-sided p-value of "the limit is crossed the bad way", from the same interval."""
        if not self.finite:
            return 1.0
        gap = self.value - self.limit if self.better == "above" else self.limit - self.value
        if self.se == 0:
            return 0.0 if gap < 0 else 1.0
        return float(sps.norm.cdf(gap / self.se))


@dataclass(frozen=True)
class Settle:
    """What would decide an undecided check at power `POWER`."""

    mdd: float
    """The smallest distance from the limit these items detect: (z_(1-alpha) + z_power) * se."""
    needed: int | None
    """Items that would settle it; None when the estimate sits on the limit (no size does)."""


def settle(se: float, n: int, alpha: float, distance: float, power: float = POWER) -> Settle | None:
    """Items needed so that an estimate `distance` from its limit is shown at `power`, with
    the per-item spread this check observed (se at n items). None when not computable."""
    if not (math.isfinite(se) and n > 0 and se > 0):
        return None
    z = sps.norm.ppf(1 - alpha) + sps.norm.ppf(power)
    mdd = float(z * se)
    if not math.isfinite(distance) or abs(distance) < 1e-12:
        return Settle(mdd, None)
    per_item_var = se**2 * n
    return Settle(mdd, max(n + 1, math.ceil(z**2 * per_item_var / distance**2)))


def describe(s: Settle | None, n: int, unit: str = "items") -> str:
    """The sentence an undecided check carries."""
    if s is None:
        return f"not enough evidence at {n} {unit}"
    head = f"not enough evidence at {n} {unit} (detects {s.mdd:.3f} at power {POWER:g})"
    if s.needed is None:
        return head + "; the estimate sits on the limit: no number of items settles it"
    return head + f"; about {s.needed} {unit} would settle it"


def verdict_outcome(outcomes: list[Outcome]) -> VerdictOutcome:
    """Rejected when any check failed, approved when every one passed, else not enough evidence."""
    if "failed" in outcomes or not outcomes:
        return "rejected"
    return "approved" if all(o == "passed" for o in outcomes) else "not_enough_evidence"


VERDICT_WORDS = {"approved": "APPROVED", "rejected": "REJECTED", "not_enough_evidence": "NOT ENOUGH EVIDENCE"}
"""How a verdict is headed in the report, the PR comment and the model card."""
