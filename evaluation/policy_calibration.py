"""The gate's calibration and abstention checks: one check family, pure.

Judged at the threshold the release will serve with (``calibration.json``), on per-item
records: the hold-out (in-scope), the out-of-scope hold-out when the data has one, and
the shifted suite (reported, not judged: a shifted channel is expected to be less
calibrated; its ECE is shown so a release owner sees by how much).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from evaluation.calibration import oos_recall, suite_scores
from evaluation.metrics import Estimate
from evaluation.policy import Check, ab_check
from evaluation.stats import adjust, paired_accuracy
from tunegate.params import GateParams


def _scores(records: Sequence[dict[str, Any]], gate: GateParams, seed: int) -> dict[str, Estimate]:
    return suite_scores(
        [r["confidence"] for r in records],
        [r["candidate"] == r["gold"] for r in records],
        [r["abstained"] for r in records],
        resamples=gate.bootstrap_resamples,
        seed=seed,
        alpha=gate.alpha,
    )


def _check(name: str, metric: str, est: Estimate, limit: float, floor: bool, why: str) -> Check:
    ok = math.isfinite(est.value) and (est.value >= limit if floor else est.value <= limit)
    reason = "" if ok else (why if math.isfinite(est.value) else "metric is not a number")
    return Check(
        name, metric, est.value, (est.lo, est.hi), f"{'>=' if floor else '<='} {limit}", ok, reason=reason
    )


def calibration_checks(
    evidence: dict[str, Any],
    holdout: Sequence[dict[str, Any]],
    shifted: Sequence[dict[str, Any]] | None,
    out_of_scope: Sequence[dict[str, Any]] | None,
    gate: GateParams,
    seed: int = 0,
) -> tuple[list[Check], list[str]]:
    """(checks, notes). `evidence` is evidence.json's ``calibration`` block (None: evaluated
    before calibration existed)."""
    if not evidence or any("confidence" not in r for r in holdout):
        missing = "no calibration in the evidence (evaluated by an older tunegate); run `dvc repro evaluate`"
        return [
            Check("calibration.fitted", "calibration", math.nan, None, "fitted", False, reason=missing)
        ], []
    checks, notes = fit_checks(evidence)
    found, more = holdout_checks(holdout, shifted, gate, seed)
    checks, notes = checks + found, notes + more
    found, more = out_of_scope_checks(out_of_scope, gate, seed)
    ab, ab_notes = abstention_ab(evidence, holdout, out_of_scope, gate)
    return checks + found + ab, notes + more + ab_notes


def fit_checks(evidence: dict[str, Any]) -> tuple[list[Check], list[str]]:
    """The calibration was fitted, and the threshold reached its validation target."""
    failed = evidence.get("failed", "")
    fitted = Check(
        "calibration.fitted", f"calibration ({evidence['method']})", float(not failed), None,
        "fitted on validation", not failed, reason=failed,
    )  # fmt: skip
    threshold = evidence["abstain_below"]
    notes = [f"abstention threshold {threshold:.4f} (calibrated confidence), {evidence['chosen_by']}"]
    search = evidence.get("threshold_search")
    if search is None:
        return [fitted], notes
    target = Check(
        "validation.abstain_target", "precision of answered in-scope validation messages",
        search["precision"], None, f">= {search['target']}", search["reached"],
        reason="" if search["reached"] else "no threshold reaches the target on validation",
    )  # fmt: skip
    return [fitted, target], notes


def holdout_checks(
    holdout: Sequence[dict[str, Any]], shifted: Sequence[dict[str, Any]] | None, gate: GateParams, seed: int
) -> tuple[list[Check], list[str]]:
    """ECE, coverage and selective accuracy on the in-scope hold-out; Brier, accuracy at the
    threshold and the shifted suite's ECE as notes."""
    s = _scores(holdout, gate, seed)
    checks = [
        _check("holdout.ece", "expected calibration error", s["ece"], gate.max_ece, False,
               "confidence is miscalibrated"),
        _check("holdout.coverage", "share answered", s["coverage"], gate.min_coverage, True,
               "abstains on too many in-scope messages"),
        _check("holdout.selective_accuracy", "accuracy of answered messages", s["selective_accuracy"],
               gate.min_selective_accuracy, True, "answers it gives are too often wrong"),
    ]  # fmt: skip
    a, b = s["brier"], s["answered_accuracy"]
    notes = [
        f"hold-out Brier score {a.value:.4f} [{a.lo:.4f}, {a.hi:.4f}]",
        "hold-out accuracy at the threshold (an abstention is not a right answer) "
        f"{b.value:.4f} [{b.lo:.4f}, {b.hi:.4f}]",
    ]
    if shifted:
        e = _scores(shifted, gate, seed)["ece"]
        notes.append(f"shifted ECE {e.value:.4f} [{e.lo:.4f}, {e.hi:.4f}] (reported, not judged)")
    return checks, notes


def out_of_scope_checks(
    out_of_scope: Sequence[dict[str, Any]] | None, gate: GateParams, seed: int
) -> tuple[list[Check], list[str]]:
    """The share of out-of-scope hold-out messages abstained on, or a note that there are none."""
    if not out_of_scope:
        note = "no out-of-scope rows (data.oos_label): coverage and selective accuracy only, "
        return [], [note + "no out-of-scope recall"]
    abstained = [x["abstained"] for x in out_of_scope]
    r = oos_recall(abstained, resamples=gate.bootstrap_resamples, seed=seed, alpha=gate.alpha)
    metric, why = (
        "share of out-of-scope messages abstained on",
        "answers out-of-scope messages with an intent",
    )
    return [_check("holdout_oos.recall", metric, r, gate.min_oos_recall, True, why)], []


def abstention_ab(
    evidence: dict[str, Any],
    holdout: Sequence[dict[str, Any]],
    out_of_scope: Sequence[dict[str, Any]] | None,
    gate: GateParams,
) -> tuple[list[Check], list[str]]:
    """Candidate vs the production release, each at its own threshold, on the same items:
    answered-and-right on the in-scope hold-out, abstained on the out-of-scope hold-out
    (paired McNemar-type tests, Holm within the two)."""
    if evidence.get("baseline") is None or not holdout or "baseline_abstained" not in holdout[0]:
        return [], ["abstention is not compared with the baseline: it is the base model (a first release) "
                    "or a release packaged without a calibration"]  # fmt: skip
    margin = gate.margin
    threshold = f"not significantly < -{margin}" if margin else "not significantly < 0"
    pairs = {
        "holdout.answered_accuracy_ab_vs_production": (
            "answered-and-right share delta",
            [not r["abstained"] and r["candidate"] == r["gold"] for r in holdout],
            [not r["baseline_abstained"] and r["baseline"] == r["gold"] for r in holdout],
        )
    }
    if out_of_scope and "baseline_abstained" in out_of_scope[0]:
        pairs["holdout_oos.recall_ab_vs_production"] = (
            "out-of-scope recall delta",
            [r["abstained"] for r in out_of_scope],
            [r["baseline_abstained"] for r in out_of_scope],
        )
    found = []
    for name, (metric, ours, theirs) in pairs.items():
        result = paired_accuracy(ours, theirs, question="no_regression", margin=margin, alpha=gate.alpha)
        found.append(ab_check(name, metric, "no_regression", result, threshold))
    for c, pa in zip(found, adjust([c.p_value for c in found], gate.correction), strict=True):
        c.p_adjusted, c.passed = pa, pa >= gate.alpha
        c.reason = (
            "" if c.passed else f"significantly worse than production at its own threshold (p={pa:.3g})"
        )
    return found, []
