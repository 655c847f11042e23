"""Greedy chat answers on a CPU, faster than transformers ``generate`` and picking the same tokens.

The generation kind's evaluation path for ``eval.engine: scorer`` (merged weights);
``bench/eval_throughput.py --generation`` times it against the plain PEFT ``generate`` loop.
Four savings, none of which changes the rule that picks each token (the highest logit the
grammar allows), only the order in which the arithmetic adds up:

1. **A shared prefix, once.** Every prompt of a suite starts with the same tokens (the chat
   template and the system turn). Their keys and values are computed once and copied into
   every batch, so each batch computes only what follows.
2. **Batches in length order.** The rest of each prompt is left-padded to the batch's
   longest; the padding is masked and every row's positions are given explicitly, so a row's
   answer does not depend on its neighbours.
3. **A row leaves the batch when it ends** (an end token, or its grammar complete), and
   waiting prompts take the free places (continuous batching): every step computes rows
   still writing, where ``generate`` keeps computing finished rows until the longest answer
   of its batch is done, and runs its last steps for a few rows. Admitted rows' keys and
   values are joined to the running batch's, the shorter side left-padded; the padding is
   masked (an additive mask passed ready-made, so transformers does not rebuild one per step).
4. **Grouped heads read in place** (``tunegate.evaluation.attention``): with a mask, transformers'
   sdpa attention copies each key/value head once per query head sharing it, the whole cache
   per layer and pass; here SDPA is given the grouped heads, without the copy.

Answers are held to the same xgrammar grammar as the reference (``json_constraint``): one
matcher per row fills the row's token mask before each pick. torch and xgrammar are imported
inside the functions. The classification kind's counterpart is ``tunegate.evaluation.scorer``.
"""

from __future__ import annotations

import copy
from collections import deque
from typing import Any

from tunegate.evaluation.attention import grouped_heads_in_place
from tunegate.evaluation.scorer import common_prefix


def greedy_chat(
    model: Any,
    tokenizer: Any,
    prompts: list[str],
    max_new_tokens: int,
    batch_size: int = 16,
    grammar: Any | None = None,
) -> list[str]:
    """Greedy answers to rendered chat prompts, in the prompts' order; `grammar` (an
    xgrammar CompiledGrammar) holds every answer to it, as ``json_constraint`` does for
    ``generate``. A model whose cache is not plain (sliding windows, recurrent state) is
    decoded by ``generate`` instead. At most `batch_size` rows are decoded at once."""
    import torch
    from transformers.cache_utils import DynamicLayer

    ids = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    if not ids:
        return []
    shared = common_prefix(ids)
    with torch.inference_mode():
        prefix = model(input_ids=torch.tensor([ids[0][: max(shared, 1)]]), use_cache=True, logits_to_keep=1)
    if any(type(layer) is not DynamicLayer for layer in prefix.past_key_values.layers):
        from tunegate.core.greedy import generate_text
        from tunegate.evaluation.hf_predict import grammar_processors

        processors = grammar_processors(grammar) if grammar is not None else None
        return generate_text(model, tokenizer, prompts, max_new_tokens, batch_size, processors)
    cached = prefix.past_key_values if shared else None
    decoder = _Decoder(
        model, cached, shared, grammar, batch_size, max_new_tokens, _stop_ids(model, tokenizer)
    )
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    with torch.inference_mode(), grouped_heads_in_place(model):
        decoder.run([(i, ids[i]) for i in order])
    return [tokenizer.decode(decoder.answers[i], skip_special_tokens=True) for i in range(len(ids))]


def _stop_ids(model: Any, tokenizer: Any) -> set[int]:
    """The ids ``generate`` stops at: the generation config's end tokens and the tokenizer's."""
    configured = getattr(model.generation_config, "eos_token_id", None)
    stops = set(configured if isinstance(configured, list) else [configured])
    stops.add(tokenizer.eos_token_id)
    return {s for s in stops if s is not None}


