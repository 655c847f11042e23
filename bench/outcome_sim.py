"""The gate's three outcomes, simulated: how often the hold-out A/B against production is
approved, undecided (not enough evidence) or rejected, by suite size, disagreement rate and
the candidate's true difference. Used by ``bench/gate_power.py --part sim`` (0/1 scores,
classification) and ``--part continuous`` (per-item scores that mostly tie, generation).

Each replicate runs the gate's own code for the check (tunegate/evaluation/policy.py ``ab_checks``,
then ``finish``), so what is measured is what decides a release.
"""

from __future__ import annotations

import json

import numpy as np
from scipy import stats as sps

from tunegate.core.params import GateParams
from tunegate.evaluation.checks import Boot, Check, finish
from tunegate.evaluation.evidence import Scores, SuiteOutcome
from tunegate.evaluation.plan import items_needed
from tunegate.evaluation.policy import ab_checks

SIZES = (134, 168, 450, 1000)
"""The embedded hold-outs (tickets 134, intents 168), then larger suites."""
RATES = (0.05, 0.1, 0.2)
CASES = (("2x the margin worse", -2.0), ("exactly at the margin", -1.0), ("equivalent", 0.0))


def paired_binary(rng: np.random.Generator, n: int, delta: float, disagree: float, base_acc: float = 0.85):
    """Per-item 0/1 scores (candidate, production): a share `disagree` of items discordant,
    the candidate's accuracy `delta` off production's."""
    only_cand, only_base = (disagree + delta) / 2, (disagree - delta) / 2
    both = base_acc - only_base
    kinds = rng.choice(4, size=n, p=[both, only_cand, only_base, 1 - both - only_cand - only_base])
    return np.isin(kinds, (0, 1)).astype(float), np.isin(kinds, (0, 2)).astype(float)


LOSS, GAIN = 0.75, 0.75
"""On a differing item the candidate loses about 75% of production's score, or gains about
75% of what production left: production scores PRODUCTION (mean 0.8), so a loss costs 0.6
and a gain brings 0.15 on average, and no score leaves [0, 1]."""
PRODUCTION = (0.6, 1.0)
"""The range production's per-item scores are drawn from, uniformly."""
MEAN = sum(PRODUCTION) / 2


def loss_share(per_item: float) -> float:
    """The share of differing items that lose, so that differing items average `per_item`."""
    return (GAIN * (1 - MEAN) - per_item) / (LOSS * MEAN + GAIN * (1 - MEAN))


def paired_tied(rng: np.random.Generator, n: int, delta: float, disagree: float):
    """Per-item scores in [0, 1] that tie on all but a share `disagree` of items (two
    generation models writing the same answer), whose differences average `delta` overall:
    a differing item is a large loss or a smaller gain (LOSS, GAIN), in the proportion that
    plants `delta` exactly in expectation. Skewed like real field F1 differences."""
    base = rng.uniform(*PRODUCTION, n)
    differs = rng.random(n) < disagree
    loses = rng.random(n) < loss_share(delta / disagree)
    s = rng.uniform(0.75, 1.25, n)  # each item's share around the planted one (at most 0.94)
    cand = np.where(loses, base * (1 - LOSS * s), base + (1 - base) * GAIN * s)
    return np.where(differs, cand, base), base


def feasible(delta: float, disagree: float) -> bool:
    """paired_tied can plant `delta`: the share of losing items lies in [0, 1]."""
    return 0.0 <= loss_share(delta / disagree) <= 1.0


def judged(cand: np.ndarray, base: np.ndarray, gate: GateParams) -> Check:
    hold = SuiteOutcome("holdout", "holdout", None, Scores(tuple(cand)), Scores(tuple(base)))
    (check,) = finish(ab_checks([hold], hold, [], gate, "production", False, Boot.of(gate, 0)), gate)
    return check


def t_approves(cand: np.ndarray, base: np.ndarray, alpha: float, margin: float) -> bool:
    """The named baseline for scores that mostly tie: the gate's test before betting bounds,
    Student's t lower bound of the mean difference above -margin."""
    d = cand - base
    n = len(d)
    return bool(d.mean() - sps.t.ppf(1 - alpha, n - 1) * d.std(ddof=1) / np.sqrt(n) > -margin)


def simulate(scores: str, replicates: int, alpha: float, margin: float, seed: int) -> list[dict]:
    """One row per (size, disagreement, case): shares approved / undecided / rejected."""
    rng = np.random.default_rng(seed)
    gate = GateParams(alpha=alpha, bootstrap_resamples=100, margins={"accuracy": margin})
    draw = paired_binary if scores == "binary" else paired_tied
    rows = []
    for n in SIZES:
        for rate in RATES:
            for label, times in CASES:
                delta = times * margin
                plantable = abs(delta) <= rate if scores == "binary" else feasible(delta, rate)
                if not plantable:
                    print(f"skipped: n {n}, a {delta:+.2f} difference needs more than {rate:.0%} discordant")
                    continue
                counts = {"passed": 0, "undecided": 0, "failed": 0}
                by_t, asked = 0, []
                for _ in range(replicates):
                    cand, base = draw(rng, n, delta, rate)
                    check = judged(cand, base, gate)
                    counts[check.outcome] += 1
                    if check.undecided and check.needed is not None:
                        asked.append(check.needed)
                    by_t += scores == "tied" and t_approves(cand, base, alpha, margin)
                row = {
                    "scores": scores, "n": n, "disagreement": rate, "margin": margin, "case": label,
                    "true_delta": round(delta, 4),
                    "approved": round(counts["passed"] / replicates, 4),
                    "not_enough_evidence": round(counts["undecided"] / replicates, 4),
                    "rejected": round(counts["failed"] / replicates, 4),
                    "items_needed": items_needed(margin, rate, alpha) if scores == "binary" else None,
                    "median_items_asked": int(np.median(asked)) if asked else None,
                    "approved_by_t": round(by_t / replicates, 4) if scores == "tied" else None,
                    "replicates": replicates,
                }  # fmt: skip
                rows.append(row)
                print(json.dumps(row), flush=True)
    return rows


def markdown(rows: list[dict], title: str) -> list[str]:
    """The rows as a table; scores that mostly tie add the baseline: Student's t (the test before)."""
    with_t = any(r.get("approved_by_t") is not None for r in rows)
    out = [
        "", f"## {title}", "",
        "| n | disagreement | case | true delta | approved | not enough evidence | rejected "
        "| items needed (power 0.8) | median items the gate asked for |"
        + (" approved by Student's t (before) |" if with_t else ""),
        "|---|---|---|---|---|---|---|---|---|" + ("---|" if with_t else ""),
    ]  # fmt: skip
    for r in rows:
        needed = "-" if r.get("items_needed") is None else str(r["items_needed"])
        asked = "-" if r.get("median_items_asked") is None else str(r["median_items_asked"])
        line = (
            f"| {r['n']} | {r['disagreement']:.0%} | {r['case']} | {r['true_delta']:+.3f} "
            f"| {r['approved']:.3f} | {r['not_enough_evidence']:.3f} | {r['rejected']:.3f} "
            f"| {needed} | {asked} |"
        )
        out.append(line + (f" {r['approved_by_t']:.3f} |" if with_t else ""))
    return out
