"""The reference models' values of a floor's metric on the hold-out, so a floor reads in
context: a field F1 of 0.58 under a floor of 0.6 means one thing when the base model scores
0.34 and prompting 0.40, another when they score 0.7. Reported beside the check, never judged.

Pure: from the hold-out records the evaluation wrote (classification: each model's label;
generation: each model's per-item scores).
"""

from __future__ import annotations

from typing import Any

from tunegate.evaluation.checks import Check
from tunegate.evaluation.metrics import encode, macro_f1

REFERENCES = ("baseline", "prompting", "classical")


def reference_values(rows: list[dict[str, Any]], metric: str, task: str) -> dict[str, float]:
    """Each reference model's hold-out value of `metric` (those the records hold)."""
    if not rows:
        return {}
    if task == "generation":
        return {
            who: sum(vals) / len(vals)
            for who in REFERENCES
            if who in rows[0]["scores"]
            and (vals := [r["scores"][who][metric] for r in rows if metric in r["scores"].get(who, {})])
        }
    gold = [r["gold"] for r in rows]
    labels = sorted(set(gold))
    out = {}
    for who in (w for w in REFERENCES if w in rows[0]):
        answers = [r[who] for r in rows]
        if metric == "accuracy":
            out[who] = sum(a == g for a, g in zip(answers, gold, strict=True)) / len(rows)
        elif metric == "macro_f1":  # the gate's own definition (tunegate/evaluation/metrics.py)
            out[who] = macro_f1(*encode(gold, answers, labels), len(labels))
    return out


def add_floor_context(checks: list[Check], rows: list[dict[str, Any]], task: str, baseline: str) -> None:
    """Set each hold-out floor check's `context` (the baseline named by its kind)."""
    for c in checks:
        if c.name == f"holdout.{c.metric}" and c.threshold.startswith(">="):
            values = reference_values(rows, c.metric, task)
            c.context = {(baseline if who == "baseline" else who): v for who, v in values.items()}
