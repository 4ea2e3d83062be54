import pytest

from chatbot.settings import LANGUAGES
from chatbot.small_talk import ANSWERS, BORROWED, EVERY, KINDS, MAX_WORDS, PHRASES, normalise, recognise


@pytest.mark.parametrize("text, kind, languages", [
    ("thanks", "thanks", ()),
    ("Thank you so much!!", "thanks", ("en",)),
    ("danke schön", "thanks", ("de",)),
    ("VIELEN DANK 🙏", "thanks", ("de",)),
    ("merciii beaucoup", "thanks", ("fr",)),
    ("hallo", "greeting", ("de", "nl")),
    ("Oi, tudo bem?", "greeting", ("pt",)),
    ("d'accord", "ok", ("fr",)),
    ("ok", "ok", ()),
    ("adiós", "goodbye", ("es",)),
])
def test_recognises_greetings_thanks_goodbyes_and_ok(text, kind, languages):
    talk = recognise(text)
    assert (talk.kind, talk.languages) == (kind, languages)


HOW_ARE_YOU = {
    "en": "Hi, how are you?", "fr": "Bonjour, comment ça va ?", "de": "Hallo, wie geht's?",
    "nl": "Hoi, hoe gaat het met u?", "es": "Hola, ¿qué tal estás?", "it": "Ciao, come stai?", "pt": "Olá, tudo bom?",
}


@pytest.mark.parametrize("lang", LANGUAGES)
def test_asking_how_the_bot_is_is_a_greeting(lang):
    """"How are you" opens a chat; it is not an out-of-scope request (which counts as a failure)."""
    talk = recognise(HOW_ARE_YOU[lang], lang)
    assert talk is not None and talk.kind == "greeting" and lang in talk.languages
    # "fine" as well as "how are you?": after an answer it is the customer's "fine", an ok
    fine = {"fr": "ça va", "nl": "alles goed", "es": "todo bien", "it": "tutto bene"}.get(lang)
    assert fine is None or recognise(fine, lang).kind == "ok"


@pytest.mark.parametrize("text, kind", [
    ("no thanks", "no"), ("non merci", "no"), ("nein danke", "no"), ("nee bedankt", "no"), ("no gracias", "no"),
    ("no grazie", "no"), ("não, obrigado", "no"), ("no", "no"), ("nope", "no"),
    ("yes please", "yes"), ("oui merci", "yes"), ("ja, gerne", "yes"), ("ja graag", "yes"), ("sí, por favor", "yes"),
    ("sì grazie", "yes"), ("sim", "yes"), ("sure", "yes"),
    ("Obrigado, era só isso.", "goodbye"), ("no thanks, bye", "goodbye"),
])
def test_answers_to_a_question(text, kind):
    """What the customer says to the small-talk replies' own "anything else?" or to an offer of a person."""
    assert recognise(text).kind == kind


def test_a_connector_joins_two_phrases_and_nothing_else():
    assert recognise("thanks and bye").kind == "goodbye"
    assert recognise("danke und tschüss").languages == ("de",)
    assert recognise("arrivederci e grazie").languages == ("it",)
    assert recognise("and thanks") is None and recognise("thanks and") is None


def test_borrowed_phrases_name_the_languages_that_use_them():
    merci = recognise("merci")
    assert merci.languages == ("fr",) and set(merci.used_in) == {"fr", "nl", "de"}
    assert recognise("danke").used_in == ("de",)


@pytest.mark.parametrize("text, lang", [
    ("I have a problem with my order", "en"), ("Bonjour, j'ai un souci avec ma commande", "fr"),
    ("Problem mit meiner Bestellung", "de"), ("ik heb een vraag", "nl"), ("problema con mi pedido", "es"),
    ("ciao, ho un problema", "it"), ("Olá, tenho uma dúvida", "pt"),
])
def test_a_call_for_help_that_says_nothing_more(text, lang):
    talk = recognise(text)
    assert talk.kind == "help" and talk.languages == (lang,)


def test_the_latest_thing_said_wins():
    assert recognise("ok thanks bye").kind == "goodbye"
    assert recognise("hallo, danke").kind == "thanks"
    assert recognise("hi ok").kind == "greeting"
    assert recognise("ciao").kind == "greeting" and recognise("ciao ciao").kind == "goodbye"
    assert recognise("thanks, I have a question").kind == "help"  # what the customer still needs
    for text in ("no problem", "ok, no problem", "kein Problem", "pas de souci", "no hay problema", "nessun problema",
                 "sem problema", "geen probleem"):
        assert recognise(text).kind == "ok", text  # not a call for help, not a no


@pytest.mark.parametrize("text", [
    "hi, my order is late", "thanks Anna", "problem with my payment", "I have a question about something", "ok 48213", "thanks #A-55123", "hi +33 6 12 34 56 78", "thanks, where is order 12345", "danke für die schnelle Lieferung",
    "yes, my order 48213", "no, the other one", "", "   ", "12345", "😀", " ".join(["thanks"] * (MAX_WORDS + 1)),
])
def test_anything_else_is_not_small_talk(text):
    assert recognise(text) is None


def test_a_phrase_of_two_kinds_is_of_the_kind_of_its_language():
    assert recognise("certo", "it").kind == "yes" and recognise("certo", "pt").kind == "ok"
    assert recognise("certo").kind == "yes"  # no language known: the first kind


def test_phrases_of_two_languages_leave_both():
    assert set(recognise("hola thanks").languages) == {"es"}  # "thanks": every language
    assert set(recognise("hola, grazie").languages) == {"es", "it"}
    assert recognise("hallo, danke").languages == ("de",)  # "hallo" is German or Dutch, "danke" German


def test_the_phrase_lists_are_well_formed():
    assert set(PHRASES) == {EVERY, *LANGUAGES} and set().union(*BORROWED.values()) <= set(LANGUAGES)
    answers = {"yes", "no", "oui", "non", "ja", "nein", "nee", "si", "sim", "nao"}  # only as such
    for lang, kinds in PHRASES.items():
        assert set(kinds) <= set(KINDS), lang
        for kind, phrases in kinds.items():
            for phrase in phrases:  # written as they are matched
                assert " ".join(normalise(phrase)) == phrase, phrase
                assert kind in ANSWERS or phrase not in answers, phrase
