"""The gate's comparison with the classical reference (evaluation/classical.py): one check family.

On every suite the candidate and the TF-IDF + logistic regression reference answered the
same items, so the comparison is paired (McNemar-type, evaluation/stats.py), with the
accuracy delta's interval. ``gate.vs_classical`` decides what it does:

- ``report`` (default): each suite's delta, interval and p-value go into the report's
  notes; nothing is blocked;
- ``non_inferior``: each suite is a check, failing when the candidate is significantly
  worse than the reference by more than ``gate.margin`` (Holm across the suites, a family
  of its own, apart from the A/B against the baseline).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from evaluation.policy import Check, ab_check, reference_family
from evaluation.stats import paired_accuracy
from tunegate.params import GateParams


def classical_checks(
    records: dict[str, Sequence[dict[str, Any]]], gate: GateParams
) -> tuple[list[Check], list[str]]:
    """(checks, notes) of the candidate against the classical reference on every suite."""
    judged = {name: recs for name, recs in records.items() if recs and all("classical" in r for r in recs)}
    if not judged:
        return [], ["no classical reference in the evidence (evaluated by an older tunegate)"]
    margin = gate.margin
    threshold = f"not significantly < -{margin}" if margin else "not significantly < 0"
    found: list[Check] = []
    for name, recs in judged.items():
        cand = [r["candidate"] == r["gold"] for r in recs]
        ref = [r["classical"] == r["gold"] for r in recs]
        result = paired_accuracy(cand, ref, question="no_regression", margin=margin, alpha=gate.alpha)
        found.append(
            ab_check(f"{name}.ab_vs_classical", "accuracy delta", "no_regression", result, threshold)
        )
    return reference_family(
        found,
        gate,
        judged=gate.vs_classical == "non_inferior",
        who="the classical reference",
        label="classical reference",
        metric="accuracy",
        key="vs_classical",
    )
