import numpy as np
import pytest
from scipy import stats as sps

from tunegate.evaluation.stats import adjust, mcnemar_table, paired_accuracy, paired_bootstrap


def outcomes(both, only_base, only_cand, neither):
    cand = [True] * both + [False] * only_base + [True] * only_cand + [False] * neither
    base = [True] * both + [True] * only_base + [False] * only_cand + [False] * neither
    return np.array(cand), np.array(base)


def test_table_layout():
    c, b = outcomes(5, 3, 2, 1)
    assert mcnemar_table(c, b).tolist() == [[5, 3], [2, 1]]


def test_exact_mcnemar_matches_the_binomial_by_hand():
    # 12 discordant pairs, 10 favour the baseline: two-sided exact p = 2 * P(X <= 2 | 12, 0.5)
    c, b = outcomes(80, 10, 2, 8)
    r = paired_accuracy(c, b, question="superiority")
    by_hand = 2 * (1 + 12 + 66) / 4096
    assert r.p_harm == pytest.approx(by_hand / 2)  # shown worse than the baseline
    assert r.p_value == pytest.approx(1 - by_hand / 2)  # not shown better
    assert r.delta == pytest.approx(-8 / 100)
    assert "exact" in r.test


def test_chi_square_mcnemar_matches_hand_value():
    c, b = outcomes(400, 30, 15, 55)
    r = paired_accuracy(c, b, question="superiority")
    stat = (abs(30 - 15) - 1) ** 2 / 45
    assert r.p_harm == pytest.approx(sps.chi2.sf(stat, 1) / 2)
    assert r.lo < r.delta < r.hi


def tango_by_hand(b: int, c: int, n: int, d0: float) -> float:
    """Tango (1998): (b - c - n d0) / sqrt(n (2 p21 + d0 (1 - d0))), p21 the restricted MLE root
    of 2n p^2 + B p + C with B = -b - c + (2n - b + c) d0 and C = -c d0 (1 - d0)."""
    big_b = -b - c + (2 * n - b + c) * d0
    p21 = (np.sqrt(big_b**2 + 8 * n * c * d0 * (1 - d0)) - big_b) / (4 * n)
    return (b - c - n * d0) / np.sqrt(n * (2 * p21 + d0 * (1 - d0)))


def test_tango_score_bounds_are_where_the_statistic_is_z():
    """15 items only the candidate got right, 30 only the baseline, of 500: the one-sided 95%
    bounds are the differences at which Tango's statistic is +z and -z; the margin's p-value is
    under alpha exactly when the lower bound clears -margin."""
    c, b = outcomes(400, 30, 15, 55)
    r = paired_accuracy(c, b, question="non_inferiority", margin=0.03, alpha=0.05)
    z = sps.norm.ppf(0.95)
    assert tango_by_hand(15, 30, 500, r.lo) == pytest.approx(z, abs=1e-6)
    assert tango_by_hand(15, 30, 500, r.hi) == pytest.approx(-z, abs=1e-6)
    assert r.lo < r.delta < r.hi and r.delta == pytest.approx(-0.03)
    assert r.p_value == pytest.approx(sps.norm.sf(tango_by_hand(15, 30, 500, -0.03)))
    assert (r.p_value < 0.05) == (r.lo > -0.03) and r.p_harm == pytest.approx(1 - r.p_value)
    wider = paired_accuracy(c, b, question="non_inferiority", margin=0.06, alpha=0.05)
    assert wider.p_value < 0.05 < r.p_value  # a 3-point drop is shown inside 6 points, not inside 3


def test_non_inferior_identical_models_have_width_without_discordant_pairs():
    """No discordant pair: the plain Wald interval would have no width and show anything;
    Tango's still needs items. 168 identical answers clear a 3-point margin, 20 do not."""
    same = np.array([True] * 150 + [False] * 18)
    big = paired_accuracy(same, same, question="non_inferiority", margin=0.03)
    assert big.lo < 0 < big.hi and big.lo > -0.03
    small = paired_accuracy(same[:20], same[:20], question="non_inferiority", margin=0.03)
    assert small.lo < -0.03


def test_superiority_of_a_clearly_better_candidate():
    c, b = outcomes(50, 2, 40, 8)
    r = paired_accuracy(c, b, question="superiority")
    assert r.delta > 0 and r.p_value < 1e-6 and r.p_harm > 0.99


def test_margin_shifts_the_question():
    c, b = outcomes(400, 30, 20, 50)  # delta = -0.02
    strict = paired_accuracy(c, b, question="non_inferiority", margin=0.0)
    lenient = paired_accuracy(c, b, question="non_inferiority", margin=0.05)
    assert lenient.p_value < strict.p_value and lenient.p_harm > strict.p_harm
    assert lenient.p_value < 0.05  # a 2-point drop is shown inside a 5-point margin
    assert strict.p_value > 0.5  # ... and not inside none


