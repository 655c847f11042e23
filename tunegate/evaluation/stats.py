"""Paired A/B statistics for the gate: McNemar, Tango's score, betting bounds, the paired bootstrap.

Every comparison is candidate minus baseline on the same items, with a bound ``b``: the
margin for superiority (0: better than the base model), minus the margin for
non-inferiority (not worse than production by more than the margin). Each result carries
both one-sided p-values, so the gate reads three outcomes (tunegate/evaluation/outcomes.py):

- ``p_value``: of the claim (delta > b); shown when it is under alpha, which for
  non-inferiority is the same as the interval's lower bound lying above -margin;
- ``p_harm``: of harm (delta < b); the check fails only when harm is shown.

The interval ``[lo, hi]`` is the two-sided 1 - 2 alpha one: each end is a one-sided
(1 - alpha) bound, the bound the decision reads. McNemar comes from statsmodels (exact
binomial when there are few discordant pairs), the normal tails from scipy, the bounds of a
mean score by betting (tunegate/evaluation/betting.py), Holm / Benjamini-Hochberg from statsmodels.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import stats as sps
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.multitest import multipletests

from tunegate.evaluation import betting

EXACT_BELOW = 25  # discordant pairs below which McNemar uses the exact binomial test
Question = Literal["superiority", "non_inferiority"]


def _bound(question: Question, margin: float) -> float:
    """The value of delta the claim is about: +margin (superiority) or -margin."""
    return margin if question == "superiority" else -margin


@dataclass(frozen=True)
class PairedResult:
    delta: float
    """candidate minus baseline"""
    lo: float
    hi: float
    """one-sided (1 - alpha) lower and upper bounds of delta"""
    p_value: float
    """one-sided p-value of the claim: delta above the bound (better; not worse by the margin)"""
    test: str
    detail: dict
    p_harm: float = 1.0
    """one-sided p-value of harm: delta below the bound"""


def mcnemar_table(a_correct: np.ndarray, b_correct: np.ndarray) -> np.ndarray:
    """2x2 table [[both right, only baseline right], [only candidate right, both wrong]]."""
    a, b = np.asarray(a_correct, bool), np.asarray(b_correct, bool)
    return np.array([[np.sum(a & b), np.sum(~a & b)], [np.sum(a & ~b), np.sum(~a & ~b)]])


def tango(only_cand: int, only_base: int, n: int, delta0: float) -> float:
    """Tango's score statistic (1998) for H0: delta = delta0, a paired difference of proportions
    (candidate minus baseline), with the cell probability estimated under H0 by maximum
    likelihood: sound with few or no discordant pairs, where a Wald interval has no width."""
    a = 2 * n
    b = -only_cand - only_base + (2 * n - only_cand + only_base) * delta0
    c = -only_base * delta0 * (1 - delta0)
    p21 = (np.sqrt(max(b * b - 4 * a * c, 0.0)) - b) / (2 * a)
    var = n * (2 * p21 + delta0 * (1 - delta0))
    diff = only_cand - only_base - n * delta0
    if var <= 0:
        return 0.0 if diff == 0 else float(np.sign(diff) * np.inf)
    return float(diff / np.sqrt(var))


def tango_bounds(only_cand: int, only_base: int, n: int, alpha: float) -> tuple[float, float]:
    """The one-sided (1 - alpha) lower and upper bounds: where Tango's statistic is +/- z."""
    from scipy.optimize import brentq

    z, est, eps = sps.norm.ppf(1 - alpha), (only_cand - only_base) / n, 1e-9
    lo = (
        -1.0
        if est <= -1 + eps
        else brentq(lambda d: tango(only_cand, only_base, n, d) - z, -1 + eps, est - eps / 10)
    )
    hi = (
        1.0
        if est >= 1 - eps
        else brentq(lambda d: tango(only_cand, only_base, n, d) + z, est + eps / 10, 1 - eps)
    )
    return float(lo), float(hi)


def paired_accuracy(
    cand_correct: Sequence[bool],
    base_correct: Sequence[bool],
    *,
    question: Question,
    margin: float = 0.0,
    alpha: float = 0.05,
) -> PairedResult:
    """Accuracy delta with Tango's score bounds and both one-sided p-values.

    Superiority without a margin gets McNemar's test (exact binomial on the discordant pairs
    when they are few, else the continuity-corrected chi-square), one side each. Otherwise
    (non-inferiority, or a margin) Tango's score test against the bound, whose p-value is
    under alpha exactly when the lower bound clears it.
    """
    c, b = np.asarray(cand_correct, bool), np.asarray(base_correct, bool)
    n = len(c)
    if n == 0:
        raise ValueError("no paired items")
    table = mcnemar_table(c, b)
    only_cand, only_base = int(table[1, 0]), int(table[0, 1])
    discordant = only_cand + only_base
    delta = (only_cand - only_base) / n
    lo, hi = tango_bounds(only_cand, only_base, n, alpha)
    bound = _bound(question, margin)
    if question == "superiority" and margin == 0.0:
        exact = discordant < EXACT_BELOW
        res = mcnemar(table, exact=exact, correction=not exact)
        half = (float(res.pvalue) if discordant else 1.0) / 2
        p, harm = (half, 1 - half) if delta > 0 else (1 - half, half) if delta < 0 else (1.0, 1.0)
        test = f"mcnemar ({'exact binomial' if exact else 'chi-square, continuity-corrected'}), one-sided"
    else:
        zs = tango(only_cand, only_base, n, bound)
        p, harm = float(sps.norm.sf(zs)), float(sps.norm.cdf(zs))
        test = "paired difference in proportions (Tango's score test), one-sided against the margin"
    detail = {
        "n": n,
        "only_candidate_right": only_cand,
        "only_baseline_right": only_base,
        "both_right": int(table[0, 0]),
        "both_wrong": int(table[1, 1]),
        "margin": margin,
        "disagreement": discordant / n,
    }
    clip = lambda x: float(min(max(x, 0.0), 1.0))  # noqa: E731
    return PairedResult(float(delta), float(lo), float(hi), clip(p), test, detail, clip(harm))


