import json

import pytest

from chatbot.data import load_dataset
from chatbot.replies import Catalogue
from chatbot.settings import LANGUAGES as SUPPORTED
from chatbot.settings import INTENT_DATA, OUT_OF_SCOPE, REPLIES_DIR, absolute

INTENTS = [i for i in load_dataset(absolute(INTENT_DATA)).intents if i != OUT_OF_SCOPE]  # the policy answers that one


def test_every_intent_and_line_exists_in_every_language():
    catalogue = Catalogue.load()
    assert len(INTENTS) == 27
    assert catalogue.check(INTENTS, list(SUPPORTED)) == []


def test_templates_format_and_languages_differ():
    catalogue = Catalogue.load()
    for lang in SUPPORTED:
        assert "{" not in catalogue.line("clarify", lang, first="A", second="B")
        assert "1000" in catalogue.line("too_long", lang, limit=1000)
    replies = {catalogue.reply("track_order", lang) for lang in SUPPORTED}
    assert len(replies) == len(SUPPORTED)


def test_check_reports_what_is_missing(tmp_path):
    data = json.loads((REPLIES_DIR / "fr.json").read_text())
    del data["intents"]["track_order"]
    data["bot"]["greeting"] = ""
    (tmp_path / "fr.json").write_text(json.dumps(data))
    problems = Catalogue.load(tmp_path).check(INTENTS, ["fr", "de"])
    assert "fr: track_order.label missing" in problems and "fr: bot line greeting missing" in problems
    assert "de: no reply file" in problems


def test_damaged_file_is_a_clear_error(tmp_path):
    (tmp_path / "en.json").write_text("{oops")
    with pytest.raises(ValueError, match="damaged"):
        Catalogue.load(tmp_path)


# A message per language that gives an order number, one that gives an amount and a date, one an e-mail.
GIVEN = {
    "en": ("Where is my order 48213?", "I was charged €59.90 twice on 12 March", "please change my email to jan@example.com"),
    "fr": ("Où est ma commande 48213 ?", "J'ai été débité deux fois de 59,90 € le 12 mars", "changez mon e-mail en jan@example.com"),
    "de": ("Wo ist meine Bestellung 48213?", "Mir wurden am 12. März 59,90 € doppelt abgebucht", "bitte ändern Sie meine E-Mail auf jan@example.com"),
    "nl": ("Waar is mijn bestelling 48213?", "Er is op 12 maart twee keer € 59,90 afgeschreven", "wijzig mijn e-mail naar jan@example.com"),
    "es": ("¿Dónde está mi pedido 48213?", "Me cobraron dos veces 59,90 € el 12 de marzo", "cambien mi correo a jan@example.com"),
    "it": ("Dov'è il mio ordine 48213?", "Mi hanno addebitato due volte 59,90 € il 12 marzo", "cambiate la mia e-mail in jan@example.com"),
    "pt": ("Onde está a minha encomenda 48213?", "Cobraram-me duas vezes 59,90 € a 12 de março", "alterem o meu e-mail para jan@example.com"),
}


@pytest.mark.parametrize("lang", SUPPORTED)
def test_replies_use_what_the_customer_gave(lang):
    from chatbot.entities import extract
    from chatbot.pii import mask

    catalogue = Catalogue.load()
    order, payment, email = (extract(mask(text).text, lang) for text in GIVEN[lang])
    track = catalogue.reply("track_order", lang, order)
    assert "48213" in track and track != catalogue.reply("track_order", lang)  # not asked for again
    assert "48213" in catalogue.reply("cancel_order", lang, order)
    paid = catalogue.reply("payment_issue", lang, payment)
    assert {"amount", "date"} <= set(payment) and payment["amount"] in paid and payment["date"] in paid
    changed = catalogue.reply("edit_account", lang, email)
    assert changed != catalogue.reply("edit_account", lang) and "@" not in changed  # the address is not echoed
    assert catalogue.reply("review", lang, order) == catalogue.reply("review", lang)  # no variant: the plain reply


def test_check_reports_malformed_variants(tmp_path):
    data = json.loads((REPLIES_DIR / "en.json").read_text())
    data["intents"]["track_order"]["given"] = {"order": "Order {order} for {email}", "size": "x", "amount": "no slot",
                                               "date": "bad {date"}
    del data["ui"]["send"]
    (tmp_path / "en.json").write_text(json.dumps(data))
    problems = Catalogue.load(tmp_path).check(INTENTS, ["en"])
    assert "en: track_order.given.order: uses {email}, which it is not given" in problems
    assert any(p.startswith("en: track_order.given.size: unknown kind") for p in problems)
    assert "en: track_order.given.amount: does not use {amount}" in problems
    assert any(p.startswith("en: track_order.given.date: malformed") for p in problems)
    assert "en: ui word send missing" in problems
