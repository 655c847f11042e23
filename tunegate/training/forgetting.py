"""Forgetting measured while training: how much of the base model's own behaviour on general
prompts the model being trained still predicts.

The general prompts (``train.forgetting_source``, the search's set: disjoint from the gate's
probe and from the replay prompts the model trains on) are answered greedily by the base
model once, before the adapter exists. At every evaluation the model in training reads the
same prompt + answer in one teacher-forced pass, and forgetting is the share of answer
positions where its most likely next token is no longer the base model's. It is 0 for the
base model by construction (the reference tokens are the base model's own argmax in that
same pass), needs no copy of the base model (LoRA and full fine-tuning alike), and costs
one forward pass per prompt: cheap enough to look at every checkpoint, fine enough to rank
them. The gate's probe, which scores short answers right or wrong, stays the release check.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunegate.core.artifacts import read_jsonl
from tunegate.core.errors import DataError


@dataclass(frozen=True)
class GeneralReference:
    """One general prompt with the base model's answer: its token ids, where the answer
    starts, and the base model's teacher-forced argmax at each answer position."""

    ids: tuple[int, ...]
    start: int
    targets: tuple[int, ...]


def general_prompts(
    path: str | Path, rows: int | None = None, setting: str = "train.forgetting_source"
) -> list[str]:
    """The prompts of a JSONL file of ``{"prompt": ...}`` rows (the first `rows`); `setting`
    names the param that points at it in the errors."""
    if not Path(path).exists():
        raise DataError(f"{path}: the general prompts of {setting} are missing")
    prompts = [r.get("prompt") for r in read_jsonl(path)]
    if not prompts or not all(isinstance(p, str) and p.strip() for p in prompts):
        raise DataError(f"{path}: {setting} needs rows with a non-empty 'prompt'")
    return prompts[:rows] if rows else prompts


def _argmax_at(model: Any, ids: tuple[int, ...], start: int) -> tuple[int, ...]:
    """The model's most likely token at each answer position (teacher-forced)."""
    import torch

    with torch.inference_mode():
        logits = model(input_ids=torch.tensor([ids])).logits[0, start - 1 : len(ids) - 1]
    return tuple(int(t) for t in logits.argmax(-1))


def base_references(
    model: Any, tokenizer: Any, prompts: list[str], max_tokens: int, batch_size: int = 8
) -> list[GeneralReference]:
    """The base model's greedy answers to `prompts` (rendered as general chat turns), kept
    as token ids (batched, left-padded; the answer ends at its first end-of-sequence token).
    Call before the adapter exists."""
    import torch

    from tunegate.core.prompt import general_prompt

    was_training, side = model.training, tokenizer.padding_side
    model.eval()
    tokenizer.padding_side = "left"
    out = []
    for start in range(0, len(prompts), batch_size):
        rendered = [general_prompt(tokenizer, p) for p in prompts[start : start + batch_size]]
        enc = tokenizer(rendered, return_tensors="pt", padding=True, add_special_tokens=False)
        with torch.inference_mode():
            gen = model.generate(
                **enc, max_new_tokens=max_tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id
            )
        width = enc["input_ids"].shape[1]
        for row, mask, answer in zip(enc["input_ids"], enc["attention_mask"], gen[:, width:], strict=True):
            prompt = [int(t) for t in row[mask.bool()]]
            ids = [int(t) for t in answer]
            if tokenizer.eos_token_id in ids:
                ids = ids[: ids.index(tokenizer.eos_token_id) + 1]
            if ids:
                full = tuple(prompt + ids)
                out.append(GeneralReference(full, len(prompt), _argmax_at(model, full, len(prompt))))
    model.train(was_training)
    tokenizer.padding_side = side
    if not out:
        raise DataError("the base model gave no answer to any general prompt (train.forgetting_source)")
    return out


def forgetting(model: Any, references: list[GeneralReference]) -> float:
    """The share of the base model's answer tokens the model no longer predicts first."""
    was_training = model.training
    model.eval()
    missed = total = 0
    for ref in references:
        got = _argmax_at(model, ref.ids, ref.start)
        missed += sum(a != b for a, b in zip(got, ref.targets, strict=True))
        total += len(ref.targets)
    model.train(was_training)
    return missed / total
