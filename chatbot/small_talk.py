"""Small talk: a message that only greets, thanks, says goodbye or acknowledges ("hi", "danke schön",
"ok merci", "muchas gracias, adiós").

Customers write these between requests. They are not requests, so the classifier has nothing to say
about them, and answering "thanks" with "that's not something I can help with" (out of scope,
counted as a failure) is the wrong reply. A message is small talk when **every** word of it belongs
to a phrase of :data:`PHRASES`; a single other word ("hi, my order is late", "thanks Anna") and it is
not, and the classifier decides as usual.

Matching, on the text lowercased, accents removed, punctuation, digits and emoji dropped, and letters
repeated three times or more written once ("merciii", "thanksss"): from the first word, the longest
phrase (up to five words) that starts there is taken, then the next, until every word is covered.

What it gives (:class:`SmallTalk`):

* ``kind``: greeting, thanks, goodbye or ok; a message with several kinds is the latest in that order
  of a conversation: goodbye, then thanks, then greeting, then ok ("ok thanks bye" says goodbye);
* ``languages``: the languages every phrase of the message can be (phrases every language uses, such as
  "ok", "hi", "hello", "thanks", "super", say nothing); ``danke`` is German only, ``hallo`` German or Dutch. When phrases
  of two languages meet ("hola thanks") it is all of them. Language detection uses this for short
  messages, where n-gram detectors guess ("vielen dank" scores Dutch, "merci" English).

Words no phrase list can hold are left out on purpose: "yes", "no", "si", "ja", "non" answer a
question the bot or an agent asked, and the classifier sees them with the conversation's context.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

KINDS = ("goodbye", "thanks", "greeting", "ok")
"""The kinds of small talk, the one that wins first: the reply follows the latest thing a message says."""

EVERY = "*"
"""The language key of phrases every language uses."""

PHRASES: dict[str, dict[str, tuple[str, ...]]] = {
    EVERY: {
        "greeting": ("hi", "hey", "hello"),
        "thanks": ("thanks", "thx"),
        "goodbye": ("bye", "bye bye"),
        "ok": ("ok", "okay", "okey", "oki", "k", "kk", "super", "top", "cool"),
    },
    "en": {
        "greeting": ("hiya", "howdy", "good morning", "good afternoon", "good evening", "good day", "hi there",
                     "hello there", "hey there", "hi all", "hello everyone", "greetings"),
        "thanks": ("thank you", "thank u", "ty", "thanks a lot", "thanks so much", "thank you so much",
                   "thank you very much", "thanks very much", "many thanks", "thanks again", "thank you again",
                   "cheers", "much appreciated", "appreciated", "thanks for your help", "thank you for your help"),
        "goodbye": ("goodbye", "good bye", "see you", "see ya", "have a nice day", "have a good day",
                    "take care", "good night"),
        "ok": ("alright", "all right", "got it", "understood", "sounds good", "awesome", "nice", "fine", "great",
               "perfect"),
    },
    "fr": {
        "greeting": ("bonjour", "salut", "coucou", "bonsoir", "allo", "bjr", "slt", "bonjour a tous"),
        "thanks": ("merci", "merci beaucoup", "merci bien", "mille mercis", "mille merci", "merci infiniment", "grand merci",
                   "je vous remercie", "merci pour tout", "merci encore", "mrc", "mci"),
        "goodbye": ("au revoir", "a bientot", "bonne journee", "bonne soiree", "a plus", "bonne nuit", "a la prochaine"),
        "ok": ("d accord", "dacc", "parfait", "genial", "tres bien", "entendu", "compris", "nickel", "ca marche"),
    },
    "de": {
        "greeting": ("hallo", "guten tag", "guten morgen", "guten abend", "moin", "moin moin", "servus", "gruss gott",
                     "gruß gott", "hallo zusammen", "gruezi"),
        "thanks": ("danke", "danke schon", "dankeschon", "danke sehr", "vielen dank", "besten dank", "herzlichen dank",
                   "danke vielmals", "vielen lieben dank", "lieben dank", "danke dir", "danke ihnen"),
        "goodbye": ("tschuss", "tschau", "auf wiedersehen", "bis bald", "schonen tag", "schonen abend", "bis dann"),
        "ok": ("alles klar", "gut", "perfekt", "prima", "verstanden", "passt", "alles gut", "genial", "sehr gut"),
    },
    "nl": {
        "greeting": ("hallo", "hoi", "goedemorgen", "goedemiddag", "goedenavond", "goeiedag", "goedendag", "dag", "hallo daar",
                     "hey daar"),
        "thanks": ("dank je", "dank je wel", "dank u", "dank u wel", "bedankt", "hartelijk dank", "hartelijk bedankt"),
        "goodbye": ("doei", "doeg", "tot ziens", "tot later", "fijne dag", "fijne avond", "tot straks"),
        "ok": ("oke", "prima", "goed", "helemaal goed", "duidelijk", "begrepen", "perfect", "top"),
    },
    "es": {
        "greeting": ("hola", "buenas", "buenos dias", "buenas tardes", "buenas noches", "que tal", "saludos", "hola a todos"),
        "thanks": ("gracias", "muchas gracias", "mil gracias", "muchisimas gracias", "gracias de nuevo",
                   "te lo agradezco", "se lo agradezco", "gracias por todo", "gracias por tu ayuda"),
        "goodbye": ("adios", "hasta luego", "hasta pronto", "chao", "nos vemos", "hasta manana", "que tengas buen dia"),
        "ok": ("vale", "perfecto", "genial", "de acuerdo", "entendido", "muy bien", "listo", "okey"),
    },
    "it": {
        "greeting": ("ciao", "buongiorno", "buonasera", "salve", "buon pomeriggio", "buona sera", "buon giorno",
                     "ciao a tutti"),
        "thanks": ("grazie", "grazie mille", "grazie tante", "molte grazie", "ti ringrazio", "la ringrazio",
                   "grazie ancora", "grazie di tutto", "grazie per l aiuto"),
        "goodbye": ("arrivederci", "a presto", "buona giornata", "buona serata", "ci vediamo", "ciao ciao",
                    "buonanotte"),
        "ok": ("va bene", "perfetto", "d accordo", "capito", "benissimo", "ottimo"),
    },
    "pt": {
        "greeting": ("ola", "oi", "bom dia", "boa tarde", "boa noite", "e ai", "tudo bem", "oi tudo bem",
                     "ola tudo bem"),
        "thanks": ("obrigado", "obrigada", "muito obrigado", "muito obrigada", "obg", "brigado", "brigada", "valeu",
                   "agradeco", "obrigado pela ajuda", "obrigada pela ajuda"),
        "goodbye": ("tchau", "adeus", "ate logo", "ate mais", "ate breve", "boa semana", "ate amanha"),
        "ok": ("ta bom", "ta certo", "beleza", "perfeito", "otimo", "certo", "combinado", "entendi", "de acordo"),
    },
}
"""Phrases per language and kind, written lowercased and without accents (as matched)."""

MAX_WORDS = 10
"""A longer message is never small talk, whatever its words."""

_LONGEST = 5


@dataclass(frozen=True)
class SmallTalk:
    kind: str
    """greeting, thanks, goodbye or ok (:data:`KINDS`)."""
    languages: tuple[str, ...]
    """The languages the message can be written in, from its phrases; empty when every phrase is one
    that every language uses ("ok", "hi")."""


def normalise(text: str) -> list[str]:
    """The words of ``text`` as phrases are written: lowercased, without accents, punctuation, digits or
    emoji, letters repeated three times or more written once."""
    text = unicodedata.normalize("NFKD", text.lower())
    text = "".join(ch for ch in text if not unicodedata.combining(ch))
    text = re.sub(r"(\w)\1{2,}", r"\1", text)
    return re.findall(r"[^\W\d_]+", text)


def _index() -> dict[tuple[str, ...], dict[str, set[str]]]:
    """Each phrase, as a tuple of words → {kind: languages} (EVERY for any)."""
    index: dict[tuple[str, ...], dict[str, set[str]]] = {}
    for lang, kinds in PHRASES.items():
        for kind, phrases in kinds.items():
            for phrase in phrases:
                words = tuple(normalise(phrase))
                assert 0 < len(words) <= _LONGEST, phrase
                index.setdefault(words, {}).setdefault(kind, set()).add(lang)
    return index


_INDEX = _index()


def recognise(text: str) -> SmallTalk | None:
    """The small talk ``text`` is, or None when any of its words is not part of a known phrase."""
    words = normalise(text or "")
    if not words or len(words) > MAX_WORDS:
        return None
    kinds: set[str] = set()
    languages: set[str] | None = None
    seen: set[str] = set()
    i = 0
    while i < len(words):
        size = next((n for n in range(min(_LONGEST, len(words) - i), 0, -1) if tuple(words[i:i + n]) in _INDEX), 0)
        if not size:
            return None
        found = _INDEX[tuple(words[i:i + size])]
        kinds.update(found)
        langs = set().union(*found.values())
        if EVERY not in langs:
            seen |= langs
            languages = langs if languages is None else languages & langs
        i += size
    if languages is not None and not languages:  # phrases of different languages met: any of them
        languages = seen
    kind = next(k for k in KINDS if k in kinds)
    return SmallTalk(kind, tuple(sorted(languages or ())))
