"""The label-free accuracy estimate (CBPE) from calibrated confidences: its statistics."""

import random

import pytest

from tunegate.core.calibration import Calibration
from tunegate.monitoring.drift import Signal
from tunegate.monitoring.estimate import answered_confidences, estimated_accuracy, reliability_note
from tunegate.monitoring.window import Window

IDENTITY = Calibration("temperature", temperature=1.0, abstain_below=0.5, chosen_by="declared")


def window_of(confidence: list[float | None], labels: list[str | None] | None = None) -> Window:
    labels = labels if labels is not None else ["a"] * len(confidence)
    return Window(["m"] * len(confidence), labels, 0, None, None, [], confidence, "v0.0.1", {"v0.0.1": 1})


def test_calibration_estimate_tracks_the_accuracy_of_coin_flip_answers():
    """Answers right with the probability their confidence states: over 40 windows of 300,
    the estimate is within three standard errors of the realised accuracy every time."""
    misses = 0
    for seed in range(40):
        rng = random.Random(seed)
        conf = [rng.uniform(0.5, 1.0) for _ in range(300)]
        right = [rng.random() < c for c in conf]
        s = estimated_accuracy(window_of(conf), IDENTITY, 0.8, 50, 0.005)
        misses += abs(s.score - sum(right) / len(right)) > 3 * 0.025
    assert misses <= 1


def test_calibration_estimate_drifts_only_when_significantly_below_the_floor():
    good = estimated_accuracy(window_of([0.95] * 100), IDENTITY, 0.8, 50, 0.005)
    bad = estimated_accuracy(window_of([0.6] * 100), IDENTITY, 0.8, 50, 0.005)
    close = estimated_accuracy(window_of([0.78] * 100), IDENTITY, 0.8, 50, 0.005)
    assert (good.drifted, bad.drifted, close.drifted) == (False, True, False)
    assert bad.p_value < 1e-4 and 0.005 < close.p_value < 0.5


def test_abstained_and_invalid_answers_are_left_out_of_the_calibration_estimate():
    conf = [0.9, 0.4, None, 0.8]
    labels = ["a", "a", "a", None]  # 0.4 abstains (threshold 0.5); None has no confidence; None is invalid
    assert answered_confidences(labels, conf, IDENTITY) == pytest.approx([0.9])


def test_calibration_estimate_is_not_judged_without_a_calibration_or_enough_answers():
    w = window_of([0.9] * 100)
    assert "no calibration" in estimated_accuracy(w, None, 0.8, 50, 0.005, "not registered").note
    raw = estimated_accuracy(w, Calibration(chosen_by="none: packaged without a calibration"), 0.8, 50, 0.005)
    assert raw.drifted is None and "packaged without a calibration" in raw.note
    few = estimated_accuracy(window_of([0.9] * 20), IDENTITY, 0.8, 50, 0.005)
    assert few.drifted is None and "20 answered requests" in few.note


def test_calibration_estimate_is_flagged_unreliable_when_the_traffic_moved():
    moved = [Signal("embedding", "m", 0.6, 0.9, True), Signal("predicted_label", "m", 0.01, 0.5, True)]
    assert "embedding drifted" in reliability_note(moved)
    assert reliability_note([Signal("predicted_label", "m", 0.01, 0.001, True)]) is None
