"""The drift tests' false-alarm rates under their null, and that they still see a shift.

Seeded draws, so each figure is fixed; the bounds leave room for the binomial spread of a
test that is exactly at its level (100 draws at 0.05: 11 or more happens 0.1% of the time).
"""

import numpy as np
from scipy.stats import chisquare

from tunegate.monitoring.drift_tests import (
    auc_p_value,
    auc_threshold,
    classifier_auc,
    held_out_sizes,
    two_sample_chisquare,
)

LABELS = [f"intent_{i}" for i in range(12)]
WEIGHTS = np.array([30, 20, 12, 8, 6, 5, 5, 4, 4, 3, 2, 1], dtype=float) / 100


def draw(rng, n: int, weights=WEIGHTS) -> list[str]:
    return list(rng.choice(LABELS, size=n, p=weights))


def test_drift_label_test_counts_the_reference_as_a_sample():
    """Reference and window from one label distribution: the permutation two-sample test
    raises alarms at its level; the one-sample chi-square that treats the reference's counts
    as the truth (Evidently's `chisquare`, the old test) raises several times more."""
    rng = np.random.default_rng(0)
    new, old = 0, 0
    for i in range(100):
        ref, cur = draw(rng, 120), draw(rng, 300)
        new += two_sample_chisquare(ref, cur, seed=i, resamples=199) < 0.05
        keys = sorted(set(ref) | set(cur))
        expected = np.array([ref.count(k) for k in keys], dtype=float) * len(cur) / len(ref)
        observed = [cur.count(k) for k in keys]
        with np.errstate(divide="ignore", invalid="ignore"):
            old += chisquare(observed, expected + 1e-9).pvalue < 0.05
    assert new <= 10 and old >= 3 * max(new, 5), (new, old)
    shifted = WEIGHTS[::-1]
    caught = sum(
        two_sample_chisquare(draw(rng, 120), draw(rng, 300, shifted), seed=i, resamples=199) < 0.05
        for i in range(20)
    )
    assert caught == 20


def test_drift_embedding_threshold_comes_from_the_null_at_the_actual_sizes():
    rng = np.random.default_rng(1)
    alarms = 0
    for _ in range(100):
        ref, cur = rng.normal(size=(200, 16)), rng.normal(size=(100, 16))
        auc, n1, n2 = classifier_auc(ref, cur)
        alarms += auc_p_value(auc, n1, n2) < 0.05
    assert alarms <= 10, alarms
    n1, n2 = held_out_sizes(200, 100)
    assert n1 + n2 == 150 and abs(auc_p_value(auc_threshold(0.01, n1, n2), n1, n2) - 0.01) < 1e-9
    # Small windows need a larger AUC than big ones: a fixed 0.55 is wrong at both ends.
    small, large = (
        auc_threshold(0.01, *held_out_sizes(1000, 50)),
        auc_threshold(0.01, *held_out_sizes(1000, 1000)),
    )
    assert small > 0.6 > 0.55 > large
    moved = sum(
        auc_p_value(*classifier_auc(rng.normal(size=(200, 16)), rng.normal(0.4, 1, size=(100, 16)))) < 0.05
        for _ in range(20)
    )
    assert moved >= 18
