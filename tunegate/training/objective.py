"""The training loop's parts: tokenized examples, a padding collator, and a Trainer whose
loss touches the vocabulary only where the answer is.

Why not the stock loss: a causal LM computes logits over the whole vocabulary (49,152
entries for SmolLM2) at every position, but the loss here covers only the few answer
tokens. Projecting just those hidden states through the LM head skips most of that
work, exactly, with no change to the gradient. With batches of similar length padded
only to their longest member, this is where the train stage's speed comes from
(``bench/train_throughput.py`` measures it against a plain Trainer + PEFT loop).
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import Trainer

from tunegate.core.prompt import PromptTemplate

IGNORE = -100


def tokenize_example(
    tokenizer: Any, template: PromptTemplate, text: str, label: str, max_len: int
) -> tuple[dict[str, Any], bool]:
    """input_ids for prompt + answer, labels only on the answer; the message is cut (never the
    answer) when the whole would exceed max_len. Returns (example, was_cut)."""
    answer = tokenizer(label + tokenizer.eos_token, add_special_tokens=False)["input_ids"]
    prompt = tokenizer(template.render(tokenizer, text), add_special_tokens=False)["input_ids"]
    cut = len(prompt) + len(answer) > max_len
    if cut:
        overflow = len(prompt) + len(answer) - max_len
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        text = tokenizer.decode(ids[: max(1, len(ids) - overflow - 2)])
        prompt = tokenizer(template.render(tokenizer, text), add_special_tokens=False)["input_ids"]
        prompt = prompt[: max_len - len(answer)]
    ids = prompt + answer
    return {"input_ids": ids, "labels": [IGNORE] * len(prompt) + answer, "length": len(ids)}, cut


def assistant_spans(tokenizer: Any, messages: list[dict[str, str]]) -> tuple[str, list[tuple[int, int]]]:
    """The rendered conversation and the character span of every assistant turn's content
    and its end-of-turn marker (what the model must learn to write, and where to stop).

    A turn's span starts where the chat template's assistant opening ends (the prompt
    rendered up to that turn with ``add_generation_prompt``) and ends after the turn's
    rendering, minus trailing whitespace (the newline after ``<|im_end|>`` is the template's,
    not the model's). A template whose renderings are not prefixes of one another (one that
    rewrites earlier turns) cannot be masked this way and is refused."""
    full = tokenizer.apply_chat_template(messages, tokenize=False)
    spans = []
    for k, turn in enumerate(messages):
        if turn["role"] != "assistant":
            continue
        opening = tokenizer.apply_chat_template(messages[:k], tokenize=False, add_generation_prompt=True)
        through = tokenizer.apply_chat_template(messages[: k + 1], tokenize=False).rstrip()
        if not (full.startswith(opening) and full.startswith(through) and len(through) > len(opening)):
            raise ValueError("the chat template rewrites earlier turns; the assistant turns cannot be masked")
        spans.append((len(opening), len(through)))
    return full, spans


def tokenize_chat(tokenizer: Any, messages: list[dict[str, str]], max_len: int) -> dict[str, Any] | None:
    """input_ids of a whole chat record, labels only on the assistant turns (each turn's
    content and end-of-turn token; every assistant turn of a multi-turn record). None when
    the record is longer than max_len tokens: it is counted and left out, never cut."""
    full, spans = assistant_spans(tokenizer, messages)
    enc = tokenizer(full, add_special_tokens=False, return_offsets_mapping=True)
    ids = enc["input_ids"]
    if len(ids) > max_len:
        return None
    labels = [
        tok if any(lo <= start < hi for lo, hi in spans) else IGNORE
        for tok, (start, _) in zip(ids, enc["offset_mapping"], strict=True)
    ]
    return {"input_ids": ids, "labels": labels, "length": len(ids)}


def tokenize_answer(tokenizer: Any, prompt: str, answer: str, max_len: int) -> dict[str, Any]:
    """A rendered prompt and its answer (+ eos), loss on the answer; the answer's end is cut
    past max_len (replay examples)."""
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    answer_ids = tokenizer(answer + tokenizer.eos_token, add_special_tokens=False)["input_ids"]
    answer_ids = answer_ids[: max(1, max_len - len(prompt_ids))]
    ids = (prompt_ids + answer_ids)[:max_len]
    n_prompt = len(ids) - len(answer_ids)
    return {"input_ids": ids, "labels": [IGNORE] * n_prompt + ids[n_prompt:], "length": len(ids)}


class PadToLongest:
    """Right-pads a batch to its longest example (a multiple of 8), with an attention mask."""

    def __init__(self, pad_token_id: int, multiple: int = 8):
        self.pad, self.multiple = pad_token_id, multiple

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        width = max(len(f["input_ids"]) for f in features)
        width = -(-width // self.multiple) * self.multiple
        ids = torch.full((len(features), width), self.pad, dtype=torch.long)
        labels = torch.full((len(features), width), IGNORE, dtype=torch.long)
        mask = torch.zeros((len(features), width), dtype=torch.long)
        for i, f in enumerate(features):
            n = len(f["input_ids"])
            ids[i, :n] = torch.tensor(f["input_ids"])
            labels[i, :n] = torch.tensor(f["labels"])
            mask[i, :n] = 1
        return {"input_ids": ids, "labels": labels, "attention_mask": mask}


def body_and_head(model: Any) -> tuple[Any, Any]:
    """The transformer body and the LM head of a causal LM, PEFT-wrapped or not."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return base.get_decoder(), base.get_output_embeddings()


