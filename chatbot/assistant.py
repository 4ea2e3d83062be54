"""The one entry point the UI and the CLI call: ``Assistant.respond(conversation_id, text) -> Turn``.

A turn: clean and check the message, detect its language (with the conversation's and the browser's
as priors), classify it, let the policy decide, pick the reply in the customer's language, and store
the customer's message, the reply and the conversation's new state in one transaction. Nothing in
the UI decides anything; everything a screen shows comes from a :class:`Turn` or the store.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import asdict, dataclass, field

from chatbot.language import LanguageDetector
from chatbot.policy import PolicyConfig, decide
from chatbot.replies import Catalogue
from chatbot.store import Store, now

MAX_CHARS = 1000
"""Longest message the bot classifies; longer ones are stored (up to STORED_CHARS) and refused."""
STORED_CHARS = 20000


@dataclass
class Turn:
    conversation_id: str
    reply: str
    action: str
    """answer, clarify, fallback, handoff, waiting, agent, unsupported, empty, too_long, error."""
    lang: str
    intent: str | None = None
    confidence: float | None = None
    top: list[dict] = field(default_factory=list)
    choices: list[dict] = field(default_factory=list)
    """For a clarification: ``[{"intent", "label"}]`` the customer can pick from."""
    status: str = "bot"
    model_version: str | None = None

    def as_dict(self) -> dict:
        return asdict(self)


def clean_text(text) -> str:
    """Text as a string, without control characters or invalid code points, spaces collapsed."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    text = "" if text is None else str(text)
    text = "".join(ch for ch in text if unicodedata.category(ch)[0] != "C" or ch in "\n\t")
    return re.sub(r"\s+", " ", text.replace("\ufffd", " ")).strip()


