"""The gate policy on synthetic outcomes: every rule can pass and can fail for its reason."""

import random

import pytest

from tunegate.core.params import GateParams
from tunegate.evaluation.evidence import SuiteOutcome
from tunegate.evaluation.policy import decide

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
        SuiteOutcome.classified("holdout", "holdout", gold, cand, base),
        SuiteOutcome.classified("shifted", "shifted", sg, sc, sb),
    ]


def run(s, **kw):
    kw.setdefault("baseline_kind", "base")
    kw.setdefault("license_", "apache-2.0")
    kw.setdefault("forgetting", (0.6, 0.62))
    kw.setdefault("parity", {"served_vs_reference": 0.99})
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
        "holdout.macro_f1_ab_vs_base",
        "shifted.ab_vs_base",
        "probe.forgetting",
        "parity.served_vs_reference",
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
    assert "shown worse than production by more than the margin" in check.reason


def test_equivalent_candidate_passes_against_production():
    gold, cand = outcomes(600, 0.9, 5)
    s = [SuiteOutcome.classified("holdout", "holdout", gold, cand, list(cand))]
    v = run(s, baseline_kind="production")
    assert by_name(v)["holdout.ab_vs_production"].passed


def test_shifted_collapse_fails_the_drop_check():
    v = run(suites(shifted_acc=0.3))
    assert by_name(v)["shifted.drop"].outcome == "failed"
    assert "the drop is shown above the limit" in by_name(v)["shifted.drop"].reason


def test_empty_suite_missing_parity_and_bad_license_fail_with_reasons():
    s = suites()
    s.append(SuiteOutcome.classified("typos", "perturbation", [], [], []))
    v = run(s, parity=None, license_="cc-by-nc-4.0", forgetting=None)
    checks = by_name(v)
    assert checks["typos.drop"].reason == "suite is empty"
    assert checks["parity"].reason == "parity was not measured"
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
    v = run([SuiteOutcome.classified("holdout", "holdout", gold, cand, base)])
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
        parity={"served_vs_reference": 1.0},
    )
    assert v.approved


def test_parity_below_the_declared_rate_fails_and_names_the_path():
    v = run(suites(), parity={"served_vs_reference": 1.0, "evaluation_vs_reference": 0.95})
    checks = by_name(v)
    assert checks["parity.served_vs_reference"].passed
    assert not checks["parity.evaluation_vs_reference"].passed
    assert "reference" in checks["parity.evaluation_vs_reference"].reason
    assert not v.approved


def test_forgetting_past_the_limit_fails():
    v = run(suites(), forgetting=(0.12, 0.6))
    check = by_name(v)["probe.forgetting"]
    assert not check.passed and check.value == pytest.approx(0.48)


def test_slices_are_checked_when_large_enough_and_noted_when_not():
    s = suites(n=600)
    gold, cand = list(s[0].gold), list(s[0].candidate.answers)
    long_rows = list(range(0, 600, 3))  # 200 rows where the candidate is now always wrong
    for i in long_rows:
        cand[i] = next(x for x in LABELS if x != gold[i])
    s[0] = SuiteOutcome.classified("holdout", "holdout", gold, cand, s[0].baseline.answers)
    v = run(s, slices={"words>20": long_rows, "words<=8": [1, 2, 4]})
    check = by_name(v)["slice.words>20.drop"]
    assert not check.passed and check.value > 0.5
    assert "slice.words<=8.drop" not in by_name(v)
    assert any("words<=8: 3 rows, too few to judge" in n for n in v.notes)


def test_macro_f1_regression_against_production_is_caught():
    gold, prod = outcomes(800, 0.9, 11)
    cand = list(prod)
    for i, g in enumerate(gold):  # the candidate loses two intents entirely
        if g in ("intent_0", "intent_1"):
            cand[i] = "intent_2"
    v = run([SuiteOutcome.classified("holdout", "holdout", gold, cand, prod)], baseline_kind="production")
    check = by_name(v)["holdout.macro_f1_ab_vs_production"]
    assert check.outcome == "failed" and check.value < -0.1
    assert check.p_harm_adjusted < 0.05


def test_per_suite_drop_limits_and_margins_override_the_defaults():
    s = suites(shifted_acc=0.6)  # a 0.32 drop from hold-out
    assert not by_name(run(s))["shifted.drop"].passed
    loose = decide(
        s,
        LABELS,
        GateParams(bootstrap_resamples=200, suite_max_drops={"shifted": 0.5}),
        baseline_kind="base",
        license_="mit",
        forgetting=(0.5, 0.5),
        parity={"served_vs_reference": 1.0},
    )
    assert by_name(loose)["shifted.drop"].passed and by_name(loose)["shifted.drop"].threshold == "<= 0.5"
    gold, prod = outcomes(600, 0.9, 21)
    cand = [g if i % 40 else next(x for x in LABELS if x != g) for i, g in enumerate(gold)]
    cand = [c if p == g else p for c, p, g in zip(cand, prod, gold, strict=True)]
    s = [SuiteOutcome.classified("holdout", "holdout", gold, cand, prod)]
    strict = run(s, baseline_kind="production")
    lenient = decide(
        s,
        LABELS,
        GateParams(bootstrap_resamples=200, suite_margins={"holdout": 0.05}),
        baseline_kind="production",
        license_="mit",
        forgetting=(0.5, 0.5),
        parity={"served_vs_reference": 1.0},
    )
    assert by_name(strict)["holdout.ab_vs_production"].threshold == "lower bound > -0.03"
    assert by_name(lenient)["holdout.ab_vs_production"].threshold == "lower bound > -0.05"
    lenient_p = by_name(lenient)["holdout.ab_vs_production"].p_value  # of "not worse by the margin"
    assert lenient_p < by_name(strict)["holdout.ab_vs_production"].p_value
