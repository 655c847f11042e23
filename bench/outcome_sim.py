"""The gate's three outcomes, simulated: how often the hold-out A/B against production is
approved, undecided (not enough evidence) or rejected, by suite size, disagreement rate and
the candidate's true difference. Used by ``bench/gate_power.py --part sim`` (0/1 scores,
classification) and ``--part continuous`` (per-item scores that mostly tie, generation).

Each replicate runs the gate's own code for the check (evaluation/policy.py ``ab_checks``,
then ``finish``), so what is measured is what decides a release.
"""

from __future__ import annotations

import json

import numpy as np

from evaluation.checks import Boot, finish
from evaluation.evidence import Scores, SuiteOutcome
from evaluation.plan import items_needed
from evaluation.policy import ab_checks
from tunegate.params import GateParams

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


def paired_tied(rng: np.random.Generator, n: int, delta: float, disagree: float):
    """Per-item scores that tie on all but a share `disagree` of items (two generation models
    writing the same answer), whose differences average `delta` overall (not clipped to [0, 1]:
    the paired test sees only the differences, and clipping would shrink the planted delta)."""
    base = rng.uniform(0.4, 0.9, n)
    differs = rng.random(n) < disagree
    return base + np.where(differs, rng.normal(delta / disagree, 0.25, n), 0.0), base


def outcome(cand: np.ndarray, base: np.ndarray, gate: GateParams) -> str:
    hold = SuiteOutcome("holdout", "holdout", None, Scores(tuple(cand)), Scores(tuple(base)))
    (check,) = finish(ab_checks([hold], hold, [], gate, "production", False, Boot.of(gate, 0)), gate)
    return check.outcome


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
                if scores == "binary" and abs(delta) > rate:
                    print(f"skipped: n {n}, a {delta:+.2f} difference needs more than {rate:.0%} discordant")
                    continue
                counts = {"passed": 0, "undecided": 0, "failed": 0}
                for _ in range(replicates):
                    counts[outcome(*draw(rng, n, delta, rate), gate)] += 1
                row = {
                    "scores": scores, "n": n, "disagreement": rate, "margin": margin, "case": label,
                    "true_delta": round(delta, 4),
                    "approved": round(counts["passed"] / replicates, 4),
                    "not_enough_evidence": round(counts["undecided"] / replicates, 4),
                    "rejected": round(counts["failed"] / replicates, 4),
                    "items_needed": items_needed(margin, rate, alpha) if scores == "binary" else None,
                    "replicates": replicates,
                }  # fmt: skip
                rows.append(row)
                print(json.dumps(row), flush=True)
    return rows


def markdown(rows: list[dict], title: str) -> list[str]:
    out = [
        "", f"## {title}", "",
        "| n | disagreement | case | true delta | approved | not enough evidence | rejected "
        "| items needed (power 0.8) |",
        "|---|---|---|---|---|---|---|---|",
    ]  # fmt: skip
    for r in rows:
        needed = "-" if r.get("items_needed") is None else str(r["items_needed"])
        out.append(
            f"| {r['n']} | {r['disagreement']:.0%} | {r['case']} | {r['true_delta']:+.3f} "
            f"| {r['approved']:.3f} | {r['not_enough_evidence']:.3f} | {r['rejected']:.3f} | {needed} |"
        )
    return out
