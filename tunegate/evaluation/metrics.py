"""Classification metrics with seeded bootstrap confidence intervals. numpy only.

Predictions are label strings, or None for an output that is not a valid label; an
invalid prediction counts as wrong everywhere and is also reported on its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

INVALID = "<invalid>"


@dataclass(frozen=True)
class Estimate:
    value: float
    lo: float
    hi: float

    def to_dict(self) -> dict[str, float]:
        return {"value": round(self.value, 4), "ci": [round(self.lo, 4), round(self.hi, 4)]}


@dataclass(frozen=True)
class ClassScores:
    precision: float
    recall: float
    f1: float
    support: int


def encode(
    gold: Sequence[str], pred: Sequence[str | None], labels: Sequence[str]
) -> tuple[np.ndarray, np.ndarray]:
    """Integer codes; invalid or unknown predictions get code len(labels)."""
    index = {label: i for i, label in enumerate(labels)}
    missing = sorted({g for g in gold if g not in index})
    if missing:
        raise ValueError(f"gold labels {missing} are not in the label set")
    g = np.array([index[x] for x in gold], dtype=np.int64)
    p = np.array([index.get(x, len(labels)) if x is not None else len(labels) for x in pred], dtype=np.int64)
    return g, p


def confusion(g: np.ndarray, p: np.ndarray, k: int) -> np.ndarray:
    """(k+1) x (k+1) counts, rows gold, columns predicted; the last column is 'invalid'."""
    return np.bincount(g * (k + 1) + p, minlength=(k + 1) ** 2).reshape(k + 1, k + 1)


def macro_f1(g: np.ndarray, p: np.ndarray, k: int) -> float:
    """Macro-F1 over the labels present in gold (an absent label has no recall to average)."""
    counts = confusion(g, p, k)
    tp = np.diag(counts)[:k].astype(float)
    support = counts[:k].sum(axis=1)  # the invalid column counts against recall
    predicted = counts[:, :k].sum(axis=0)
    denom = support + predicted
    f1 = np.divide(2 * tp, denom, out=np.zeros(k), where=denom > 0)
    present = support > 0
    return float(f1[present].mean()) if present.any() else float("nan")


def accuracy(g: np.ndarray, p: np.ndarray) -> float:
    return float((g == p).mean()) if len(g) else float("nan")


def per_class(g: np.ndarray, p: np.ndarray, labels: Sequence[str]) -> dict[str, ClassScores]:
    k = len(labels)
    counts = confusion(g, p, k)
    out = {}
    for i, label in enumerate(labels):
        tp, support, predicted = counts[i, i], counts[i, :].sum(), counts[:, i].sum()
        prec = tp / predicted if predicted else 0.0
        rec = tp / support if support else float("nan")
        f1 = 2 * prec * rec / (prec + rec) if support and (prec + rec) else 0.0
        out[label] = ClassScores(float(prec), float(rec), float(f1), int(support))
    return out


def bootstrap_indices(n: int, resamples: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, n, size=(resamples, n))


def with_ci(
    statistic, g: np.ndarray, p: np.ndarray, *, resamples: int = 1000, seed: int = 0, alpha: float = 0.05
) -> Estimate:
    """Point value and percentile bootstrap interval of statistic(g, p)."""
    value = statistic(g, p)
    if len(g) == 0:
        return Estimate(float("nan"), float("nan"), float("nan"))
    idx = bootstrap_indices(len(g), resamples, seed)
    draws = np.array([statistic(g[i], p[i]) for i in idx])
    lo, hi = np.nanpercentile(draws, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return Estimate(float(value), float(lo), float(hi))


def token_f1(answer: str, reference: str) -> float:
    """SQuAD-style token overlap F1, for free-form answers."""
    a, r = answer.lower().split(), reference.lower().split()
    if not a or not r:
        return float(a == r)
    common = sum(min(a.count(t), r.count(t)) for t in set(a))
    if common == 0:
        return 0.0
    prec, rec = common / len(a), common / len(r)
    return 2 * prec * rec / (prec + rec)