class AnswerLossTrainer(Trainer):
    """transformers.Trainer with a cross-entropy computed on answer positions only.

    Under DistributedDataParallel (torchrun on several processes) the loss must be computed
    inside DDP's forward: DDP arms its gradient all-reduce there, and a loss computed from
    the unwrapped model would leave every process training on its own shard. The answer
    loss is therefore run as the wrapped module's forward for that one call."""

    general: list[Any] | None = None
    """Base-model answers to general prompts (forgetting.py here): measured at each validation."""
    forgetting_budget: float | None = None

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        """The validation loss, and whether each answer decodes exactly: greedy decoding
        writes the answer iff every answer position's argmax is its token, given the answer
        so far, which is what this teacher-forced pass reads (no generation needed)."""
        inputs = self._prepare_inputs(inputs)
        with torch.no_grad():
            loss, out = self.compute_loss(model, inputs, return_outputs=True)
        targets = inputs["labels"][:, 1:]
        keep = targets != IGNORE
        right = torch.ones_like(keep)
        right[keep] = out["logits"].argmax(-1) == targets[keep]
        answered = keep.any(1)
        self._answers += torch.stack([(right.all(1) & answered).sum(), answered.sum()]).cpu()
        return loss.detach().mean(), None, None

    def evaluation_loop(self, *args, **kwargs):
        """The Trainer's loop, plus ``answer_match``, ``forgetting`` and the checkpoint
        score ``select`` (tunegate/training/selection.py) among the metrics it returns."""
        from tunegate.training.forgetting import forgetting
        from tunegate.training.selection import select

        self._answers = torch.zeros(2, dtype=torch.long)
        output = super().evaluation_loop(*args, **kwargs)
        prefix = kwargs.get("metric_key_prefix", "eval")
        hits, rows = (int(x) for x in self.accelerator.reduce(self._answers.to(self.args.device), "sum"))
        m = output.metrics
        m[f"{prefix}_answer_match"] = hits / max(rows, 1)
        gone = forgetting(self.model, self.general) if self.general else None
        if gone is not None:
            m[f"{prefix}_forgetting"] = gone
        m[f"{prefix}_select"] = select(
            m[f"{prefix}_answer_match"], m[f"{prefix}_loss"], gone, self.forgetting_budget
        )
        return output

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        inner = wrapped_module(model)
        if inner is not None:
            inner.forward = lambda **kw: answer_loss(inner, num_items_in_batch, **kw)
            try:
                loss, logits = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"],
                                     labels=inputs["labels"])  # fmt: skip
            finally:
                del inner.forward  # back to the class's forward
        else:
            loss, logits = answer_loss(model, num_items_in_batch, **inputs)
        if num_items_in_batch is not None and self.args.average_tokens_across_devices:
            # The count is every process's answer tokens and DDP averages the gradients, so
            # each process's share is scaled back up (as Trainer.compute_loss does).
            loss = loss * self.accelerator.num_processes
        return (loss, {"logits": logits}) if return_outputs else loss

    def train(self, *args, **kwargs):
        # evaluate() before train() marks the model as prepared by Accelerate (for
        # inference), and a prepared model is never wrapped in DDP afterwards: clear the mark
        # so several processes train as one. One process is left exactly as it was.
        if self.args.world_size > 1:
            self.model._is_accelerate_prepared = False
        return super().train(*args, **kwargs)


def wrapped_module(model: Any) -> Any:
    """The module inside DistributedDataParallel, whose forward the loss must run as; None
    for a model on one process. (FSDP is not supported by the train stage: see docs/scaling.md.)"""
    if isinstance(model, torch.nn.parallel.DistributedDataParallel):
        return model.module
    return None


def answer_loss(model: Any, num_items_in_batch: Any, input_ids, attention_mask, labels, **_) -> tuple:
    """(mean cross-entropy over answer tokens, their logits): the LM head applied to the
    answer positions' hidden states only."""
    body, head = body_and_head(model)
    hidden = body(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
    targets = labels[:, 1:]
    keep = targets != IGNORE
    logits = head(hidden[:, :-1][keep]).float()
    total = torch.nn.functional.cross_entropy(logits, targets[keep], reduction="sum")
    count = num_items_in_batch if num_items_in_batch is not None else keep.sum()
    return total / torch.as_tensor(count, device=total.device).clamp(min=1), logits
