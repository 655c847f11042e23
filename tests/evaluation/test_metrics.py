import numpy as np
import pytest

from tunegate.evaluation.metrics import accuracy, confusion, encode, macro_f1, per_class, token_f1, with_ci

LABELS = ["a", "b", "c"]


def test_encode_marks_invalid_and_rejects_unknown_gold():
    g, p = encode(["a", "b"], ["b", None], LABELS)
    assert g.tolist() == [0, 1] and p.tolist() == [1, 3]
    with pytest.raises(ValueError, match=r"\['zzz'\]"):
        encode(["zzz"], ["a"], LABELS)


def test_metrics_match_hand_computation():
    gold = ["a", "a", "a", "b", "b", "c"]
    pred = ["a", "a", "b", "b", None, "c"]
    g, p = encode(gold, pred, LABELS)
    assert accuracy(g, p) == pytest.approx(4 / 6)
    # a: P=1, R=2/3, F1=0.8; b: P=1/2, R=1/2, F1=0.5; c: F1=1 -> macro 0.7667
    assert macro_f1(g, p, 3) == pytest.approx((0.8 + 0.5 + 1.0) / 3)
    scores = per_class(g, p, LABELS)
    assert scores["a"].recall == pytest.approx(2 / 3) and scores["b"].precision == pytest.approx(0.5)
    assert confusion(g, p, 3)[1, 3] == 1  # one invalid answer for gold b


def test_bootstrap_interval_contains_value_and_is_seeded():
    rng = np.random.default_rng(1)
    g = rng.integers(0, 3, 300)
    p = np.where(rng.random(300) < 0.8, g, (g + 1) % 3)
    est = with_ci(accuracy, g, p, resamples=500, seed=7)
    assert est.lo < est.value < est.hi
    assert 0.03 < est.hi - est.lo < 0.15
    assert with_ci(accuracy, g, p, resamples=500, seed=7) == est


def test_token_f1():
    assert token_f1("the capital is Paris", "Paris") == pytest.approx(2 * (1 / 4) * 1 / (1 / 4 + 1))
    assert token_f1("", "") == 1.0 and token_f1("x", "y") == 0.0
