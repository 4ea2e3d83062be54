"""The one entry point the UI and the CLI call: ``Assistant.respond(conversation_id, text) -> Turn``.

A turn goes through small steps, in this order, and a message stops at the first that settles it:

1. **gate**: the request, the conversation's state and the message itself, before any model runs:
   raw input is cut to a bound first and every field is checked (a malformed one is dropped, never
   trusted: a conversation id the server did not hand out starts a new conversation); an empty or
   too long message is refused;
2. **detect** the language (with the conversation's and the browser's as priors); a message in a
   language we do not serve is told so; a message that only greets, thanks, says goodbye or says "ok"
   (``chatbot.small_talk``) is answered in kind, with no model run and no failure counted; a call for
   help that says nothing more ("I have a problem") is asked what it is about, as an unanswered turn.
   A yes or a no is answered in step 4 by what the bot said last (a yes to an offer of a person hands
   off); only a yes to "do you mean X or Y?" is classified, since it picks neither option;
3. **classify** (one forward pass for every message of a batch that got this far);
4. **decide**: a conversation waiting for or handled by a person gets no bot answer (its message is
   still detected and, unless it is small talk, classified, so that the agent's suggested reply and
   the transcript follow what the customer writes now, in the language they write it in, and so that
   a message arriving while an agent closes the conversation is answered in the new one); otherwise
   decide with the policy (answer, clarify, fall back, hand off) and compose the reply in the
   customer's language, using what the message gave (``chatbot.entities``: an order number, an
   amount, a date, an e-mail address) so the bot never asks for what it was just given; a
   clarification offers the two likeliest intents, "something else" and a person;
5. **persist** the customer's message, the reply and the conversation's new state in one
   transaction (the conversation is re-read there, so an agent who took over meanwhile wins; a
   closed conversation stays closed and the message starts a new one, unless it only thanks, says
   goodbye or ok: that is answered in kind in the closed one); a retried message (same client
   message id) returns the stored turn instead of a second one.

Each message of a batch succeeds or fails on its own: a step that fails for one message gives that
customer an apology (its turn rolled back whole) and the others their answers.

Nothing in the UI decides anything; everything a screen shows comes from a :class:`Turn` or the store.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from dataclasses import asdict, dataclass, field

from sqlalchemy.exc import IntegrityError

from chatbot.entities import extract
from chatbot.language import Detection, LanguageDetector
from chatbot.pii import mask
from chatbot.policy import PolicyConfig, decide, in_scope
from chatbot.replies import Catalogue, person_name
from chatbot.settings import MAX_MESSAGE_CHARS as MAX_CHARS  # the name the catalogue and tests use
from chatbot.settings import OUT_OF_SCOPE, RAW_CHARS
from chatbot.small_talk import ANSWERS, recognise
from chatbot.store import CLIENT_MESSAGE_ID, Store, now, valid_conversation_id

log = logging.getLogger(__name__)

SOMETHING_ELSE = "something_else"
"""The clarification choice for "none of these": the bot asks the customer to say it in a sentence."""
PERSON = "contact_human_agent"
"""The clarification choice that hands the conversation to a person."""
OFFERS_A_PERSON = ("out_of_scope", "something_else")
"""The bot's turns (actions or lines) that offer a person: a yes to them hands off."""
STUCK = ("fallback", "something_else", "small_talk_help", "error")
"""The bot's turns that ask the customer to say what they need: a no to them is one more unanswered turn."""
GO_ON = ("answer", "out_of_scope")
"""The bot's turns after which a no is not a goodbye ("understood, anything else?"); after the others
(small talk's "anything else?", "how can I help?", a goodbye, nothing yet) it is."""
PARTING = ("thanks", "goodbye", "ok")
"""Small talk that ends a conversation rather than starts one: after a close it is answered in kind
within the closed conversation (the transcript keeps it, it stays closed) instead of opening a new one."""


