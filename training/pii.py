"""Scrub personal data from free text: emails, IBANs, payment card numbers, phone numbers.

Each finding is replaced by a placeholder (``[EMAIL]``, ``[IBAN]``, ``[CARD]``, ``[PHONE]``)
so the message keeps its shape. Card numbers must pass the Luhn check and IBANs the
ISO 13616 mod-97 check, so order numbers and amounts are left alone. Used by the
prepare stage on training data and by the service on its request log.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?:[ ]?[A-Z0-9]){11,30}\b")
CARD = re.compile(r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d-])")
PHONE = re.compile(r"(?<![\w+])(?:\+\d{1,3}[ .-]?)?(?:\(\d{2,5}\)[ .-]?)?\d{2,5}(?:[ .-]?\d{2,5}){1,4}(?!\w)")
MIN_PHONE_DIGITS = 9


@dataclass
class Scrubbed:
    text: str
    counts: Counter = field(default_factory=Counter)


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def iban_ok(candidate: str) -> bool:
    s = candidate.replace(" ", "")
    if not 15 <= len(s) <= 34:
        return False
    rearranged = s[4:] + s[:4]
    try:
        number = int("".join(str(int(c, 36)) for c in rearranged))
    except ValueError:
        return False
    return number % 97 == 1


def scrub(text: str) -> Scrubbed:
    """Return the text with personal data replaced, and how many of each kind were found."""
    counts: Counter = Counter()

    def sub(pattern: re.Pattern, kind: str, accept=lambda m: True) -> None:
        nonlocal text

        def repl(m: re.Match) -> str:
            if not accept(m.group(0)):
                return m.group(0)
            counts[kind] += 1
            return f"[{kind.upper()}]"

        text = pattern.sub(repl, text)

    sub(EMAIL, "email")
    sub(IBAN, "iban", iban_ok)
    sub(CARD, "card", lambda s: luhn_ok(re.sub(r"\D", "", s)))
    sub(PHONE, "phone", lambda s: len(re.sub(r"\D", "", s)) >= MIN_PHONE_DIGITS)
    return Scrubbed(text, counts)
