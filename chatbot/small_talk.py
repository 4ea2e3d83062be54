"""Small talk: a message that only greets, thanks, says goodbye or acknowledges ("hi", "danke schön",
"ok merci", "muchas gracias, adiós"), answers yes or no, or asks for help without saying with what
("I have a problem", "Hallo, ich habe eine Frage", "problema con mi pedido").

Customers write these between requests. They are not requests, so the classifier has nothing to say
about them: answering "thanks" with "that's not something I can help with" (out of scope, counted as
a failure) is the wrong reply, and so is answering "I have a problem with my order" with whichever
intent's canned answer the classifier leans to (payment_issue at 0.65 for "problema con mi pedido"):
the bot asks what the problem is. A message is small talk when **every** word of it belongs
to a phrase of :data:`PHRASES`; a single other word ("hi, my order is late", "thanks Anna") and it is
not, and the classifier decides as usual.

Matching, on the text lowercased, accents removed, punctuation and emoji dropped, and letters
repeated three times or more written once ("merciii", "thanksss"): from the first word, the longest
phrase (up to eight words) that starts there is taken, then the next, until every word is covered; a
connector ("and", "und", "et", "y", "e", "en") may join two phrases. A message with a digit is never
small talk ("ok 48213": the order number is what it says).

What it gives (:class:`SmallTalk`):

* ``kind``: help, greeting, thanks, goodbye, ok, yes or no; a message with several kinds is the one of
  :data:`KINDS` that comes first ("ok thanks bye" says goodbye, "oui merci" yes);
* ``languages``: the languages every phrase of the message is written in (phrases every language uses,
  such as "ok", "hi", "hello", "thanks", "super", say nothing): ``danke`` is German, ``hallo`` German
  or Dutch; when phrases of two languages meet ("hola, grazie") it is all of them. ``used_in`` adds
  the languages whose speakers borrow them (Flemish "merci", "ciao" nearly everywhere). Language
  detection uses both for short messages, where n-gram detectors guess ("vielen dank" scores Dutch,
  "merci" English).

A yes or a no ("ja", "non", "sí", "sim", "no thanks") is an answer: what it means depends on what
the bot said last, and :mod:`chatbot.assistant` reads it so (a yes to an offer of a person hands off,
a no to "anything else?" says goodbye, after "do you mean X or Y?" the classifier decides). The "ok"
phrases do include agreement ("d'accord", "vale", "va bene"): after an answer they are the customer's
"fine", and are taken as no more than that.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

KINDS = ("help", "goodbye", "yes", "no", "thanks", "greeting", "ok")
"""The kinds of small talk; a message with several is the first of them it has: a call for help is what
"hi, I have a problem" says, a goodbye ends "ok thanks bye", and "yes, thanks" answers yes."""

ANSWERS = ("yes", "no")
"""The kinds that answer a question: they mean something only after one (:mod:`chatbot.assistant`)."""

EVERY = "*"
"""The language key of phrases every language uses."""

PHRASES: dict[str, dict[str, tuple[str, ...]]] = {
    EVERY: {
        "greeting": ("hi", "hey", "hello"),
        "thanks": ("thanks", "thx"),
        "yes": ("please",),
        "goodbye": ("bye", "bye bye"),
        "ok": ("ok", "okay", "okey", "oki", "super", "top", "cool"),
    },
    "en": {
        "help": ("help", "help me", "help please", "please help", "i need help", "need help", "can you help me",
                 "can you help", "could you help me", "i have a problem", "i ve got a problem", "ive got a problem",
                 "i got a problem", "i have a question", "i have an issue", "problem", "question", "issue",
                 "problem with my order", "issue with my order", "question about my order", "a problem with my order",
                 "i have a problem with my order", "i have an issue with my order", "i have a question about my order",
                 "something is wrong", "there is a problem"),
        "greeting": ("hiya", "howdy", "good morning", "good afternoon", "good evening", "good day", "hi there",
                     "hello there", "hey there", "hi all", "hello everyone", "greetings",
                     "how are you", "how are you doing", "how are you today", "how are u", "how r u", "how r you",
                     "how s it going", "hows it going", "how is it going", "how do you do", "how are things"),
        "thanks": ("thank you", "thank u", "ty", "thanks a lot", "thanks so much", "thank you so much", "thank u so much",
                   "thank you very much", "thanks very much", "many thanks", "thanks again", "thank you again",
                   "cheers", "cheers mate", "much appreciated", "appreciated", "thanks for your help",
                   "thank you for your help"),
        "goodbye": ("goodbye", "good bye", "see you", "see ya", "see you later", "have a nice day", "have a good day",
                    "take care", "good night", "thats all", "that s all", "that is all", "bye then"),
        "yes": ("yes", "yes please", "yeah", "yep", "yup", "sure", "yes sure", "of course", "please do",
                "yes please do", "definitely", "that would be great", "yes i would", "i would like that"),
        "no": ("no", "nope", "nah", "no thanks", "no thank you", "not now", "no need", "no it s fine",
               "no that s fine", "no i m fine", "i m good", "im good"),
        "ok": ("alright", "all right", "no problem", "no worries", "no prob", "got it", "understood", "sounds good", "awesome", "nice", "fine", "great",
               "perfect"),
    },
    "fr": {
        "help": ("aide", "a l aide", "j ai besoin d aide", "besoin d aide", "pouvez vous m aider", "vous pouvez m aider",
                 "tu peux m aider", "j ai un probleme", "j ai une question", "un probleme", "probleme", "question",
                 "j ai un souci", "souci", "probleme avec ma commande", "souci avec ma commande",
                 "j ai un probleme avec ma commande", "j ai un souci avec ma commande",
                 "j ai une question sur ma commande", "une question sur ma commande"),
        "greeting": ("bonjour", "salut", "coucou", "bonsoir", "allo", "bjr", "slt", "bonjour a tous", "comment ca va",
                     "comment allez vous", "comment vas tu", "vous allez bien", "tu vas bien"),
        "thanks": ("merci", "merci beaucoup", "merci bcp", "merci bien", "mille mercis", "mille merci",
                   "merci infiniment", "grand merci", "je vous remercie", "merci pour tout", "merci encore", "mrc",
                   "mci", "merci pour votre aide", "merci de votre aide"),
        "goodbye": ("au revoir", "a bientot", "bonne journee", "bonne soiree", "a plus", "bonne nuit",
                    "a la prochaine", "bonne fin de journee", "c est tout", "ce sera tout"),
        "yes": ("oui", "oui merci", "oui svp", "oui s il vous plait", "ouais", "volontiers", "bien sur", "oui bien sur",
                "oui volontiers", "avec plaisir", "je veux bien", "oui je veux bien"),
        "no": ("non", "non merci", "pas besoin", "non ca ira", "ca ira", "non c est bon", "c est bon"),
        "ok": ("d accord", "daccord", "dacc", "pas de probleme", "pas de souci", "aucun probleme", "aucun souci", "parfait", "genial", "tres bien", "entendu", "compris", "nickel",
               "ca marche", "bien recu", "ca va"),
    },
    "de": {
        "help": ("hilfe", "ich brauche hilfe", "brauche hilfe", "konnen sie mir helfen", "kannst du mir helfen",
                 "ich habe ein problem", "ich hab ein problem", "ich habe eine frage", "ich hab eine frage", "problem",
                 "frage", "problem mit meiner bestellung", "ich habe ein problem mit meiner bestellung",
                 "frage zu meiner bestellung", "ich habe eine frage zu meiner bestellung"),
        "greeting": ("hallo", "guten tag", "guten morgen", "guten abend", "moin", "moin moin", "servus", "gruss gott",
                     "gruß gott", "hallo zusammen", "gruezi", "wie geht s", "wie gehts",
                     "wie geht es", "wie geht es ihnen", "wie geht es dir", "wie geht s dir", "wie gehts dir", "wie geht s ihnen"),
        "thanks": ("danke", "danke schon", "dankeschon", "danke sehr", "vielen dank", "besten dank", "herzlichen dank",
                   "danke vielmals", "vielen lieben dank", "lieben dank", "danke dir", "danke ihnen",
                   "danke gleichfalls"),
        "goodbye": ("tschuss", "tschus", "tschau", "auf wiedersehen", "bis bald", "schonen tag", "schonen tag noch",
                    "schonen abend", "bis dann", "viele grusse", "lg", "das wars", "das war s", "das war alles"),
        "yes": ("ja", "ja bitte", "jawohl", "gerne", "gern", "ja gerne", "ja gern", "sehr gerne", "klar",
                "ja klar", "naturlich", "ja naturlich", "jep"),
        "no": ("nein", "nein danke", "nee", "nicht notig", "nein nicht notig", "passt schon"),
        "ok": ("alles klar", "kein problem", "kein thema", "gut", "perfekt", "prima", "verstanden", "passt", "alles gut", "genial", "sehr gut"),
    },
    "nl": {
        "help": ("help", "hulp", "ik heb hulp nodig", "kunt u mij helpen", "kun je me helpen", "ik heb een probleem",
                 "ik heb een vraag", "probleem", "vraag", "probleem met mijn bestelling",
                 "ik heb een probleem met mijn bestelling", "vraag over mijn bestelling",
                 "ik heb een vraag over mijn bestelling"),
        "greeting": ("hallo", "hoi", "goedemorgen", "goedemiddag", "goedenavond", "goeiedag", "goedendag", "dag",
                     "hallo daar", "hey daar", "hoe gaat het", "hoe gaat het met u",
                     "hoe gaat het met je", "hoe gaat het ermee", "hoe is het"),
        "thanks": ("dank je", "dank je wel", "dankjewel", "dank u", "dank u wel", "dankuwel", "bedankt",
                   "hartelijk dank", "hartelijk bedankt"),
        "goodbye": ("doei", "doeg", "daag", "tot ziens", "tot later", "fijne dag", "fijne dag nog", "fijne avond",
                    "tot straks", "groetjes", "dat was het"),
        "yes": ("ja", "ja graag", "graag", "jazeker", "ja hoor", "ja alstublieft", "ja alsjeblieft", "zeker",
                "natuurlijk", "ja zeker", "ja natuurlijk"),
        "no": ("nee", "neen", "nee hoor", "nee bedankt", "nee dank je", "nee dank u", "niet nodig", "hoeft niet",
               "nee hoeft niet"),
        "ok": ("oke", "geen probleem", "geen probleem hoor", "prima", "goed", "helemaal goed", "duidelijk", "begrepen", "perfect", "alles goed"),
    },
    "es": {
        "help": ("ayuda", "necesito ayuda", "me puede ayudar", "me puedes ayudar", "puede ayudarme", "puedes ayudarme",
                 "tengo un problema", "tengo una pregunta", "tengo una duda", "problema", "pregunta", "duda",
                 "problema con mi pedido", "tengo un problema con mi pedido", "una pregunta sobre mi pedido",
                 "tengo una pregunta sobre mi pedido"),
        "greeting": ("hola", "buenas", "buenos dias", "buen dia", "buenas tardes", "buenas noches", "que tal",
                     "saludos", "hola a todos", "como estas", "como esta", "como esta usted",
                     "que tal estas", "como va", "como te va"),
        "thanks": ("gracias", "muchas gracias", "mil gracias", "muchisimas gracias", "gracias de nuevo",
                   "te lo agradezco", "se lo agradezco", "gracias por todo", "gracias por tu ayuda",
                   "gracias por su ayuda", "muy amable"),
        "goodbye": ("adios", "hasta luego", "hasta pronto", "chao", "chau", "nos vemos", "hasta manana",
                    "que tengas buen dia", "eso es todo", "nada mas"),
        "yes": ("si", "si por favor", "claro", "claro que si", "por favor", "si gracias", "por supuesto", "dale",
                "vale si"),
        "no": ("no", "no gracias", "no hace falta", "no es necesario"),
        "ok": ("vale", "no hay problema", "no pasa nada", "sin problema", "perfecto", "genial", "de acuerdo", "entendido", "muy bien", "listo", "todo bien"),
    },
    "it": {
        "help": ("aiuto", "ho bisogno di aiuto", "mi puo aiutare", "mi puoi aiutare", "puo aiutarmi", "ho un problema",
                 "ho una domanda", "problema", "domanda", "problema con il mio ordine", "ho un problema con il mio ordine",
                 "problema con l ordine", "ho un problema con l ordine", "una domanda sul mio ordine",
                 "ho una domanda sul mio ordine"),
        "greeting": ("ciao", "buongiorno", "buonasera", "salve", "buon pomeriggio", "buona sera", "buon giorno",
                     "ciao a tutti", "buonasera a tutti", "come stai", "come sta",
                     "come va", "come andiamo"),
        "thanks": ("grazie", "grazie mille", "grazie tante", "molte grazie", "ti ringrazio", "la ringrazio",
                   "grazie ancora", "grazie di tutto", "grazie per l aiuto", "grazie a lei", "grazie a te"),
        "goodbye": ("arrivederci", "a presto", "buona giornata", "buona serata", "ci vediamo", "ci sentiamo",
                    "ciao ciao", "buonanotte", "e tutto", "niente altro"),
        "yes": ("si", "si grazie", "si per favore", "certo", "certamente", "volentieri", "si certo", "per favore"),
        "no": ("no", "no grazie", "non grazie", "non serve", "non c e bisogno", "no non serve"),
        "ok": ("va bene", "nessun problema", "non c e problema", "perfetto", "d accordo", "capito", "benissimo", "ottimo", "tutto bene"),
    },
    "pt": {
        "help": ("ajuda", "preciso de ajuda", "pode me ajudar", "pode ajudar me", "podem ajudar me", "tenho um problema",
                 "tenho uma duvida", "tenho uma pergunta", "problema", "duvida", "pergunta", "problema com o meu pedido",
                 "problema com a minha encomenda", "tenho um problema com o meu pedido",
                 "tenho um problema com a minha encomenda", "problema com o pedido", "problema com a encomenda"),
        "greeting": ("ola", "oi", "bom dia", "boa tarde", "boa noite", "e ai", "tudo bem", "oi tudo bem",
                     "ola tudo bem", "tudo bom", "como vai", "como vai voce", "como esta", "como estas",
                     "td bem"),
        "thanks": ("obrigado", "obrigada", "muito obrigado", "muito obrigada", "obg", "brigado", "brigada", "valeu",
                   "vlw", "agradeco", "obrigado pela ajuda", "obrigada pela ajuda", "muito obrigado pela ajuda",
                   "muito obrigada pela ajuda", "obrigado pela atencao", "obrigada pela atencao"),
        "goodbye": ("tchau", "adeus", "ate logo", "ate mais", "ate breve", "boa semana", "ate amanha",
                    "era so isso", "e so isso", "so isso"),
        "yes": ("sim", "sim por favor", "claro", "pode ser", "sim obrigado", "sim obrigada", "por favor",
                "com certeza", "quero", "sim quero", "claro que sim"),
        "no": ("nao", "nao obrigado", "nao obrigada", "nao precisa", "nao e preciso"),
        "ok": ("ta bom", "ta bem", "sem problema", "sem problemas", "nao tem problema", "ta certo", "beleza", "blz", "perfeito", "otimo", "certo", "combinado", "entendi",
               "de acordo"),
    },
}
"""Phrases per language and kind, written lowercased and without accents (as matched)."""

BORROWED: dict[str, tuple[str, ...]] = {
    "merci": ("nl", "de"), "ciao": ("de", "es", "pt", "fr"), "salut": ("de",), "hoi": ("de",),
    "ola": ("es",), "tchau": ("es",), "perfect": ("fr",),
}
"""Phrases other languages' speakers use too (Flemish and Swiss "merci", Swiss "hoi" and "salut", "ciao"
nearly everywhere, "ola" for "hola"): a browser in one of these languages keeps its language."""

CONNECTORS = ("and", "et", "und", "en", "y", "e")
"""Words that may join two phrases ("thanks and bye", "danke und tschüss"), never start or end one."""

MAX_WORDS = 10
"""A longer message is never small talk, whatever its words."""

_LONGEST = 8


@dataclass(frozen=True)
class SmallTalk:
    kind: str
    """help, goodbye, yes, no, thanks, greeting or ok (:data:`KINDS`)."""
    languages: tuple[str, ...]
    """The languages the message is written in, from its phrases; empty when every phrase is one that
    every language uses ("ok", "hi")."""
    used_in: tuple[str, ...] = ()
    """``languages`` and those whose speakers borrow every phrase of it (:data:`BORROWED`)."""


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
    assert all(tuple(normalise(p)) in index for p in BORROWED), "a borrowed phrase no language has"
    return index


_INDEX = _index()


def _phrases(words: list[str]) -> list[tuple[str, ...]] | None:
    """``words`` cut into known phrases, longest first from the left (a connector may join two), or None."""
    found, i = [], 0
    while i < len(words):
        if 0 < i < len(words) - 1 and words[i] in CONNECTORS and found:
            i += 1
            continue
        size = next((n for n in range(min(_LONGEST, len(words) - i), 0, -1) if tuple(words[i:i + n]) in _INDEX), 0)
        if not size:
            return None
        found.append(tuple(words[i:i + size]))
        i += size
    return found


def recognise(text: str, lang: str | None = None) -> SmallTalk | None:
    """The small talk ``text`` is, or None when any of its words is not part of a known phrase, or it
    has a digit ("ok 48213", "thanks #A-55123": an order number is a request). A phrase of two kinds in
    two languages is of ``lang``'s kind when given ("certo": yes in Italian, ok in Portuguese)."""
    text = text or ""
    if any(ch.isdigit() for ch in text):
        return None
    words = normalise(text)
    if not words or len(words) > MAX_WORDS:
        return None
    phrases = _phrases(words)
    if phrases is None:
        return None
    kinds: set[str] = set()
    native: list[set[str]] = []
    used: list[set[str]] = []
    for phrase in phrases:
        found = _INDEX[phrase]
        kinds.update([k for k, langs in found.items() if lang in langs or EVERY in langs] or found)
        langs = set().union(*found.values())
        if EVERY not in langs:
            native.append(langs)
            used.append(langs | set(BORROWED.get(" ".join(phrase), ())))
    # phrases of different languages met ("hola, grazie"): any of them
    languages = (set.intersection(*native) or set.union(*native)) if native else set()
    used_in = (set.intersection(*used) or set.union(*used)) if used else set()
    kind = next(k for k in KINDS if k in kinds)
    return SmallTalk(kind, tuple(sorted(languages)), tuple(sorted(used_in | languages)))
