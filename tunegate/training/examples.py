"""What the train stage trains on: the prepared rows, capped and augmented, as tokenized examples.

Pure apart from the tokenizer: a stratified seeded cap (``train.max_train_rows``), casing
copies (``train.augment_casing``), cut-off copies (``train.augment_truncation``), the
self-distilled replay kept at its share when the task rows grow, and tokenized examples
with the loss on the answer only (``tunegate/training/objective.py``).
"""

from __future__ import annotations

import random
from typing import Any

from tunegate.core.prompt import PromptTemplate
from tunegate.training.clean import Row
from tunegate.training.splits import cap_rows


def capped(rows: list[dict[str, Any]], cap: int | None, seed: int) -> list[dict[str, Any]]:
    """A stratified (by label, when rows have one), seeded subset of at most `cap` prepared rows
    (all rows when cap is None)."""
    if not cap:
        return rows
    if rows and "label" not in rows[0]:  # chat records: one stratum
        keep = set(random.Random(seed).sample(range(len(rows)), min(cap, len(rows))))
        return [r for i, r in enumerate(rows) if i in keep]
    kept = {r.where for r in cap_rows([Row(r["id"], r["text"], r["label"]) for r in rows], cap, seed)}
    return [r for r in rows if r["id"] in kept]


def casing_copies(rows: list[dict[str, Any]], share: float, seed: int) -> list[dict[str, Any]]:
    """For a seeded `share` of the rows, a copy whose text is in ALL CAPS or all lower case
    (whichever changes it; chosen at random when both do). Labels are unchanged."""
    rng = random.Random(seed)
    out = []
    for r in rows:
        if rng.random() >= share:
            continue
        text = r["text"] if "text" in r else r["input"]
        forms = [t for t in (text.upper(), text.lower()) if t != text]
        if forms:
            out.append(_with_input(r, rng.choice(forms)) | {"id": f"{r['id']}-case"})
    return out


def truncation_copies(rows: list[dict[str, Any]], share: float, seed: int) -> list[dict[str, Any]]:
    """For a seeded `share` of the labelled rows, a copy cut to its first 40% to 80% of words
    (at least three; only when that removes a word): a message sent too early still names its
    intent by what it starts with. Labels are unchanged. Chat records are never cut, since a
    cut instruction asks for a different answer."""
    rng = random.Random(f"{seed}:truncation")
    out = []
    for r in rows:
        if "label" not in r or rng.random() >= share:
            continue
        words = r["text"].split()
        keep = max(3, round(len(words) * rng.uniform(0.4, 0.8)))
        if keep < len(words):
            out.append(r | {"text": " ".join(words[:keep]), "id": f"{r['id']}-cut"})
    return out


def _with_input(r: dict[str, Any], text: str) -> dict[str, Any]:
    """A prepared row with its message (classification) or last user turn (chat) replaced."""
    if "text" in r:
        return r | {"text": text}
    turns = list(r["messages"])
    last = max(i for i, t in enumerate(turns) if t["role"] == "user")
    turns[last] = {"role": "user", "content": text}
    return r | {"messages": turns, "input": text}


def same_share(examples: list[Any], growth: float) -> list[Any]:
    """`examples` cycled to `growth` times their number (rounded), so that they keep their share
    of a training set whose other part grew by that factor."""
    wanted = round(len(examples) * growth)
    return [examples[i % len(examples)] for i in range(wanted)] if examples else []


def build_examples(
    rows: list[dict[str, Any]], tokenizer: Any, template: PromptTemplate, max_len: int
) -> tuple[list[dict[str, Any]], int]:
    """Tokenized examples with the loss on the answer only; returns them and how many were cut
    (classification: the message shortened) or left out (chat records: too long to train on)."""
    from tunegate.training.objective import tokenize_chat, tokenize_example

    if rows and "messages" in rows[0]:
        examples = [tokenize_chat(tokenizer, r["messages"], max_len) for r in rows]
        return [e for e in examples if e is not None], sum(e is None for e in examples)
    out, cut = [], 0
    for r in rows:
        example, was_cut = tokenize_example(tokenizer, template, r["text"], r["label"], max_len)
        out.append(example)
        cut += was_cut
    return out, cut
