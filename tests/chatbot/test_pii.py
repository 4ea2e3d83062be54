"""Masking that holds: every case the security review found stored in clear, and what stays."""

import pytest

from chatbot.pii import luhn, mask

CARD = "4111111111111111"


@pytest.mark.parametrize("text, gone", [
    ("card 4111 1111 1111 1111 please", "1111 1111 1111"),
    ("card 4111-1111-1111-1111 please", "1111-1111"),
    ("card 4111.1111.1111.1111 please", "1111.1111"),  # dots
    ("pay with Visa4111111111111111 now", CARD),  # glued to a word
    ("Mastercard:5500000000000004.", "5500000000000004"),
    ("amex 3782 822463 10005", "822463"),
])
def test_card_numbers_in_any_writing(text, gone):
    masked = mask(text)
    assert gone not in masked.text and "[card ****" in masked.text
    assert masked.values == []  # never kept, not even encrypted


@pytest.mark.parametrize("text, secrets_", [
    ("card 4111 1111 1111 1111 12/27 123", ["12/27", "123"]),
    ("card 4111 1111 1111 1111 exp 09/2031 cvv 987", ["09/2031", "987"]),
    ("4111111111111111 exp 12-27 cvc 456", ["12-27", "456"]),
    ("my cvv: 321 and the card expires 11/29", ["321", "11/29"]),
    ("code de sécurité 4321", ["4321"]),
])
def test_expiry_and_security_code_next_to_a_card(text, secrets_):
    masked = mask(text).text
    for secret in secrets_:
        assert secret not in masked, masked
    assert "[card security code]" in masked or "[card expiry]" in masked


@pytest.mark.parametrize("text, phone", [
    ("appelez-moi au 06 12 34 56 78", "06 12 34 56 78"),
    ("call +33 6 12 34 56 78 tonight", "+33 6 12 34 56 78"),
    ("bel me op 0612345678", "0612345678"),
    ("mi número es 612 34 56 78", "612 34 56 78"),
    ("US office (555) 123-4567", "(555) 123-4567"),
    ("Telefon: 0170 1234567", "0170 1234567"),
    ("0049 170 1234567", "0049 170 1234567"),
    ("il mio cellulare 3331234567", "3331234567"),
])
def test_phone_numbers_are_masked_and_kept_encrypted(text, phone):
    masked = mask(text)
    assert phone not in masked.text and "[phone #1]" in masked.text
    assert masked.values == [{"kind": "phone", "value": phone}]


def test_emails_and_ibans_are_masked_and_numbered():
    masked = mask("mail jan.de.vries@example.nl or iban DE89 3704 0044 0532 0130 00, also b@x.org")
    assert "example.nl" not in masked.text and "3704" not in masked.text and "x.org" not in masked.text
    assert "[email #1]" in masked.text and "[email #2]" in masked.text and "[IBAN DE…00 #3]" in masked.text
    assert [v["kind"] for v in masked.values] == ["email", "email", "iban"]
    assert masked.values[2]["value"] == "DE89370400440532013000"


@pytest.mark.parametrize("text", [
    "order 1234567890123",  # not Luhn-valid: an order id stays
    "commande 48213 du 12.05.2024",
    "le 01.02.2024 10:30",
    "montant 1.234.567,89 EUR",
    "bestelling 5521",
])
def test_order_numbers_dates_and_amounts_stay(text):
    assert mask(text).text == text


def test_luhn():
    assert luhn(CARD) and not luhn("4111111111111112")


def test_long_addresses_and_long_runs_without_one():
    assert "@" not in mask("write to " + "a" * 70 + "@example.com please").text
    assert "john" not in mask("it is " + "john." * 15 + "smith@example.com").text
    assert mask("1-" * 12000).text == "1-" * 12000  # no address, nothing masked (and no quadratic scan)


def test_a_long_run_of_digit_groups_is_masked_in_one_pass(monkeypatch):
    """A customer may send a stored message of 24,000 characters; masking must neither recurse per
    card found (the old way hit Python's recursion limit) nor check each stretch more than once."""
    import chatbot.pii as pii

    calls = 0

    def counted(digits):
        nonlocal calls
        calls += 1
        return luhn(digits)

    monkeypatch.setattr(pii, "luhn", counted)
    text = "0 " * 12000  # 12,000 one-digit groups; every 13 zeros are a Luhn-valid "card"
    masked = mask(text)
    assert masked.text.count("[card ****0000]") == 12000 // 19  # 19 digits each, the longest a card has
    assert calls <= 7 * 12000  # each group starts at most 7 stretches of 13-19 digits
    several = mask("pay 4111 1111 1111 1111 or 5500 0000 0000 0004, not 1234")
    assert several.text == "pay [card ****1111] or [card ****0004], not 1234"
