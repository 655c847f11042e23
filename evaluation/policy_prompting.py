"""The gate's comparison with the prompting reference: one check family (generation).

On every suite where it was evaluated, the base model with ``eval.few_shot`` training
records in its prompt answered the same items as the candidate, so the comparison is
paired: the mean difference of the primary per-item score with a paired bootstrap
interval and a one-sided Wilcoxon signed-rank p-value (evaluation/stats.py), Holm across
the suites as a family of its own. ``gate.vs_prompting`` decides what it does:

- ``report`` (default): each suite's delta, interval and p-value go into the notes;
- ``non_inferior``: each suite is a check, failing when the candidate is significantly
  worse than prompting by more than ``gate.margin``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from evaluation.evidence import PROMPTING
from evaluation.policy import Check, ab_check, reference_family
from evaluation.stats import paired_test
from tunegate.params import GateParams

WHO = PROMPTING


def prompting_checks(
    records: dict[str, Sequence[dict[str, Any]]], gate: GateParams, primary: str, seed: int
) -> tuple[list[Check], list[str]]:
    """(checks, notes) of the candidate against the prompting reference on every suite it answered."""
    judged = {n: rs for n, rs in records.items() if rs and all(WHO in r.get("scores", {}) for r in rs)}
    if not judged:
        return [], ["no prompting reference was evaluated (eval.few_shot is 0)"]
    margin = gate.margin
    threshold = f"not significantly < -{margin}" if margin else "not significantly < 0"
    found: list[Check] = []
    for name, recs in judged.items():
        cand = [r["scores"]["candidate"][primary] for r in recs]
        ref = [r["scores"][WHO][primary] for r in recs]
        result = paired_test(
            cand, ref, question="no_regression", margin=margin, resamples=gate.bootstrap_resamples,
            seed=seed, alpha=gate.alpha,
        )  # fmt: skip
        found.append(
            ab_check(f"{name}.ab_vs_prompting", f"{primary} delta", "no_regression", result, threshold)
        )
    return reference_family(
        found,
        gate,
        judged=gate.vs_prompting == "non_inferior",
        who="the few-shot base model",
        label="prompting (base model, few-shot)",
        metric=primary,
        key="vs_prompting",
    )
