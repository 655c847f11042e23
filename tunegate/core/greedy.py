"""Greedy free-form answers with transformers, batched.

In the kernel because two stages ask a model the same way: training's self-distilled
replay (the base model's own answers to general prompts) and evaluation's forgetting probe.
torch is imported inside the function.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def generate_text(
    model: Any,
    tokenizer: Any,
    prompts: list[str],
    max_new_tokens: int,
    batch_size: int = 16,
    processors: Callable[[], list[Any]] | None = None,
) -> list[str]:
    """Greedy answers to rendered prompts, batched: free-form (probe and replay answers), or
    constrained by the logits processors `processors()` makes afresh for each batch."""
    import torch

    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    out: list[str] = []
    for start in range(0, len(prompts), batch_size):
        enc = tokenizer(
            prompts[start : start + batch_size], return_tensors="pt", padding=True, add_special_tokens=False
        )
        with torch.inference_mode():
            extra = {"logits_processor": processors()} if processors else {}
            gen = model.generate(
                **enc,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                pad_token_id=tokenizer.pad_token_id,
                **extra,
            )
        out.extend(tokenizer.batch_decode(gen[:, enc["input_ids"].shape[1] :], skip_special_tokens=True))
    return out
