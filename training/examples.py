"""What the train stage trains on: the prepared rows, capped and augmented, as tokenized examples.

Pure apart from the tokenizer: a stratified seeded cap (``train.max_train_rows``), casing
copies (``train.augment_casing``), the self-distilled replay kept at its share when the
task rows grow, and tokenized examples with the loss on the answer only
(``training/objective.py``).
"""

from __future__ import annotations

import random
from typing import Any

from training.clean import Row
from training.splits import cap_rows
from tunegate.prompt import PromptTemplate


def capped(rows: list[dict[str, Any]], cap: int | None, seed: int) -> list[dict[str, Any]]:
    """A stratified, seeded subset of at most `cap` prepared rows (all rows when cap is None)."""
    if not cap:
        return rows
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
        forms = [t for t in (r["text"].upper(), r["text"].lower()) if t != r["text"]]
        if forms:
            out.append(r | {"id": f"{r['id']}-case", "text": rng.choice(forms)})
    return out


def same_share(examples: list[Any], growth: float) -> list[Any]:
    """`examples` cycled to `growth` times their number (rounded), so that they keep their share
    of a training set whose other part grew by that factor."""
    wanted = round(len(examples) * growth)
    return [examples[i % len(examples)] for i in range(wanted)] if examples else []


def build_examples(
    rows: list[dict[str, Any]], tokenizer: Any, template: PromptTemplate, max_len: int
) -> tuple[list[dict[str, Any]], int]:
    """Tokenized examples with the loss on the answer only; returns them and how many were cut."""
    from training.objective import tokenize_example

    out, cut = [], 0
    for r in rows:
        example, was_cut = tokenize_example(tokenizer, template, r["text"], r["label"], max_len)
        out.append(example)
        cut += was_cut
    return out, cut
