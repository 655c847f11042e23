"""The gate policy: evaluation outcomes + declared thresholds -> a verdict with every check.

Pure (numpy, scipy, statsmodels through tunegate.evaluation.stats): the evaluate stage produces
``SuiteOutcome``s, this module decides. Every check carries its value, its interval (the
two-sided 1 - 2 alpha one: each end a one-sided (1 - alpha) bound), its threshold and, for
statistical checks, p-values. A check has three outcomes (tunegate/evaluation/outcomes.py): passed
when its interval shows it (a floor: the lower bound clears it; an A/B against production:
the lower bound of the difference is above -margin), failed when harm is shown (the
interval beyond the limit, with the harm tests' p-values adjusted together, Holm by
default), or not enough evidence, with the items that would settle it. The verdict is
approved only when every check passed, rejected when any failed, else not enough
evidence. A check that cannot be computed (an empty suite, a NaN) fails with that reason.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace
from typing import Literal

import numpy as np

from tunegate.core.params import GateParams
from tunegate.evaluation.checks import (
    Boot,
    Check,
    Verdict,
    _finite,
    bounded_check,
    finish,
    floor_check,
    rate_check,
)
from tunegate.evaluation.evidence import SuiteOutcome
from tunegate.evaluation.metrics import encode, macro_f1, per_class, with_ci
from tunegate.evaluation.outcomes import Bounded
from tunegate.evaluation.policy_drops import drop_checks, slice_checks
from tunegate.evaluation.stats import PairedResult, adjust, paired_bootstrap, paired_test

__all__ = ["Boot", "Check", "Verdict", "decide", "finish", "floor_check"]


def decide(
    suites: Sequence[SuiteOutcome],
    labels: Sequence[str],
    gate: GateParams,
    *,
    baseline_kind: Literal["production", "base"],
    license_: str,
    forgetting: tuple[float, float] | None = None,
    parity: dict[str, float] | None = None,
    parity_missing: str = "parity was not measured",
    slices: dict[str, Sequence[int]] | None = None,
    seed: int = 0,
    floors: dict[str, float] | None = None,
) -> Verdict:
    """All gate checks, family by family. `forgetting` is (candidate, base) probe accuracy;
    `parity` the agreement rates with the reference predictions, by name (None or empty
    when not measured, for the reason `parity_missing`: the check then fails); `slices`
    maps a slice name to hold-out item indices; `floors` the hold-out floor per score name
    (None: the primary score's floor is gate.min_accuracy). A family added later (the
    task kind's own) is judged with these by calling `finish` again over all checks."""
    holdouts = [s for s in suites if s.kind == "holdout"]
    if len(holdouts) != 1 or not holdouts[0].rows:
        missing = Check("holdout.present", "rows", 0.0, None, "one non-empty hold-out", False)
        return Verdict(baseline_kind, [replace(missing, reason="no hold-out outcomes")])
    hold = holdouts[0]
    boot = Boot.of(gate, seed)
    hold_score = boot.mean(hold.candidate.values)
    floors = {hold.metric: gate.min_accuracy} if floors is None else floors
    checks = floor_checks(hold, hold_score, floors, boot, gate) + label_checks(hold, labels, gate, boot)
    checks += drop_checks(suites, hold, gate, boot)
    found, notes = slice_checks(hold, slices or {}, gate, boot)
    checks += found
    superiority = baseline_kind == "base" and gate.first_release == "superiority"
    ab = ab_checks(suites, hold, labels, gate, baseline_kind, superiority, boot)
    checks += corrected(ab, gate, baseline_kind, superiority)
    checks += [forgetting_check(forgetting, gate), *parity_checks(parity, parity_missing, gate)]
    checks.append(license_check(license_, gate))
    return Verdict(baseline_kind, finish(checks, gate), notes)


def floor_checks(
    hold: SuiteOutcome, score, floors: dict[str, float], boot: Boot, gate: GateParams
) -> list[Check]:
    """The hold-out's mean scores against their floors: the primary score (accuracy for
    classification), then any other score named; one the evaluation did not measure fails."""
    out = []
    if hold.metric not in floors:
        missing = Check(
            f"holdout.{hold.metric}", hold.metric, score.value, (score.lo, score.hi), "a floor", False
        )
        out.append(replace(missing, reason=f"no floor is declared for the primary score {hold.metric!r}"))
    for metric, floor in floors.items():
        if metric == hold.metric:
            out.append(floor_check(f"holdout.{metric}", metric, score, floor, hold.rows, gate.alpha))
        elif metric in hold.others:
            est = boot.mean(hold.others[metric])
            out.append(floor_check(f"holdout.{metric}", metric, est, floor, hold.rows, gate.alpha))
        else:
            absent = Check(f"holdout.{metric}", metric, math.nan, None, f">= {floor}", False)
            out.append(replace(absent, reason=f"{metric!r} was not measured (known: {sorted(hold.others)})"))
    return out


def label_checks(hold: SuiteOutcome, labels: Sequence[str], gate: GateParams, boot: Boot) -> list[Check]:
    """Classification's own checks on the hold-out: macro-F1, every intent's recall, invalid answers."""
    if hold.gold is None or hold.candidate.answers is None:
        return []
    g, p = encode(hold.gold, hold.candidate.answers, labels)
    f1 = with_ci(lambda a, b: macro_f1(a, b, len(labels)), g, p, **vars(boot))
    invalid = sum(x is None for x in hold.candidate.answers)
    return [
        floor_check("holdout.macro_f1", "macro_f1", f1, gate.min_macro_f1, hold.rows, gate.alpha),
        class_recall_check(g, p, labels, gate),
        rate_check(
            "holdout.invalid_rate", "invalid_rate", invalid, hold.rows, gate.max_invalid_rate, "below",
            gate.alpha, "answers outside the label set are shown above the limit",
        ),
    ]  # fmt: skip


def class_recall_check(g: np.ndarray, p: np.ndarray, labels: Sequence[str], gate: GateParams) -> Check:
    """Every intent's recall against the floor, each by Wilson's lower bound: shown when every
    intent clears it (no adjustment needed for that), harm when one intent is shown under it
    (its p-value Bonferroni-adjusted over the intents). Reported on the weakest intent."""
    scores = {lab: sc for lab, sc in per_class(g, p, labels).items() if sc.support}
    checks = {
        lab: rate_check(
            "holdout.min_class_recall", f"recall[{lab}]", round(sc.recall * sc.support), sc.support,
            gate.min_class_recall, "above", gate.alpha, f"intent {lab!r} is shown under the floor",
            unit="items of this intent",
        )
        for lab, sc in scores.items()
    }  # fmt: skip
    worst = min(checks, key=lambda lab: (checks[lab].passed, checks[lab].ci[0], checks[lab].value))
    check = checks[worst]
    check.p_harm = min(1.0, min(c.p_harm for c in checks.values()) * len(checks))
    if check.passed:
        check.reason = ""
    return check


def ab_checks(
    suites: Sequence[SuiteOutcome],
    hold: SuiteOutcome,
    labels: Sequence[str],
    gate: GateParams,
    baseline_kind: str,
    superiority: bool,
    boot: Boot,
) -> list[Check]:
    """The paired A/B checks. Every one asks the same question: shown better than the base
    model (first release), or shown worse than production by less than the margin of its
    metric (gate.margins). 0/1 scores get McNemar / Tango, others Wilcoxon / betting bounds."""
    question = "superiority" if superiority else "non_inferiority"
    out = []
    for suite in suites:
        if not suite.rows or suite.kind == "perturbation" or suite.baseline is None:
            continue
        margin = 0.0 if superiority else gate.margin_for(suite.metric, suite.name)
        r = paired_test(
            suite.candidate.values, suite.baseline.values, question=question, margin=margin, alpha=gate.alpha
        )
        name = f"{suite.name}.ab_vs_{baseline_kind}"
        out.append(ab_check(name, f"{suite.metric} delta", question, r, margin, gate.alpha, baseline_kind))
    if hold.gold is not None and hold.candidate.answers is not None and hold.baseline is not None:
        # Macro-F1 on the hold-out, paired bootstrap (the same resampled items score both models).
        k = len(labels)
        g, p = encode(hold.gold, hold.candidate.answers, labels)
        gb, pb = encode(hold.gold, hold.baseline.answers or (), labels)
        margin = 0.0 if superiority else gate.margin_for("macro_f1", hold.name)
        r = paired_bootstrap(
            lambda i: macro_f1(g[i], p[i], k) - macro_f1(gb[i], pb[i], k), len(g), question=question,
            margin=margin, resamples=gate.bootstrap_resamples, seed=boot.seed, alpha=gate.alpha,
        )  # fmt: skip
        name = f"holdout.macro_f1_ab_vs_{baseline_kind}"
        out.append(ab_check(name, "macro-F1 delta", question, r, margin, gate.alpha, baseline_kind))
    return out


def ab_check(
    name: str, metric: str, question: str, r: PairedResult, margin: float, alpha: float, who: str
) -> Check:
    """One A/B check. Non-inferiority is decided here: passed when the lower bound is above
    -margin (no adjustment: every such check must pass on its own), harm when the difference
    is shown under -margin (in `finish`). Superiority waits for `corrected`."""
    label = f"{metric} ({question.replace('_', '-')})"
    n = int(r.detail.get("n", 0))
    if question == "superiority":
        threshold = f"> {margin:g} at alpha {alpha} (Holm over the A/B checks)"
        bound = Bounded(r.delta, r.lo, r.hi, margin, "above", alpha)
        harm, distance = f"shown worse than the {who} model", None
    else:
        threshold = f"lower bound > -{margin:g}"
        bound = Bounded(r.delta, r.lo, r.hi, -margin, "above", alpha)
        # sized for a candidate equal to the baseline: how far 0 is from -margin
        harm, distance = f"shown worse than {who} by more than the margin {margin:g}", margin
    check = bounded_check(name, label, bound, n, harm, distance)
    check.threshold, check.test = threshold, r.test
    check.p_value, check.p_adjusted, check.p_harm = r.p_value, r.p_value, r.p_harm
    return check


def corrected(checks: list[Check], gate: GateParams, baseline_kind: str, superiority: bool) -> list[Check]:
    """Superiority over the base model: shown when the p-value of the claim, adjusted over the
    A/B family (Holm by default), is under alpha. Non-inferiority needs no adjustment."""
    if not superiority:
        return checks
    for c, pa in zip(checks, adjust([c.p_value for c in checks], gate.correction), strict=True):
        c.p_adjusted = pa
        c.passed = pa < gate.alpha
        if c.passed:
            c.reason = ""
        else:
            c.reason = f"not significantly better than the base model (p={pa:.3g}); " + c.reason
    return checks


def forgetting_check(forgetting: tuple[float, float] | None, gate: GateParams) -> Check:
    threshold = f"<= {gate.max_forgetting_drop}"
    if forgetting is None:
        return Check("probe.forgetting", "probe accuracy drop", math.nan, None, threshold, False,
                     reason="probe was not run")  # fmt: skip
    cand, base = forgetting
    drop = base - cand
    ok = _finite(drop) and drop <= gate.max_forgetting_drop
    reason = (
        ""
        if ok
        else (
            f"answers {drop:.3f} fewer general questions than the base model ({cand:.3f} vs {base:.3f}), "
            f"more than the limit {gate.max_forgetting_drop:g}"
        )
    )
    return Check("probe.forgetting", "probe accuracy drop vs base", drop, None, threshold, ok, reason=reason)


def parity_checks(parity: dict[str, float] | None, missing: str, gate: GateParams) -> list[Check]:
    threshold = f">= {gate.min_parity}"
    if not parity:
        return [Check("parity", "agreement", math.nan, None, threshold, False, reason=missing)]
    out = []
    for name, rate in sorted(parity.items()):
        ok = _finite(rate) and rate >= gate.min_parity
        reason = "" if ok else "predictions disagree with the transformers + PEFT reference"
        out.append(Check(f"parity.{name}", "agreement", rate, None, threshold, ok, reason=reason))
    return out


def license_check(license_: str, gate: GateParams) -> Check:
    ok = license_.lower() in gate.allowed_licenses
    reason = "" if ok else f"license {license_!r} is not allowed"
    threshold = f"in {list(gate.allowed_licenses)}"
    return Check("license", "base model license", float(ok), None, threshold, ok, reason=reason)


def reference_family(
    found: list[Check], gate: GateParams, *, judged: bool, label: str, metric: str, key: str
) -> tuple[list[Check], list[str]]:
    """A family of non-inferiority checks against a reference (classical, prompting): blocking
    checks when `judged` (judged with the others by `finish`), else notes naming the delta,
    its bounds and what they show (harm judged with Holm within the family)."""
    if judged:
        return found, []
    finish(found, gate)
    words = {"passed": "not worse by the margin, shown", "failed": "worse by more than the margin, shown",
             "undecided": "not enough evidence either way"}  # fmt: skip
    notes = [
        f"vs {label}, {c.name.split('.')[0]}: {metric} delta {c.value:+.3f} "
        f"[{c.ci[0]:+.3f}, {c.ci[1]:+.3f}] ({c.threshold}: {words[c.outcome]}"
        + ("" if c.outcome != "failed" else f"; reported, not judged: gate.{key} is report")
        + ")"
        for c in found
        if c.ci is not None
    ]
    return [], notes
