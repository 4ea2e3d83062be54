"""What is taken from a customer's message, per language: order numbers, amounts, dates, e-mails."""

import pytest

from chatbot.entities import extract
from chatbot.pii import mask

CASES = {
    "en": [
        ("Where is my order 48213? I paid €59.90 on 12 March", {"order": "48213", "amount": "€59.90", "date": "12 March"}),
        ("my order number is A-55123", {"order": "A-55123"}),
        ("Order #778899 was charged $30 twice on March 3rd, 2025", {"order": "778899", "amount": "$30",
                                                                   "date": "March 3rd, 2025"}),
        ("I ordered 3 weeks ago and paid 150 euros", {"amount": "150 euros"}),
    ],
    "fr": [
        ("Bonjour, ma commande n° 48213 du 12/03/2025 de 59,90 € n'est pas arrivée",
         {"order": "48213", "amount": "59,90 €", "date": "12/03/2025"}),
        ("où en est la commande 5521 passée le 3 mars ?", {"order": "5521", "date": "3 mars"}),
        ("j'ai été débité deux fois de 1 249,00 EUR", {"amount": "1 249,00 EUR"}),
    ],
    "de": [
        ("Wo ist meine Bestellung mit der Nummer 4471120? Bezahlt am 3. März 120,00 EUR",
         {"order": "4471120", "amount": "120,00 EUR", "date": "3. März"}),
        ("Bestellnummer: DE-99812, seit dem 02.04.2025 unterwegs", {"order": "DE-99812", "date": "02.04.2025"}),
    ],
    "nl": [
        ("Waar blijft mijn bestelling 5521 van 3 maart?", {"order": "5521", "date": "3 maart"}),
        ("ik heb € 45,50 te veel betaald voor ordernummer 66123", {"order": "66123", "amount": "€ 45,50"}),
    ],
    "es": [
        ("mi pedido número 12345 del 3 de marzo, me cobraron 30 euros",
         {"order": "12345", "amount": "30 euros", "date": "3 de marzo"}),
        ("¿dónde está el pedido 998877?", {"order": "998877"}),
    ],
    "it": [
        ("il mio ordine n. 778899 del 5 maggio 2025 non è arrivato", {"order": "778899", "date": "5 maggio 2025"}),
        ("mi avete addebitato 49,99 € per l'ordine 334455", {"order": "334455", "amount": "49,99 €"}),
    ],
    "pt": [
        ("a minha encomenda 123456 de 3 de março custou 45,90 €",
         {"order": "123456", "amount": "45,90 €", "date": "3 de março"}),
        ("o pedido nº 765432 ainda não chegou", {"order": "765432"}),
    ],
}


@pytest.mark.parametrize("lang, text, expected", [(lang, t, e) for lang, cases in CASES.items() for t, e in cases])
def test_each_language(lang, text, expected):
    assert extract(mask(text).text, lang) == expected


@pytest.mark.parametrize("text", [
    "order of 150 euros",             # an amount after the order word, not an order number
    "commande 48213,5",               # a decimal number
    "I may come back later",          # "may" without a day
    "my order arrived 3 days late",
    "Bestellung vom 12.03.2025",      # a date, not a number
    "order on 2025-03-12",
])
def test_no_order_number_where_there_is_none(text):
    assert "order" not in extract(text, "en")


def test_personal_values_are_never_taken():
    masked = mask("order 4111 1111 1111 1111, mail jan@example.com, tel +33 6 12 34 56 78").text
    found = extract(masked, "en")
    assert found == {"email": "given"}  # the card and phone are placeholders; the address is not kept
    assert extract("", "en") == {} and extract(None, "en") == {}


def test_another_language_s_words_are_understood_too():
    assert extract("Bonjour, order 48213 svp", "fr")["order"] == "48213"
    assert extract("where is #55123", "en") == {"order": "55123"}
