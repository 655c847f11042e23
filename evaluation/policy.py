"""The gate policy: evaluation outcomes + declared thresholds -> a verdict with every check.

Pure (numpy, scipy, statsmodels through evaluation.stats): the evaluate stage produces
``SuiteOutcome``s, this module decides. Every check carries its value, confidence
interval, threshold and, for statistical checks, a p-value; the p-values of the
statistical checks are adjusted together (Holm by default) before they are compared
with alpha. The verdict is approved only when every check passes; a check that cannot
be computed (an empty suite, a NaN) fails with that reason, never passes silently.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Literal

import numpy as np

from evaluation.evidence import SuiteOutcome
from evaluation.metrics import encode, macro_f1, per_class, with_ci
from evaluation.stats import PairedResult, adjust, paired_bootstrap, paired_test
from tunegate.params import GateParams


@dataclass
class Check:
    name: str
    metric: str
    value: float
    ci: tuple[float, float] | None
    threshold: str
    passed: bool
    p_value: float | None = None
    p_adjusted: float | None = None
    reason: str = ""
    test: str = ""
    """The statistical test behind p_value, for A/B checks."""


@dataclass
class Verdict:
    approved: bool
    baseline_kind: Literal["production", "base"]
    checks: list[Check] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    """What was looked at but not judged (e.g. slices too small to test)."""
    noted: list[Check] = field(default_factory=list)
    """Declared checks this data cannot judge (e.g. out-of-scope recall without out-of-scope
    rows): shown with the reason, neither passed nor failed, never counted as a pass."""

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if not c.passed]

    def summary(self) -> str:
        noted = f" ({len(self.noted)} noted, not judged: {', '.join(c.name for c in self.noted)})"
        noted = noted if self.noted else ""
        if self.approved:
            return f"approved: all {len(self.checks)} checks passed{noted}"
        first = self.failed[0]
        n_failed, n = len(self.failed), len(self.checks)
        return f"rejected: {n_failed} of {n} checks failed; first: {first.name} ({first.reason}){noted}"

    def to_dict(self) -> dict:
        return {
            "approved": self.approved,
            "baseline_kind": self.baseline_kind,
            "checks": [asdict(c) for c in self.checks],
            "notes": list(self.notes),
            "noted": [asdict(c) for c in self.noted],
        }


def _finite(*values: float) -> bool:
    return all(isinstance(v, float | int) and math.isfinite(v) for v in values)


def floor_check(name: str, metric: str, est, floor: float) -> Check:
    ok = _finite(est.value)
    return Check(
        name,
        metric,
        est.value,
        (est.lo, est.hi),
        f">= {floor}",
        ok and est.value >= floor,
        reason="" if ok else "metric is not a number",
    )


def ab_check(name: str, metric: str, question: str, r: PairedResult, threshold: str) -> Check:
    """An A/B check, undecided until the p-values of the family are adjusted together."""
    label = f"{metric} ({question.replace('_', ' ')})"
    return Check(name, label, r.delta, (r.lo, r.hi), threshold, False, p_value=r.p_value, test=r.test)


@dataclass(frozen=True)
class Boot:
    """The bootstrap every interval uses: the same resamples and seed for every estimate."""

    resamples: int
    seed: int
    alpha: float

    def mean(self, values: Sequence[float] | np.ndarray):
        """The mean score with its percentile interval (accuracy, for 0/1 scores)."""
        v = np.asarray(values, dtype=float)
        return with_ci(lambda a, _: float(np.mean(a)) if len(a) else math.nan, v, v, **vars(self))


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
    (None: the primary score's floor is gate.min_accuracy)."""
    holdouts = [s for s in suites if s.kind == "holdout"]
    if len(holdouts) != 1 or not holdouts[0].rows:
        missing = Check("holdout.present", "rows", 0.0, None, "one non-empty hold-out", False)
        return Verdict(False, baseline_kind, [replace(missing, reason="no hold-out outcomes")])
    hold = holdouts[0]
    boot = Boot(gate.bootstrap_resamples, seed, gate.alpha)
    hold_score = boot.mean(hold.candidate.values)
    floors = {hold.metric: gate.min_accuracy} if floors is None else floors
    checks = floor_checks(hold, hold_score, floors, boot) + label_checks(hold, labels, gate, boot)
    checks += drop_checks(suites, hold_score, gate, boot)
    found, notes = slice_checks(hold, slices or {}, hold_score, gate, boot)
    checks += found
    superiority = baseline_kind == "base" and gate.first_release == "superiority"
    ab = ab_checks(suites, hold, labels, gate, baseline_kind, superiority, boot)
    checks += corrected(ab, gate, baseline_kind, superiority)
    checks += [forgetting_check(forgetting, gate), *parity_checks(parity, parity_missing, gate)]
    checks.append(license_check(license_, gate))
    return Verdict(all(c.passed for c in checks), baseline_kind, checks, notes)


