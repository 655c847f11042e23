"""Words of a message, as the drift monitor counts them: runs of letters, lower-cased.

In the kernel because two stages need the same definition: evaluate records the training
split's vocabulary with a release's monitoring reference, and the monitor scores live
messages against it (``oov_share``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

WORD = re.compile(r"[^\W\d_]+", re.UNICODE)


def words(text: str) -> list[str]:
    return [w.lower() for w in WORD.findall(text)]


def vocabulary(texts: Iterable[str]) -> frozenset[str]:
    return frozenset(w for t in texts for w in words(t))
