import pytest

from chatbot.settings import LANGUAGES
from chatbot.small_talk import EVERY, KINDS, MAX_WORDS, PHRASES, SmallTalk, normalise, recognise


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
    assert recognise(text) == SmallTalk(kind, languages)


def test_the_latest_thing_said_wins():
    assert recognise("ok thanks bye").kind == "goodbye"
    assert recognise("hallo, danke").kind == "thanks"
    assert recognise("hi ok").kind == "greeting"
    assert recognise("ciao").kind == "greeting" and recognise("ciao ciao").kind == "goodbye"


@pytest.mark.parametrize("text", [
    "hi, my order is late", "thanks Anna", "thanks, where is order 12345", "danke für die schnelle Lieferung",
    "yes", "no", "ja", "non", "sí", "", "   ", "12345", "😀", " ".join(["thanks"] * (MAX_WORDS + 1)),
])
def test_anything_else_is_not_small_talk(text):
    assert recognise(text) is None


def test_phrases_of_two_languages_leave_both():
    assert set(recognise("hola thanks").languages) == {"es"}  # "thanks": every language
    assert set(recognise("hola, grazie").languages) == {"es", "it"}
    assert recognise("hallo, danke").languages == ("de",)  # "hallo" is German or Dutch, "danke" German


def test_the_phrase_lists_are_well_formed():
    assert set(PHRASES) == {EVERY, *LANGUAGES}
    for lang, kinds in PHRASES.items():
        assert set(kinds) <= set(KINDS), lang
        for phrases in kinds.values():
            for phrase in phrases:  # written as they are matched
                assert " ".join(normalise(phrase)) == phrase, phrase
