"""What a customer's message already says: an order number, an amount, a date, an e-mail address.

Simple patterns per language (the words customers put before an order number, month names, how
amounts are written), so that a reply can use what was given instead of asking for it again
(``chatbot.replies``). :func:`extract` reads the message **after** masking (``chatbot.pii``): card
numbers, phone numbers and IBANs are placeholders by then and can never be taken for an order
number, and an e-mail address is only known to have been given (``email: "given"``), its value
staying in the masked store.

The patterns try the message's language first, then the other languages (customers mix words).
"""

from __future__ import annotations

import re

from chatbot.settings import LANGUAGES

ORDER_WORDS = {
    "en": r"order(?:\s+(?:number|no\.?|nr\.?|id))?|reference|ref\.?",
    "fr": r"commande|num[ée]ro\s+de\s+commande|r[ée]f[ée]rence|r[ée]f\.?",
    "de": r"bestellung|bestellnummer|bestell-?nr\.?|auftrag|auftragsnummer|referenz",
    "nl": r"bestelling|bestelnummer|ordernummer|order|referentie",
    "es": r"pedido|n[úu]mero\s+de\s+pedido|orden|referencia",
    "it": r"ordine|numero\s+(?:d['’]\s*)?ordine|riferimento",
    "pt": r"encomenda|pedido|n[úu]mero\s+da\s+encomenda|refer[êe]ncia",
}
"""The words an order number follows, per language (a few filler words may come between:
"my order is 48213", "la commande n° 48213", "Bestellung mit der Nummer 48213")."""

MONTHS = {
    "en": "january february march april may june july august september october november december "
          "jan feb mar apr jun jul aug sep sept oct nov dec",
    "fr": "janvier février fevrier mars avril mai juin juillet août aout septembre octobre novembre décembre "
          "decembre janv févr fevr avr juil sept oct nov déc dec",
    "de": "januar jänner februar märz maerz april mai juni juli august september oktober november dezember "
          "jan feb mär apr jun jul aug sep sept okt nov dez",
    "nl": "januari februari maart april mei juni juli augustus september oktober november december "
          "jan feb mrt apr jun jul aug sep sept okt nov dec",
    "es": "enero febrero marzo abril mayo junio julio agosto septiembre setiembre octubre noviembre diciembre "
          "ene feb mar abr jun jul ago sep sept oct nov dic",
    "it": "gennaio febbraio marzo aprile maggio giugno luglio agosto settembre ottobre novembre dicembre "
          "gen feb mar apr mag giu lug ago set ott nov dic",
    "pt": "janeiro fevereiro março marco abril maio junho julho agosto setembro outubro novembro dezembro "
          "jan fev mar abr mai jun jul ago set out nov dez",
}
"""Month names and their usual abbreviations, per language."""

CURRENCY = r"€|\$|£|eur(?:os?)?|usd|dollars?|gbp|pounds?|chf|francs?"
"""Currency signs and words (the amount is kept as written)."""

_NUMBER = r"\d{1,3}(?:[.,\u00a0\u202f ]\d{3})+(?:[.,]\d{1,2})?|\d+(?:[.,]\d{1,2})?"
_AMOUNT = re.compile(rf"(?<![\w.,])(?:(?:{CURRENCY})\s?(?:{_NUMBER})|(?:{_NUMBER})\s?(?:{CURRENCY}))(?![\w])",
                     re.IGNORECASE)
_NUMERIC_DATE = re.compile(r"(?<![\w./-])(?:\d{4}-\d{1,2}-\d{1,2}|\d{1,2}[./-]\d{1,2}[./-](?:\d{4}|\d{2}))(?![\w./-])")
_ORDER_ID = r"(?:[A-Za-z]{1,3}[-#]?)?\d[\dA-Za-z-]{2,15}"
_FILLER = r"(?:[^\W\d_]{1,8}\.?\s+){0,3}"
"""Up to three short words between the order word and the number ("is", "n°", "mit der Nummer")."""
_HASH_ORDER = re.compile(r"(?<![\w#])#\s?(\d{4,12})(?![\w])")
_EMAIL = re.compile(r"\[email #\d+\]|[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_NOT_AN_ORDER = re.compile(rf"^(?:\d{{4}}-\d{{1,2}}-\d{{1,2}}|\d{{1,2}}-\d{{1,2}}-\d{{2,4}})$|^(?:{CURRENCY})", re.I)

KINDS = ("order", "amount", "date", "email")
"""What :func:`extract` may find, and the placeholders reply templates may use ({order}, {amount},
{date}; an e-mail address is never echoed)."""


def _compile(lang: str) -> dict[str, re.Pattern]:
    months = "|".join(sorted(set(MONTHS[lang].split()), key=len, reverse=True))
    day = r"\d{1,2}(?:st|nd|rd|th|er|e|\.|º|°)?"
    return {
        "order": re.compile(rf"\b(?:{ORDER_WORDS[lang]})\b[\s:#°º.]*(?:n[°º.]?\s*|nr\.?\s*|no\.?\s*)?{_FILLER}"
                            rf"[#:]?\s?((?>{_ORDER_ID}))(?![/.,]\d)(?!\s?(?:{CURRENCY})\b)", re.IGNORECASE),
        "date": re.compile(rf"(?<!\w)(?:{day}\s*(?:of\s+|de\s+)?(?:{months})\.?(?:\s+(?:de\s+)?\d{{4}})?"
                           rf"|(?:{months})\.?\s+\d{{1,2}}(?:st|nd|rd|th)?(?:,?\s+\d{{4}})?)(?!\w)", re.IGNORECASE),
    }


_PATTERNS = {lang: _compile(lang) for lang in LANGUAGES}


def extract(text: str, lang: str | None = None) -> dict[str, str]:
    """``{kind: value}`` of what ``text`` (a masked customer message) gives: ``order`` (the number as
    written), ``amount`` and ``date`` (as written), ``email`` (``"given"``). Only what was found."""
    if not isinstance(text, str) or not text:
        return {}
    found: dict[str, str] = {}
    order_of = [lang] if lang in _PATTERNS else []
    order_of += [other for other in LANGUAGES if other not in order_of]
    if amount := _AMOUNT.search(text):
        found["amount"] = " ".join(amount.group(0).split())
    for language in order_of:
        patterns = _PATTERNS[language]
        if "order" not in found:
            for match in patterns["order"].finditer(text):
                candidate = match.group(1).rstrip("-")
                if sum(ch.isdigit() for ch in candidate) >= 3 and not _NOT_AN_ORDER.match(candidate):
                    found["order"] = candidate
                    break
        if "date" not in found and (date := patterns["date"].search(text)):
            found["date"] = " ".join(date.group(0).split())
    if "order" not in found and (tagged := _HASH_ORDER.search(text)):
        found["order"] = tagged.group(1)
    if "date" not in found and (numeric := _NUMERIC_DATE.search(text)):
        found["date"] = numeric.group(0)
    if _EMAIL.search(text):
        found["email"] = "given"
    return {kind: found[kind] for kind in KINDS if kind in found}
