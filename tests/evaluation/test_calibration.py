"""Calibration: fitting, applying, the scores, the file that ships it (threshold: test_threshold.py)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from tunegate.core import calibration
from tunegate.core.calibration import Calibration
from tunegate.core.errors import ArtifactError
from tunegate.evaluation.calibration_fit import (
    CalibrationError,
    brier,
    ece,
    fit,
    oos_recall,
    reliability,
    suite_scores,
)


def overconfident(n: int, temperature: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Answers right with probability q, reported as sigmoid(logit(q) * temperature)."""
    rng = np.random.default_rng(seed)
    q = rng.uniform(0.35, 0.98, n)
    right = rng.random(n) < q
    raw = 1 / (1 + np.exp(-np.log(q / (1 - q)) * temperature))
    return raw, right


def test_calibration_by_temperature_recovers_the_overconfidence_and_lowers_ece() -> None:
    raw, right = overconfident(4000, 3.0, 0)
    cal = fit("temperature", raw, right, min_rows=50)
    assert cal.method == "temperature"
    assert cal.temperature == pytest.approx(3.0, rel=0.15)
    test_raw, test_right = overconfident(4000, 3.0, 1)
    after = np.array([cal.apply(v) for v in test_raw])
    assert ece(after, test_right.astype(float)) < 0.03 < ece(test_raw, test_right.astype(float))
    assert cal.fitted["nll_calibrated"] < cal.fitted["nll_raw"]


def test_calibration_isotonic_is_monotone_and_lowers_ece_on_new_data() -> None:
    raw, right = overconfident(3000, 3.0, 2)
    cal = fit("isotonic", raw, right, min_rows=50)
    xs = np.linspace(0, 1, 101)
    ys = [cal.apply(x) for x in xs]
    assert all(a <= b + 1e-12 for a, b in itertools.pairwise(ys))
    test_raw, test_right = overconfident(3000, 3.0, 3)
    after = np.array([cal.apply(v) for v in test_raw])
    assert ece(after, test_right.astype(float)) < ece(test_raw, test_right.astype(float)) / 2


def test_calibration_refuses_too_few_rows_and_nothing_to_learn_from() -> None:
    with pytest.raises(CalibrationError, match=r"eval\.calibration_min_rows"):
        fit("temperature", [0.9] * 10, [True] * 9 + [False], min_rows=50)
    with pytest.raises(CalibrationError, match="every one of the 60 validation answers is right"):
        fit("temperature", [0.9] * 60, [True] * 60, min_rows=50)
    # Confidence that ranks wrong answers above right ones: no temperature can fit it.
    raw = np.r_[np.full(40, 0.99), np.full(40, 0.6)]
    right = np.r_[np.zeros(40, bool), np.ones(40, bool)]
    with pytest.raises(CalibrationError, match="did not converge"):
        fit("temperature", raw, right, min_rows=50)


def test_calibration_none_keeps_the_raw_confidence() -> None:
    cal = fit("none", [0.2, 0.7, 0.9] * 20, [False, True, True] * 20, min_rows=50)
    assert [cal.apply(v) for v in (0.2, 0.7, 0.9)] == [0.2, 0.7, 0.9]
    assert cal.apply(None) is None and cal.abstains(None)


def test_ece_and_brier_of_known_cases() -> None:
    conf, right = np.ones(10), np.r_[np.ones(7), np.zeros(3)]
    assert ece(conf, right) == pytest.approx(0.3)
    assert brier(conf, right) == pytest.approx(0.3)
    assert math.isnan(ece(np.array([]), np.array([])))
    bins = reliability(np.array([0.05, 0.95, 0.95]), np.array([0.0, 1.0, 0.0]))
    assert bins == [
        {"bin": "0.0-0.1", "confidence": 0.05, "accuracy": 0.0, "count": 1},
        {"bin": "0.9-1.0", "confidence": 0.95, "accuracy": 0.5, "count": 2},
    ]


def test_selective_scores_count_abstentions_and_invalid_answers() -> None:
    conf = [0.9, 0.8, 0.3, None]
    right = [True, False, True, False]
    abstained = [False, False, True, True]
    s = suite_scores(conf, right, abstained, resamples=200, seed=0)
    assert s["coverage"].value == 0.5
    assert s["selective_accuracy"].value == 0.5
    assert s["answered_accuracy"].value == 0.25
    assert s["coverage"].lo <= 0.5 <= s["coverage"].hi
    assert oos_recall([True, True, False, True], resamples=200, seed=0).value == 0.75


def test_calibration_file_round_trips_and_refuses_tampering(tmp_path) -> None:
    cal = Calibration("isotonic", points=((0.1, 0.0), (0.9, 0.8)), abstain_below=0.5, chosen_by="declared")
    path = tmp_path / calibration.FILE
    calibration.write(path, cal)
    assert calibration.read(path) == cal
    digest = calibration.sha256_bytes(path.read_bytes())
    assert calibration.read(path, sha256=digest) == cal
    path.write_text(path.read_text().replace('"abstain_below": 0.5', '"abstain_below": 0.0'))
    with pytest.raises(ArtifactError, match="changed after it was packaged"):
        calibration.read(path, sha256=digest)
    path.write_text(path.read_text().replace('"abstain_below": 0.0', '"abstain_below": 1.5'))
    with pytest.raises(ArtifactError, match=r"abstain_below 1\.5 is outside \[0, 1\]"):
        calibration.read(path)
    path.write_text('{"schema": 9}')
    with pytest.raises(ArtifactError, match="calibration schema 9, expected 1"):
        calibration.read(path)
