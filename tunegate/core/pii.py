"""Personal data out of free text: one normalisation and one scrubber for every place that
keeps text (training data, the request log, drift reports, exported feedback).

`normalise` folds Unicode compatibility forms (NFKC: no-break and thin spaces become
spaces, full-width digits become ASCII digits), replaces control characters and collapses
whitespace. `scrub` replaces emails, IBANs, payment card numbers and phone numbers with
placeholders (``[EMAIL]``, ``[IBAN]``, ``[CARD]``, ``[PHONE]``) so the message keeps its
shape. Card numbers must pass the Luhn check and IBANs the ISO 13616 mod-97 check, so
order numbers and amounts are left alone. Digit groups may be separated by spaces
(any Unicode space), hyphens, dots, slashes or underscores; IBANs match in either case;
emails may use non-ASCII letters (``jörg@exämple.de``). `clean_text` does both, in that
order, and is what the service logs.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from dataclasses import dataclass, field

SPACE = re.compile(r"\s+")
SEP = r"[\s._/-]"  # between digit groups
EMAIL = re.compile(r"(?<![\w.%+-])[\w.%+-]+@[\w-]+(?:\.[\w-]+)*\.[^\W\d_]{2,}")
"""The lookbehind starts a match only where a local part starts: without it, a long run of
word characters with no ``@`` is re-scanned from each of its positions (quadratic time)."""
IBAN = re.compile(rf"(?i)(?<![^\W_])[A-Z]{{2}}\d{{2}}(?:{SEP}?[A-Z0-9]){{11,30}}(?![^\W_])")
CARD = re.compile(rf"(?<![\d])\d(?:{SEP}?\d){{12,18}}(?![\d])")
PHONE = re.compile(
    rf"(?<![\w+])(?:\+\d{{1,3}}{SEP}?)?(?:\(\d{{2,5}}\){SEP}?)?\d{{2,5}}(?:{SEP}?\d{{2,5}}){{1,4}}(?![^\W_])"
)
MIN_PHONE_DIGITS = 9
NON_DIGIT = re.compile(r"\D")


@dataclass
class Scrubbed:
    text: str
    counts: Counter = field(default_factory=Counter)


def normalise(text: str) -> str:
    """Unicode NFKC, no control characters, single spaces."""
    text = unicodedata.normalize("NFKC", text)
    text = "".join(ch if unicodedata.category(ch)[0] != "C" else " " for ch in text)
    return SPACE.sub(" ", text).strip()


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def iban_ok(candidate: str) -> bool:
    s = re.sub(r"[\W_]", "", candidate).upper()
    if not 15 <= len(s) <= 34 or not s.isascii():
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

    def iban(m: re.Match) -> str:
        found = m.group(0)  # case-insensitive, so it may run on into the words after the IBAN
        for end in range(len(found), 14, -1):
            head, rest = found[:end], found[end:]
            if (not rest or re.match(SEP, rest[0])) and iban_ok(head):
                counts["iban"] += 1
                return "[IBAN]" + rest
        return found

    sub(EMAIL, "email")
    text = IBAN.sub(iban, text)
    sub(CARD, "card", lambda s: luhn_ok(NON_DIGIT.sub("", s)))
    sub(PHONE, "phone", lambda s: len(NON_DIGIT.sub("", s)) >= MIN_PHONE_DIGITS)
    return Scrubbed(text, counts)


def clean_text(text: str) -> str:
    """What may be kept of a message: normalised, then scrubbed."""
    return scrub(normalise(text)).text
