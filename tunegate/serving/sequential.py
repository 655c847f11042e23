"""Anytime-valid evidence for the canary judge: confidence sequences that hold at every look.

The judge reads the request log at every tick, as often as an operator or its schedule asks.
A fixed-alpha test repeated at each look gives each look its own chance of a wrong decision
(48 looks at alpha 0.05 roll an identical canary back far more often than 5% of the time).
A confidence sequence is an interval for every number of requests t that covers the true
value at all t at once with probability at least 1 - alpha, so the judge may stop at any
look, for any reason, and its error stays at most alpha.

Which: Robbins' normal-mixture boundary in the asymptotic form of Waudby-Smith, Arbour,
Sinha, Kennedy and Ramdas ("Time-uniform central limit theory and asymptotic confidence
sequences", Annals of Statistics, 2024): for the (weighted) mean of t observations with
variance estimate s^2, the radius

    sqrt( 2 (t s^2 rho^2 + 1) / (t^2 rho^2) * log( sqrt(t s^2 rho^2 + 1) / alpha ) ),

rho chosen to be tightest at t* requests. It needs only a mean and a variance, so one form
serves every figure the judge reads (error, invalid and abstention rates, the share of slow
answers, shadow agreement, live quality), two releases are compared by a union bound over
their two sequences, and several figures share alpha by Bonferroni. Rates get a variance
floor (a Jeffreys-smoothed p(1 - p)), so no run of zero errors makes an interval of no width.

Why not a library: confseq (Howard et al.) installs only from source, C++ against Boost with
pybind11 2.6; savvi offers multinomial and linear-regression e-processes and pulls in cvxpy;
sequential-analysis is AGPL-3.0; expectation requires Python 3.12 (this project pins 3.11).

Pure (numpy).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np


@dataclass(frozen=True)
class Sequenced:
    """A mean with its confidence-sequence bounds at this look."""

    mean: float
    lo: float
    hi: float
    n: float
    """Weighted observations."""

    @property
    def width(self) -> float:
        return self.hi - self.lo


def rho_for(t_star: float, alpha: float) -> float:
    """The mixture's precision that makes the boundary tightest near t* observations."""
    a = -2 * math.log(alpha)
    return math.sqrt((a + math.log(a + 1)) / max(t_star, 1.0))


def radius(t: float, variance: float, alpha: float, rho: float) -> float:
    v = t * variance * rho**2
    return math.sqrt(2 * (v + 1) / (t**2 * rho**2) * math.log(math.sqrt(v + 1) / alpha))


def sequence(
    values: Sequence[float],
    weights: Sequence[float] | None,
    alpha: float,
    t_star: float,
    bounded: tuple[float, float] = (0.0, 1.0),
) -> Sequenced:
    """The (weighted) mean of `values` with its two-sided (1 - alpha) confidence-sequence bounds,
    clipped to the values' range. With no observations: the whole range."""
    x = np.asarray(values, float)
    w = np.ones_like(x) if weights is None else np.asarray(weights, float)
    t = float(w.sum())
    if t <= 0:
        return Sequenced(math.nan, bounded[0], bounded[1], 0.0)
    mean = float((w * x).sum() / t)
    variance = float((w * (x - mean) ** 2).sum() / t)
    span = bounded[1] - bounded[0]
    smoothed = ((mean - bounded[0]) / span * t + 0.5) / (t + 1)  # Jeffreys-smoothed share of the range
    variance = max(variance, smoothed * (1 - smoothed) * span**2)
    r = radius(t, variance, alpha, rho_for(t_star, alpha))
    return Sequenced(mean, max(bounded[0], mean - r), min(bounded[1], mean + r), t)


def difference(a: Sequenced, b: Sequenced) -> tuple[float, float, float]:
    """(a - b, lower, upper) from two sequences each at alpha / 2: a union bound at alpha."""
    return a.mean - b.mean, a.lo - b.hi, a.hi - b.lo


Verdict = Literal["shown", "harm", "open"]


def against(lo: float, hi: float, limit: float, better: Literal["above", "below"]) -> Verdict:
    """Shown when the whole interval is on the good side of the limit, harm when it is all beyond."""
    if better == "below":
        return "shown" if hi <= limit else "harm" if lo > limit else "open"
    return "shown" if lo >= limit else "harm" if hi < limit else "open"


def within(lo: float, hi: float, limit: float) -> Verdict:
    """A change either way of at most `limit`: shown inside, harm when all outside."""
    if -limit <= lo and hi <= limit:
        return "shown"
    return "harm" if lo > limit or hi < -limit else "open"
