"""Confidence bounds for the mean of a bounded score by betting (Waudby-Smith & Ramdas, 2024,
"Estimating means of bounded random variables by betting", JRSS-B; the hedged capital
process with predictable plug-in bets, as in their `confseq` package's `betting_ci`).

Why not Student's t: per-item score differences of two generation models mostly tie (the
same answer, difference 0), and the few that differ are large and skewed. The t-bound of
such a mean is liberal at the suite sizes the gate sees (bench/results/gate_power.md: a
candidate exactly at the margin approved 6% to 10% of the time at alpha 0.05). A betting
bound is valid at every n for any distribution on [0, 1]: nothing asymptotic is assumed.

The test of "mean > m" bets a share ``lam_t`` of its capital on each item in turn,
``K_t(m) = prod_(i<=t) (1 + lam_i (x_i - m))``, with ``lam_i`` chosen from items before i
only. Under the null the capital is a nonnegative supermartingale, so by Ville's inequality
it ever reaches 1/alpha with probability at most alpha: m is rejected when it does. The
lower bound is the smallest m not rejected. The items are bet on in a seeded random order
(a sorted suite would not be exchangeable in its own order); the result is deterministic.

``confseq`` itself is not a dependency: it builds C++ with pybind11 2.6 and CMake at install
time and pulls matplotlib, pandas and pytest into the runtime for the two functions used here.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import brentq

TRUNCATION = 0.9
"""Largest bet against m, as a share of the most that cannot lose all the capital (1/m). The
paper suggests 1/2 to 3/4; any share under 1 keeps the bound valid, and a larger one only
bets harder where the scores barely vary. That is the common case here (two models writing
the same answer): with 3/4, 134 identical answers could not show a 0.03 margin (bound
-0.0301), with 0.9 they do (-0.0256; the exact worst case, one item in 45 scoring 1 lower,
is -0.022). Measured on the simulated grid: bench/results/gate_power.md."""
GRID = 256
SEED = 0


def _bets(x: np.ndarray, alpha: float) -> np.ndarray:
    """Predictable plug-in bets, tuned for a fixed n: sqrt(2 log(1/alpha) / (n var_(t-1))),
    with the running variance regularised by one prior observation of variance 1/4."""
    n = len(x)
    t = np.arange(1, n + 1)
    mean = (0.5 + np.cumsum(x)) / (t + 1)
    var = (0.25 + np.cumsum((x - mean) ** 2)) / (t + 1)
    var_before = np.append(0.25, var[:-1])
    return np.sqrt(2 * np.log(1 / alpha) / (n * var_before))


def _log_capital(x: np.ndarray, bets: np.ndarray, m: np.ndarray) -> np.ndarray:
    """max_t log K_t(m) for each m (columns): the running maximum Ville's inequality allows."""
    lam = np.minimum(bets[:, None], TRUNCATION / np.maximum(m[None, :], 1e-12))
    steps = np.log1p(lam * (x[:, None] - m[None, :]))
    return np.maximum(np.cumsum(steps, axis=0).max(axis=0), 0.0)


def _ordered(x: np.ndarray) -> np.ndarray:
    return np.random.default_rng(SEED).permutation(np.asarray(x, float))


def _lower_bound(x: np.ndarray, bets: np.ndarray, alpha: float) -> float:
    """The one-sided (1 - alpha) lower bound of the mean of `x` (in [0, 1], in betting order)."""
    target = np.log(1 / alpha)
    grid = np.linspace(0.0, float(x.mean()), GRID)
    rejected = _log_capital(x, bets, grid) >= target
    if not rejected[0]:
        return 0.0
    if rejected.all():
        return float(grid[-1])
    first_kept = int(np.argmin(rejected))
    a, b = float(grid[first_kept - 1]), float(grid[first_kept])

    def gap(m: float) -> float:
        return float(_log_capital(x, bets, np.array([m]))[0] - target)

    return float(brentq(gap, a, b, xtol=1e-7)) if gap(a) > 0 > gap(b) else b


def _p_value(x: np.ndarray, bets: np.ndarray, m: float) -> float:
    """p-value of "mean <= m" against "mean > m": 1 / the most capital the bets reached."""
    if m >= 1:
        return 1.0
    if m <= 0:
        return 1.0 if x.max(initial=0.0) <= 0 else 0.0
    return float(min(1.0, np.exp(-_log_capital(x, bets, np.array([m]))[0])))


def _unit(d: np.ndarray, low: float, high: float, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """`d` mapped onto [0, 1] in betting order, and its bets. 1 - x takes the same bets (the
    running variance is the same), so both sides of a bound share them."""
    x = (_ordered(d) - low) / (high - low)
    return x, _bets(x, alpha)


def mean_bounds(d: np.ndarray, low: float, high: float, alpha: float) -> tuple[float, float]:
    """One-sided (1 - alpha) lower and upper bounds of the mean of `d`, whose values lie in
    [low, high] (a score difference: [-1, 1])."""
    x, bets = _unit(d, low, high, alpha)
    lo, hi = _lower_bound(x, bets, alpha), 1.0 - _lower_bound(1.0 - x, bets, alpha)
    return low + lo * (high - low), low + hi * (high - low)


def mean_p_values(d: np.ndarray, bound: float, low: float, high: float, alpha: float) -> tuple[float, float]:
    """p-values of "mean > bound" (the claim) and of "mean < bound" (harm) for `d` in [low, high]."""
    x, bets = _unit(d, low, high, alpha)
    m = (bound - low) / (high - low)
    return _p_value(x, bets, m), _p_value(1.0 - x, bets, 1.0 - m)
