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

import numpy as np

from tunegate.core.params import GateParams
from tunegate.evaluation.calibration_fit import oos_recall, suite_scores
from tunegate.evaluation.checks import Check, bounded_check, floor_check
from tunegate.evaluation.metrics import Estimate
from tunegate.evaluation.outcomes import Bounded, interval_alpha
from tunegate.evaluation.policy import ab_check
from tunegate.evaluation.stats import paired_accuracy
from tunegate.evaluation.threshold import mixed_precision


def _scores(records: Sequence[dict[str, Any]], gate: GateParams, seed: int) -> dict[str, Estimate]:
    return suite_scores(
        [r["confidence"] for r in records],
        [r["candidate"] == r["gold"] for r in records],
        [r["abstained"] for r in records],
        resamples=gate.bootstrap_resamples,
        seed=seed,
        alpha=interval_alpha(gate.alpha),
    )


def _check(
    name: str, metric: str, est: Estimate, limit: float, floor: bool, why: str, n: int, alpha: float
) -> Check:
    """A floor (lower bound at or above it) or a ceiling (upper bound at or under it)."""
    if floor:
        check = floor_check(name, metric, est, limit, n, alpha)
    else:
        check = bounded_check(name, metric, Bounded(est.value, est.lo, est.hi, limit, "below", alpha), n, why)
    check.harm = f"{why}: shown beyond the limit"
    return check


def calibration_checks(
    evidence: dict[str, Any],
    holdout: Sequence[dict[str, Any]],
    shifted: Sequence[dict[str, Any]] | None,
    out_of_scope: Sequence[dict[str, Any]] | None,
    gate: GateParams,
    seed: int = 0,
    oos_share: float | None = None,
) -> tuple[list[Check], list[str], list[Check]]:
    """(checks, notes, noted checks: declared but not judged on this data). `evidence` is
    evidence.json's ``calibration`` block; `oos_share` is ``serve.expected_oos_share``."""
    if not evidence or any("confidence" not in r for r in holdout):
        missing = "no calibration in the evidence (evaluated by an older tunegate); run `dvc repro evaluate`"
        return (
            [Check("calibration.fitted", "calibration", math.nan, None, "fitted", False, reason=missing)],
            [],
            [],
        )
    checks, notes = fit_checks(evidence)
    found, more = holdout_checks(holdout, shifted, gate, seed)
    checks, notes = checks + found, notes + more
    recall, noted, more = out_of_scope_checks(evidence, out_of_scope, gate, seed)
    notes += more + mix_notes(holdout, out_of_scope, oos_share, gate, seed)
    ab, ab_notes = abstention_ab(evidence, holdout, out_of_scope, gate)
    return checks + recall + ab, notes + ab_notes, noted


def fit_checks(evidence: dict[str, Any]) -> tuple[list[Check], list[str]]:
    """The calibration was fitted, and (auto threshold) every floor holds on validation."""
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
    floors = search["floors"]
    met = sum(f["met"] for f in floors)
    shown = "; ".join(
        f"{f['name']} {f['value']:.4f}" + ("" if f["name"] == "precision" else f" (bound {f['bound']:.4f})")
        + f" {'>=' if f['met'] else '<'} {f['floor']}"
        for f in floors
    )  # fmt: skip
    check = Check(
        "validation.threshold", f"floors met on validation at the threshold (of {len(floors)})", met, None,
        f"all {len(floors)}: " + ", ".join(f["key"] for f in floors), search["met"],
        reason="" if search["met"] else search["explanation"],
    )  # fmt: skip
    notes.append(f"validation at the threshold: {shown}; {search['explanation']}")
    return [fitted, check], notes


