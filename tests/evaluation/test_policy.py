"""The gate policy on synthetic outcomes: every rule can pass and can fail for its reason."""

import random

import pytest

from evaluation.policy import SuiteOutcome, decide
from tunegate.params import GateParams

LABELS = [f"intent_{i}" for i in range(6)]


def outcomes(n: int, acc: float, seed: int, gold=None) -> tuple[list[str], list[str]]:
    rng = random.Random(seed)
    gold = gold or [LABELS[i % len(LABELS)] for i in range(n)]
    pred = [g if rng.random() < acc else rng.choice([x for x in LABELS if x != g]) for g in gold]
    return gold, pred


def suites(cand_acc=0.92, base_acc=0.2, shifted_acc=0.8, n=600, seed=0):
    gold, cand = outcomes(n, cand_acc, seed)
    _, base = outcomes(n, base_acc, seed + 1, gold)
    sg, sc = outcomes(n // 2, shifted_acc, seed + 2)
    _, sb = outcomes(n // 2, base_acc, seed + 3, sg)
    return [
        SuiteOutcome("holdout", "holdout", gold, cand, base),
        SuiteOutcome("shifted", "shifted", sg, sc, sb),
    ]


def run(s, **kw):
    kw.setdefault("baseline_kind", "base")
    kw.setdefault("license_", "apache-2.0")
    kw.setdefault("forgetting", (0.6, 0.62))
    kw.setdefault("parity", 0.99)
    return decide(s, LABELS, GateParams(bootstrap_resamples=200), **kw)


def by_name(verdict):
    return {c.name: c for c in verdict.checks}


def test_first_release_of_a_good_candidate_is_approved_with_every_check_recorded():
    v = run(suites())
    assert v.approved, v.summary()
    names = set(by_name(v))
    assert {
        "holdout.accuracy",
        "holdout.macro_f1",
        "holdout.min_class_recall",
        "holdout.invalid_rate",
        "shifted.drop",
        "holdout.ab_vs_base",
        "shifted.ab_vs_base",
        "probe.forgetting",
        "serving.parity",
        "license",
    } == names
    acc = by_name(v)["holdout.accuracy"]
    assert acc.ci[0] < acc.value < acc.ci[1]
    ab = by_name(v)["holdout.ab_vs_base"]
    assert ab.p_adjusted >= ab.p_value and ab.p_adjusted < 0.05


def test_candidate_no_better_than_base_fails_superiority():
    v = run(suites(cand_acc=0.9, base_acc=0.9))
    assert not v.approved
    assert not by_name(v)["holdout.ab_vs_base"].passed
    assert "not significantly better" in by_name(v)["holdout.ab_vs_base"].reason


def test_regression_against_production_is_caught():
    s = suites(cand_acc=0.85, base_acc=0.92)  # production is better by 7 points
    v = run(s, baseline_kind="production")
    check = by_name(v)["holdout.ab_vs_production"]
    assert not check.passed and check.value < 0
    assert "significantly worse than production" in check.reason


def test_equivalent_candidate_passes_against_production():
    gold, cand = outcomes(600, 0.9, 5)
    s = [SuiteOutcome("holdout", "holdout", gold, cand, list(cand))]
    v = run(s, baseline_kind="production")
    assert by_name(v)["holdout.ab_vs_production"].passed


def test_shifted_collapse_fails_the_drop_check():
    v = run(suites(shifted_acc=0.3))
    assert not by_name(v)["shifted.drop"].passed
    assert "vs hold-out" in by_name(v)["shifted.drop"].reason


def test_empty_suite_missing_parity_and_bad_license_fail_with_reasons():
    s = suites()
    s.append(SuiteOutcome("typos", "perturbation", [], [], []))
    v = run(s, parity=None, license_="cc-by-nc-4.0", forgetting=None)
    checks = by_name(v)
    assert checks["typos.drop"].reason == "suite is empty"
    assert checks["serving.parity"].reason == "parity was not measured"
    assert "not allowed" in checks["license"].reason
    assert checks["probe.forgetting"].reason == "probe was not run"
    assert not v.approved


def test_invalid_outputs_and_a_weak_intent():
    gold, cand = outcomes(600, 0.95, 3)
    cand = [None if i % 20 == 0 else c for i, c in enumerate(cand)]  # 5% invalid
    cand = [
        ("intent_1" if g == "intent_0" else c) for g, c in zip(gold, cand, strict=True)
    ]  # intent_0 never right
    _, base = outcomes(600, 0.2, 4, gold)
    v = run([SuiteOutcome("holdout", "holdout", gold, cand, base)])
    checks = by_name(v)
    assert not checks["holdout.invalid_rate"].passed
    assert checks["holdout.min_class_recall"].metric == "recall[intent_0]"
    assert not checks["holdout.min_class_recall"].passed


def test_missing_holdout_is_a_failed_check_not_a_crash():
    v = run([])
    assert not v.approved and v.checks[0].reason == "no hold-out outcomes"


@pytest.mark.parametrize("correction", ["holm", "fdr_bh", "none"])
def test_corrections_are_configurable(correction):
    v = decide(
        suites(),
        LABELS,
        GateParams(correction=correction, bootstrap_resamples=200),
        baseline_kind="base",
        license_="mit",
        forgetting=(0.5, 0.5),
        parity=1.0,
    )
    assert v.approved
