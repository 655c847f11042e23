"""Restrict generation to a label set: a token trie over the labels' token sequences.

Pure Python; the HF reference predictor uses it through ``prefix_allowed_tokens_fn``,
which gives the same greedy, label-constrained decoding that vLLM's structured
outputs (guided choice) give the served engine.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass
class LabelTrie:
    end_token: int
    children: dict[tuple[int, ...], set[int]] = field(default_factory=dict)
    labels: dict[tuple[int, ...], str] = field(default_factory=dict)

    @classmethod
    def build(cls, labels: Sequence[str], encode, end_token: int) -> LabelTrie:
        """`encode(label) -> token ids` as the label appears in the assistant's answer."""
        trie = cls(end_token)
        for label in labels:
            ids = tuple(encode(label))
            if not ids:
                raise ValueError(f"label {label!r} encodes to no tokens")
            if ids in trie.labels:
                raise ValueError(f"labels {trie.labels[ids]!r} and {label!r} encode to the same tokens")
            trie.labels[ids] = label
            for i in range(len(ids)):
                trie.children.setdefault(ids[:i], set()).add(ids[i])
        return trie

    def allowed(self, prefix: Sequence[int]) -> list[int]:
        """Tokens that may follow `prefix` (the answer so far)."""
        prefix = tuple(prefix)
        if prefix and prefix[-1] == self.end_token:
            return [self.end_token]
        nxt = set(self.children.get(prefix, ()))
        if prefix in self.labels:
            nxt.add(self.end_token)
        return sorted(nxt) or [self.end_token]

    def decode(self, ids: Sequence[int]) -> str | None:
        """The label an answer spells, or None if it is not a complete label."""
        ids = tuple(ids)
        if self.end_token in ids:
            ids = ids[: ids.index(self.end_token)]
        return self.labels.get(ids)

    def resolved(self, prefix: Sequence[int]) -> str | None:
        """The label `prefix` already determines: greedy decoding from here only follows
        forced tokens, so the answer is known without decoding them."""
        prefix = tuple(prefix)
        if prefix and prefix[-1] == self.end_token:
            return self.labels.get(prefix[:-1])
        below = [lab for ids, lab in self.labels.items() if ids[: len(prefix)] == prefix]
        return below[0] if len(below) == 1 else None

    @property
    def max_len(self) -> int:
        return max(len(k) for k in self.labels) + 1
