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
from dataclasses import asdict, dataclass, field
from typing import Literal

import numpy as np

from evaluation.evidence import SuiteOutcome
from evaluation.metrics import accuracy, encode, macro_f1, per_class, with_ci
from evaluation.stats import PairedResult, adjust, paired_accuracy, paired_bootstrap
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

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if not c.passed]

    def summary(self) -> str:
        if self.approved:
            return f"approved: all {len(self.checks)} checks passed"
        first = self.failed[0]
        n_failed, n = len(self.failed), len(self.checks)
        return f"rejected: {n_failed} of {n} checks failed; first: {first.name} ({first.reason})"

    def to_dict(self) -> dict:
        return {
            "approved": self.approved,
            "baseline_kind": self.baseline_kind,
            "checks": [asdict(c) for c in self.checks],
            "notes": list(self.notes),
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


def decide(
    suites: Sequence[SuiteOutcome],
    labels: Sequence[str],
    gp: GateParams,
    *,
    baseline_kind: Literal["production", "base"],
    license_: str,
    forgetting: tuple[float, float] | None = None,
    parity: dict[str, float] | None = None,
    parity_missing: str = "parity was not measured",
    slices: dict[str, Sequence[int]] | None = None,
    seed: int = 0,
) -> Verdict:
    """All gate checks. `forgetting` is (candidate, base) probe accuracy; `parity` the
    agreement rates with the reference predictions, by name (None or empty when not
    measured, for the reason `parity_missing`: the check then fails); `slices` maps a
    slice name to hold-out row indices."""
    k = len(labels)
    checks: list[Check] = []
    stat_checks: list[Check] = []
    notes: list[str] = []
    holdouts = [s for s in suites if s.kind == "holdout"]
    if len(holdouts) != 1 or not holdouts[0].gold:
        return Verdict(
            False,
            baseline_kind,
            [
                Check(
                    "holdout.present",
                    "rows",
                    0.0,
                    None,
                    "one non-empty hold-out",
                    False,
                    reason="no hold-out outcomes",
                )
            ],
        )
    boot = {"resamples": gp.bootstrap_resamples, "seed": seed, "alpha": gp.alpha}
    hold = holdouts[0]
    g, p = encode(hold.gold, hold.candidate, labels)
    hold_acc = with_ci(accuracy, g, p, **boot)
    checks.append(floor_check("holdout.accuracy", "accuracy", hold_acc, gp.min_accuracy))
    checks.append(
        floor_check(
            "holdout.macro_f1",
            "macro_f1",
            with_ci(lambda a, b: macro_f1(a, b, k), g, p, **boot),
            gp.min_macro_f1,
        )
    )
    recalls = {lab: sc.recall for lab, sc in per_class(g, p, labels).items() if sc.support}
    worst = min(recalls, key=recalls.get)
    checks.append(
        Check(
            "holdout.min_class_recall",
            f"recall[{worst}]",
            recalls[worst],
            None,
            f">= {gp.min_class_recall}",
            recalls[worst] >= gp.min_class_recall,
            reason="" if recalls[worst] >= gp.min_class_recall else f"intent {worst!r} is under the floor",
        )
    )
    invalid = float(np.mean([x is None for x in hold.candidate]))
    checks.append(
        Check(
            "holdout.invalid_rate",
            "invalid_rate",
            invalid,
            None,
            f"<= {gp.max_invalid_rate}",
            invalid <= gp.max_invalid_rate,
        )
    )

    for suite in suites:
        if suite.kind == "holdout":
            continue
        limit = gp.max_shifted_drop if suite.kind == "shifted" else gp.max_perturbation_drop
        limit = gp.suite_max_drops.get(suite.name, limit)
        if not suite.gold:
            checks.append(
                Check(
                    f"{suite.name}.drop",
                    "accuracy drop",
                    float("nan"),
                    None,
                    f"<= {limit}",
                    False,
                    reason="suite is empty",
                )
            )
            continue
        gs, ps = encode(suite.gold, suite.candidate, labels)
        acc = with_ci(accuracy, gs, ps, **boot)
        drop = hold_acc.value - acc.value
        checks.append(
            Check(
                f"{suite.name}.drop",
                "accuracy drop from hold-out",
                drop,
                (hold_acc.value - acc.hi, hold_acc.value - acc.lo),
                f"<= {limit}",
                drop <= limit,
                reason="" if drop <= limit else f"accuracy {acc.value:.3f} vs hold-out {hold_acc.value:.3f}",
            )
        )

    for name, idx in sorted((slices or {}).items()):
        idx = np.asarray(idx, dtype=np.int64)
        if len(idx) < gp.min_slice_rows:
            notes.append(
                f"slice {name}: {len(idx)} rows, too few to judge (min_slice_rows {gp.min_slice_rows})"
            )
            continue
        acc = with_ci(accuracy, g[idx], p[idx], **boot)
        drop = hold_acc.value - acc.value
        checks.append(
            Check(
                f"slice.{name}.drop",
                "accuracy drop from hold-out",
                drop,
                (hold_acc.value - acc.hi, hold_acc.value - acc.lo),
                f"<= {gp.max_slice_drop}",
                _finite(drop) and drop <= gp.max_slice_drop,
                reason="" if drop <= gp.max_slice_drop else f"accuracy {acc.value:.3f} on {len(idx)} rows",
            )
        )

    # Every A/B check asks the same question: better than the base model (first release),
    # or not significantly worse than production by more than the margin.
    superiority = baseline_kind == "base" and gp.first_release == "superiority"
    question = "superiority" if superiority else "no_regression"

    def rule(suite_name: str) -> tuple[float, str]:
        if superiority:
            return 0.0, f"> 0 at alpha {gp.alpha}"
        margin = gp.suite_margins.get(suite_name, gp.margin)
        return margin, f"not significantly < -{margin}" if margin else "not significantly < 0"

    for suite in suites:
        if not suite.gold or suite.kind == "perturbation":
            continue
        margin, threshold = rule(suite.name)
        cand_ok = np.array([c == y for c, y in zip(suite.candidate, suite.gold, strict=True)])
        base_ok = np.array([b == y for b, y in zip(suite.baseline, suite.gold, strict=True)])
        r = paired_accuracy(cand_ok, base_ok, question=question, margin=margin, alpha=gp.alpha)
        stat_checks.append(
            ab_check(f"{suite.name}.ab_vs_{baseline_kind}", "accuracy delta", question, r, threshold)
        )

    # Macro-F1 on the hold-out, paired bootstrap (the same resampled items score both models).
    gb, pb = encode(hold.gold, hold.baseline, labels)

    def f1_delta(i: np.ndarray) -> float:
        return macro_f1(g[i], p[i], k) - macro_f1(gb[i], pb[i], k)

    margin, threshold = rule(hold.name)
    r = paired_bootstrap(
        f1_delta,
        len(g),
        question=question,
        margin=margin,
        resamples=gp.bootstrap_resamples,
        seed=seed,
        alpha=gp.alpha,
    )
    stat_checks.append(
        ab_check(f"holdout.macro_f1_ab_vs_{baseline_kind}", "macro-F1 delta", question, r, threshold)
    )
    checks.extend(stat_checks)

    adjusted = adjust([c.p_value for c in stat_checks], gp.correction)
    for c, pa in zip(stat_checks, adjusted, strict=True):
        c.p_adjusted = pa
        if question == "superiority":
            c.passed = pa < gp.alpha
            c.reason = "" if c.passed else f"not significantly better than the base model (p={pa:.3g})"
        else:
            c.passed = pa >= gp.alpha
            c.reason = "" if c.passed else f"significantly worse than {baseline_kind} (p={pa:.3g})"

    if forgetting is None:
        checks.append(
            Check(
                "probe.forgetting",
                "probe accuracy drop",
                float("nan"),
                None,
                f"<= {gp.max_forgetting_drop}",
                False,
                reason="probe was not run",
            )
        )
    else:
        drop = forgetting[1] - forgetting[0]
        checks.append(
            Check(
                "probe.forgetting",
                "probe accuracy drop vs base",
                drop,
                None,
                f"<= {gp.max_forgetting_drop}",
                _finite(drop) and drop <= gp.max_forgetting_drop,
            )
        )
    if not parity:
        checks.append(
            Check(
                "parity", "agreement", float("nan"), None, f">= {gp.min_parity}", False, reason=parity_missing
            )
        )
    for name, rate in sorted((parity or {}).items()):
        ok = _finite(rate) and rate >= gp.min_parity
        checks.append(
            Check(
                f"parity.{name}",
                "agreement",
                rate,
                None,
                f">= {gp.min_parity}",
                ok,
                reason="" if ok else "predictions disagree with the transformers + PEFT reference",
            )
        )
    ok = license_.lower() in gp.allowed_licenses
    checks.append(
        Check(
            "license",
            "base model license",
            float(ok),
            None,
            f"in {list(gp.allowed_licenses)}",
            ok,
            reason="" if ok else f"license {license_!r} is not allowed",
        )
    )
    return Verdict(all(c.passed for c in checks), baseline_kind, checks, notes)