@dataclass
class Turn:
    conversation_id: str
    reply: str
    action: str
    """answer, clarify, fallback, out_of_scope, handoff, small_talk, waiting, agent, unsupported, empty,
    too_long, error."""
    lang: str
    intent: str | None = None
    confidence: float | None = None
    top: list[dict] = field(default_factory=list)
    choices: list[dict] = field(default_factory=list)
    """For a clarification: ``[{"intent", "label"}]`` the customer can pick from (the two likeliest
    intents, then ``something_else`` and ``contact_human_agent``)."""
    entities: dict = field(default_factory=dict)
    """What the message gave (``chatbot.entities.extract``): order, amount, date, ``email: "given"``."""
    status: str = "bot"
    model_version: str | None = None

    def as_dict(self) -> dict:
        return asdict(self)


def clean_text(text) -> str:
    """Text as a string cut to ``RAW_CHARS`` first, without control characters or invalid code points
    (lone surrogates included), spaces collapsed; anything but text, bytes or a number is empty."""
    if isinstance(text, bytes):
        text = text[:RAW_CHARS * 4].decode("utf-8", errors="replace")
    elif isinstance(text, (int, float)) and not isinstance(text, bool):
        text = str(text)
    elif not isinstance(text, str):
        text = ""
    text = text[:RAW_CHARS]
    text = "".join(ch for ch in text if unicodedata.category(ch)[0] != "C" or ch in "\n\t")
    return re.sub(r"\s+", " ", text.replace("\ufffd", " ")).strip()


def has_letters(text: str) -> bool:
    """True when the text has at least one letter (not only numbers, ids, emoji or punctuation)."""
    return any(ch.isalpha() for ch in text)


class ReusedMessageId(ValueError):
    """A retry's client_message_id names a stored message with other text: not a retry, and not answered
    with that message's turn (the new text would be lost without a word)."""


