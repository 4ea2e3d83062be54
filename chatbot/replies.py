"""The reply catalogue: per intent and language, a label and a reply, plus the bot's own lines and
the chat widget's words.

One JSON file per language in ``assets/replies/``::

    {"language_name": …,
     "intents": {intent: {"label": …, "reply": …,
                          "given": {"order": "… {order} …", "amount+date": "… {amount} … {date} …"}}},
     "bot": {line: text},          # the bot's own lines (greeting, clarify, …) and agents' suggestions
     "ui": {word: text}}           # the customer widget's buttons and notes

An intent's ``given`` variants answer a message that already says something (``chatbot.entities``:
an order number, an amount, a date, an e-mail address), so the bot never asks for what it was just
given: the first variant whose kinds were all found is used, filled with the values as the customer
wrote them (an e-mail address is never echoed: its variants only say one was given).
:meth:`Catalogue.check` lists anything missing or malformed.
"""

from __future__ import annotations

import json
import string
from dataclasses import dataclass
from pathlib import Path

from chatbot.entities import KINDS
from chatbot.settings import REPLIES_DIR

BOT_LINES = ("greeting", "clarify", "fallback", "handoff", "handoff_waiting", "agent_joined", "closed",
             "unsupported_language", "empty", "too_long", "error", "out_of_scope", "something_else",
             "agent_greeting", "agent_help", "agent_complaint", "agent_complaint_order",
             "small_talk_greeting", "small_talk_thanks", "small_talk_goodbye", "small_talk_ok",
             "small_talk_yes", "small_talk_no", "small_talk_help")
UI_WORDS = ("assistant", "agent", "placeholder", "send", "new_conversation", "something_else", "closed", "waiting",
            "no_words")
"""The customer widget's words: who speaks (assistant, agent), its controls and its notes."""


def placeholders(template: str) -> set[str]:
    """The ``{name}`` fields of a template."""
    return {name for _, name, _, _ in string.Formatter().parse(template) if name}


@dataclass
class Catalogue:
    languages: dict[str, dict]

    @classmethod
    def load(cls, folder: str | Path = REPLIES_DIR) -> "Catalogue":
        folder = Path(folder)
        languages = {}
        for path in sorted(folder.glob("*.json")):
            try:
                languages[path.stem] = json.loads(path.read_text(encoding="utf-8"))
            except (json.JSONDecodeError, UnicodeDecodeError) as err:
                raise ValueError(f"{path}: damaged reply file ({err})") from None
        if not languages:
            raise ValueError(f"no reply files in {folder}")
        return cls(languages)

    def check(self, intents: list[str], languages: list[str]) -> list[str]:
        """Every (language, intent or line) that is missing or empty."""
        problems = []
        for lang in languages:
            entry = self.languages.get(lang)
            if entry is None:
                problems.append(f"{lang}: no reply file")
                continue
            for intent in intents:
                item = entry.get("intents", {}).get(intent, {})
                for key in ("label", "reply"):
                    if not str(item.get(key, "")).strip():
                        problems.append(f"{lang}: {intent}.{key} missing")
                for kinds, template in (item.get("given") or {}).items():
                    problems += [f"{lang}: {intent}.given.{kinds}: {p}" for p in _variant_problems(kinds, template)]
            for line in BOT_LINES:
                if not str(entry.get("bot", {}).get(line, "")).strip():
                    problems.append(f"{lang}: bot line {line} missing")
            for word in UI_WORDS:
                if not str(entry.get("ui", {}).get(word, "")).strip():
                    problems.append(f"{lang}: ui word {word} missing")
        return problems

    def _entry(self, lang: str) -> dict:
        return self.languages.get(lang) or self.languages["en"]

    def reply(self, intent: str, lang: str, given: dict | None = None) -> str:
        """The intent's reply; with ``given`` (what the message said, ``chatbot.entities.extract``), the
        first variant whose kinds were all given, filled in."""
        item = self._entry(lang).get("intents", {}).get(intent)
        if not item:
            return self.line("fallback", lang)
        given = {k: str(v) for k, v in (given or {}).items() if k in KINDS and v}
        for kinds, template in (item.get("given") or {}).items():
            if all(kind in given for kind in kinds.split("+")):
                return template.format(**{k: given[k] for k in placeholders(template)})
        return item["reply"]

    def label(self, intent: str, lang: str) -> str:
        item = self._entry(lang).get("intents", {}).get(intent)
        return item["label"] if item else intent.replace("_", " ")

    def line(self, name: str, lang: str, **values) -> str:
        text = self._entry(lang)["bot"][name]
        return text.format(**values) if values else text

    def ui(self, word: str, lang: str) -> str:
        """One of the customer widget's words (:data:`UI_WORDS`) in ``lang``."""
        return (self._entry(lang).get("ui") or self.languages["en"]["ui"])[word]


def person_name(account: str) -> str:
    """How replies name a member of staff: their account name as a name ("marie.dupont" → "Marie
    Dupont"; the part before an @ of an e-mail-like name); "Customer service" words are the catalogue's."""
    name = str(account or "").split("@")[0].replace(".", " ").replace("_", " ").replace("-", " ").strip()
    return " ".join(part[:1].upper() + part[1:] for part in name.split()) or "—"


def _variant_problems(kinds: str, template) -> list[str]:
    parts = kinds.split("+")
    if not isinstance(template, str) or not template.strip():
        return ["empty"]
    if any(part not in KINDS for part in parts):
        return [f"unknown kind (known: {', '.join(KINDS)})"]
    try:
        used = placeholders(template)
    except ValueError as err:
        return [f"malformed template ({err})"]
    problems = [f"uses {{{name}}}, which it is not given" for name in sorted(used - set(parts))]
    problems += [f"does not use {{{part}}}" for part in parts if part != "email" and part not in used]
    if "email" in used:
        problems.append("echoes the e-mail address")
    return problems
