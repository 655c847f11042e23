import pytest

from tunegate.core.pii import iban_ok, luhn_ok, scrub


@pytest.mark.parametrize(
    ("text", "kind", "expected"),
    [
        ("mail me at jo.reyes+bank@example.co.uk please", "email", "mail me at [EMAIL] please"),
        ("my card 4539 1488 0343 6467 was charged", "card", "my card [CARD] was charged"),
        ("card 4111-1111-1111-1111", "card", "card [CARD]"),
        ("IBAN DE89 3704 0044 0532 0130 00 is mine", "iban", "IBAN [IBAN] is mine"),
        ("GB82WEST12345698765432", "iban", "[IBAN]"),
        ("call +44 7700 900461 now", "phone", "call [PHONE] now"),
        ("ring (555) 010-2398", "phone", "ring [PHONE]"),
        ("phone 07700 900 982", "phone", "phone [PHONE]"),
    ],
)
def test_personal_data_is_replaced(text, kind, expected):
    out = scrub(text)
    assert out.text == expected
    assert out.counts == {kind: 1}


@pytest.mark.parametrize(
    "text",
    [
        "I transferred 500 pounds on 12/03/2024",
        "the fee was 79.99 and then 2,500.00",
        "reference 2024-05-01, 3 days ago",
        "my pin is not 1234",
    ],
)
def test_amounts_dates_and_short_numbers_are_kept(text):
    out = scrub(text)
    assert out.text == text
    assert not out.counts


def test_luhn_invalid_16_digit_number_is_not_a_card():
    assert not luhn_ok("4539148803436468")
    assert "[CARD]" not in scrub("number 4539 1488 0343 6468").text


def test_check_digit_algorithms():
    assert luhn_ok("4539148803436467")
    assert iban_ok("DE89370400440532013000")
    assert not iban_ok("DE88370400440532013000")


def test_scrubbing_a_megabyte_of_adversarial_text_stays_linear():
    """Runs of word characters, digits and dotted words with no '@' made the email pattern
    re-scan each run from every position: about an hour for this megabyte before the fix.
    Run in a child with a limit two orders of magnitude above the linear time (0.1 s here)."""
    import subprocess
    import sys

    code = (
        "from tunegate.core.pii import scrub\n"
        "text = ('a' * 1000 + ' ') * 1000 + '1' * 100000 + 'a.' * 100000 + 'jo@example.com'\n"
        "assert scrub(text).text.endswith('[EMAIL]')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], timeout=60, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_an_email_after_dots_or_word_characters_is_still_found_whole():
    for text in ("...jo@example.com", "x_jo@example.com", "see:jo.smith@example.co.uk."):
        assert "@" not in scrub(text).text, text