def floor_checks(hold: SuiteOutcome, score, floors: dict[str, float], boot: Boot) -> list[Check]:
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
            out.append(floor_check(f"holdout.{metric}", metric, score, floor))
        elif metric in hold.others:
            out.append(floor_check(f"holdout.{metric}", metric, boot.mean(hold.others[metric]), floor))
        else:
            absent = Check(f"holdout.{metric}", metric, math.nan, None, f">= {floor}", False)
            out.append(replace(absent, reason=f"{metric!r} was not measured (known: {sorted(hold.others)})"))
    return out


def label_checks(hold: SuiteOutcome, labels: Sequence[str], gate: GateParams, boot: Boot) -> list[Check]:
    """Classification's own floors on the hold-out: macro-F1, every intent's recall, invalid answers."""
    if hold.gold is None or hold.candidate.answers is None:
        return []
    g, p = encode(hold.gold, hold.candidate.answers, labels)
    f1 = with_ci(lambda a, b: macro_f1(a, b, len(labels)), g, p, **vars(boot))
    recalls = {lab: sc.recall for lab, sc in per_class(g, p, labels).items() if sc.support}
    worst = min(recalls, key=recalls.get)
    low = recalls[worst] < gate.min_class_recall
    why = f"intent {worst!r} is under the floor" if low else ""
    invalid = float(np.mean([x is None for x in hold.candidate.answers]))
    return [
        floor_check("holdout.macro_f1", "macro_f1", f1, gate.min_macro_f1),
        Check(
            "holdout.min_class_recall", f"recall[{worst}]", recalls[worst], None,
            f">= {gate.min_class_recall}", not low, reason=why,
        ),
        Check(
            "holdout.invalid_rate", "invalid_rate", invalid, None, f"<= {gate.max_invalid_rate}",
            invalid <= gate.max_invalid_rate,
        ),
    ]  # fmt: skip


def drop_check(
    name: str, hold_value: float, est, limit: float, reason: str, metric: str = "accuracy"
) -> Check:
    """How far a suite's mean score falls below the hold-out's, against a limit."""
    drop = hold_value - est.value
    ok = _finite(drop) and drop <= limit
    ci = (hold_value - est.hi, hold_value - est.lo)
    return Check(
        name, f"{metric} drop from hold-out", drop, ci, f"<= {limit}", ok, reason="" if ok else reason
    )


def drop_checks(suites: Sequence[SuiteOutcome], hold_score, gate: GateParams, boot: Boot) -> list[Check]:
    """Shifted and perturbation suites: the drop from the hold-out, per suite's limit."""
    out = []
    for suite in (s for s in suites if s.kind != "holdout"):
        limit = gate.max_shifted_drop if suite.kind == "shifted" else gate.max_perturbation_drop
        limit = gate.suite_max_drops.get(suite.name, limit)
        if not suite.rows:
            empty = Check(f"{suite.name}.drop", f"{suite.metric} drop", math.nan, None, f"<= {limit}", False)
            out.append(replace(empty, reason="suite is empty"))
            continue
        est = boot.mean(suite.candidate.values)
        reason = f"{suite.metric} {est.value:.3f} vs hold-out {hold_score.value:.3f}"
        out.append(drop_check(f"{suite.name}.drop", hold_score.value, est, limit, reason, suite.metric))
    return out


def slice_checks(
    hold: SuiteOutcome, slices: dict[str, Sequence[int]], hold_score, gate: GateParams, boot: Boot
) -> tuple[list[Check], list[str]]:
    """Each hold-out slice's drop from the whole hold-out; small slices are noted, not judged."""
    checks, notes = [], []
    values = np.asarray(hold.candidate.values, dtype=float)
    for name, idx in sorted(slices.items()):
        if len(idx) < gate.min_slice_rows:
            notes.append(
                f"slice {name}: {len(idx)} rows, too few to judge (min_slice_rows {gate.min_slice_rows})"
            )
            continue
        est = boot.mean(values[np.asarray(idx, dtype=np.int64)])
        reason = f"{hold.metric} {est.value:.3f} on {len(idx)} rows"
        slice_drop = drop_check(
            f"slice.{name}.drop", hold_score.value, est, gate.max_slice_drop, reason, hold.metric
        )
        checks.append(slice_drop)
    return checks, notes


