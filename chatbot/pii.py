"""Personal data in messages: what is masked before anything is stored, and what may be revealed.

:func:`mask` replaces, in this order:

* e-mail addresses → ``[email #n]``, phone numbers → ``[phone #n]`` and IBANs → ``[IBAN DE…00 #n]``:
  their clear values are returned (``Masked.values``) so the store keeps them *encrypted* and a
  signed-in agent can reveal one (``n`` numbers the values of one message, from 1);
* card numbers (13–19 digits passing the Luhn check, written with spaces, dots or dashes, or glued
  to a word: ``Visa4111111111111111``) → ``[card ****1111]``; an expiry date or a security code
  right after a card, or after a word that names it (``cvv``, ``exp``…), → ``[card expiry]`` /
  ``[card security code]``. These are never kept, not even encrypted.

Mask the whole text first, cut it afterwards: a cut through a card number would leave digits that no
longer look like one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

REVEALABLE = ("email", "phone", "iban")
"""Kinds of value kept encrypted so that an agent may reveal them; nothing else is kept."""

_EMAIL = re.compile(r"(?<![\w.+-])[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b")
"""A match starts only where a run of address characters starts: with ``\b`` instead, every word
boundary inside a long run without an ``@`` started a scan to its end (24,000 characters of
``1-1-…`` took 1.4 s)."""
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?:[ ]?[A-Z0-9]{4}){2,7}(?:[ ]?[A-Z0-9]{1,4})?\b", re.IGNORECASE)
_DIGIT_RUN = re.compile(r"(?<!\d)\d+(?:[ .\-]\d+)*(?!\d)")
"""Digit groups joined by single spaces, dots or dashes; letters may touch either end."""
_CARD_TOKEN = re.compile(r"\[card \*{4}\d{4}\]")
_EXPIRY = r"(?<!\d)(?:0?[1-9]|1[0-2]) ?[/.\-] ?(?:20)?\d{2}(?!\d)"
_NEAR_CARD = 24
"""Characters after a card number in which a date is taken as its expiry and 3–4 digits as its code."""
_CODE_WORDS = (r"cvv2?|cvc2?|csc|cid|security code|code de s[ée]curit[ée]|cryptogramme|pr[üu]fnummer|"
               r"kartenpr[üu]fnummer|sicherheitscode|c[óo]digo de seguridad|codice di sicurezza|"
               r"c[óo]digo de seguran[çc]a|beveiligingscode|veiligheidscode")
_EXPIRY_WORDS = (r"exp(?:iry|ires|iration)?(?: date)?|valid (?:thru|until)|g[üu]ltig bis|ablaufdatum|"
                 r"date d'expiration|expire le|vervaldatum|geldig tot|caducidad|vencimiento|scadenza|validade")
_CODE_AFTER_WORD = re.compile(rf"(?i)\b({_CODE_WORDS})\b(\W{{0,3}})(?<!\d)\d{{3,4}}(?!\d)")
_EXPIRY_AFTER_WORD = re.compile(rf"(?i)\b({_EXPIRY_WORDS})\b(\W{{0,3}}){_EXPIRY}")
_PHONE = re.compile(r"(?<![\w+])(?:\+|00)?(?:\(\d{1,4}\) ?)?\d[\d \-.()]{5,22}\d(?![\w])")
_PHONE_WORDS = re.compile(r"(?i)(phone|tel|t[ée]l[ée]phone|telefo+n|tel[ée]fono|telem[óo]vel|mobile?|portable|"
                          r"handy|m[óo]vil|cellulare|gsm|whatsapp|call me|appel|bel me|ruf)\W{0,12}$")
_DATE_START = re.compile(r"^\d{1,2}[.\-]\d{1,2}[.\-]\d{2,4}")


@dataclass
class Masked:
    text: str
    """The text with every value replaced by its placeholder."""
    values: list[dict] = field(default_factory=list)
    """``[{"kind": "email"|"phone"|"iban", "value": clear}]``: value ``#n`` is ``values[n - 1]``."""


def luhn(digits: str) -> bool:
    total = 0
    for i, d in enumerate(reversed(digits)):
        n = int(d)
        if i % 2:
            n = n * 2 - 9 if n > 4 else n * 2
        total += n
    return total % 10 == 0


