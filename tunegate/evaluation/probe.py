"""The forgetting probe: general questions with short answers, candidate vs base model.

Shared by both task kinds' evaluate stage: fine-tuning on a task must not cost the base
model's general answers (the gate's ``probe.forgetting`` check). Free-form greedy answers
under the model's default chat prompt, scored by contains-an-answer accuracy.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from tunegate.core.artifacts import read_jsonl
from tunegate.core.params import Params
from tunegate.evaluation.evidence import ProbeResult
from tunegate.evaluation.metrics import token_f1
from tunegate.evaluation.models import Models
from tunegate.evaluation.predictors import HFEngine


def probe_scores(answers: list[str], probe: list[dict[str, Any]]) -> dict[str, float]:
    """Contains-an-answer accuracy (the gate's metric), exact match and token F1."""
    hit = [any(a in ans.lower() for a in q["answers"]) for ans, q in zip(answers, probe, strict=True)]
    exact = [ans.strip().lower().rstrip(".") in q["answers"] for ans, q in zip(answers, probe, strict=True)]
    f1 = [max(token_f1(ans, a) for a in q["answers"]) for ans, q in zip(answers, probe, strict=True)]
    return {
        "accuracy": float(np.mean(hit)),
        "exact_match": float(np.mean(exact)),
        "token_f1": float(np.mean(f1)),
    }


def forgetting_probe(data: Path, params: Params, m: Models) -> ProbeResult:
    """General questions, candidate vs base model, free-form answers."""
    path = data / "probe.jsonl"
    probe = read_jsonl(path) if params.data.probe_source and path.exists() else []
    if not probe:
        return ProbeResult(rows=0, missing="no probe configured (data.probe_source)")
    hf = HFEngine("scorer", params.eval.batch_size)
    questions = [q["question"] for q in probe]
    answers = {
        ref.role: hf.answer(ref, questions, params.eval.probe_max_tokens) for ref in (m.candidate, m.base)
    }
    examples = [
        {"question": q["question"], "expected": q["answers"], "candidate": c, "base": b}
        for q, c, b in list(zip(probe, answers["candidate"], answers["base"], strict=True))[:20]
    ]
    return ProbeResult(
        len(probe), probe_scores(answers["candidate"], probe), probe_scores(answers["base"], probe), examples
    )
