"""The drop checks: how far a suite's (or a hold-out slice's) mean score falls below the hold-out's.

Each drop is estimated with an interval that resamples what was sampled (tunegate/evaluation/outcomes.py
reads it: passed when the upper bound is within the limit, failed when harm is shown):

- a **perturbation** suite holds variants of hold-out items (its ids are the source items'):
  the drop is paired, each variant against its own source item, and the bootstrap resamples
  source items with all their variants (one cluster per source item). The design effect (the
  variance of the suite's mean under cluster resampling over that under resampling variants
  as if independent) is reported beside it;
- the **shifted** suite is a sample of its own: the two means are resampled apart;
- a **slice** is part of the hold-out: each resample of the hold-out gives both means.

Pure (numpy).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from tunegate.core.params import GateParams
from tunegate.evaluation.checks import Boot, Check, bounded_check
from tunegate.evaluation.evidence import SuiteOutcome
from tunegate.evaluation.metrics import Estimate
from tunegate.evaluation.outcomes import Bounded


@dataclass(frozen=True)
class Drop:
    estimate: Estimate
    n: int
    """Items the interval resampled (source items for a perturbation suite)."""
    design_effect: float | None = None


def _interval(value: float, draws: np.ndarray, alpha: float) -> Estimate:
    draws = draws[np.isfinite(draws)]
    if not len(draws):
        return Estimate(value, math.nan, math.nan)
    lo, hi = np.percentile(draws, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return Estimate(value, float(lo), float(hi))


def paired_drop(hold: SuiteOutcome, suite: SuiteOutcome, boot: Boot) -> Drop | None:
    """A perturbation suite's drop, variant against source item, clusters resampled; None when
    its items do not name hold-out items (then it is judged as an independent sample)."""
    if hold.ids is None or suite.ids is None:
        return None
    source = dict(zip(hold.ids, hold.candidate.values, strict=True))
    if not all(i in source for i in suite.ids):
        return None
    clusters = sorted(set(suite.ids))
    index = {c: k for k, c in enumerate(clusters)}
    member = np.array([index[i] for i in suite.ids])
    scores = np.asarray(suite.candidate.values, float)
    diffs = np.array([source[i] for i in suite.ids]) - scores
    rng = np.random.default_rng(boot.seed)
    k = len(clusters)
    sums, counts = np.bincount(member, diffs, k), np.bincount(member, minlength=k).astype(float)
    score_sums = np.bincount(member, scores, k)
    picks = rng.integers(0, k, size=(boot.resamples, k))
    drops = sums[picks].sum(axis=1) / counts[picks].sum(axis=1)
    cluster_means = score_sums[picks].sum(axis=1) / counts[picks].sum(axis=1)
    rows = rng.integers(0, len(scores), size=(boot.resamples, len(scores)))
    naive = scores[rows].mean(axis=1)
    effect = float(cluster_means.var() / naive.var()) if naive.var() > 0 else None
    return Drop(_interval(float(diffs.mean()), drops, boot.alpha), k, effect)


def independent_drop(hold: SuiteOutcome, suite: SuiteOutcome, boot: Boot) -> Drop:
    """The shifted suite's drop: the hold-out and the suite resampled apart."""
    a, b = np.asarray(hold.candidate.values, float), np.asarray(suite.candidate.values, float)
    rng = np.random.default_rng(boot.seed)
    ia = rng.integers(0, len(a), size=(boot.resamples, len(a)))
    ib = rng.integers(0, len(b), size=(boot.resamples, len(b)))
    draws = a[ia].mean(axis=1) - b[ib].mean(axis=1)
    return Drop(_interval(float(a.mean() - b.mean()), draws, boot.alpha), len(b))


def slice_drop(values: np.ndarray, idx: Sequence[int], boot: Boot) -> Drop:
    """A hold-out slice's drop from the whole hold-out, both from the same resample."""
    mask = np.zeros(len(values), bool)
    mask[np.asarray(idx, dtype=np.int64)] = True
    rows = np.random.default_rng(boot.seed).integers(0, len(values), size=(boot.resamples, len(values)))
    v, m = values[rows], mask[rows]
    with np.errstate(invalid="ignore", divide="ignore"):
        draws = v.mean(axis=1) - (v * m).sum(axis=1) / m.sum(axis=1)
    return Drop(_interval(float(values.mean() - values[mask].mean()), draws, boot.alpha), int(mask.sum()))


def drop_check(name: str, metric: str, drop: Drop, limit: float, alpha: float, what: str) -> Check:
    est = drop.estimate
    bound = Bounded(est.value, est.lo, est.hi, limit, "below", alpha)
    harm = f"{what}: the drop is shown above the limit"
    unit = "source items" if drop.design_effect is not None else "items"
    return bounded_check(name, f"{metric} drop from hold-out", bound, drop.n, harm, unit=unit)


def drop_checks(
    suites: Sequence[SuiteOutcome], hold: SuiteOutcome, gate: GateParams, boot: Boot
) -> list[Check]:
    """Shifted and perturbation suites: the drop from the hold-out, per suite's limit."""
    out = []
    for suite in (s for s in suites if s.kind != "holdout"):
        limit = gate.max_shifted_drop if suite.kind == "shifted" else gate.max_perturbation_drop
        limit = gate.suite_max_drops.get(suite.name, limit)
        if not suite.rows:
            empty = Check(f"{suite.name}.drop", f"{suite.metric} drop", math.nan, None, f"<= {limit}", False)
            empty.reason = "suite is empty"
            out.append(empty)
            continue
        paired = paired_drop(hold, suite, boot) if suite.kind == "perturbation" else None
        drop = paired or independent_drop(hold, suite, boot)
        what = f"{suite.metric} {np.mean(suite.candidate.values):.3f} on {suite.rows} rows"
        check = drop_check(f"{suite.name}.drop", suite.metric, drop, limit, gate.alpha, what)
        if drop.design_effect is not None:
            check.test = (
                f"paired with source items, {drop.n} clusters of {suite.rows} variants resampled "
                f"(design effect {drop.design_effect:.2f})"
            )
        out.append(check)
    return out


def slice_checks(
    hold: SuiteOutcome, slices: dict[str, Sequence[int]], gate: GateParams, boot: Boot
) -> tuple[list[Check], list[str]]:
    """Each hold-out slice's drop from the whole hold-out; small slices are noted, not judged."""
    checks, notes = [], []
    values = np.asarray(hold.candidate.values, dtype=float)
    for name, idx in sorted(slices.items()):
        if len(idx) < gate.min_slice_rows:
            notes.append(
                f"slice {name}: {len(idx)} rows, too few to judge (min_slice_rows {gate.min_slice_rows})"
            )
            continue
        drop = slice_drop(values, idx, boot)
        what = f"{hold.metric} {values[np.asarray(idx, dtype=np.int64)].mean():.3f} on {len(idx)} rows"
        limit = gate.max_slice_drop
        checks.append(drop_check(f"slice.{name}.drop", hold.metric, drop, limit, gate.alpha, what))
    return checks, notes
