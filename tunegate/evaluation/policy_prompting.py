"""The gate's comparison with the prompting reference: one check family (generation).

On every suite where it was evaluated, the base model with ``eval.few_shot`` training
records in its prompt answered the same items as the candidate, so the comparison is
paired: the mean difference of the primary per-item score with betting bounds and the
one-sided betting test against -margin (tunegate/evaluation/stats.py, tunegate/evaluation/betting.py).
``gate.vs_prompting`` decides what it does:

- ``report`` (default): each suite's delta, interval and p-value go into the notes;
- ``non_inferior``: each suite is a non-inferiority check: passed when the lower bound is
  above -margin (``gate.margins``), failed when shown worse by more, else not enough evidence.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tunegate.core.params import GateParams
from tunegate.evaluation.evidence import PROMPTING
from tunegate.evaluation.policy import Check, ab_check, reference_family
from tunegate.evaluation.stats import paired_test

WHO = PROMPTING


def prompting_checks(
    records: dict[str, Sequence[dict[str, Any]]], gate: GateParams, primary: str, seed: int
) -> tuple[list[Check], list[str]]:
    """(checks, notes) of the candidate against the prompting reference on every suite it answered."""
    judged = {n: rs for n, rs in records.items() if rs and all(WHO in r.get("scores", {}) for r in rs)}
    if not judged:
        return [], ["no prompting reference was evaluated (eval.few_shot is 0)"]
    found: list[Check] = []
    for name, recs in judged.items():
        cand = [r["scores"]["candidate"][primary] for r in recs]
        ref = [r["scores"][WHO][primary] for r in recs]
        margin = gate.margin_for(primary, name)
        result = paired_test(cand, ref, question="non_inferiority", margin=margin, alpha=gate.alpha)
        found.append(
            ab_check(f"{name}.ab_vs_prompting", f"{primary} delta", "non_inferiority", result, margin,
                     gate.alpha, "the few-shot base model")
        )  # fmt: skip
    return reference_family(
        found,
        gate,
        judged=gate.vs_prompting == "non_inferior",
        label="prompting (base model, few-shot)",
        metric=primary,
        key="vs_prompting",
    )
