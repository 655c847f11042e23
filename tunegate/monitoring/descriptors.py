"""Text descriptors for drift: cheap, readable numbers per message. Pure Python.

- ``length_chars`` and ``word_count``;
- ``non_alpha_share``: characters that are neither letters nor spaces (digits, symbols,
  emoji, redaction placeholders);
- ``oov_share``: words the training split lacks (its vocabulary is recorded with the
  release's monitoring reference, so reference and live rows are both scored as unseen text);
- ``english_share``: words that are common English function words, a language hint
  (a Spanish or German message scores near 0, an English one well above).
"""

from __future__ import annotations

from tunegate.core.catalogues import DESCRIPTORS
from tunegate.core.words import vocabulary, words

ENGLISH = frozenset(
    """a about after all also am an and any are as at be been but by can could did do does
    for from get got had has have he her him his how i if in into is it its just me my no not
    now of on or our out please she so than that the their them then there they this to too
    up us was we were what when where which who why will with would you your""".split()  # noqa: SIM905
)
NAMES = DESCRIPTORS  # the names params validates, in the order describe() returns them
__all__ = ["NAMES", "describe", "vocabulary", "words"]


def describe(text: str, vocab: frozenset[str]) -> dict[str, float]:
    ws = words(text)
    n = max(len(ws), 1)
    return {
        "length_chars": float(len(text)),
        "word_count": float(len(ws)),
        "non_alpha_share": sum(1 for c in text if not (c.isalpha() or c.isspace())) / max(len(text), 1),
        "oov_share": sum(1 for w in ws if w not in vocab) / n,
        "english_share": sum(1 for w in ws if w in ENGLISH) / n,
    }
