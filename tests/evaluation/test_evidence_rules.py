"""A decision passes only on evidence: non-inferiority with the burden on the candidate, three
outcomes, and the items that would settle an undecided check. Synthetic outcomes, seeded."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import binom

from tunegate.core.params import GateParams
from tunegate.evaluation.checks import Boot, Check, finish
from tunegate.evaluation.evidence import Scores, SuiteOutcome
from tunegate.evaluation.policy import ab_checks, decide

LABELS = [f"intent_{i}" for i in range(6)]
ALPHA = 0.05


def paired(n: int, prod_acc: float, delta: float, disagree: float, rng: np.random.Generator):
    """Gold labels, production's and the candidate's answers on n items: the two disagree on
    about `disagree` of the items, and the candidate's accuracy is `delta` off production's."""
    gold = [LABELS[i % len(LABELS)] for i in range(n)]
    prod_right = rng.random(n) < prod_acc
    # discordant pairs: only-production-right with prob a, only-candidate-right with prob b
    a, b = (disagree - delta) / 2, (disagree + delta) / 2
    u = rng.random(n)
    cand_right = prod_right.copy()
    flip_down = prod_right & (u < a / prod_acc)
    flip_up = ~prod_right & (u < b / (1 - prod_acc))
    cand_right[flip_down], cand_right[flip_up] = False, True

    def answer(right, i):
        return gold[i] if right else LABELS[(LABELS.index(gold[i]) + 1) % len(LABELS)]

    prod = [answer(r, i) for i, r in enumerate(prod_right)]
    cand = [answer(r, i) for i, r in enumerate(cand_right)]
    return gold, cand, prod


def against_production(gold, cand, prod, gate: GateParams):
    """The gate's verdict on a hold-out alone, against production, the other families passing."""
    return decide(
        [SuiteOutcome.classified("holdout", "holdout", gold, cand, prod)], LABELS, gate,
        baseline_kind="production", license_="mit", forgetting=(0.5, 0.5), parity={"p": 1.0},
    )  # fmt: skip


def ab_outcome(n: int, delta: float, seed: int, margin: float = 0.03, disagree: float = 0.1) -> str:
    """The gate's hold-out A/B against production (policy.ab_checks, then finish), on scores."""
    rng = np.random.default_rng(seed)
    gold, cand, prod = paired(n, 0.9, delta, disagree, rng)
    scores = [Scores(tuple(float(a == g) for a, g in zip(x, gold, strict=True))) for x in (cand, prod)]
    hold = SuiteOutcome("holdout", "holdout", None, scores[0], scores[1])
    gate = GateParams(bootstrap_resamples=100, margins={"accuracy": margin})
    (check,) = finish(ab_checks([hold], hold, LABELS, gate, "production", False, Boot.of(gate, 0)), gate)
    return check.outcome


def test_non_inferior_a_planted_regression_twice_the_margin_is_approved_at_most_alpha_of_the_time():
    """168 hold-out items (the embedded size), a candidate 6 points worse than production at a
    3-point margin: the hold-out A/B passes in at most 5% of 1,000 seeded simulations, the count
    checked against the binomial bound (probability 0.001 of exceeding it if the rate is alpha)."""
    runs = 1000
    passed = sum(ab_outcome(168, -0.06, seed) == "passed" for seed in range(runs))
    assert passed <= binom.ppf(0.999, runs, ALPHA), passed


def test_non_inferior_an_equivalent_candidate_on_enough_items_is_approved_and_on_few_is_undecided():
    """The same accuracy, 10% of items answered differently: 3,000 items show non-inferiority at
    a 3-point margin (power about 0.99); on 168 the power is about 0.34, and a check that is
    not shown says not enough evidence, never failed."""
    big = [ab_outcome(3000, 0.0, seed) for seed in range(40)]
    assert big.count("passed") >= 36, big
    small = [ab_outcome(168, 0.0, seed) for seed in range(40)]
    assert 4 <= small.count("passed") <= 24 and "failed" not in small, small


def test_non_inferior_an_identical_candidate_is_approved():
    rng = np.random.default_rng(0)
    gold, _, prod = paired(600, 0.92, 0.0, 0.0, rng)
    gate = GateParams(bootstrap_resamples=200)
    v = against_production(gold, list(prod), prod, gate)
    assert v.outcome == "approved", v.summary()


def test_non_inferior_adding_checks_to_the_family_never_turns_a_failing_check_into_a_pass():
    """A check that does not pass on its own bound stays unpassed however many checks join the
    family (adjusting only makes harm harder to show): failed may become undecided, never passed."""
    rng = np.random.default_rng(1)
    gold, cand, prod = paired(600, 0.9, -0.08, 0.12, rng)
    gate = GateParams(bootstrap_resamples=200)
    v = against_production(gold, cand, prod, gate)
    ab = {c.name: c for c in v.checks}["holdout.ab_vs_production"]
    assert ab.outcome == "failed"
    for extra in (1, 10, 100, 1000):
        filler = [
            Check(f"x{i}", "m", 0.5, (0.4, 0.6), "> 0", True, p_harm=0.5, items=100) for i in range(extra)
        ]
        finish([ab, *filler], gate)
        assert ab.outcome in ("failed", "undecided") and not ab.passed
    assert ab.outcome == "undecided"  # 1,000 harm tests: harm no longer shown, and still no pass


