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
4. with it, the rest of each settled answer is verified in one forward pass instead of
   one per token (``verify_drafts``, as speculative decoding checks a draft): the label's
   own tokens and the end token are fed at once and kept only where greedy decoding
   picks exactly them; otherwise decoding goes on step by step from where it was.

With ``with_confidence`` (the default) the forced tokens and the end token are decoded
too, because the confidence is the probability of the whole answer path as the served
engine reports it (``tunegate.core.prompt.answer_confidence``): each chosen token's probability
renormalised over the tokens the label set allows at that step, multiplied out. A forced
token then counts 1, but a label can still be spelt in more than one tokenization after
it is settled, so those steps are decoded and counted as vLLM does.

Logits are computed for the last position only.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tunegate.core.prompt import PromptTemplate
from tunegate.evaluation.attention import grouped_heads_in_place
from tunegate.evaluation.hf_predict import Prediction, label_constraint
from tunegate.evaluation.labels import LabelConstraint


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


@dataclass
class Paths:
    """The answers of one batch so far: tokens, masked log-probability, label, ended."""

    answers: list[list[int]]
    logp: list[float]
    done: list[str | bool | None]
    """The settled label, None when the answer ended outside the label set, False while open."""
    ended: list[bool]

    @classmethod
    def start(cls, n: int) -> Paths:
        return cls([[] for _ in range(n)], [0.0] * n, [False] * n, [False] * n)

    def copy(self) -> Paths:
        return Paths([list(a) for a in self.answers], list(self.logp), list(self.done), list(self.ended))

    def choose(self, j: int, constraint: LabelConstraint, step_logp: Any) -> int:
        """Row `j`'s greedy allowed token under `step_logp` (log-probabilities), appended."""
        import torch

        allowed = constraint.allowed(self.answers[j])
        tok = allowed[int(torch.argmax(step_logp[allowed]))]
        self.answers[j].append(tok)
        self.logp[j] += float(step_logp[tok] - torch.logsumexp(step_logp[allowed], 0))  # masked
        if self.done[j] is False:
            label = constraint.resolved(self.answers[j])
            if label is not None or tok == constraint.end_token:
                self.done[j] = label
        self.ended[j] = tok == constraint.end_token
        return tok


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
    paths, drafted = Paths.start(len(tails)), False
    with torch.inference_mode():
        out = model(
            input_ids=ids, attention_mask=mask, position_ids=positions, past_key_values=cache,
            use_cache=True, logits_to_keep=1,
        )  # fmt: skip
        for _step in range(constraint.max_len):
            step_logp = torch.log_softmax(out.logits[:, -1, :].float(), dim=-1)
            for j in range(len(tails)):
                if not paths.ended[j]:
                    paths.choose(j, constraint, step_logp[j])
            settled = all(d is not False for d in paths.done)
            if all(paths.ended) or (settled and not with_confidence):
                break
            if settled and not drafted:
                drafted = True
                verified = verify_drafts(model, constraint, out.past_key_values, paths, mask, positions, pad)
                if verified is not None:
                    paths = verified
                    break
            mask = torch.cat([mask, torch.ones(len(tails), 1, dtype=torch.long)], dim=1)
            positions = positions[:, -1:] + 1
            out = model(
                input_ids=torch.tensor([a[-1] for a in paths.answers])[:, None], attention_mask=mask,
                position_ids=positions, past_key_values=out.past_key_values, use_cache=True,
            )  # fmt: skip
    return [
        (
            paths.answers[j],
            paths.done[j] if isinstance(paths.done[j], str) else None,
            paths.logp[j] if with_confidence and paths.ended[j] else None,
        )
        for j in range(len(tails))
    ]


def verify_drafts(
    model: Any, constraint: LabelConstraint, cache: Any, paths: Paths, mask: Any, positions: Any, pad: int
) -> Paths | None:
    """The rest of every settled answer in one forward pass instead of one per token.

    Once each row's label is settled, the rest of its path is almost always the label's own
    tokens and the end token (``LabelConstraint.draft``). Those drafts are fed at once, as in
    speculative decoding, and each position's greedy choice is checked against them: when
    every row's draft is what greedy decoding picks, the finished paths are returned, with
    the masked probabilities the step-by-step loop would compute. Otherwise (or when a row
    has no draft) None, with `cache` cropped back, and the caller goes on step by step."""
    import torch

    rows = list(zip(paths.answers, paths.ended, strict=True))
    drafts = [[] if ended else constraint.draft(a) for a, ended in rows]
    if any(not d and not ended for d, (_, ended) in zip(drafts, rows, strict=True)):
        return None
    width = max(max(len(d) for d in drafts), 1)
    feed = [([a[-1], *d[:-1]] if d else [a[-1]]) for a, d in zip(paths.answers, drafts, strict=True)]
    ids = torch.tensor([f + [pad] * (width - len(f)) for f in feed])
    new = torch.tensor([[1] * len(f) + [0] * (width - len(f)) for f in feed])
    out = model(
        input_ids=ids, attention_mask=torch.cat([mask, new], dim=1),
        position_ids=positions[:, -1:] + 1 + torch.arange(width), past_key_values=cache,
        use_cache=True, logits_to_keep=width,
    )  # fmt: skip
    logp = torch.log_softmax(out.logits.float(), dim=-1)
    done = paths.copy()
    for j, draft in enumerate(drafts):
        for k, want in enumerate(draft):
            if done.choose(j, constraint, logp[j, k]) != want:
                cache.crop(-width)
                return None
    return done