class Assistant:
    """Classifier + language detector + policy + replies + store, for any number of conversations.

    ``classifier`` only needs ``predict(texts, k)`` and ``labels``; ``version`` names the live model.
    """

    def __init__(self, classifier, store: Store, catalogue: Catalogue | None = None,
                 detector: LanguageDetector | None = None, policy: PolicyConfig | None = None,
                 version: str | None = None):
        self.classifier = classifier
        self.store = store
        self.catalogue = catalogue or Catalogue.load()
        self.detector = detector or LanguageDetector()
        self.policy = policy or PolicyConfig()
        self.version = version

    def greeting(self, lang: str = "en") -> str:
        return self.catalogue.line("greeting", lang)

    def analyse(self, text: str, conversation_lang: str | None = None, accept_language: str | None = None,
                k: int = 3) -> dict:
        """Language and top intents of a message, without storing anything (agent assist)."""
        text = clean_text(text)
        detection = self.detector.detect(text, conversation_lang, accept_language)
        if not text:
            return {"lang": detection.as_dict(), "top": []}
        prediction = self.classifier.predict([text[:MAX_CHARS]], k=k)[0]
        return {"lang": detection.as_dict(), **prediction.as_dict()}

    def respond(self, conversation_id: str | None, text, accept_language: str | None = None,
                choice: str | None = None, prediction=None) -> Turn:
        """Handle one customer message (or a clicked clarification ``choice``) and store the turn.

        ``prediction`` may be given when the message was already classified in a batch."""
        text = clean_text(text)
        with self.store.session() as s, s.begin():
            conversation = self.store.get_or_create(s, conversation_id)
            turn = self._decide(conversation, text, accept_language, choice, prediction)
            stored = text[:STORED_CHARS] if text else "(empty message)"
            self.store.add_message(s, conversation, "customer", stored, lang=turn.lang, intent=turn.intent,
                                   confidence=turn.confidence, top=turn.top or None, action=turn.action,
                                   model_version=self.version)
            if turn.reply:
                self.store.add_message(s, conversation, "bot", turn.reply, lang=turn.lang, action=turn.action,
                                       model_version=self.version)
            turn.conversation_id, turn.status = conversation.id, conversation.status
        return turn

    def respond_batch(self, requests: list[dict]) -> list[Turn]:
        """Several customers' messages at once (``{conversation_id, text, accept_language, choice}``):
        one classifier forward pass for all of them, then each turn stored on its own."""
        texts = [clean_text(r.get("text")) for r in requests]
        todo = [i for i, t in enumerate(texts) if t and len(t) <= MAX_CHARS and not requests[i].get("choice")]
        predictions = {}
        if todo:
            try:
                predictions = dict(zip(todo, self.classifier.predict([texts[i] for i in todo], k=3)))
            except Exception:  # noqa: BLE001 - each turn then retries alone and reports its own error
                predictions = {}
        return [self.respond(r.get("conversation_id"), texts[i], r.get("accept_language"), r.get("choice"),
                             predictions.get(i)) for i, r in enumerate(requests)]

    def _decide(self, conversation, text: str, accept_language: str | None, choice: str | None,
                prediction=None) -> Turn:
        """The turn for ``text``; updates ``conversation`` (language, failures, status) in place."""
        detection = self.detector.detect(text, conversation.lang, accept_language)
        lang = detection.lang
        turn = Turn(conversation.id, "", "", lang, model_version=self.version)
        if conversation.status == "closed":  # the customer writes again: the bot picks it up
            conversation.status, conversation.failures = "bot", 0
        if conversation.status in ("waiting", "agent"):
            turn.action = conversation.status
            turn.reply = self.catalogue.line("handoff_waiting", lang) if conversation.status == "waiting" else ""
            return turn
        if choice and choice in self.classifier.labels:
            return self._answer(conversation, turn, choice, 1.0, [{"intent": choice, "confidence": 1.0}])
        if not text or not detection_has_words(text):
            turn.action, turn.reply = "empty", self.catalogue.line("empty", lang)
            return turn
        if len(text) > MAX_CHARS:
            turn.action, turn.reply = "too_long", self.catalogue.line("too_long", lang, limit=MAX_CHARS)
            return turn
        if detection.unsupported:
            turn.action, turn.reply = "unsupported", self.catalogue.line("unsupported_language", lang)
            return turn
        conversation.lang = lang
        try:
            prediction = prediction or self.classifier.predict([text], k=3)[0]
        except Exception as err:  # noqa: BLE001 - the customer gets an apology, the turn is kept
            turn.action, turn.reply = "error", self.catalogue.line("error", lang)
            turn.top = [{"error": f"{type(err).__name__}: {err}"[:300]}]
            return turn
        top = [{"intent": i, "confidence": round(p, 4)} for i, p in prediction.top]
        action = decide(self.policy, prediction.top, conversation.failures)
        if action == "answer":
            return self._answer(conversation, turn, prediction.intent, prediction.confidence, top)
        turn.intent, turn.confidence, turn.top, turn.action = prediction.intent, prediction.confidence, top, action
        if action == "handoff":
            reason = prediction.intent if prediction.intent in self.policy.handoff_intents else "repeated_failures"
            self._hand_off(conversation, reason)
            turn.reply = self._handoff_reply(prediction.intent, lang)
        elif action == "clarify":
            conversation.failures += 1
            first, second = prediction.top[0][0], prediction.top[1][0]
            turn.choices = [{"intent": i, "label": self.catalogue.label(i, lang)} for i in (first, second)]
            turn.reply = self.catalogue.line("clarify", lang, first=turn.choices[0]["label"],
                                             second=turn.choices[1]["label"])
        else:
            conversation.failures += 1
            turn.reply = self.catalogue.line("fallback", lang)
        return turn

    def _answer(self, conversation, turn: Turn, intent: str, confidence: float, top: list[dict]) -> Turn:
        conversation.failures = 0
        turn.intent, turn.confidence, turn.top = intent, confidence, top
        if intent in self.policy.handoff_intents:
            self._hand_off(conversation, intent)
            turn.action, turn.reply = "handoff", self._handoff_reply(intent, turn.lang)
        else:
            turn.action, turn.reply = "answer", self.catalogue.reply(intent, turn.lang)
        return turn

    def _handoff_reply(self, intent: str, lang: str) -> str:
        # complaint / contact_human_agent replies already say a person takes over.
        if intent in self.policy.handoff_intents:
            return self.catalogue.reply(intent, lang)
        return self.catalogue.line("handoff", lang)

    @staticmethod
    def _hand_off(conversation, reason: str) -> None:
        conversation.status, conversation.handoff_at, conversation.handoff_reason = "waiting", now(), reason

    # -- agent side ----------------------------------------------------------------------------
    def suggested_reply(self, conversation_id: str) -> dict:
        """The catalogue reply for the last customer message's intent, in the conversation's language."""
        conversation = self.store.conversation(conversation_id)
        if conversation is None:
            raise ValueError(f"no conversation {conversation_id}")
        lang = conversation["lang"] or "en"
        customer = [m for m in self.store.messages(conversation_id) if m["role"] == "customer" and m["intent"]]
        if not customer:
            return {"lang": lang, "intent": None, "reply": self.catalogue.line("agent_joined", lang)}
        intent = customer[-1]["intent"]
        if intent in self.policy.handoff_intents:  # the customer asked for a person: greet as one
            return {"lang": lang, "intent": intent, "reply": self.catalogue.line("agent_joined", lang)}
        return {"lang": lang, "intent": intent, "reply": self.catalogue.reply(intent, lang)}

    def take_over(self, conversation_id: str) -> None:
        conversation = self.store.conversation(conversation_id)
        if conversation is None:
            raise ValueError(f"no conversation {conversation_id}")
        self.store.set_status(conversation_id, "agent", self.catalogue.line("agent_joined", conversation["lang"] or "en"))

    def close(self, conversation_id: str) -> None:
        conversation = self.store.conversation(conversation_id)
        if conversation is None:
            raise ValueError(f"no conversation {conversation_id}")
        self.store.set_status(conversation_id, "closed", self.catalogue.line("closed", conversation["lang"] or "en"))


def detection_has_words(text: str) -> bool:
    """True when the text has at least one letter (not only numbers, ids, emoji or punctuation)."""
    return any(ch.isalpha() for ch in text)
