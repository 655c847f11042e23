"""The gate stage: evaluation evidence + params.yaml ``gate:`` -> verdict, gate.json, report.md.

The stage records the verdict (approved, rejected, or not enough evidence) and exits 0
whatever it is, so ``dvc repro`` keeps the metrics of a rejected candidate; ``tunegate gate
--check`` is what fails a CI job, with an exit code per verdict (``EXIT_CODES``).

``eval/gate.json`` holds every check (name, metric, value, interval, threshold, p-value,
pass/fail, reason), the verdict, the candidate's and baseline's identities and the
hashes of the data and predictions the decision rests on. ``eval/report.md`` is the
release report a person reads: verdict first, then the checks, then the largest
regressions with example messages.

Usage (from dvc.yaml): ``python -m tunegate.evaluation.gate --params params.yaml``
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from tunegate.core.artifacts import atomic_write_text, environment, read_json, sha256_file, write_json
from tunegate.core.errors import TunegateError
from tunegate.core.params import Params, load_params
from tunegate.core.stage import configure_logging
from tunegate.core.task import for_kind
from tunegate.evaluation.advice import advice
from tunegate.evaluation.evidence import Evidence, load_evidence, load_out_of_scope, slices
from tunegate.evaluation.floor_context import add_floor_context
from tunegate.evaluation.outcomes import VerdictOutcome, interval_alpha
from tunegate.evaluation.policy import Verdict, decide, finish
from tunegate.evaluation.policy_calibration import calibration_checks
from tunegate.evaluation.policy_classical import classical_checks, prompting_label_checks
from tunegate.evaluation.policy_prompting import prompting_checks
from tunegate.evaluation.report import render_report
from tunegate.evaluation.spread_note import read_spread, spread_note, spread_section

log = logging.getLogger(__name__)


def judge(
    evidence: Evidence,
    records: dict[str, list[dict[str, Any]]],
    params: Params,
    out_of_scope: list[dict[str, Any]] | None = None,
) -> Verdict:
    """The verdict: the policy's families, then the task kind's own (tunegate/core/task.py)."""
    kinds = {"classification": classification_families, "generation": generation_families}
    return for_kind(kinds, evidence.task, "gate")(evidence, records, params, out_of_scope)


def common(
    evidence: Evidence, records: dict[str, list[dict[str, Any]]], params: Params, **kw: Any
) -> Verdict:
    """The families every kind has: floors, drops, slices, A/B, forgetting, parity, license."""
    verdict = decide(
        evidence.outcomes(records, kw.pop("primary", "accuracy")),
        evidence.labels,
        params.gate,
        baseline_kind=evidence.baseline.kind or "base",
        license_=evidence.base.license or "unknown",
        forgetting=evidence.probe.forgetting,
        parity=evidence.parity.rates,
        parity_missing=evidence.parity.missing or "parity was not measured",
        slices=slices(records.get("holdout", [])),
        seed=params.base.seed,
        **kw,
    )
    base = "production" if evidence.baseline.kind == "production" else "base"
    add_floor_context(verdict.checks, records.get("holdout", []), evidence.task, base)
    return verdict


def classification_families(
    evidence: Evidence, records: dict[str, list[dict[str, Any]]], params: Params, out_of_scope: Any
) -> Verdict:
    """Classification: the common families, then calibration's, the classical reference's and
    the prompting reference's (the few-shot base model, when eval.few_shot > 0)."""
    verdict = common(evidence, records, params)
    *calibration, noted = calibration_checks(
        evidence.calibration,
        records.get("holdout", []),
        records.get("shifted"),
        out_of_scope,
        params.gate,
        params.base.seed,
        params.serve.expected_oos_share,
    )
    for checks, notes in (
        calibration,
        classical_checks(records, params.gate),
        prompting_label_checks(records, params.gate),
    ):
        verdict.checks.extend(checks)
        verdict.notes.extend(notes)
    verdict.noted.extend(noted)
    finish(verdict.checks, params.gate)
    return verdict


def generation_families(
    evidence: Evidence, records: dict[str, list[dict[str, Any]]], params: Params, out_of_scope: Any
) -> Verdict:
    """Generation: the common families on the primary per-item score (floors on any score
    named in gate.metric_floors), then the prompting reference's."""
    gate = params.gate
    verdict = common(evidence, records, params, primary=gate.primary_metric, floors=dict(gate.metric_floors))
    checks, notes = prompting_checks(records, gate, gate.primary_metric, params.base.seed)
    verdict.checks.extend(checks)
    verdict.notes.extend(notes)
    finish(verdict.checks, params.gate)
    return verdict


