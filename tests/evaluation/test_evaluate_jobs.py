"""The evaluate stage's prediction pass asks a model each question once: a production
release identical to the candidate (re-evaluated after its promotion) shares its answers."""

from __future__ import annotations

import shutil

import pytest

from tests.tiny import make_tiny_adapter
from tunegate.core.artifacts import read_json, read_jsonl
from tunegate.core.prompt import PromptTemplate
from tunegate.evaluation import evaluate
from tunegate.evaluation.predictors import HFEngine, ModelRef
from tunegate.evaluation.suites import Suite


@pytest.mark.slow
def test_evaluate_asks_an_identical_production_model_once(tiny_base, prepared_sample, tmp_path, monkeypatch):
    labels = tuple(read_json(prepared_sample / "labels.json"))
    adapter = make_tiny_adapter(tiny_base, tmp_path / "candidate", labels, seed=3)
    shutil.copytree(adapter, tmp_path / "release")  # production: the same files, another folder
    tree = read_json(adapter / "card.json")["tree_sha256"]
    cand = ModelRef("candidate", tiny_base, adapter, "lora:c", tree)
    prod = ModelRef("production", tiny_base, tmp_path / "release", "lora:c", tree)
    base = ModelRef("base", tiny_base, None, "base:b", read_json(tiny_base / "card.json")["tree_sha256"])
    template = PromptTemplate.load(adapter)
    hold = Suite("holdout", "holdout", read_jsonl(prepared_sample / "holdout.jsonl")[:12])
    calls = []
    real = HFEngine.classify

    def counted(self, ref, tpl, rows, confidences):
        calls.append((ref.key, confidences))
        return real(self, ref, tpl, rows, confidences)

    monkeypatch.setattr(HFEngine, "classify", counted)
    jobs = [(cand, template, hold), (prod, template, hold), (base, template, hold)]
    preds = evaluate.predict_all("scorer", 8, jobs, 1, confident=frozenset({prod.key}))
    assert calls == [(cand.key, True), (base.key, False)]  # production's confidences asked for: computed once
    assert preds[(prod.key, "holdout")] == preds[(cand.key, "holdout")]
    assert all(p.confidence is not None for p in preds[(cand.key, "holdout")])
    assert len(preds[(base.key, "holdout")]) == 12
