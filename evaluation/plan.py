"""Plan before spending: what the suites can show at the declared margins (`tunegate plan`).

For a paired A/B against production on n items where the two models answer a share r of
the items differently (the disagreement rate), the difference has a standard error of
about sqrt(r / n). Non-inferiority at margin m is shown with power 1 - beta for a candidate
equal to production when n >= (z_(1-alpha) + z_(1-beta))^2 r / m^2; at n items the smallest
margin it can show (the minimum detectable difference) is (z_(1-alpha) + z_(1-beta)) sqrt(r / n).
The same arithmetic as evaluation/outcomes.py ``settle``, here before any evaluation. Pure.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from scipy import stats as sps

from evaluation.outcomes import POWER

DEFAULT_DISAGREEMENT = 0.1
"""The disagreement rate assumed when no earlier gate measured one."""


def _z(alpha: float, power: float) -> float:
    return float(sps.norm.ppf(1 - alpha) + sps.norm.ppf(power))


def items_needed(margin: float, disagreement: float, alpha: float, power: float = POWER) -> int | None:
    """Paired items that show non-inferiority at `margin` for an equivalent candidate; None for margin 0."""
    if margin <= 0:
        return None
    return math.ceil(_z(alpha, power) ** 2 * disagreement / margin**2)


def detectable(n: int, disagreement: float, alpha: float, power: float = POWER) -> float:
    """The smallest margin n paired items show at `power` for an equivalent candidate."""
    return _z(alpha, power) * math.sqrt(disagreement / n) if n else math.inf


@dataclass(frozen=True)
class PlanRow:
    suite: str
    items: int
    metric: str
    margin: float
    detectable: float
    needed: int | None

    @property
    def enough(self) -> bool:
        return self.needed is not None and self.items >= self.needed


def plan(
    sizes: dict[str, int], metric: str, margins: dict[str, float], disagreement: float, alpha: float
) -> list[PlanRow]:
    """One row per suite compared with production: its size, the margin it is judged at, what
    it can detect and the items that would show non-inferiority at power 0.8."""
    return [
        PlanRow(
            suite, n, metric, margins[suite], detectable(n, disagreement, alpha),
            items_needed(margins[suite], disagreement, alpha),
        )
        for suite, n in sizes.items()
    ]  # fmt: skip


def observed_disagreement(gate_record: dict) -> float | None:
    """The disagreement rate an earlier gate measured on its hold-out A/B against production,
    read back from its interval: r = n se^2 for a paired 0/1 difference. None on a first release
    (the base model disagrees with a fine-tune on most items: no guide to the next release)."""
    for check in gate_record.get("checks", []):
        if check.get("name") == "holdout.ab_vs_production" and check.get("ci") and check.get("items"):
            lo, hi = check["ci"]
            level = float(gate_record.get("interval_level", 0.9))
            se = (hi - lo) / (2 * sps.norm.ppf(1 - (1 - level) / 2))
            return max(min(se**2 * check["items"], 1.0), 1e-4)
    return None
