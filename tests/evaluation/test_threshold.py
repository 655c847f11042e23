"""The auto abstention threshold: the most coverage that meets every floor on validation."""

from __future__ import annotations

import numpy as np
import pytest

from tunegate.evaluation.threshold import (
    FLOORS,
    Floors,
    choose_threshold,
    curves,
    mixed_precision,
    wilson_lower,
)

DEFAULT = Floors(precision=0.95, selective_accuracy=0.9, coverage=0.5, oos_recall=0.5, confidence=0.9)


def strong_model(seed: int = 0, n: int = 900, n_oos: int = 100) -> tuple[list, list, list]:
    """In-scope validation answers right 0.98 of the time even with no threshold; out-of-scope
    messages answered with confidences that overlap the in-scope ones (as a fine-tuned model does)."""
    rng = np.random.default_rng(seed)
    conf = rng.beta(9, 1, n)
    right = rng.random(n) < np.where(conf > 0.6, 0.99, 0.8)
    oos = rng.beta(4, 2, n_oos)
    return conf.tolist(), right.tolist(), oos.tolist()


def test_a_strong_model_still_gets_a_threshold_that_meets_the_out_of_scope_floor() -> None:
    """The issue's case: in-scope precision is above target at zero, so a precision-only rule
    picks 0 and abstains on no out-of-scope message. The rule raises the threshold until the
    out-of-scope recall's lower bound clears its floor, and says that floor bound it."""
    conf, right, oos = strong_model()
    assert np.mean(right) >= 0.95  # precision at threshold 0 already meets the target
    t = choose_threshold(conf, right, oos, DEFAULT)
    assert t.met and t.value > 0 and t.bound_by == ("oos_recall",)
    recall = t.floor("oos_recall")
    assert recall.bound >= 0.5 and recall.value > recall.bound  # the bound, not the point, is judged
    assert recall.value == pytest.approx(np.mean(np.array(oos) < t.value))
    # the lowest such threshold: one step down, the out-of-scope bound falls short
    assert not next(f for f in t.previous if f.name == "oos_recall").met
    assert t.floor("coverage").value == pytest.approx(np.mean(np.array(conf) >= t.value))
    assert "bound by oos_recall" in t.explain()


def test_the_bound_is_a_margin_for_the_validation_sets_size() -> None:
    """The same rates on a ten-times smaller validation set need a higher threshold: the
    Wilson bound of 30 out-of-scope rows is looser than that of 300."""
    conf, right, oos = strong_model(seed=1, n=900, n_oos=300)
    big = choose_threshold(conf, right, oos, DEFAULT)
    small = choose_threshold(conf, right, oos[:30], DEFAULT)
    point = choose_threshold(conf, right, oos[:30], Floors(0.95, 0.9, 0.5, 0.5, confidence=0.5))
    assert big.met and small.met and point.met
    assert point.value <= small.value and big.value < small.value
    assert point.floor("oos_recall").bound == point.floor("oos_recall").value


def test_when_no_threshold_meets_every_floor_it_says_which_and_keeps_the_best_trade_off() -> None:
    conf, right, oos = strong_model(seed=2)
    hard = Floors(precision=0.95, selective_accuracy=0.9, coverage=0.9, oos_recall=0.95, confidence=0.9)
    t = choose_threshold(conf, right, oos, hard)
    assert not t.met
    assert set(t.bound_by) == {"coverage", "oos_recall"}  # each can be met alone, not both
    assert t.unmet_alone == ()
    assert "no threshold meets every floor" in t.explain() and "coverage" in t.explain()
    worst = max(f.floor - f.bound for f in t.floors)
    k = curves(conf, right, oos, hard)  # no candidate threshold's worst shortfall is smaller
    every = np.max([getattr(hard, n) - np.nan_to_num(k[f"{n}_bound"], nan=-1) for n in FLOORS], axis=0)
    assert worst == pytest.approx(every.min()) and worst > 0
    assert all(f.met == (f.bound >= f.floor) for f in t.floors)
    impossible = choose_threshold([0.9, 0.8, 0.7], [False, False, True], [0.1], DEFAULT)
    assert not impossible.met and "precision" in impossible.unmet_alone


def test_without_out_of_scope_rows_the_threshold_is_chosen_on_the_in_scope_floors_alone() -> None:
    conf, right, _ = strong_model(seed=3)
    t = choose_threshold(conf, right, [], DEFAULT)
    assert t.met and t.value == 0.0 and t.oos_rows == 0
    assert [f.name for f in t.floors] == ["precision", "selective_accuracy", "coverage"]
    assert t.explain() == "every floor holds on validation without abstaining"


def test_a_declared_out_of_scope_share_moves_the_precision_target_to_that_mix() -> None:
    """With 30% of traffic out of scope, every out-of-scope message answered is a wrong
    answer someone gets: precision at that mix needs far more abstention than in-scope
    precision, so the threshold rises and precision binds it."""
    conf, right, oos = strong_model(seed=4)
    apart = choose_threshold(conf, right, oos, DEFAULT)
    mixed = choose_threshold(conf, right, oos, Floors(0.95, 0.9, 0.5, 0.5, 0.9, oos_share=0.3))
    assert mixed.met and mixed.value > apart.value and "precision" in mixed.bound_by
    f = {x.name: x for x in mixed.floors}
    expected = mixed_precision(f["coverage"].value, f["selective_accuracy"].value, f["oos_recall"].value, 0.3)
    assert f["precision"].value == pytest.approx(float(expected)) and f["precision"].value >= 0.95
    assert f["precision"].value < f["selective_accuracy"].value  # the mix costs precision


def test_mixed_precision_and_wilson_bounds() -> None:
    # 70% in scope all answered, 90% right; 30% out of scope, half answered: 0.63 / (0.7 + 0.15)
    assert float(mixed_precision(1.0, 0.9, 0.5, 0.3)) == pytest.approx(0.63 / 0.85)
    low = wilson_lower(np.array([45, 0]), np.array([50, 0]), 0.95)
    assert 0.79 < low[0] < 0.9 and np.isnan(low[1])
    from statsmodels.stats.proportion import proportion_confint

    assert low[0] == pytest.approx(proportion_confint(45, 50, alpha=0.1, method="wilson")[0])
