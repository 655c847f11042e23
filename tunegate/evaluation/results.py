"""From predictions to what the evaluate stage writes: per-item records, metrics, plot rows.

Pure (numpy): the evaluate stage predicts, this module scores. One record per suite item
(``eval/results/<suite>.jsonl``: gold, the candidate's, baseline's and classical
reference's answers, the slice, confidences and abstention); DVC metrics per suite with
bootstrap intervals (``eval/metrics.json``); the rows of ``eval/plots/``.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tunegate.evaluation.calibration_fit import record_scores
from tunegate.evaluation.calibration_step import reliability_rows
from tunegate.evaluation.evidence import slices
from tunegate.evaluation.metrics import ClassScores, accuracy, encode, macro_f1, per_class, with_ci
from tunegate.evaluation.suites import Suite, length_slice


def suite_metrics(
    gold: Sequence[str], pred: Sequence[str | None], labels: tuple[str, ...], resamples: int, seed: int
) -> tuple[dict[str, Any], dict[str, ClassScores]]:
    """Accuracy and macro-F1 with bootstrap intervals, invalid rate, rows; per-class scores."""
    k = len(labels)
    g, p = encode(gold, pred, labels)
    acc = with_ci(accuracy, g, p, resamples=resamples, seed=seed)
    f1 = with_ci(lambda a, b: macro_f1(a, b, k), g, p, resamples=resamples, seed=seed)
    invalid = float(np.mean([x is None for x in pred])) if pred else math.nan
    flat = {
        "accuracy": round(acc.value, 4),
        "accuracy_lo": round(acc.lo, 4),
        "accuracy_hi": round(acc.hi, 4),
        "macro_f1": round(f1.value, 4),
        "macro_f1_lo": round(f1.lo, 4),
        "macro_f1_hi": round(f1.hi, 4),
        "invalid_rate": round(invalid, 4),
        "rows": len(gold),
    }
    return flat, per_class(g, p, labels)


@dataclass
class SuiteAnswers:
    """Everything answered on one suite, item by item."""

    suite: Suite
    candidate: list[str | None]
    baseline: list[str | None] | None
    classical: list[str]
    marks: list[dict[str, Any]]
    """Per item: raw and calibrated confidence, abstained (tunegate/evaluation/calibration_step.py)."""
    prompting: list[str | None] | None = None
    """The base model's answers with eval.few_shot examples in its prompt, where compared."""


@dataclass
class Scored:
    records: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    classes: dict[str, Any] = field(default_factory=dict)
    class_deltas: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


def score(
    answers: list[SuiteAnswers], labels: tuple[str, ...], buckets: tuple[int, ...], resamples: int, seed: int
) -> Scored:
    out = Scored()
    for a in answers:
        s, gold = a.suite, [r["label"] for r in a.suite.rows]
        cand_m, cand_pc = suite_metrics(gold, a.candidate, labels, resamples, seed)
        entry: dict[str, Any] = {"candidate": cand_m}
        out.classes[s.name] = {"candidate": {lab: vars(sc) for lab, sc in cand_pc.items()}}
        if a.baseline is not None:
            base_m, base_pc = suite_metrics(gold, a.baseline, labels, resamples, seed)
            entry["baseline"] = base_m
            entry["accuracy_delta"] = round(cand_m["accuracy"] - base_m["accuracy"], 4)
            out.classes[s.name]["baseline"] = {lab: vars(sc) for lab, sc in base_pc.items()}
            out.class_deltas[s.name] = [
                {"class": lab, "recall_delta": round(cand_pc[lab].recall - base_pc[lab].recall, 4)}
                for lab in labels
                if cand_pc[lab].support
            ]
        if a.prompting is not None:
            entry["prompting"], _ = suite_metrics(gold, a.prompting, labels, resamples, seed)
        baseline = a.baseline if a.baseline is not None else [None] * len(gold)
        out.records[s.name] = [
            {"id": r["id"], "text": r["text"], "gold": r["label"], "candidate": c, "baseline": b,
             "classical": k, "slice": length_slice(r["text"], buckets)} | m
            for r, c, b, k, m in zip(s.rows, a.candidate, baseline, a.classical, a.marks, strict=True)
        ]  # fmt: skip
        if a.prompting is not None:
            for rec, answer in zip(out.records[s.name], a.prompting, strict=True):
                rec["prompting"] = answer
        cand_m |= {k: round(v, 4) for k, v in record_scores(out.records[s.name]).items()}
        out.metrics[s.name] = entry
    out.metrics["slices"] = slice_metrics(out.records["holdout"], labels, resamples, seed)
    return out


def slice_metrics(hold: list[dict[str, Any]], labels: tuple[str, ...], resamples: int, seed: int) -> dict:
    out = {}
    for name, idx in sorted(slices(hold).items()):
        rows = [hold[i] for i in idx]
        m, _ = suite_metrics(
            [r["gold"] for r in rows], [r["candidate"] for r in rows], labels, resamples, seed
        )
        out[name] = {"accuracy": m["accuracy"], "rows": m["rows"]}
    return out


def plot_rows(scored: Scored, suites: list[Suite]) -> dict[str, list[dict[str, Any]]]:
    """``eval/plots/<name>.csv`` rows (dvc.yaml's plots section draws them)."""
    hold, metrics = scored.records["holdout"], scored.metrics
    hold_acc = metrics["holdout"]["candidate"]["accuracy"]
    versus_hold = [
        {"suite": s.name, "accuracy_delta": round(metrics[s.name]["candidate"]["accuracy"] - hold_acc, 4),
         "versus": "hold-out"}
        for s in suites
        if s.kind == "perturbation"
    ]  # fmt: skip
    versus_base = [
        {"suite": name, "accuracy_delta": m["accuracy_delta"], "versus": "baseline"}
        for name, m in metrics.items()
        if isinstance(m, dict) and "accuracy_delta" in m
    ]
    out = {
        "confusion": [{"actual": r["gold"], "predicted": r["candidate"] or "<invalid>"} for r in hold],
        "suite_deltas": versus_base + versus_hold,
    }
    out |= {f"class_deltas_{name}": rows for name, rows in scored.class_deltas.items()}
    out |= {
        f"reliability_{n}": reliability_rows(scored.records[n])
        for n in ("holdout", "shifted")
        if n in scored.records
    }
    out["reliability_holdout_raw"] = reliability_rows(hold, "raw_confidence")
    return out


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["empty"], lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
