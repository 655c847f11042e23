"""The recipe's run-to-run spread beside each check's margin (tunegate/evaluation/spread_note.py)."""

import pytest

from tests.evaluation.test_gate import decide_on, write_results
from tunegate.core.artifacts import write_json
from tunegate.core.errors import DataError
from tunegate.core.params import params_from_dict
from tunegate.core.tune_params import recipe_hash
from tunegate.evaluation.gate import add_spread
from tunegate.evaluation.report import render_report
from tunegate.evaluation.spread_note import margin, read_spread, spread_section


def test_margins_are_read_from_the_declared_thresholds():
    assert margin(0.85, ">= 0.8") == pytest.approx(0.05)
    assert margin(0.10, "<= 0.15") == pytest.approx(0.05)
    assert margin(0.20, "<= 0.15") == pytest.approx(-0.05)
    assert margin(0.30, "> 0 at alpha 0.05") == pytest.approx(0.30)
    assert margin(1.0, "in ['apache-2.0']") is None


def spread_file(path, params, sd, seeds=(0, 1, 2)):
    write_json(
        path,
        {"recipe_hash": recipe_hash(params.train), "objective": "accuracy", "seeds": list(seeds),
         "spread": {"value": {"mean": 0.9, "sd": sd, "min": 0.85, "max": 0.95}}},
    )  # fmt: skip
    return path


def test_checks_inside_the_band_are_flagged_as_a_note_and_the_verdict_stays(tmp_path):
    verdict, record, evidence, records = decide_on(write_results(tmp_path / "results", 0.95))
    params = params_from_dict({})
    accuracy = next(c for c in record["checks"] if c["name"] == "holdout.accuracy")
    sd = (accuracy["value"] - 0.8) / 2 + 0.01  # band 2 sd just over the margin to 0.8
    add_spread(record, spread_file(tmp_path / "spread.json", params, sd), params)
    rows = {r["name"]: r for r in record["spread"]["checks"]}
    assert rows["holdout.accuracy"]["within"]
    assert rows["holdout.accuracy"]["margin"] == pytest.approx(accuracy["value"] - 0.8)
    assert rows["license"]["spread"] is None and not rows["license"]["within"]
    assert all(not r["within"] for r in rows.values() if r["spread"] is None)
    assert record["verdict"] == "approved" and verdict.approved  # a note, not a rejection
    assert any("passes, but within run-to-run variation: " in n and "holdout.accuracy" in n
               for n in record["notes"])  # fmt: skip
    report = render_report(record, evidence, records)
    assert "## Margins and run-to-run spread" in report
    assert "| holdout.accuracy |" in report and "passes, but within run-to-run variation |" in report


def test_a_small_spread_flags_nothing(tmp_path):
    _, record, *_ = decide_on(write_results(tmp_path / "results", 0.95))
    params = params_from_dict({})
    add_spread(record, spread_file(tmp_path / "spread.json", params, 0.0001), params)
    assert record["spread"]["within"] == []
    assert any("passes by more than the band" in n for n in record["notes"])


def test_a_spread_of_another_recipe_or_one_seed_is_not_used_and_says_why(tmp_path):
    _, record, *_ = decide_on(write_results(tmp_path / "results", 0.95))
    measured = params_from_dict({"train": {"lr": 1e-3}})
    add_spread(record, spread_file(tmp_path / "other.json", measured, 0.05), params_from_dict({}))
    assert "spread" not in record and any("measured on another recipe" in n for n in record["notes"])
    params = params_from_dict({})
    assert read_spread(spread_file(tmp_path / "one.json", params, 0.0, seeds=(0,)), params.train)[0] is None
    add_spread(record, tmp_path / "absent.json", params)
    assert any("tunegate tune --seeds K" in n for n in record["notes"])
    (tmp_path / "bad.json").write_text('{"seeds": [0, 1]}')
    with pytest.raises(DataError, match="not a spread record"):
        read_spread(tmp_path / "bad.json", params.train)


def test_the_section_uses_only_checks_in_the_objective_units():
    checks = [
        {"name": "a", "metric": "accuracy", "value": 0.81, "threshold": ">= 0.8", "passed": True},
        {"name": "b", "metric": "accuracy drop from hold-out", "value": 0.14, "threshold": "<= 0.15",
         "passed": True},
        {"name": "c", "metric": "expected calibration error", "value": 0.09, "threshold": "<= 0.1",
         "passed": True},
        {"name": "d", "metric": "accuracy", "value": 0.7, "threshold": ">= 0.8", "passed": False},
    ]  # fmt: skip
    section = spread_section(checks, {"sd": 0.02, "seeds": [0, 1], "objective": "accuracy"}, "s.json")
    assert section["within"] == ["a", "b"]  # c: other units; d: fails, so not "passes, but"
