"""Restrict generation to a label set, as the served engine's structured outputs do.

vLLM's guided choice (xgrammar) masks every token whose text would not keep the answer a
prefix of some label, and allows the end token once the answer is a whole label. Any
tokenization of a label is allowed, not only the tokenizer's canonical one: a confident
model follows the canonical tokens anyway, but an undertrained one may spell a label
another way ("c" + "ard_arr..."), and greedy decoding then lands on a different label.
This module implements exactly those semantics in pure Python, so the transformers
reference (``prefix_allowed_tokens_fn``) and the fast scorer answer as the service does.

Text is matched by characters, with each token's text taken from the tokenizer; ``build``
checks that every label's own tokens spell it, and refuses a tokenizer where they do not.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache


@dataclass(eq=False)
class LabelConstraint:
    end_token: int
    labels: tuple[str, ...]
    texts: dict[int, str]
    """Text of every token that can appear inside a label."""
    canonical: dict[str, tuple[int, ...]] = field(default_factory=dict)
    """Each label's own tokens (the tokenizer's spelling), when known: drafts to verify."""
    by_text: dict[str, list[int]] = field(init=False)

    def __post_init__(self) -> None:
        self.by_text = {}
        for i, t in sorted(self.texts.items()):
            self.by_text.setdefault(t, []).append(i)
        self._allowed_after = lru_cache(maxsize=None)(self._allowed_after_text)

    @classmethod
    def build(
        cls, labels: Sequence[str], vocab: Mapping[int, str], end_token: int, encode=None
    ) -> LabelConstraint:
        """`vocab`: token id -> text. `encode(label) -> ids`, when given, is checked against it."""
        if any(not label for label in labels):
            raise ValueError("a label is empty")
        if len(set(labels)) != len(labels):
            raise ValueError(f"duplicate labels: {sorted(x for x in labels if labels.count(x) > 1)}")
        pieces = {
            label[i:j] for label in labels for i in range(len(label)) for j in range(i + 1, len(label) + 1)
        }
        texts = {i: t for i, t in vocab.items() if t in pieces and i != end_token}
        canonical = {}
        for label in labels:
            ids = encode(label) if encode is not None else None
            if ids is not None and "".join(texts.get(i, "\0") for i in ids) != label:
                raise ValueError(
                    f"label {label!r}: its tokens {ids} do not spell it in this tokenizer's vocabulary"
                )
            if ids is not None:
                canonical[label] = tuple(ids)
        return cls(end_token, tuple(labels), texts, canonical)

    def text(self, ids: Sequence[int]) -> str | None:
        """The answer so far, or None once it has ended or left the label set."""
        out = []
        for i in ids:
            if i == self.end_token or i not in self.texts:
                return None
            out.append(self.texts[i])
        return "".join(out)

    def _allowed_after_text(self, text: str) -> tuple[int, ...]:
        nxt: set[int] = set()
        for label in self.labels:
            if label.startswith(text):
                rest = label[len(text) :]
                if not rest:
                    nxt.add(self.end_token)
                for k in range(1, len(rest) + 1):
                    nxt.update(self.by_text.get(rest[:k], ()))
        return tuple(sorted(nxt)) or (self.end_token,)

    def allowed(self, prefix: Sequence[int]) -> list[int]:
        """Tokens that may follow `prefix` (the answer so far)."""
        text = self.text(prefix)
        return [self.end_token] if text is None else list(self._allowed_after(text))

    def decode(self, ids: Sequence[int]) -> str | None:
        """The label an answer spells, or None if it is not a complete label."""
        ids = list(ids)
        if self.end_token in ids:
            ids = ids[: ids.index(self.end_token)]
        text = self.text(ids)
        return text if text in self.labels else None

    def resolved(self, prefix: Sequence[int]) -> str | None:
        """The label `prefix` already determines: every allowed continuation ends in it, and
        ``max_len`` leaves room for any tokenization, so the answer is known without decoding it."""
        prefix = list(prefix)
        if prefix and prefix[-1] == self.end_token:
            return self.decode(prefix)
        text = self.text(prefix)
        if text is None:
            return None
        below = [label for label in self.labels if label.startswith(text)]
        return below[0] if len(below) == 1 else None

    def draft(self, prefix: Sequence[int]) -> list[int]:
        """The rest of the answer `prefix` settles, as the label's own tokens and the end
        token, when `prefix` follows those tokens so far; [] otherwise. A guess to verify
        (``tunegate/evaluation/scorer.py``): greedy decoding may still spell the rest another way."""
        label = self.resolved(prefix)
        own = self.canonical.get(label or "")
        prefix = list(prefix)
        if own is None or list(own[: len(prefix)]) != prefix:  # a longer prefix never matches
            return []
        return [*own[len(prefix) :], self.end_token]

    @property
    def max_len(self) -> int:
        """Enough new tokens for the longest label in any tokenization (each token spells at
        least one character), plus the end token."""
        return max(len(label) for label in self.labels) + 1
