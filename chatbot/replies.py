"""The reply catalogue: per intent and language, a label and a reply, plus the bot's own lines.

One JSON file per language in ``assets/replies/`` (``{"language_name", "intents": {intent: {label,
reply}}, "bot": {line: text}}``); :meth:`Catalogue.check` lists anything missing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from chatbot.settings import REPLIES_DIR

BOT_LINES = ("greeting", "clarify", "fallback", "handoff", "handoff_waiting", "agent_joined", "closed",
             "unsupported_language", "empty", "too_long", "error", "out_of_scope")


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
            for line in BOT_LINES:
                if not str(entry.get("bot", {}).get(line, "")).strip():
                    problems.append(f"{lang}: bot line {line} missing")
        return problems

    def _entry(self, lang: str) -> dict:
        return self.languages.get(lang) or self.languages["en"]

    def reply(self, intent: str, lang: str) -> str:
        item = self._entry(lang).get("intents", {}).get(intent)
        return item["reply"] if item else self.line("fallback", lang)

    def label(self, intent: str, lang: str) -> str:
        item = self._entry(lang).get("intents", {}).get(intent)
        return item["label"] if item else intent.replace("_", " ")

    def line(self, name: str, lang: str, **values) -> str:
        text = self._entry(lang)["bot"][name]
        return text.format(**values) if values else text
