import json

import pytest

from chatbot.data import load_dataset
from chatbot.replies import Catalogue
from chatbot.settings import LANGUAGES as SUPPORTED
from chatbot.settings import INTENT_DATA, REPLIES_DIR, absolute

INTENTS = load_dataset(absolute(INTENT_DATA)).intents


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