def test_paired_bootstrap_on_a_known_shift():
    rng = np.random.default_rng(0)
    base = rng.random(500)
    cand = base + 0.1

    def stat(i):
        return float(cand[i].mean() - base[i].mean())

    r = paired_bootstrap(stat, 500, question="superiority", resamples=300, seed=1)
    assert r.delta == pytest.approx(0.1)
    assert r.p_value == pytest.approx(1 / 301) and r.p_harm == pytest.approx(1.0)


def test_holm_and_bh_against_hand_values():
    p = [0.01, 0.04, 0.03]
    # Holm: sorted 0.01*3=0.03, 0.03*2=0.06, max(0.06, 0.04*1)=0.06
    assert adjust(p, "holm") == pytest.approx([0.03, 0.06, 0.06])
    # BH: 0.01*3/1=0.03, 0.03*3/2=0.045, 0.04*3/3=0.04 -> monotone: 0.03, 0.04, 0.04
    assert adjust(p, "fdr_bh") == pytest.approx([0.03, 0.04, 0.04])
    assert adjust(p, "none") == p


def test_continuous_scores_get_wilcoxon_or_the_betting_test_binary_ones_mcnemar():
    """A generative task's per-item scores (token F1 here) are compared with a paired test
    of their own; 0/1 scores keep McNemar. Same items, candidate minus baseline. The bounds
    are betting bounds: never narrower than Student's t here (they assume only that scores lie
    in [0, 1]), and on the right side of the margin when the evidence is plain."""
    from tunegate.evaluation.stats import paired_scores, paired_test

    rng = np.random.default_rng(0)
    base = rng.uniform(0.2, 0.8, 200)
    better = np.clip(base + rng.normal(0.08, 0.05, 200), 0, 1)
    r = paired_test(better, base, question="superiority")
    assert r.test.startswith("wilcoxon") and r.p_value < 0.001 and 0 < r.lo < r.delta < r.hi
    worse = np.clip(base - rng.normal(0.08, 0.05, 200), 0, 1)
    assert paired_scores(worse, base, question="non_inferiority", margin=0.02).p_harm < 0.001
    shown = paired_scores(worse, base, question="non_inferiority", margin=0.2)
    assert shown.test.startswith("betting") and shown.p_value < 0.001 and shown.lo > -0.2
    d = worse - base
    t_half = sps.t.ppf(0.95, 199) * d.std(ddof=1) / np.sqrt(200)
    assert shown.lo < d.mean() - t_half and shown.hi > d.mean() + t_half
    assert shown.delta == pytest.approx(d.mean()) and shown.lo < shown.delta < shown.hi
    assert paired_scores(base, base, question="superiority").p_value == 1.0
    right, other = (rng.random(200) < 0.8).astype(float), (rng.random(200) < 0.7).astype(float)
    assert paired_test(right, other, question="superiority").test.startswith("mcnemar")


def test_the_betting_bound_holds_alpha_where_the_t_bound_does_not():
    """Scores that mostly tie (two generation models writing the same answer on 95% of the
    items) and a candidate exactly at the margin (0.03 worse on average): Student's t bound
    approves it more often than alpha, the betting bound does not. 300 seeded suites of 168."""
    from tunegate.evaluation.stats import paired_scores

    rng = np.random.default_rng(7)
    t_passes = bet_passes = 0
    for _ in range(300):
        base = rng.uniform(0.6, 1.0, 168)
        differs = rng.random(168) < 0.05
        # a differing item loses 50% to 100% of its score: mean 0.8 * 0.75 = 0.6, times 5% = 0.03
        cand = np.where(differs, base * (1 - rng.uniform(0.5, 1.0, 168)), base)
        d = cand - base
        t_lo = d.mean() - sps.t.ppf(0.95, 167) * d.std(ddof=1) / np.sqrt(168)
        t_passes += t_lo > -0.03
        bet_passes += paired_scores(cand, base, question="non_inferiority", margin=0.03).lo > -0.03
    assert bet_passes <= 0.05 * 300 < t_passes


def test_paired_scores_refuse_scores_outside_the_unit_interval():
    from tunegate.evaluation.stats import paired_scores

    with pytest.raises(ValueError, match=r"candidate scores must lie in \[0, 1\]"):
        paired_scores([0.5, 1.5], [0.5, 0.5], question="non_inferiority", margin=0.03)
    with pytest.raises(ValueError, match="differ in length"):
        paired_scores([0.5], [0.5, 0.5], question="non_inferiority", margin=0.03)
