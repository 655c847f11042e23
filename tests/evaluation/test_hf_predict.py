"""The reference predictor on a real (tiny, random) model: the label constraint holds."""

import pytest

from tunegate.core.artifacts import read_json, read_jsonl
from tunegate.evaluation.hf_predict import label_constraint, load_model, predict, template_for


@pytest.mark.slow
def test_constrained_predictions_are_always_valid_labels(tiny_base, prepared_sample):
    model, tokenizer = load_model(tiny_base)
    template = template_for(tiny_base, prepared_sample / "labels.json")
    rows = read_jsonl(prepared_sample / "holdout.jsonl")[:24]
    preds = predict(model, tokenizer, template, rows, batch_size=8)
    labels = set(read_json(prepared_sample / "labels.json"))
    assert [p.id for p in preds] == [r["id"] for r in rows]  # input order kept despite length sorting
    assert all(p.label in labels for p in preds)  # a random model still answers inside the label set
    constraint = label_constraint(tokenizer, template.labels)
    for label in labels:  # each label's own tokens spell it, so the served grammar's semantics apply
        assert constraint.decode(tokenizer(label, add_special_tokens=False)["input_ids"]) == label