def gate_record(verdict: Verdict, evidence: Evidence, params: Params, results: Path) -> dict[str, Any]:
    plain = evidence.to_dict()
    calibration = results / "calibration.json"
    return {
        "verdict": verdict.outcome,
        "task": evidence.task,
        "summary": verdict.summary(),
        "candidate": plain["candidate"],
        "baseline": plain["baseline"],
        "base": plain["base"],
        "data": plain["data"],
        "predictions": {name: info.sha256 for name, info in evidence.suites.items()},
        "results": str(results),
        "evidence_sha256": sha256_file(results / "evidence.json"),
        # The calibration judged here is the one packaged and served (tunegate/serving/package.py checks).
        "calibration_sha256": sha256_file(calibration) if calibration.exists() else None,
        "policy": {k: v for k, v in vars(params.gate).items()},
        # each end of every interval is a one-sided (1 - alpha) bound (tunegate/evaluation/outcomes.py)
        "interval_level": round(1 - interval_alpha(params.gate.alpha), 4),
        "engine": evidence.engine,
        **verdict.to_dict(),
        "environment": environment(),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="gate stage: decide, and write gate.json and report.md")
    parser.add_argument("--params", required=True)
    parser.add_argument("--results", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--report", type=Path, required=True)
    parser.add_argument("--judge", type=Path, default=None, help="the judge stage's judge.json (reported)")
    parser.add_argument(
        "--candidate",
        type=Path,
        default=None,
        help="the candidate's folder: its card.json's training curve informs the advice on a rejection",
    )
    parser.add_argument(
        "--spread", type=Path, default=None, help="tune/<study>/spread.json (`tunegate tune --seeds`), noted"
    )
    args = parser.parse_args(argv)
    configure_logging()
    params = load_params(args.params)
    evidence, records = load_evidence(args.results)
    out_of_scope = load_out_of_scope(args.results, evidence)
    verdict = judge(evidence, records, params, out_of_scope)
    verdict.notes.extend(judge_notes(args.judge))
    verdict.notes.extend(plan_notes(evidence, records, params))
    record = gate_record(verdict, evidence, params, args.results)
    add_spread(record, args.spread, params)
    record["advice"] = advice_for(record["checks"], args.candidate)
    write_json(args.out, record)
    atomic_write_text(args.report, render_report(record, evidence, records, out_of_scope))
    log.info("%s (baseline: %s)", verdict.summary(), evidence.baseline.kind)


def advice_for(checks: list[dict[str, Any]], candidate: Path | None) -> list[str]:
    """What to change for each failed check (tunegate/evaluation/advice.py), with the candidate's
    training params and curve when its card is there."""
    card = read_json(candidate / "card.json") if candidate and (candidate / "card.json").exists() else {}
    metrics = card.get("metrics") or {}
    return advice(checks, (card.get("params") or {}).get("train"), metrics.get("selection"))


def add_spread(record: dict[str, Any], path: Path | None, params: Params) -> None:
    """The recipe's run-to-run spread beside the margins (tunegate/evaluation/spread_note.py): notes."""
    if path is None:
        return
    if not path.exists():
        record["notes"].append(f"no run-to-run spread at {path}: `tunegate tune --seeds K` measures it")
        return
    spread, why = read_spread(path, params.train)
    if spread is None:
        record["notes"].append(why)
        return
    record["spread"] = spread_section(record["checks"], spread, path)
    record["notes"].append(spread_note(record["spread"]))


def plan_notes(evidence: Evidence, records: dict[str, list[dict[str, Any]]], params: Params) -> list[str]:
    """What the suites compared with the baseline can show against the next production release
    at the declared margins (`tunegate plan`): a note, so the first release already says it."""
    from tunegate.evaluation.plan import DEFAULT_DISAGREEMENT, plan

    metric = params.gate.primary_metric if evidence.task == "generation" else "accuracy"
    sizes = {n: len(records.get(n, [])) for n, info in evidence.suites.items() if info.versus_baseline}
    margins = {n: params.gate.margin_for(metric, n) for n in sizes}
    rows = plan(sizes, metric, margins, DEFAULT_DISAGREEMENT, params.gate.alpha)
    return [f"plan: {row.sentence(DEFAULT_DISAGREEMENT)}" for row in rows]


def judge_notes(path: Path | None) -> list[str]:
    """The optional judge's verdicts as a note (a judge model reports; the policy decides)."""
    if path is None:
        return []
    raw = read_json(path)
    if not raw.get("enabled"):
        return []
    p = raw["sign_test_p"]
    wins, losses = raw["candidate_wins"], raw["baseline_wins"]
    return [
        f"judge ({raw['model']} at {raw['endpoint']}), holdout: candidate preferred on {wins} of "
        f"{raw['items']} items, baseline on {losses}, ties {raw['ties']} (a tie when the two orders "
        f"disagree); position consistency {raw['position_consistency']:.2f}"
        + ("" if p is None else f"; sign test p={p:.3g}")
    ]


EXIT_CODES: dict[VerdictOutcome, int] = {"approved": 0, "rejected": 1, "not_enough_evidence": 3}
"""`tunegate gate --check`'s exit code per verdict (2 is an error: tunegate/core/errors.py)."""


def check(path: Path) -> tuple[VerdictOutcome, str]:
    """For `tunegate gate --check`: (verdict, one-line reason)."""
    if not path.exists():
        raise TunegateError(f"{path} is missing; run `dvc repro` to evaluate and gate the candidate")
    record = read_json(path)
    verdict = record.get("verdict")
    if verdict not in EXIT_CODES:
        raise TunegateError(
            f"{path}: verdict {verdict!r} is none of {', '.join(EXIT_CODES)}; run `dvc repro`"
        )
    said = f"{record['summary']} (candidate {record['candidate']['model_id']})"
    return verdict, "\n".join([said, *(f"- {line}" for line in record.get("advice", []))])


if __name__ == "__main__":
    from tunegate.core.stage import run_stage

    run_stage(main)