def paired_bootstrap(
    statistic: Callable[[np.ndarray], float],
    n: int,
    *,
    question: Question,
    margin: float = 0.0,
    resamples: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> PairedResult:
    """Paired bootstrap of a delta statistic(indices) -> candidate metric minus baseline metric.

    The same resampled items score both models. Each one-sided p-value is the share of
    resampled deltas on the wrong side of the bound (with the +1 correction); the bounds are
    the alpha and 1 - alpha percentiles.
    """
    idx = np.random.default_rng(seed).integers(0, n, size=(resamples, n))
    delta = statistic(np.arange(n))
    draws = np.array([statistic(i) for i in idx])
    lo, hi = np.nanpercentile(draws, [100 * alpha, 100 * (1 - alpha)])
    bound = _bound(question, margin)
    p = (1 + np.sum(draws <= bound)) / (1 + resamples)
    harm = (1 + np.sum(draws >= bound)) / (1 + resamples)
    detail = {"n": n, "resamples": resamples, "margin": margin}
    return PairedResult(float(delta), float(lo), float(hi), float(p), "paired bootstrap, one-sided", detail,
                        float(harm))  # fmt: skip


def paired_scores(
    cand: Sequence[float],
    base: Sequence[float],
    *,
    question: Question,
    margin: float = 0.0,
    alpha: float = 0.05,
) -> PairedResult:
    """Mean score delta of continuous per-item scores in [0, 1] (token F1, ROUGE-L, a judge's
    normalised score).

    The bounds are betting bounds of the mean difference (tunegate/evaluation/betting.py): valid at any
    n, where Student's t is liberal for differences that mostly tie and are skewed where they
    do not. Superiority without a margin asks whether the two models are interchangeable:
    Wilcoxon's signed-rank test (zeros split), one side each. Anything with a bound other than
    0 is a question about the mean, which ranks cannot answer: where most items tie (two
    models wrote the same answer), shifting the differences by a margin turns every tie into a
    win and the signed-rank test says p = 1 for a mean drop many times the margin. So
    non-inferiority gets the betting test of the mean against -margin, whose p-value is under
    alpha when the capital bet against the bound reached 1/alpha (the lower bound clears it)."""
    c, b = np.asarray(cand, float), np.asarray(base, float)
    if len(c) != len(b):
        raise ValueError(f"paired scores differ in length: {len(c)} candidate, {len(b)} baseline")
    if len(c) == 0:
        raise ValueError("no paired items")
    for who, v in (("candidate", c), ("baseline", b)):
        if not np.all((v >= 0) & (v <= 1)):
            raise ValueError(
                f"{who} scores must lie in [0, 1] for a paired test: min {v.min():g}, max {v.max():g}"
            )
    d = c - b
    n = len(d)
    mean = float(d.mean())
    lo, hi = betting.mean_bounds(d, -1.0, 1.0, alpha)
    bound = _bound(question, margin)
    if question == "superiority" and margin == 0.0:
        test = "wilcoxon signed-rank, one-sided; betting bounds of the mean"
        if np.any(d):
            p = float(sps.wilcoxon(d, zero_method="zsplit", alternative="greater").pvalue)
            harm = float(sps.wilcoxon(d, zero_method="zsplit", alternative="less").pvalue)
        else:  # no difference at all: neither better nor worse
            p = harm = 1.0
    else:
        test = "betting test of the mean delta against the margin, one-sided; betting bounds (valid at any n)"
        p, harm = betting.mean_p_values(d, bound, -1.0, 1.0, alpha)
    detail = {"n": n, "margin": margin, "sd": float(d.std(ddof=1)) if n > 1 else 0.0}
    return PairedResult(mean, lo, hi, p, test, detail, harm)


def paired_test(
    cand: Sequence[float],
    base: Sequence[float],
    *,
    question: Question,
    margin: float = 0.0,
    alpha: float = 0.05,
) -> PairedResult:
    """The paired test for the scores at hand: 0/1 scores as proportions, others as means."""
    c, b = np.asarray(cand, float), np.asarray(base, float)
    if np.isin(c, (0.0, 1.0)).all() and np.isin(b, (0.0, 1.0)).all():
        return paired_accuracy(c == 1.0, b == 1.0, question=question, margin=margin, alpha=alpha)
    return paired_scores(c, b, question=question, margin=margin, alpha=alpha)


def adjust(p_values: Sequence[float], method: Literal["holm", "fdr_bh", "none"] = "holm") -> list[float]:
    """Adjusted p-values controlling the family-wise error (Holm) or the FDR (Benjamini-Hochberg)."""
    if len(p_values) < 2 or method == "none":  # one test needs no adjustment
        return list(p_values)
    return [float(x) for x in multipletests(list(p_values), method=method)[1]]