def mask(text: str) -> Masked:
    """``text`` with personal data masked (see the module's docstring)."""
    values: list[dict] = []

    def keep(kind: str, value: str) -> int:
        values.append({"kind": kind, "value": value})
        return len(values)

    text = _EMAIL.sub(lambda m: f"[email #{keep('email', m.group())}]", text)

    def iban(m: re.Match) -> str:
        compact = m.group().replace(" ", "").upper()
        if len(compact) < 15:
            return m.group()
        return f"[IBAN {compact[:2]}…{compact[-2:]} #{keep('iban', compact)}]"

    text = _IBAN.sub(iban, text)
    text = _DIGIT_RUN.sub(_cards, text)
    text = _CODE_AFTER_WORD.sub(lambda m: f"{m.group(1)}{m.group(2)}[card security code]", text)
    text = _EXPIRY_AFTER_WORD.sub(lambda m: f"{m.group(1)}{m.group(2)}[card expiry]", text)
    text = _after_cards(text)

    def phone(m: re.Match) -> str:
        found = m.group()
        digits = re.sub(r"\D", "", found)
        international = found.startswith(("+", "00"))
        grouped = bool(re.search(r"[ \-.()]", found))
        named = bool(_PHONE_WORDS.search(text[max(0, m.start() - 40):m.start()]))
        if _DATE_START.match(found) and not international:
            return found
        if ((international and 8 <= len(digits) <= 15) or (found.lstrip("(").startswith("0") and 9 <= len(digits) <= 12)
                or (grouped and 9 <= len(digits) <= 11) or (named and 7 <= len(digits) <= 15)):
            return f"[phone #{keep('phone', found.strip())}]"
        return found

    text = _PHONE.sub(phone, text)
    return Masked(text, values)


def _cards(m: re.Match) -> str:
    """Card numbers inside a run of digit groups: the longest Luhn-valid stretch of whole groups (the
    first of equally long ones), then the same again in what follows it. Linear in the run's length:
    each group starts at most one stretch of ≤ 19 digits, and the best stretch from any group on is a
    suffix maximum (a run of thousands of digits is a customer's message too)."""
    run = m.group()
    groups = [(g.start(), g.end()) for g in re.finditer(r"\d+", run)]
    longest: list[tuple[int, str] | None] = []  # per first group: (last group, digits) of its longest card
    for i in range(len(groups)):
        found, digits = None, ""
        for j in range(i, len(groups)):
            digits += run[groups[j][0]:groups[j][1]]
            if len(digits) > 19:
                break
            if len(digits) >= 13 and luhn(digits):
                found = (j, digits)
        longest.append(found)
    best_from: list[int | None] = [None] * (len(groups) + 1)  # the first group of the best stretch from k on
    for i in range(len(groups) - 1, -1, -1):
        later = best_from[i + 1]
        if longest[i] is None:
            best_from[i] = later
        elif later is None or longest[i][0] - i >= longest[later][0] - later:  # as long: the first wins
            best_from[i] = i
        else:
            best_from[i] = later
    out, done, k = [], 0, 0
    while k < len(groups) and best_from[k] is not None:
        i = best_from[k]
        j, digits = longest[i]
        out += [run[done:groups[i][0]], f"[card ****{digits[-4:]}]"]
        done, k = groups[j][1], j + 1
    return "".join(out) + run[done:]


def _after_cards(text: str) -> str:
    """The first expiry date and the first 3–4 digit number within a few characters after a card
    number are the card's (the window never ends inside a number)."""
    out, last = [], 0
    for m in _CARD_TOKEN.finditer(text):
        if m.start() < last:
            continue
        end = m.end() + _NEAR_CARD
        while end < len(text) and text[end - 1].isdigit() and text[end].isdigit():
            end += 1
        window = re.sub(_EXPIRY, "[card expiry]", text[m.end():end], count=1)
        window = re.sub(r"(?<![\d*])\d{3,4}(?!\d)", "[card security code]", window, count=1)
        out += [text[last:m.end()], window]
        last = end
    out.append(text[last:])
    return "".join(out)


def mask_sensitive(text: str) -> str:
    """The masked text alone."""
    return mask(text).text