class _Decoder:
    """The running batch: its rows, their keys and values (one cache), the additive mask over
    the cache's positions (``bias``), each row's next position and the last pass's logits."""

    def __init__(
        self, model: Any, prefix: Any, shared: int, grammar: Any | None, batch_size: int,
        limit: int, stops: set[int],
    ) -> None:  # fmt: skip
        self.model, self.prefix, self.shared, self.size = model, prefix, shared, batch_size
        self.limit, self.stops = limit, stops  # the token cap per answer; the end tokens
        self.masker = _Masker(grammar, batch_size) if grammar is not None else None
        self.rows: list[int] = []
        self.cache: Any = None
        self.bias: Any = None  # [rows, cache length]: 0 where the row attends, min on padding
        self.logits: list[Any] = []  # per row: the logits its next token is picked from
        self.pos: dict[int, int] = {}
        self.answers: dict[int, list[int]] = {}

    def run(self, queue: list[tuple[int, list[int]]]) -> None:
        pending = deque(queue)
        refill = max(1, self.size // 4)  # admit in groups: one prefill pass per group
        while pending or self.rows:
            if pending and len(self.rows) <= self.size - refill:
                self._admit([pending.popleft() for _ in range(min(self.size - len(self.rows), len(pending)))])
            tokens = self._pick()
            if self.rows:
                self._step(tokens)

    def _pick(self) -> list[int]:
        """Each row's greedy token; rows that end leave the batch. Returns the tokens of the
        rows that stay, in the batch's order."""
        import torch

        logits = torch.stack(self.logits)
        if self.masker is not None:
            self.masker.apply(logits, self.rows)
        keep, tokens, self.logits = [], [], []
        for j, (r, token) in enumerate(zip(self.rows, logits.argmax(dim=-1).tolist(), strict=True)):
            self.answers[r].append(token)
            ended = self.masker.accept(r, token) if self.masker is not None else False
            if not (ended or token in self.stops or len(self.answers[r]) >= self.limit):
                keep.append(j)
                tokens.append(token)
        if len(keep) < len(self.rows):
            index = torch.tensor(keep, dtype=torch.long)
            self.cache.batch_select_indices(index)
            self.bias = self.bias[index]
            self.rows = [self.rows[j] for j in keep]
            self._compact()
        return tokens

    def _step(self, tokens: list[int]) -> None:
        """One token for every row still writing."""
        import torch

        pos = torch.tensor([[self.pos[r]] for r in self.rows])
        for r in self.rows:
            self.pos[r] += 1
        self.bias = torch.cat([self.bias, self.bias.new_zeros((len(self.rows), 1))], dim=1)
        mask = self.bias[:, None, None, :]
        out = self.model(input_ids=torch.tensor(tokens)[:, None], attention_mask=mask, position_ids=pos,
                         past_key_values=self.cache, use_cache=True, logits_to_keep=1)  # fmt: skip
        self.cache, self.logits = out.past_key_values, list(out.logits[:, -1, :])

    def _admit(self, new: list[tuple[int, list[int]]]) -> None:
        """Read the new rows' prompts (after the shared prefix) in one pass and join them to
        the running batch, their logits after the running rows'."""
        import torch

        shared = self.shared
        n, width = len(new), max(len(s) for _, s in new) - shared
        cache = None
        if self.prefix is not None:
            cache = copy.deepcopy(self.prefix)
            cache.batch_repeat_interleave(n)
        input_ids = torch.zeros((n, width), dtype=torch.long)
        positions = torch.full((n, width), shared, dtype=torch.long)
        mask = torch.zeros((n, shared + width), dtype=torch.long)
        mask[:, :shared] = 1
        for j, (r, prompt) in enumerate(new):
            s = prompt[shared:]
            pad = width - len(s)
            input_ids[j, pad:] = torch.tensor(s)
            positions[j, pad:] = torch.arange(shared, shared + len(s))
            mask[j, shared + pad :] = 1
            self.pos[r], self.answers[r] = shared + len(s), []
            if self.masker is not None:
                self.masker.start(r)
        out = self.model(input_ids=input_ids, attention_mask=mask, position_ids=positions,
                         past_key_values=cache, use_cache=True, logits_to_keep=1)  # fmt: skip
        logits = out.logits[:, -1, :]
        bias = torch.zeros(mask.shape, dtype=logits.dtype).masked_fill_(
            mask == 0, torch.finfo(logits.dtype).min
        )
        if self.cache is None:
            self.cache, self.bias = out.past_key_values, bias
        else:
            self._join(out.past_key_values, bias)
        self.rows += [r for r, _ in new]
        self.logits += list(logits)

    def _compact(self, slack: int = 16) -> None:
        """Drop the cache positions no remaining row attends to (those of rows that left, and
        padding), once there are `slack` of them. Keys are cached after their rotary position
        is applied, so removing positions changes nothing for the rest."""
        import torch

        live = (self.bias > torch.finfo(self.bias.dtype).min).any(dim=0)
        if self.bias.shape[0] == 0 or int((~live).sum()) < slack:
            return
        keep = live.nonzero().squeeze(1)
        for layer in self.cache.layers:
            layer.keys, layer.values = layer.keys[:, :, keep], layer.values[:, :, keep]
        self.bias = self.bias[:, keep]

    def _join(self, cache: Any, bias: Any) -> None:
        """Append rows to the running batch, left-padding whichever cache is shorter."""
        import torch

        length = max(self.bias.shape[1], bias.shape[1])

        def pad(t: Any, fill: float) -> Any:
            missing = length - t.shape[-2 if t.dim() == 4 else 1]
            if missing == 0:
                return t
            if t.dim() == 4:  # keys or values: [rows, heads, positions, dim]
                return torch.cat([t.new_zeros((*t.shape[:2], missing, t.shape[3])), t], dim=2)
            return torch.cat([t.new_full((t.shape[0], missing), fill), t], dim=1)

        for mine, theirs in zip(self.cache.layers, cache.layers, strict=True):
            mine.keys = torch.cat([pad(mine.keys, 0.0), pad(theirs.keys, 0.0)], dim=0)
            mine.values = torch.cat([pad(mine.values, 0.0), pad(theirs.values, 0.0)], dim=0)
        low = torch.finfo(bias.dtype).min
        self.bias = torch.cat([pad(self.bias, low), pad(bias, low)], dim=0)


class _Masker:
    """One xgrammar matcher per row (by row id), and the token mask they fill for a pick."""

    def __init__(self, grammar: Any, rows: int):
        import xgrammar as xgr

        self.grammar = grammar
        self.matchers: dict[int, Any] = {}
        self.bitmask = xgr.allocate_token_bitmask(rows, grammar.tokenizer_info.vocab_size)

    def start(self, row: int) -> None:
        import xgrammar as xgr

        self.matchers[row] = xgr.GrammarMatcher(self.grammar)

    def apply(self, logits: Any, rows: list[int]) -> None:
        """Set the logits of the tokens each row's grammar forbids next to -inf (in place)."""
        import xgrammar as xgr

        for j, r in enumerate(rows):
            self.matchers[r].fill_next_token_bitmask(self.bitmask, j)
        xgr.apply_token_bitmask_inplace(logits, self.bitmask[: len(rows)])

    def accept(self, row: int, token: int) -> bool:
        """Take the row's token; True once the row's grammar is complete (its matcher is
        then released)."""
        matcher = self.matchers[row]
        if not matcher.accept_token(token):
            raise RuntimeError(f"the grammar refused token {token} it had allowed")
        if matcher.is_terminated():
            del self.matchers[row]
            return True
        return False
