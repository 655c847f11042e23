import pytest

from tunegate.pii import iban_ok, luhn_ok, scrub


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