def ab_checks(
    suites: Sequence[SuiteOutcome],
    hold: SuiteOutcome,
    labels: Sequence[str],
    gate: GateParams,
    baseline_kind: str,
    superiority: bool,
    boot: Boot,
) -> list[Check]:
    """The paired A/B checks, undecided until corrected together. Every one asks the same
    question: better than the base model (first release), or not significantly worse than
    production by more than the margin. 0/1 scores get McNemar, others Wilcoxon."""
    question = "superiority" if superiority else "no_regression"
    out = []
    for suite in suites:
        if not suite.rows or suite.kind == "perturbation" or suite.baseline is None:
            continue
        margin, threshold = _rule(gate, suite.name, superiority)
        r = paired_test(
            suite.candidate.values, suite.baseline.values, question=question, margin=margin,
            resamples=boot.resamples, seed=boot.seed, alpha=gate.alpha,
        )  # fmt: skip
        out.append(
            ab_check(f"{suite.name}.ab_vs_{baseline_kind}", f"{suite.metric} delta", question, r, threshold)
        )
    if hold.gold is not None and hold.candidate.answers is not None and hold.baseline is not None:
        # Macro-F1 on the hold-out, paired bootstrap (the same resampled items score both models).
        k = len(labels)
        g, p = encode(hold.gold, hold.candidate.answers, labels)
        gb, pb = encode(hold.gold, hold.baseline.answers or (), labels)
        margin, threshold = _rule(gate, hold.name, superiority)
        r = paired_bootstrap(
            lambda i: macro_f1(g[i], p[i], k) - macro_f1(gb[i], pb[i], k), len(g), question=question,
            margin=margin, resamples=gate.bootstrap_resamples, seed=boot.seed, alpha=gate.alpha,
        )  # fmt: skip
        out.append(
            ab_check(f"holdout.macro_f1_ab_vs_{baseline_kind}", "macro-F1 delta", question, r, threshold)
        )
    return out


def _rule(gate: GateParams, suite_name: str, superiority: bool) -> tuple[float, str]:
    if superiority:
        return 0.0, f"> 0 at alpha {gate.alpha}"
    margin = gate.suite_margins.get(suite_name, gate.margin)
    return margin, f"not significantly < -{margin}" if margin else "not significantly < 0"


def corrected(checks: list[Check], gate: GateParams, baseline_kind: str, superiority: bool) -> list[Check]:
    """Decide the A/B family after adjusting its p-values together (Holm by default)."""
    for c, pa in zip(checks, adjust([c.p_value for c in checks], gate.correction), strict=True):
        c.p_adjusted = pa
        if superiority:
            c.passed = pa < gate.alpha
            c.reason = "" if c.passed else f"not significantly better than the base model (p={pa:.3g})"
        else:
            c.passed = pa >= gate.alpha
            c.reason = "" if c.passed else f"significantly worse than {baseline_kind} (p={pa:.3g})"
    return checks


def forgetting_check(forgetting: tuple[float, float] | None, gate: GateParams) -> Check:
    threshold = f"<= {gate.max_forgetting_drop}"
    if forgetting is None:
        return Check("probe.forgetting", "probe accuracy drop", math.nan, None, threshold, False,
                     reason="probe was not run")  # fmt: skip
    drop = forgetting[1] - forgetting[0]
    ok = _finite(drop) and drop <= gate.max_forgetting_drop
    return Check("probe.forgetting", "probe accuracy drop vs base", drop, None, threshold, ok)


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
    found: list[Check], gate: GateParams, *, judged: bool, who: str, label: str, metric: str, key: str
) -> tuple[list[Check], list[str]]:
    """A family of no-regression checks against a reference (classical, prompting), Holm
    within it: blocking checks when `judged`, else notes naming the delta, interval and p."""
    for c, pa in zip(found, adjust([c.p_value for c in found], gate.correction), strict=True):
        c.p_adjusted = pa
        c.passed = pa >= gate.alpha
        c.reason = "" if c.passed else f"significantly worse than {who} (p={pa:.3g})"
    if judged:
        return found, []
    notes = [
        f"vs {label}, {c.name.split('.')[0]}: {metric} delta {c.value:+.3f} "
        f"[{c.ci[0]:+.3f}, {c.ci[1]:+.3f}], p={c.p_adjusted:.3g}"
        + ("" if c.passed else f" (significantly worse; reported, not judged: gate.{key} is report)")
        for c in found
        if c.ci is not None and c.p_adjusted is not None
    ]
    return [], notes
