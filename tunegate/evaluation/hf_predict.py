"""Reference predictions through transformers + PEFT: batched, greedy, label-constrained.

This is the parity reference for the served engine (vLLM) and the plain path the
evaluation benchmark compares against. One loader serves every stage that needs
"base model, optionally with an adapter".
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunegate.core.artifacts import read_json, refuse_pickle
from tunegate.core.prompt import PromptTemplate
from tunegate.evaluation.labels import LabelConstraint

log = logging.getLogger(__name__)


def load_model(base_dir: Path, adapter_dir: Path | None = None, merge: bool = False) -> tuple[Any, Any]:
    """Base model (+ adapter) and tokenizer, from safetensors only, never remote code."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    refuse_pickle(base_dir)
    source = base_dir
    if adapter_dir is not None and (adapter_dir / "model.safetensors").exists():
        source = adapter_dir  # a full fine-tune: the folder is a whole model
        adapter_dir = None
    tokenizer = AutoTokenizer.from_pretrained(source)
    model = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32, use_safetensors=True)
    if adapter_dir is not None:
        from peft import PeftModel

        refuse_pickle(adapter_dir)
        model = PeftModel.from_pretrained(model, adapter_dir)
        if merge:
            model = model.merge_and_unload()
    model.eval()
    return model, tokenizer


def json_grammar(tokenizer: Any, vocab_size: int, schema: dict[str, Any] | None) -> Any:
    """The xgrammar grammar vLLM's structured outputs compile for ``json=`` (any whitespace,
    the model's vocabulary size): `schema`, or any JSON object when None."""
    import json

    import xgrammar as xgr

    info = xgr.TokenizerInfo.from_huggingface(tokenizer, vocab_size=vocab_size)
    spec = json.dumps(schema) if schema is not None else '{"type": "object"}'
    return xgr.GrammarCompiler(info).compile_json_schema(spec, any_whitespace=True)


def grammar_processors(grammar: Any) -> Any:
    """A factory of transformers logits processors holding ``generate`` to a compiled xgrammar
    grammar: a new one per ``generate`` call, as it keeps matcher state."""
    from xgrammar.contrib.hf import LogitsProcessor

    return lambda: [LogitsProcessor(grammar)]


def json_constraint(tokenizer: Any, vocab_size: int, schema: dict[str, Any] | None) -> Any:
    """A factory of transformers logits processors that hold greedy decoding to `schema` (any
    JSON object when None) as vLLM's structured outputs do (``json_grammar``)."""
    return grammar_processors(json_grammar(tokenizer, vocab_size, schema))


def label_constraint(tokenizer: Any, labels: tuple[str, ...]) -> LabelConstraint:
    """The served engine's guided choice over `labels`, for this tokenizer."""
    end = tokenizer.convert_tokens_to_ids(tokenizer.eos_token)
    ids = range(len(tokenizer))
    texts = tokenizer.batch_decode([[i] for i in ids], clean_up_tokenization_spaces=False)
    return LabelConstraint.build(
        labels,
        dict(zip(ids, texts, strict=True)),
        end,
        lambda s: tokenizer(s, add_special_tokens=False)["input_ids"],
    )


@dataclass
class Prediction:
    id: str
    label: str | None
    """None when the output is not a valid label (counted as invalid)."""
    raw: str
    confidence: float | None = None
    """The raw confidence: the probability of the answer's token path under the label
    constraint (``tunegate.core.prompt.answer_confidence``); every engine reports it."""


def predict(
    model: Any, tokenizer: Any, template: PromptTemplate, rows: list[dict[str, Any]], batch_size: int = 16
) -> list[Prediction]:
    import torch

    constraint = label_constraint(tokenizer, template.labels)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    order = sorted(range(len(rows)), key=lambda i: len(rows[i]["text"]))  # less padding per batch
    results: dict[int, Prediction] = {}
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        prompts = [template.render(tokenizer, rows[i]["text"]) for i in idx]
        enc = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
        width = enc["input_ids"].shape[1]

        def allowed(_batch_id: int, ids: Any, width: int = width) -> list[int]:
            return constraint.allowed(ids[width:].tolist())

        with torch.inference_mode():
            gen = model.generate(
                **enc,
                max_new_tokens=constraint.max_len,
                do_sample=False,
                prefix_allowed_tokens_fn=allowed,
                pad_token_id=tokenizer.pad_token_id,
                output_scores=True,
                return_dict_in_generate=True,
            )
        # The scores are the logits after the label mask: their softmax is the constrained
        # distribution the served engine reports logprobs from.
        steps = torch.stack([torch.log_softmax(s.float(), dim=-1) for s in gen.scores], dim=1)
        for j, i in enumerate(idx):
            answer = gen.sequences[j, width:].tolist()
            results[i] = Prediction(
                rows[i]["id"],
                constraint.decode(answer),
                tokenizer.decode(answer, skip_special_tokens=True),
                path_confidence(steps[j], answer, constraint.end_token),
            )
    return [results[i] for i in range(len(rows))]


def path_confidence(step_logp: Any, answer: list[int], end_token: int) -> float | None:
    """exp(sum of each chosen token's log-probability) up to and including the end token;
    None when the answer never ended (cut by max_new_tokens)."""
    import math

    total = 0.0
    for k, tok in enumerate(answer):
        total += float(step_logp[k, tok])
        if tok == end_token:
            return math.exp(total)
    return None


def template_for(model_dir: Path, labels_path: Path | None = None) -> PromptTemplate:
    """The candidate's own template, or the default one with the prepared labels (base model)."""
    if (model_dir / "prompt.json").exists():
        return PromptTemplate.load(model_dir)
    return PromptTemplate(labels=tuple(read_json(labels_path)))