@dataclass
class Pending:
    """One customer message on its way through the steps of a turn."""

    conversation_id: str | None
    text: str
    accept_language: str | None = None
    choice: str | None = None
    client_message_id: str | None = None
    conversation_lang: str | None = None
    in_conversation: bool = False
    """Whether ``conversation_id`` names a stored conversation that is not closed."""
    settled: str | None = None
    """The action a step before classification decided (empty, too_long, unsupported, small_talk)."""
    small_talk: str | None = None
    """The kind of small talk (help, greeting, thanks, goodbye, ok, yes, no) when that is all the message says."""
    asked: str | None = None
    """The action of the bot's turn when it is the conversation's latest (read as the turn is stored):
    what a yes or a no answers."""
    line: str | None = None
    """The catalogue line the bot answers with when its action says too little (small talk, "something
    else"): stored as its message's action, what the next yes or no answers."""
    detection: Detection | None = None
    prediction: object | None = None
    error: str | None = None

    @property
    def needs_model(self) -> bool:
        return self.settled is None and not self.choice

    @property
    def starts_nothing(self) -> bool:
        """A blank message (nothing but spaces and control characters: a malformed API call, the UI sends
        none) outside any open conversation: it is answered, and nothing is stored, so a client sending
        such calls in a loop fills no database. Digits or emoji alone (an order number) are kept as usual."""
        return self.error is None and not self.text.strip() and not self.choice and not self.in_conversation


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
        text = clean_text(text)[:MAX_CHARS]
        detection = self.detector.detect(text, conversation_lang, accept_language)
        if not text:
            return {"lang": detection.as_dict(), "top": []}
        prediction = self.classifier.predict([text], k=k)[0]
        return {"lang": detection.as_dict(), **prediction.as_dict()}

    # -- the turn ------------------------------------------------------------------------------
    def respond(self, conversation_id: str | None, text, accept_language: str | None = None,
                choice: str | None = None) -> Turn:
        """Handle one customer message (or a clicked clarification ``choice``) and store the turn."""
        return self.respond_batch([{"conversation_id": conversation_id, "text": text,
                                    "accept_language": accept_language, "choice": choice}])[0]

    def respond_batch(self, requests: list[dict]) -> list[Turn]:
        """Several customers' messages at once (``{conversation_id, text, accept_language, choice}``):
        each goes through the steps of a turn, with one classifier pass for all that need it."""
        pending = []
        for request in requests:
            try:
                pending.append(self._gate(request))
            except Exception as err:  # noqa: BLE001 - this request alone fails
                pending.append(self._failed(None, err))
        for p in pending:
            try:
                if p.error is None:
                    self._detect(p)
            except Exception as err:  # noqa: BLE001
                p.error, p.settled = _error(err), "error"
        self._classify([p for p in pending if p.needs_model and p.error is None])
        return [self._unstored(p) if p.starts_nothing else self._persist_alone(p) for p in pending]

    def _unstored(self, p: Pending) -> Turn:
        """The answer to a message that starts nothing (:attr:`Pending.starts_nothing`): not stored."""
        lang = p.detection.lang if p.detection else "en"
        return Turn("", self.catalogue.line("empty", lang), "empty", lang, status="")

    def _failed(self, p: Pending | None, err: Exception) -> Pending:
        log.exception("a customer request failed")
        p = p or Pending(None, "")
        p.error, p.settled = _error(err), "error"
        return p

    def _gate(self, request) -> Pending:
        request = request if isinstance(request, dict) else {}

        def text_field(name, pattern=None, limit=256):
            value = request.get(name)
            if not isinstance(value, str) or len(value) > limit or (pattern and not pattern.match(value)):
                return None
            return value

        conversation_id = request.get("conversation_id")
        p = Pending(conversation_id if valid_conversation_id(conversation_id) else None,
                    clean_text(request.get("text")), clean_text(text_field("accept_language") or ""),
                    text_field("choice", limit=64), text_field("client_message_id", CLIENT_MESSAGE_ID, 64))
        conversation = self.store.conversation(p.conversation_id) if p.conversation_id else None
        if conversation:
            p.conversation_lang, p.in_conversation = conversation["lang"], conversation["status"] != "closed"
        if p.choice and p.choice in (*self.classifier.labels, SOMETHING_ELSE, PERSON):
            return p
        p.choice = None
        if not has_letters(p.text):
            p.settled = "empty"
        elif len(p.text) > MAX_CHARS:
            p.settled = "too_long"
        return p

    def _detect(self, p: Pending) -> None:
        p.detection = self.detector.detect(p.text[:MAX_CHARS], p.conversation_lang, p.accept_language)
        if p.needs_model and p.detection.unsupported:
            p.settled = "unsupported"
        elif p.needs_model and (talk := recognise(p.text, p.detection.lang)):
            p.small_talk = talk.kind
            if not (talk.kind == "yes" and self._asked_to_choose(p)):
                p.settled = "small_talk"

    def _asked_to_choose(self, p: Pending) -> bool:
        """Whether the bot's latest turn in ``p``'s open conversation asked "do you mean X or Y?": only then
        does a yes need the model. What it answers is read again as the turn is stored (:meth:`_small_talk`)."""
        return p.in_conversation and self.store.last_bot_action_of(p.conversation_id) == "clarify"

    def _classify(self, batch: list[Pending]) -> None:
        """One forward pass for the batch; if it fails, each message is tried alone, so one bad
        message costs only its own turn."""
        if not batch:
            return
        try:
            for p, prediction in zip(batch, self.classifier.predict([p.text for p in batch], k=3)):
                p.prediction = prediction
            return
        except Exception:  # noqa: BLE001 - retried one by one below
            pass
        for p in batch:
            try:
                p.prediction = self.classifier.predict([p.text], k=3)[0]
            except Exception as err:  # noqa: BLE001 - the customer gets an apology, the turn is kept
                p.error = _error(err)
                log.warning("classifying a message failed: %s", p.error)

    def _persist_alone(self, p: Pending) -> Turn:
        """:meth:`_persist`, with a failure costing only this turn (rolled back whole) and a concurrent
        retry of the same message answered with the turn stored first."""
        why = "not stored"
        try:
            return self._persist(p)
        except ReusedMessageId as err:  # the client's mistake: said as such, nothing stored or replayed
            why = str(err)
        except IntegrityError:
            if p.client_message_id:
                try:
                    return self._persist(p)  # the other try committed first: it is found now
                except ReusedMessageId as err:
                    why = str(err)
                except Exception as err:  # noqa: BLE001
                    self._failed(p, err)
            else:
                self._failed(p, RuntimeError("the turn could not be stored"))
        except Exception as err:  # noqa: BLE001
            self._failed(p, err)
        lang = p.detection.lang if p.detection else "en"
        # what failed is in the log (_failed); the customer's answer names no internals
        return Turn(p.conversation_id or "", self.catalogue.line("error", lang), "error", lang,
                    top=[{"error": why}], status="")

    def _persist(self, p: Pending) -> Turn:
        with self.store.session() as s, s.begin():
            conversation = self.store.get_or_create(s, p.conversation_id)
            stored = self.store.stored_turn(s, conversation, p.client_message_id)
            if stored:
                if p.text and Store.stored_text(mask(p.text)) != stored[0].text:
                    raise ReusedMessageId("client_message_id already names another message of this conversation")
                return self._replay(conversation, stored)
            if conversation.status == "closed" and p.small_talk not in PARTING:
                conversation = self.store.get_or_create(s, None)  # closed stays closed: this starts a new one
            if p.small_talk in ANSWERS:
                p.asked = self.store.last_bot_action(s, conversation)
            turn = self._decide(conversation, p, self.store.given(s, conversation))
            # a served classifier says which version answered (replicas follow a promotion on their own)
            turn.model_version = getattr(p.prediction, "version", None) or self.version
            said = p.text or (self._choice_label(p.choice, turn.lang) if p.choice else "(empty message)")
            self.store.add_message(s, conversation, "customer", said, lang=turn.lang,
                                   intent=turn.intent, confidence=turn.confidence, top=turn.top or None,
                                   action=turn.action, model_version=turn.model_version,
                                   client_message_id=p.client_message_id, entities=turn.entities or None)
            if turn.reply:
                self.store.add_message(s, conversation, "bot", turn.reply, lang=turn.lang, action=p.line or turn.action,
                                       model_version=turn.model_version, choices=turn.choices or None)
            turn.conversation_id, turn.status = conversation.id, conversation.status
        return turn

    @staticmethod
    def _replay(conversation, stored: list) -> Turn:
        """The turn a retried message got the first time (nothing new is stored)."""
        first = stored[0]
        reply = next((m for m in stored[1:] if m.role == "bot"), None)
        return Turn(conversation.id, reply.text if reply else "", first.action or "", first.lang or "en",
                    first.intent, first.confidence, list(first.top or []), status=conversation.status,
                    model_version=first.model_version)

    def _decide(self, conversation, p: Pending, earlier: dict | None = None) -> Turn:
        """The turn for ``p``; updates ``conversation`` (language, failures, status) in place. Replies
        use what this message gave and, where it gave nothing of a kind, what ``earlier`` messages did."""
        lang = p.detection.lang if p.detection else "en"
        turn = Turn(conversation.id, "", "", lang, model_version=self.version)
        if p.text and has_letters(p.text):
            turn.entities = extract(mask(p.text[:MAX_CHARS]).text, lang)
        given = {**(earlier or {}), **turn.entities}
        if conversation.status in ("waiting", "agent"):  # also when a person took over meanwhile
            turn.action = conversation.status
            turn.reply = self.catalogue.line("handoff_waiting", lang) if conversation.status == "waiting" else ""
            if p.prediction is not None or p.small_talk:  # for the agent: in the language they write now
                conversation.lang = lang
            if p.prediction is not None:  # and what they ask now
                turn.intent, turn.confidence = p.prediction.intent, p.prediction.confidence
                turn.top = [{"intent": i, "confidence": round(c, 4)} for i, c in p.prediction.top]
            return turn
        if p.choice == SOMETHING_ELSE:  # none of the offered intents: ask for a sentence
            conversation.failures += 1
            turn.action, turn.reply, p.line = "fallback", self.catalogue.line("something_else", lang), "something_else"
            return turn
        if p.choice:
            return self._answer(conversation, turn, p.choice, 1.0, [{"intent": p.choice, "confidence": 1.0}], given)
        if p.settled in ("empty", "too_long", "unsupported"):
            line = {"empty": "empty", "too_long": "too_long", "unsupported": "unsupported_language"}[p.settled]
            turn.action, turn.reply = p.settled, self.catalogue.line(line, lang, limit=MAX_CHARS)
            return turn
        conversation.lang = lang
        if p.small_talk and self._small_talk(conversation, p, turn, given):
            return turn
        if p.prediction is None:
            turn.action, turn.reply = "error", self.catalogue.line("error", lang)
            turn.top = [{"error": "not classified"}]  # the cause is in the log
            return turn
        prediction = p.prediction
        top = [{"intent": i, "confidence": round(c, 4)} for i, c in prediction.top]
        action = decide(self.policy, prediction.top, conversation.failures)
        if action == "answer":
            return self._answer(conversation, turn, prediction.intent, prediction.confidence, top, given)
        turn.intent, turn.confidence, turn.top, turn.action = prediction.intent, prediction.confidence, top, action
        if action == "out_of_scope":  # says what the bot handles and offers a person; never hands off alone
            conversation.failures += 1
            turn.intent = OUT_OF_SCOPE
            turn.confidence = next((c for i, c in prediction.top if i == OUT_OF_SCOPE), None)
            turn.reply = self.catalogue.line("out_of_scope", lang)
        elif action == "handoff":  # asked for (a hand-off intent, sure enough), or the bot failed too often
            asked = prediction.intent in self.policy.handoff_intents and prediction.confidence >= self.policy.answer
            reason = prediction.intent if asked else "repeated_failures"
            self._hand_off(conversation, reason)
            turn.reply = self._handoff_reply(reason, lang, given)
        elif action == "clarify" and len(options := in_scope(prediction.top)[:2]) == 2:
            conversation.failures += 1
            offered = [i for i, _ in options] + [SOMETHING_ELSE] + ([PERSON] if PERSON not in dict(options) else [])
            turn.choices = [{"intent": i, "label": self._choice_label(i, lang)} for i in offered]
            turn.reply = self.catalogue.line("clarify", lang, first=turn.choices[0]["label"],
                                             second=turn.choices[1]["label"])
        else:  # too unsure to ask between two intents: ask to rephrase
            turn.action = "fallback"
            conversation.failures += 1
            turn.reply = self.catalogue.line("fallback", lang)
        return turn

    def _small_talk(self, conversation, p: Pending, turn: Turn, given: dict) -> bool:
        """The turn for small talk (``p.small_talk``, :mod:`chatbot.small_talk`); False when the classifier
        decides instead (a yes to "do you mean X or Y?" picks neither option).

        * greetings, thanks, goodbyes and "ok" are answered in kind;
        * a call for help with nothing more is asked what it is about;
        * a yes to a turn that offers a person (:data:`OFFERS_A_PERSON`) hands off; any other yes asks
          what the customer needs;
        * a no to "do you mean X or Y?" is "something else"; a no to a turn that asked the customer to say
          what they need (:data:`STUCK`) gets the offer of a person; after an answer or the out-of-scope
          answer (:data:`GO_ON`) "understood, anything else?"; after anything else a goodbye.

        A call for help, a no to :data:`STUCK` or to "do you mean X or Y?" is an unanswered turn, and the
        one that reaches ``policy.max_failures`` hands off, as a clarification would; the rest count
        neither as a failure nor as an answer."""
        kind, asked, lang = p.small_talk, p.asked, turn.lang
        if kind == "yes" and asked == "clarify" and (p.prediction is not None or p.error is not None):
            return False  # the classifier decides, or its failure is said; a yes left unclassified (the bot
            # asked after it was looked at) is a yes like any other
        unanswered = kind == "help" or (kind == "no" and asked in (*STUCK, "clarify"))
        if unanswered and conversation.failures + 1 >= self.policy.max_failures:
            self._hand_off(conversation, "repeated_failures")
            turn.action, turn.reply = "handoff", self._handoff_reply("repeated_failures", lang, given)
            return True
        if kind == "yes" and asked in OFFERS_A_PERSON:
            self._hand_off(conversation, PERSON)
            turn.action, turn.intent, turn.reply = "handoff", PERSON, self._handoff_reply(PERSON, lang, given)
            return True
        if unanswered:
            conversation.failures += 1
        if kind == "no":
            line = "something_else" if unanswered else "small_talk_no" if asked in GO_ON else "small_talk_goodbye"
        else:
            line = f"small_talk_{kind}"
        turn.action = "fallback" if line == "something_else" else "small_talk"
        turn.reply, p.line = self.catalogue.line(line, lang), line
        return True

    def _answer(self, conversation, turn: Turn, intent: str, confidence: float, top: list[dict],
                given: dict | None = None) -> Turn:
        conversation.failures = 0
        turn.intent, turn.confidence, turn.top = intent, confidence, top
        if intent in self.policy.handoff_intents:
            self._hand_off(conversation, intent)
            turn.action, turn.reply = "handoff", self._handoff_reply(intent, turn.lang, given)
        else:
            turn.action, turn.reply = "answer", self.catalogue.reply(intent, turn.lang, given)
        return turn

    def _handoff_reply(self, intent: str, lang: str, given: dict | None = None) -> str:
        # complaint / contact_human_agent replies already say a person takes over.
        if intent in self.policy.handoff_intents:
            return self.catalogue.reply(intent, lang, given)
        return self.catalogue.line("handoff", lang)

    def _choice_label(self, choice: str, lang: str) -> str:
        return self.catalogue.ui("something_else", lang) if choice == SOMETHING_ELSE else self.catalogue.label(choice, lang)

    @staticmethod
    def _hand_off(conversation, reason: str) -> None:
        conversation.status, conversation.handoff_at, conversation.handoff_reason = "waiting", now(), reason

    # -- agent side ----------------------------------------------------------------------------
    def suggested_reply(self, conversation_id: str, agent: str | None = None) -> dict:
        """What an agent might send, in the conversation's language: the hand-over greeting (signed
        ``agent``) while no agent has written yet, then an answer to the latest customer message's
        intent (the catalogue reply, using what the customer gave in the conversation; a question for
        a complaint; "how can I help" when they asked for a person, asked something out of scope, or
        the classifier was less sure than the bot needs to answer: ``policy.answer``).

        ``{"lang", "intent", "greeting", "answer", "reply"}``; ``reply`` is greeting and answer together."""
        conversation = self.store.conversation(conversation_id)
        if conversation is None:
            raise ValueError(f"no conversation {conversation_id}")
        lang = conversation["lang"] or "en"
        messages = self.store.messages(conversation_id)
        given: dict = {}
        for m in messages:
            if m["role"] == "customer":
                given.update(m.get("entities") or {})
        customer = [m for m in messages if m["role"] == "customer" and m["intent"]]
        intent = customer[-1]["intent"] if customer else None
        if customer and (customer[-1]["confidence"] or 0) < self.policy.answer:
            intent = None  # a guess: the agent asks, as the bot would have
        greeting = ""
        if not any(m["role"] == "agent" for m in messages):
            greeting = self.catalogue.line("agent_greeting", lang, agent=person_name(agent or ""))
        if intent == "complaint":
            answer = (self.catalogue.line("agent_complaint_order", lang, order=given["order"]) if given.get("order")
                      else self.catalogue.line("agent_complaint", lang))
        elif intent is None or intent == OUT_OF_SCOPE or intent in self.policy.handoff_intents:
            answer = self.catalogue.line("agent_help", lang)
        else:
            answer = self.catalogue.reply(intent, lang, given)
        return {"lang": lang, "intent": intent, "greeting": greeting, "answer": answer,
                "reply": "\n\n".join(part for part in (greeting, answer) if part)}

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


def _error(err: Exception) -> str:
    return f"{type(err).__name__}: {err}"[:300]
