"""A rejection says what to change (tunegate/evaluation/advice.py), from the checks and the training curve."""

from __future__ import annotations

from tunegate.evaluation.advice import advice

CURVE = {
    "step": 120,
    "curve": [
        {"step": 0, "loss": 6.0, "answer_match": 0.0, "forgetting": 0.0},
        {"step": 40, "loss": 0.3, "answer_match": 0.85, "forgetting": 0.12},
        {"step": 80, "loss": 0.1, "answer_match": 0.90, "forgetting": 0.19},
        {"step": 120, "loss": 0.08, "answer_match": 0.91, "forgetting": 0.31},
    ],
}
FORGOT = {"name": "probe.forgetting", "outcome": "failed", "value": 0.283, "threshold": "<= 0.1"}


def test_forget_rejection_names_the_earlier_checkpoint_and_the_params_to_try():
    said = advice([FORGOT], {"lr": 8.5e-4, "epochs": 2, "replay_rows": None}, CURVE)
    assert len(said) == 1
    line = said[0]
    assert "from 0.120 at step 40 to 0.310 at the kept step 120" in line
    # of the checkpoints that forgot less, the one with the most validation answers right
    assert "step 80 forgot 0.190 with validation answers 0.900: train.max_forgetting 0.19 keeps it" in line
    assert "train.lr (now 0.00085; try 0.000425)" in line and "data.replay_source" in line


def test_forget_rejection_without_a_curve_says_how_to_record_one():
    line = advice([FORGOT], {"lr": 1e-4, "replay_rows": 0}, None)[0]
    assert "train.forgetting_source" in line and "replay on (train.replay_rows: null)" in line


def test_floor_and_undecided_advice_read_the_references_and_the_items_needed():
    floor = {
        "name": "holdout.field_f1", "outcome": "failed", "value": 0.584, "threshold": ">= 0.6",
        "context": {"base": 0.343, "prompting": 0.396},
    }  # fmt: skip
    undecided = {"name": "perturb_casing.drop", "outcome": "undecided", "needed": 1151, "value": 0.12}
    passed = {"name": "holdout.accuracy", "outcome": "passed", "value": 0.9, "threshold": ">= 0.8"}
    said = advice([floor, undecided, passed], {"epochs": 1})
    assert len(said) == 2
    assert "(on the same items: base 0.343, prompting 0.396)" in said[0]
    assert "hard for this base model" in said[0]  # the references do not do better
    assert said[1].startswith("not enough evidence on perturb_casing.drop") and "about 1151" in said[1]
    assert advice([passed]) == []
