"""Property-based: personal data in any of the forms people type never reaches what tunegate
keeps (hypothesis generates the cards, IBANs, phones and emails; real SQLite, real export).

Forms: digit groups separated by spaces, no-break or thin spaces, hyphens, dots, slashes or
underscores (mixed within one number), full-width digits, lower-case IBANs, and emails
with non-ASCII letters.
"""

from __future__ import annotations

import re
import unicodedata

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tunegate.core.pii import clean_text, iban_ok, luhn_ok

SEPARATORS = [" ", "\u00a0", "\u2009", "\u202f", "-", ".", "/", "_", ""]
FULL_WIDTH = str.maketrans("0123456789", "０１２３４５６７８９")


def luhn_complete(body: str) -> str:
    for check in "0123456789":
        if luhn_ok(body + check):
            return body + check
    raise AssertionError("unreachable")


def iban_complete(country: str, bban: str) -> str:
    for check in range(2, 99):
        candidate = f"{country}{check:02d}{bban}"
        if iban_ok(candidate):
            return candidate
    raise AssertionError("unreachable")


@st.composite
def grouped(draw, digits: str, size: int = 4) -> str:
    groups = [digits[i : i + size] for i in range(0, len(digits), size)]
    out = groups[0]
    for g in groups[1:]:
        out += draw(st.sampled_from(SEPARATORS)) + g
    return out.translate(FULL_WIDTH) if draw(st.booleans()) else out


@st.composite
def card(draw) -> tuple[str, str]:
    first = draw(st.sampled_from(["4", "51", "37", "6011"]))
    length = draw(st.sampled_from([16, 15, 19]))
    body = first + "".join(draw(st.lists(st.sampled_from("0123456789"), min_size=length - len(first) - 1,
                                         max_size=length - len(first) - 1)))  # fmt: skip
    number = luhn_complete(body)
    return draw(grouped(number)), number


@st.composite
def iban(draw) -> tuple[str, str]:
    country, size = draw(st.sampled_from([("DE", 18), ("GB", 18), ("FR", 23), ("NL", 14)]))
    bban = "".join(draw(st.lists(st.sampled_from("0123456789"), min_size=size, max_size=size)))
    number = iban_complete(country, bban)
    text = draw(grouped(number))
    return (text.lower() if draw(st.booleans()) else text), number[4:]


@st.composite
def phone(draw) -> tuple[str, str]:
    digits = "".join(draw(st.lists(st.sampled_from("0123456789"), min_size=10, max_size=10)))
    prefix = draw(st.sampled_from(["+44 ", "+49\u00a0", "0", "(030) ", ""]))
    return prefix + draw(grouped(digits, draw(st.sampled_from([3, 4, 5])))), digits


@st.composite
def email(draw) -> tuple[str, str]:
    letters = "abcdefghijklmnopqrstuvwxyzäöüéèñçßøåжкл"
    local = "".join(draw(st.lists(st.sampled_from(letters), min_size=3, max_size=10)))
    domain = "".join(draw(st.lists(st.sampled_from(letters), min_size=3, max_size=10)))
    tld = draw(st.sampled_from(["de", "com", "рф", "co.uk"]))
    return f"{local}@{domain}.{tld}", local


PII = st.one_of(card(), iban(), phone(), email())
TEMPLATES = ["my details: {} thanks", "{}", "use {}, please", "Kontakt {}."]


def leaked(kept: str, secret: str) -> bool:
    """Whether what was kept still holds the secret (digits compared without separators)."""
    kept = unicodedata.normalize("NFKC", kept)
    if secret.isdigit():
        return secret in re.sub(r"\D", "", kept)
    return secret.lower() in kept.lower()


@settings(max_examples=300, deadline=None)
@given(PII, st.sampled_from(TEMPLATES))
def test_no_generated_personal_data_survives_the_scrubber(found, template):
    text, secret = found
    kept = clean_text(template.format(text))
    assert not leaked(kept, secret), (text, kept)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(PII, st.sampled_from(TEMPLATES)), min_size=1, max_size=4))
def test_none_reaches_the_request_log_or_the_exported_feedback(tmp_path_factory, found):
    from tunegate.core.artifacts import read_jsonl
    from tunegate.monitoring.retrain import export_feedback
    from tunegate.serving.requestlog import Entry, RequestLog

    folder = tmp_path_factory.mktemp("pii")
    log = RequestLog(folder / "requests.sqlite")
    for i, ((text, _), template) in enumerate(found):
        entry = Entry(f"r{i}", "classify", 0, version="v1", input=template.format(text))
        row = log.begin(entry)
        entry.status, entry.output, entry.label = 200, f"echo {text}", "card_arrival"
        log.finish(row, entry)
        assert log.feedback(f"r{i}", "card_lost") is not None
    kept = [f"{r['input']} {r['output']}" for r in log.rows()]
    log.close()
    export_feedback(folder / "requests.sqlite", folder / "feedback")
    kept += [r["text"] for r in read_jsonl(folder / "feedback" / "feedback.jsonl")]
    for (text, secret), _ in found:
        assert not any(leaked(k, secret) for k in kept), (text, kept)
