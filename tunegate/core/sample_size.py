"""Sample sizes for a paired comparison with production: what n items can show at a margin.

For a paired A/B against production on n items where the two models answer a share r of
the items differently (the disagreement rate), the difference has a standard error of
about sqrt(r / n). Non-inferiority at margin m is shown with power 1 - beta for a candidate
equal to production when n >= (z_(1-alpha) + z_(1-beta))^2 r / m^2; at n items the smallest
margin it can show (the minimum detectable difference) is (z_(1-alpha) + z_(1-beta)) sqrt(r / n).

In the kernel because two stages ask before spending: `prepare` warns when its hold-out
is too small, the gate and `tunegate plan` print the table. Pure (scipy).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from scipy import stats as sps

POWER = 0.8
"""The power the items needed are sized for."""
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

    def sentence(self, disagreement: float) -> str:
        """The row as one line for a log or a gate note."""
        needed = "no number of items" if self.needed is None else f"about {self.needed} items"
        verdict = "enough" if self.enough else "not enough: expect not enough evidence against production"
        return (
            f"{self.suite} has {self.items} items; against a production release that answers "
            f"{disagreement:.0%} of them differently, they show non-inferiority down to "
            f"{self.detectable:.3f} at power {POWER:g}, and the {self.metric} margin {self.margin:g} "
            f"needs {needed} ({verdict}; `tunegate plan`)"
        )


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
