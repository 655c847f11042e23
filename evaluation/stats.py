"""Paired A/B statistics for the gate: McNemar, paired bootstrap, multiple-testing control.

Every comparison is candidate minus baseline on the same items. The gate asks one of
two questions of a difference ``delta`` (see evaluation/policy.py):

- superiority: is delta > margin? One-sided test; passes when p < alpha.
- no regression: is delta < -margin? One-sided test for harm; the check fails when
  p < alpha. An equivalent candidate is then rejected with probability at most alpha.

McNemar comes from statsmodels (exact binomial when there are few discordant pairs),
the normal tail from scipy, and Holm / Benjamini-Hochberg from statsmodels.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import stats as sps
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.multitest import multipletests

EXACT_BELOW = 25  # discordant pairs below which McNemar uses the exact binomial test


@dataclass(frozen=True)
class PairedResult:
    delta: float
    """candidate minus baseline"""
    lo: float
    hi: float
    p_value: float
    """one-sided p-value for the question asked (superiority or harm)"""
    test: str
    detail: dict


def mcnemar_table(a_correct: np.ndarray, b_correct: np.ndarray) -> np.ndarray:
    """2x2 table [[both right, only baseline right], [only candidate right, both wrong]]."""
    a, b = np.asarray(a_correct, bool), np.asarray(b_correct, bool)
    return np.array([[np.sum(a & b), np.sum(~a & b)], [np.sum(a & ~b), np.sum(~a & ~b)]])


def paired_accuracy(
    cand_correct: Sequence[bool],
    base_correct: Sequence[bool],
    *,
    question: Literal["superiority", "no_regression"],
    margin: float = 0.0,
    alpha: float = 0.05,
) -> PairedResult:
    """Accuracy delta with a paired (Wald) interval and a one-sided McNemar-type p-value.

    With margin 0 the p-value is McNemar's (exact binomial on the discordant pairs when
    they are few, else the chi-square approximation), halved for one side. With a
    margin, the discordant-pair normal approximation tests delta against +/-margin.
    """
    c, b = np.asarray(cand_correct, bool), np.asarray(base_correct, bool)
    n = len(c)
    if n == 0:
        raise ValueError("no paired items")
    table = mcnemar_table(c, b)
    only_cand, only_base = int(table[1, 0]), int(table[0, 1])
    discordant = only_cand + only_base
    delta = (only_cand - only_base) / n
    se = np.sqrt(max(discordant - (only_cand - only_base) ** 2 / n, 0.0)) / n
    z = sps.norm.ppf(1 - alpha / 2)
    lo, hi = delta - z * se, delta + z * se
    favourable = delta > 0 if question == "superiority" else delta < 0
    if margin == 0.0:
        exact = discordant < EXACT_BELOW
        res = mcnemar(table, exact=exact, correction=not exact)
        two_sided = float(res.pvalue) if discordant else 1.0
        p = two_sided / 2 if favourable else 1 - two_sided / 2
        test = f"mcnemar ({'exact binomial' if exact else 'chi-square, continuity-corrected'}), one-sided"
    else:
        shifted = delta - margin if question == "superiority" else delta + margin
        if se == 0:
            p = 0.0 if (shifted > 0 if question == "superiority" else shifted < 0) else 1.0
        else:
            zs = shifted / se
            p = float(sps.norm.sf(zs)) if question == "superiority" else float(sps.norm.cdf(zs))
        test = "paired difference in proportions (Wald), one-sided with margin"
    detail = {
        "n": n,
        "only_candidate_right": only_cand,
        "only_baseline_right": only_base,
        "both_right": int(table[0, 0]),
        "both_wrong": int(table[1, 1]),
        "margin": margin,
    }
    return PairedResult(float(delta), float(lo), float(hi), float(min(max(p, 0.0), 1.0)), test, detail)


def paired_bootstrap(
    statistic: Callable[[np.ndarray], float],
    n: int,
    *,
    question: Literal["superiority", "no_regression"],
    margin: float = 0.0,
    resamples: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> PairedResult:
    """Paired bootstrap of a delta statistic(indices) -> candidate metric minus baseline metric.

    The same resampled items score both models. The one-sided p-value is the share of
    resampled deltas on the wrong side of the margin (with the +1 correction).
    """
    idx = np.random.default_rng(seed).integers(0, n, size=(resamples, n))
    delta = statistic(np.arange(n))
    draws = np.array([statistic(i) for i in idx])
    lo, hi = np.nanpercentile(draws, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    if question == "superiority":
        p = (1 + np.sum(draws <= margin)) / (1 + resamples)
    else:
        p = (1 + np.sum(draws >= -margin)) / (1 + resamples)
    return PairedResult(
        float(delta),
        float(lo),
        float(hi),
        float(p),
        "paired bootstrap, one-sided",
        {"n": n, "resamples": resamples, "margin": margin},
    )


def paired_scores(
    cand: Sequence[float],
    base: Sequence[float],
    *,
    question: Literal["superiority", "no_regression"],
    margin: float = 0.0,
    resamples: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> PairedResult:
    """Mean score delta of continuous per-item scores (token F1, ROUGE-L, a judge's score):
    a paired bootstrap interval of the mean difference and a one-sided p-value (scipy).

    Without a margin the null is "the two models are interchangeable": a Wilcoxon
    signed-rank test (zeros split). With a margin the null is about the mean (is the mean
    difference beyond -margin, or above +margin for superiority?), and ranks cannot answer
    it: where most items tie (the two models wrote the same answer, delta 0), shifting the
    differences by the margin turns every tie into a win, and the signed-rank test of the
    shifted differences says p = 1 for a mean drop many times the margin. So a margin gets
    the one-sample t-test of the differences against it (the mean over 100+ items is close to
    normal; the bootstrap interval beside it is about the same mean)."""
    d = np.asarray(cand, float) - np.asarray(base, float)
    if len(d) == 0:
        raise ValueError("no paired items")
    idx = np.random.default_rng(seed).integers(0, len(d), size=(resamples, len(d)))
    lo, hi = np.percentile(d[idx].mean(axis=1), [100 * alpha / 2, 100 * (1 - alpha / 2)])
    side = "greater" if question == "superiority" else "less"
    bound = margin if question == "superiority" else -margin
    if margin:
        test = "one-sample t-test of the mean delta against the margin, one-sided; paired bootstrap interval"
        if np.ptp(d) == 0:  # no spread: the mean is what it is
            better = d[0] > bound if side == "greater" else d[0] < bound
            p = 0.0 if better else 1.0
        else:
            p = float(sps.ttest_1samp(d, bound, alternative=side).pvalue)
    else:
        test = "wilcoxon signed-rank, one-sided; paired bootstrap interval"
        # no difference at all: neither better nor worse
        p = float(sps.wilcoxon(d, zero_method="zsplit", alternative=side).pvalue) if np.any(d) else 1.0
    detail = {"n": len(d), "resamples": resamples, "margin": margin}
    return PairedResult(float(d.mean()), float(lo), float(hi), p, test, detail)


def paired_test(
    cand: Sequence[float],
    base: Sequence[float],
    *,
    question: Literal["superiority", "no_regression"],
    margin: float = 0.0,
    resamples: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> PairedResult:
    """The paired test for the scores at hand: McNemar for 0/1 scores, else Wilcoxon."""
    c, b = np.asarray(cand, float), np.asarray(base, float)
    if np.isin(c, (0.0, 1.0)).all() and np.isin(b, (0.0, 1.0)).all():
        return paired_accuracy(c == 1.0, b == 1.0, question=question, margin=margin, alpha=alpha)
    return paired_scores(c, b, question=question, margin=margin, resamples=resamples, seed=seed, alpha=alpha)


def adjust(p_values: Sequence[float], method: Literal["holm", "fdr_bh", "none"] = "holm") -> list[float]:
    """Adjusted p-values controlling the family-wise error (Holm) or the FDR (Benjamini-Hochberg)."""
    if not p_values or method == "none":
        return list(p_values)
    return [float(x) for x in multipletests(list(p_values), method=method)[1]]
