"""The fast evaluation path: greedy label-constrained decoding, computed the cheap way.

It gives the same answer as ``hf_predict.predict`` (greedy decoding restricted to the
label set) and, by the parity check, as the served engine, with three savings that
matter on a CPU, where the prompt's prefill dominates the cost:

1. merged weights (the caller merges the adapter; no LoRA matmuls per layer);
2. the prompt prefix every item shares (chat template + system prompt) is computed once
   and its KV cache reused by every batch;
3. without ``with_confidence``, decoding stops as soon as the answer so far determines a
   label: the remaining tokens would be forced, so they cannot change it. Most labels are
   settled by one or two tokens.

With ``with_confidence`` (the default) the forced tokens and the end token are decoded
too, because the confidence is the probability of the whole answer path as the served
engine reports it (``tunegate.prompt.answer_confidence``): each chosen token's probability
renormalised over the tokens the label set allows at that step, multiplied out. A forced
token then counts 1, but a label can still be spelt in more than one tokenization after
it is settled, so those steps are decoded and counted as vLLM does.

Logits are computed for the last position only.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from typing import Any

from evaluation.attention import grouped_heads_in_place
from evaluation.hf_predict import Prediction, label_constraint
from evaluation.labels import LabelConstraint
from tunegate.prompt import PromptTemplate


def common_prefix(seqs: Sequence[Sequence[int]]) -> int:
    """Length of the longest token prefix all sequences share, leaving each at least one token."""
    if not seqs:
        return 0
    n = min(len(s) for s in seqs) - 1
    first = seqs[0]
    for i in range(max(n, 0)):
        if any(s[i] != first[i] for s in seqs):
            return i
    return max(n, 0)


def score(
    model: Any,
    tokenizer: Any,
    template: PromptTemplate,
    rows: list[dict[str, Any]],
    batch_size: int = 32,
    with_confidence: bool = True,
) -> list[Prediction]:
    import torch

    constraint = label_constraint(tokenizer, template.labels)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else constraint.end_token
    encoded = [
        tokenizer(template.render(tokenizer, r["text"]), add_special_tokens=False)["input_ids"] for r in rows
    ]
    if not encoded:
        return []
    shared = common_prefix(encoded)
    with torch.inference_mode():
        prefix_cache = model(torch.tensor([encoded[0][:shared]]), use_cache=True).past_key_values
    order = sorted(range(len(rows)), key=lambda i: len(encoded[i]))  # similar lengths, less padding
    results: dict[int, Prediction] = {}
    with grouped_heads_in_place(model):  # padded batches: the cache is not copied per head
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            tails = [encoded[i][shared:] for i in idx]
            for j, (answer, label, logp) in enumerate(
                decode_batch(model, constraint, prefix_cache, tails, shared, pad, with_confidence)
            ):
                confidence = math.exp(logp) if logp is not None else None
                results[idx[j]] = Prediction(
                    rows[idx[j]]["id"], label, label or tokenizer.decode(answer), confidence
                )
    return [results[i] for i in range(len(rows))]


def decode_batch(
    model: Any,
    constraint: LabelConstraint,
    prefix_cache: Any,
    tails: list[list[int]],
    shared: int,
    pad: int,
    with_confidence: bool,
) -> list[tuple[list[int], str | None, float | None]]:
    """Greedy constrained decoding of one batch of prompt tails after the shared prefix's
    cache: per row (answer tokens, label or None, masked log-probability of the path to the
    end token, or None when decoding stopped once the label was settled)."""
    import torch

    width = max(len(t) for t in tails)
    ids = torch.tensor([[pad] * (width - len(t)) + t for t in tails])
    tail_mask = torch.tensor([[0] * (width - len(t)) + [1] * len(t) for t in tails])
    mask = torch.cat([torch.ones(len(tails), shared, dtype=torch.long), tail_mask], dim=1)
    positions = (shared + tail_mask.cumsum(1) - 1).clamp(min=shared)
    cache = copy.deepcopy(prefix_cache)
    cache.batch_repeat_interleave(len(tails))
    answers: list[list[int]] = [[] for _ in tails]
    logp = [0.0] * len(tails)
    done: list[str | bool | None] = [False] * len(tails)
    ended = [False] * len(tails)
    with torch.inference_mode():
        out = model(
            input_ids=ids, attention_mask=mask, position_ids=positions, past_key_values=cache,
            use_cache=True, logits_to_keep=1,
        )  # fmt: skip
        for _step in range(constraint.max_len):
            step_logp = torch.log_softmax(out.logits[:, -1, :].float(), dim=-1)
            for j in range(len(tails)):
                if ended[j]:
                    continue
                allowed = constraint.allowed(answers[j])
                tok = allowed[int(torch.argmax(step_logp[j, allowed]))]
                answers[j].append(tok)
                logp[j] += float(step_logp[j, tok] - torch.logsumexp(step_logp[j, allowed], 0))  # masked
                if done[j] is False:
                    label = constraint.resolved(answers[j])
                    if label is not None or tok == constraint.end_token:
                        done[j] = label
                ended[j] = tok == constraint.end_token
            settled = all(d is not False for d in done)
            if all(ended) or (settled and not with_confidence):
                break
            mask = torch.cat([mask, torch.ones(len(tails), 1, dtype=torch.long)], dim=1)
            positions = positions[:, -1:] + 1
            out = model(
                input_ids=torch.tensor([a[-1] for a in answers])[:, None], attention_mask=mask,
                position_ids=positions, past_key_values=out.past_key_values, use_cache=True,
            )  # fmt: skip
    return [
        (
            answers[j],
            done[j] if isinstance(done[j], str) else None,
            logp[j] if with_confidence and ended[j] else None,
        )
        for j in range(len(tails))
    ]