def test_evidence_an_undecided_verdict_names_each_check_and_the_items_that_settle_it():
    rng = np.random.default_rng(2)
    gold, cand, prod = paired(168, 0.9, -0.01, 0.2, rng)
    gate = GateParams(bootstrap_resamples=200)
    v = against_production(gold, cand, prod, gate)
    assert v.outcome == "not_enough_evidence" and not v.approved and not v.failed
    ab = {c.name: c for c in v.checks}["holdout.ab_vs_production"]
    assert ab.outcome == "undecided" and ab.items == 168
    # sized for an equivalent candidate at the observed disagreement: (z_a + z_b)^2 * n se^2 / margin^2
    se = (ab.ci[1] - ab.ci[0]) / (2 * 1.6448536)
    expected = (1.6448536 + 0.8416212) ** 2 * se**2 * 168 / 0.03**2
    assert ab.needed == pytest.approx(expected, rel=0.01) and ab.needed > 168
    assert ab.mdd == pytest.approx((1.6448536 + 0.8416212) * se, rel=1e-3)
    assert "about" in ab.reason and "items would settle it" in ab.reason
    assert v.summary().startswith("not enough evidence:") and "holdout.ab_vs_production (about" in v.summary()
    assert v.to_dict()["outcome"] == "not_enough_evidence"


def test_evidence_a_floor_passes_on_its_lower_bound_not_its_point():
    """Accuracy 0.84 on 60 items against a 0.8 floor: the point clears it, the lower bound does
    not: not enough evidence. On 2,000 items the same accuracy is shown."""

    def floor_outcome(n):
        gold = [LABELS[i % 6] for i in range(n)]
        cand = [g if (i * 7919) % 100 < 84 else LABELS[(LABELS.index(g) + 1) % 6] for i, g in enumerate(gold)]
        base = [LABELS[(LABELS.index(g) + 2) % 6] for g in gold]
        v = decide(
            [SuiteOutcome.classified("holdout", "holdout", gold, cand, base)], LABELS,
            GateParams(bootstrap_resamples=300, min_class_recall=0.0, min_macro_f1=0.0),
            baseline_kind="base", license_="mit", forgetting=(0.5, 0.5), parity={"p": 1.0},
        )  # fmt: skip
        return {c.name: c for c in v.checks}["holdout.accuracy"]

    small = floor_outcome(60)
    assert small.value > 0.8 and small.outcome == "undecided" and small.needed > 60
    assert floor_outcome(2000).outcome == "passed"


def test_evidence_perturbed_variants_cluster_on_their_source_items():
    """A perturbation suite whose rows are variants of hold-out items is paired with them and
    resampled by source item; the check names the clusters and the design effect."""
    n = 200
    gold = [LABELS[i % 6] for i in range(n)]
    ids = [f"h{i}" for i in range(n)]
    cand = [g if i % 10 else LABELS[(LABELS.index(g) + 1) % 6] for i, g in enumerate(gold)]
    base = [LABELS[(LABELS.index(g) + 2) % 6] for g in gold]
    hold = SuiteOutcome.classified("holdout", "holdout", gold, cand, base, ids)
    # two variants per source item: each source's variants share its fate (right together)
    pids = [i for i in ids for _ in range(2)]
    pgold = [g for g in gold for _ in range(2)]
    pcand = [c for c in cand for _ in range(2)]
    pert = SuiteOutcome.classified("perturb_typos", "perturbation", pgold, pcand, None, pids)
    v = decide(
        [hold, pert], LABELS, GateParams(bootstrap_resamples=300), baseline_kind="base", license_="mit",
        forgetting=(0.5, 0.5), parity={"p": 1.0},
    )  # fmt: skip
    drop = {c.name: c for c in v.checks}["perturb_typos.drop"]
    assert drop.value == pytest.approx(0.0) and drop.items == n  # 200 clusters, not 400 rows
    assert "200 clusters of 400 variants" in drop.test
    effect = float(drop.test.split("design effect ")[1].rstrip(")"))
    assert 1.6 < effect < 2.4  # perfectly correlated pairs: variance twice the independent rows'


def test_evidence_a_failed_forgetting_check_says_by_how_much():
    """`make demo`'s retrained candidate was rejected on the probe with an empty reason (the
    verdict line read "first: probe.forgetting ()"): a failed check names its figures."""
    from tunegate.core.params import GateParams
    from tunegate.evaluation.policy import forgetting_check

    gate = GateParams(max_forgetting_drop=0.1)
    failed = forgetting_check((0.45, 0.6), gate)
    assert not failed.passed and failed.value == pytest.approx(0.15)
    assert "0.150 fewer general questions" in failed.reason and "(0.450 vs 0.600)" in failed.reason
    assert "limit 0.1" in failed.reason
    kept = forgetting_check((0.55, 0.6), gate)
    assert kept.passed and kept.reason == ""
