"""The evaluate stage's calibration step with the auto threshold: what it records for the
gate, and what it says before the gate runs."""

from __future__ import annotations

import logging
import random

import pytest

from tunegate.core.params import params_from_dict
from tunegate.evaluation.calibration_step import calibrate
from tunegate.evaluation.hf_predict import Prediction


def answers(n: int, n_oos: int, oos_level: float, seed: int = 0):
    """Validation rows answered right 97% of the time with confidences near 0.9 (wrong ones
    lower), and out-of-scope messages answered with confidences near `oos_level`."""
    rng = random.Random(seed)
    val, preds = [], []
    for i in range(n):
        right = rng.random() < 0.97
        val.append({"id": f"v{i}", "text": "t", "label": "a"})
        conf = min(0.999, max(0.01, rng.gauss(0.9 if right else 0.6, 0.08)))
        preds.append(Prediction(f"v{i}", "a" if right else "b", "a", conf))
    oos = [
        Prediction(f"o{i}", "a", "a", min(0.999, max(0.01, rng.gauss(oos_level, 0.1)))) for i in range(n_oos)
    ]
    return val, preds, oos


def test_the_auto_threshold_is_recorded_with_every_floor_and_the_one_that_bound_it(caplog) -> None:
    val, preds, oos = answers(300, 100, 0.75)
    params = params_from_dict({})
    with caplog.at_level(logging.INFO, logger="tunegate.evaluation.calibration_step"):
        cal, block = calibrate(params, val, preds, oos)
    search = block["threshold_search"]
    assert (
        search["met"]
        and cal.abstain_below == pytest.approx(search["value"], abs=1e-6)
        and cal.abstain_below > 0
    )
    assert "oos_recall" in search["bound_by"]  # precision was met at 0: out-of-scope recall raised it
    assert {f["name"] for f in search["floors"]} == {
        "precision",
        "selective_accuracy",
        "coverage",
        "oos_recall",
    }
    assert "confidence 0.9" in cal.chosen_by and "bound by oos_recall" in caplog.text


def test_no_threshold_meeting_every_floor_is_said_before_the_gate_runs(caplog) -> None:
    val, preds, oos = answers(300, 100, 0.92)  # out-of-scope as sure as in-scope
    params = params_from_dict({"gate": {"min_coverage": 0.9}})
    with caplog.at_level(logging.WARNING, logger="tunegate.evaluation.calibration_step"):
        _, block = calibrate(params, val, preds, oos)
    assert not block["threshold_search"]["met"]
    assert (
        "no threshold meets every floor" in caplog.text
        and "the gate will judge this threshold" in caplog.text
    )
    assert "coverage" in block["threshold_search"]["explanation"]


def test_without_out_of_scope_validation_rows_the_choice_says_so() -> None:
    val, preds, _ = answers(300, 0, 0.0)
    cal, block = calibrate(params_from_dict({"serve": {"expected_oos_share": 0.1}}), val, preds, [])
    assert "no out-of-scope validation rows: chosen on the in-scope floors alone" in cal.chosen_by
    assert "without out-of-scope rows precision is in-scope" in cal.chosen_by
    assert block["val_oos_rows"] == 0 and block["threshold_search"]["oos_rows"] == 0


def test_a_declared_threshold_is_not_searched() -> None:
    val, preds, oos = answers(100, 20, 0.75)
    cal, block = calibrate(params_from_dict({"serve": {"abstain_below": 0.4}}), val, preds, oos)
    assert cal.abstain_below == 0.4 and "threshold_search" not in block