def holdout_checks(
    holdout: Sequence[dict[str, Any]], shifted: Sequence[dict[str, Any]] | None, gate: GateParams, seed: int
) -> tuple[list[Check], list[str]]:
    """ECE, coverage and selective accuracy on the in-scope hold-out; Brier, accuracy at the
    threshold and the shifted suite's ECE as notes."""
    s = _scores(holdout, gate, seed)
    n, a = len(holdout), gate.alpha
    answered = sum(not r["abstained"] for r in holdout)
    checks = [
        _check("holdout.ece", "expected calibration error", s["ece"], gate.max_ece, False,
               "confidence is miscalibrated", n, a),
        _check("holdout.coverage", "share answered", s["coverage"], gate.min_coverage, True,
               "abstains on too many in-scope messages", n, a),
        _check("holdout.selective_accuracy", "accuracy of answered messages", s["selective_accuracy"],
               gate.min_selective_accuracy, True, "answers it gives are too often wrong", answered, a),
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


NO_VAL_OOS = (
    "noted, not judged: no out-of-scope validation rows, so the threshold was chosen on the "
    "in-scope floors alone"
)


def out_of_scope_checks(
    evidence: dict[str, Any], out_of_scope: Sequence[dict[str, Any]] | None, gate: GateParams, seed: int
) -> tuple[list[Check], list[Check], list[str]]:
    """(judged, noted, notes): the share of out-of-scope hold-out messages abstained on. It is
    a noted check, neither pass nor fail, when it cannot be measured (no out-of-scope hold-out)
    or when the auto threshold had no out-of-scope validation rows to be chosen against."""
    metric, why = (
        "share of out-of-scope messages abstained on",
        "answers out-of-scope messages with an intent",
    )
    threshold = f">= {gate.min_oos_recall}"
    if not out_of_scope:
        reason = "not measured: no out-of-scope hold-out rows (data.oos_label)"
        noted = Check("holdout_oos.recall", metric, math.nan, None, threshold, False, reason=reason)
        return [], [noted], ["no out-of-scope rows: out-of-scope recall could not be measured"]
    r = oos_recall(
        [x["abstained"] for x in out_of_scope],
        resamples=gate.bootstrap_resamples,
        seed=seed,
        alpha=interval_alpha(gate.alpha),
    )
    found = _check(
        "holdout_oos.recall", metric, r, gate.min_oos_recall, True, why, len(out_of_scope), gate.alpha
    )
    if "threshold_search" in evidence and not evidence.get("val_oos_rows"):
        found.passed, found.p_harm = False, None
        found.reason = NO_VAL_OOS
        return [], [found], []
    return [found], [], []


def mix_notes(
    holdout: Sequence[dict[str, Any]],
    out_of_scope: Sequence[dict[str, Any]] | None,
    share: float | None,
    gate: GateParams,
    seed: int,
) -> list[str]:
    """With serve.expected_oos_share: the precision of all answered requests at that mix."""
    if share is None:
        return []
    if not out_of_scope:
        return [f"serve.expected_oos_share {share:g}: no out-of-scope hold-out rows to measure it at"]
    est = mixed_precision_ci(
        holdout, out_of_scope, share, gate.bootstrap_resamples, seed, interval_alpha(gate.alpha)
    )
    return [
        f"precision of answered requests at {share:g} out-of-scope traffic (serve.expected_oos_share) "
        f"{est.value:.4f} [{est.lo:.4f}, {est.hi:.4f}]"
    ]


def mixed_precision_ci(
    holdout: Sequence[dict[str, Any]],
    out_of_scope: Sequence[dict[str, Any]],
    share: float,
    resamples: int,
    seed: int,
    alpha: float,
) -> Estimate:
    """Point value and percentile-bootstrap interval, in-scope and out-of-scope rows resampled
    apart (the mix is declared, not sampled)."""
    kept = np.array([not r["abstained"] for r in holdout], dtype=float)
    right = np.array([not r["abstained"] and r["candidate"] == r["gold"] for r in holdout], dtype=float)
    slipped = np.array([not r["abstained"] for r in out_of_scope], dtype=float)

    def value(k: np.ndarray, g: np.ndarray, o: np.ndarray) -> float:
        cov = k.mean()
        selective = g.sum() / k.sum() if k.sum() else math.nan
        return float(mixed_precision(cov, selective, 1 - o.mean(), share))

    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(resamples):
        i = rng.integers(0, len(kept), len(kept))
        j = rng.integers(0, len(slipped), len(slipped))
        draws.append(value(kept[i], right[i], slipped[j]))
    lo, hi = np.nanpercentile(draws, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return Estimate(value(kept, right, slipped), float(lo), float(hi))


def abstention_ab(
    evidence: dict[str, Any],
    holdout: Sequence[dict[str, Any]],
    out_of_scope: Sequence[dict[str, Any]] | None,
    gate: GateParams,
) -> tuple[list[Check], list[str]]:
    """Candidate vs the production release, each at its own threshold, on the same items:
    answered-and-right on the in-scope hold-out, abstained on the out-of-scope hold-out
    (paired non-inferiority checks, each at its margin in gate.margins: answered_accuracy,
    oos_recall)."""
    if evidence.get("baseline") is None or not holdout or "baseline_abstained" not in holdout[0]:
        return [], ["abstention is not compared with the baseline: it is the base model (a first release) "
                    "or a release packaged without a calibration"]  # fmt: skip
    pairs = {
        "holdout.answered_accuracy_ab_vs_production": (
            "answered_accuracy",
            "answered-and-right share delta",
            [not r["abstained"] and r["candidate"] == r["gold"] for r in holdout],
            [not r["baseline_abstained"] and r["baseline"] == r["gold"] for r in holdout],
        )
    }
    if out_of_scope and "baseline_abstained" in out_of_scope[0]:
        pairs["holdout_oos.recall_ab_vs_production"] = (
            "oos_recall",
            "out-of-scope recall delta",
            [r["abstained"] for r in out_of_scope],
            [r["baseline_abstained"] for r in out_of_scope],
        )
    found = []
    for name, (key, metric, ours, theirs) in pairs.items():
        margin = gate.margin_for(key, name.split(".")[0])
        result = paired_accuracy(ours, theirs, question="non_inferiority", margin=margin, alpha=gate.alpha)
        found.append(
            ab_check(
                name, metric, "non_inferiority", result, margin, gate.alpha, "production at its own threshold"
            )
        )
    return found, []
