"""The gate's comparison with a reference that answers labels: the classical reference
(tunegate/evaluation/classical.py) and, for classification, the prompting reference (the base model
with ``eval.few_shot`` training rows in its prompt, ``gate.vs_prompting``). One check
family each.

On every suite the candidate and the TF-IDF + logistic regression reference answered the
same items, so the comparison is paired (McNemar-type, tunegate/evaluation/stats.py), with the
accuracy delta's interval. ``gate.vs_classical`` decides what it does:

- ``report`` (default): each suite's delta, interval and p-value go into the report's
  notes; nothing is blocked;
- ``non_inferior``: each suite is a non-inferiority check like the A/B against production:
  passed when the lower bound of the accuracy delta is above -margin (``gate.margins``),
  failed when the candidate is shown worse by more than the margin, else not enough
  evidence.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tunegate.core.params import GateParams
from tunegate.evaluation.evidence import PROMPTING
from tunegate.evaluation.policy import Check, ab_check, reference_family
from tunegate.evaluation.stats import paired_accuracy


def classical_checks(
    records: dict[str, Sequence[dict[str, Any]]], gate: GateParams
) -> tuple[list[Check], list[str]]:
    """(checks, notes) of the candidate against the classical reference on every suite."""
    return label_reference_checks(records, gate, "classical", gate.vs_classical, "classical reference")


def prompting_label_checks(
    records: dict[str, Sequence[dict[str, Any]]], gate: GateParams
) -> tuple[list[Check], list[str]]:
    """(checks, notes) of the candidate against the few-shot base model on every suite it answered."""
    return label_reference_checks(
        records, gate, PROMPTING, gate.vs_prompting, "prompting (base model, few-shot)"
    )


def label_reference_checks(
    records: dict[str, Sequence[dict[str, Any]]], gate: GateParams, who: str, setting: str, label: str
) -> tuple[list[Check], list[str]]:
    """The candidate against the reference whose answer is each record's `who` field, on every
    suite it answered; `setting` (report | non_inferior) decides whether they are checks."""
    judged = {name: recs for name, recs in records.items() if recs and all(who in r for r in recs)}
    if not judged:
        missing = {
            "classical": "no classical reference in the evidence (evaluated by an older tunegate)",
            PROMPTING: "no prompting reference was evaluated (eval.few_shot is 0)",
        }
        return [], [missing.get(who, f"no {label} in the evidence")]
    found: list[Check] = []
    for name, recs in judged.items():
        cand = [r["candidate"] == r["gold"] for r in recs]
        ref = [r[who] == r["gold"] for r in recs]
        margin = gate.margin_for("accuracy", name)
        result = paired_accuracy(cand, ref, question="non_inferiority", margin=margin, alpha=gate.alpha)
        found.append(
            ab_check(f"{name}.ab_vs_{who}", "accuracy delta", "non_inferiority", result, margin, gate.alpha,
                     f"the {label}")
        )  # fmt: skip
    return reference_family(
        found,
        gate,
        judged=setting == "non_inferior",
        label=label,
        metric="accuracy",
        key=f"vs_{who}",
    )
