"""The search's forgetting constraint: how far a trial's model moved from the base model
on general prompts, as the mean per-token KL divergence KL(base || candidate).

Why KL rather than agreement with the base model's answers: the probe the gate checks
scores a handful of short answers right or wrong, too coarse to rank trials whose
adapters barely differ; the KL over the base model's own greedy answers (teacher-forced,
every answer token) is continuous, cheap (two forward passes per prompt, no generation
for the candidate) and zero exactly when the candidate predicts like the base model. The
prompts (``tune.general_source``) are disjoint from the probe and the replay prompts
(tested), so neither the gate's forgetting check nor the training data is touched.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from tunegate.core.errors import DataError


def general_prompts(path: Path) -> list[str]:
    """The search's general prompts (the train stage's reader, named by its own setting)."""
    from tunegate.training.forgetting import general_prompts as read

    return read(path, setting="tune.general_source")


def base_answers(base_dir: Path, prompts: list[str], max_tokens: int) -> list[str]:
    """The base model's greedy answers (computed once per study)."""
    from tunegate.core.greedy import generate_text
    from tunegate.core.prompt import general_prompt
    from tunegate.evaluation.hf_predict import load_model

    model, tok = load_model(base_dir)
    return generate_text(model, tok, [general_prompt(tok, p) for p in prompts], max_tokens)


def kl_from_base(base_dir: Path, candidate_dir: Path, prompts: list[str], answers: list[str]) -> float:
    """Mean over answer tokens of KL(base || candidate) in nats."""
    import torch

    from tunegate.core.prompt import general_prompt
    from tunegate.evaluation.hf_predict import load_model

    model, tok = load_model(base_dir, candidate_dir)
    full = (candidate_dir / "model.safetensors").exists()
    base = load_model(base_dir)[0] if full else None
    total, tokens = 0.0, 0
    for prompt, answer in zip(prompts, answers, strict=True):
        rendered = general_prompt(tok, prompt)
        n_prompt = len(tok(rendered, add_special_tokens=False)["input_ids"])
        ids = tok(rendered + answer, add_special_tokens=False, return_tensors="pt")["input_ids"]
        if ids.shape[1] <= n_prompt:
            continue
        with torch.inference_mode():
            cand_logits = model(ids).logits[0, n_prompt - 1 : -1]
            with _base_view(model, base) as reference:
                base_logits = reference(ids).logits[0, n_prompt - 1 : -1]
        p_log = torch.log_softmax(base_logits.float(), -1)
        q_log = torch.log_softmax(cand_logits.float(), -1)
        total += float((p_log.exp() * (p_log - q_log)).sum())
        tokens += base_logits.shape[0]
    if not tokens:
        raise DataError("the base model gave no answer tokens on the general prompts")
    return total / tokens


@contextlib.contextmanager
def _base_view(model: Any, base: Any | None):
    """The base model's forward: the same PEFT model with its adapter off, or a full model."""
    if base is not None:
        yield base
        return
    with model.disable_adapter():
        yield model
