"""Conversation store on SQLAlchemy: a SQLite file by default, any database URL through one setting.

Every turn (the customer's message, the bot's reply and the conversation's new state) is written in
one transaction and committed before :class:`~chatbot.assistant.Assistant` returns, so what a
customer has seen acknowledged survives a crash. Card numbers, IBANs and e-mail addresses are
masked before anything is written.
"""

from __future__ import annotations

import re
import uuid
from datetime import datetime, timezone

from sqlalchemy import (JSON, DateTime, Float, ForeignKey, Integer, String, Text, create_engine, event, func,
                        select)
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship, sessionmaker

from chatbot.settings import database_url

STATUSES = ("bot", "waiting", "agent", "closed")
ROLES = ("customer", "bot", "agent", "system")


def now() -> datetime:
    return datetime.now(timezone.utc)


# --- masking ------------------------------------------------------------------------------------
_EMAIL = re.compile(r"\b[\w.+-]+@[\w-]+(\.[\w-]+)+\b")
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?:[ ]?[A-Z0-9]{4}){2,7}(?:[ ]?[A-Z0-9]{1,4})?\b", re.IGNORECASE)
_CARD = re.compile(r"\b(?:\d[ -]?){12,18}\d\b")


def _luhn(digits: str) -> bool:
    total = 0
    for i, d in enumerate(reversed(digits)):
        n = int(d)
        if i % 2:
            n = n * 2 - 9 if n > 4 else n * 2
        total += n
    return total % 10 == 0


def mask_sensitive(text: str) -> str:
    """Mask e-mail addresses, IBANs and card numbers (13–19 digits passing the Luhn check)."""
    def card(match):
        digits = re.sub(r"\D", "", match.group())
        if 13 <= len(digits) <= 19 and _luhn(digits):
            return "[card ****" + digits[-4:] + "]"
        return match.group()

    def iban(match):
        compact = match.group().replace(" ", "").upper()
        return "[IBAN " + compact[:2] + "…" + compact[-2:] + "]" if len(compact) >= 15 else match.group()

    text = _EMAIL.sub("[email]", text)
    text = _IBAN.sub(iban, text)
    return _CARD.sub(card, text)


# --- schema -------------------------------------------------------------------------------------
class Base(DeclarativeBase):
    pass


class Conversation(Base):
    __tablename__ = "conversations"
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=lambda: str(uuid.uuid4()))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=now)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=now, index=True)
    lang: Mapped[str | None] = mapped_column(String(8))
    status: Mapped[str] = mapped_column(String(10), default="bot", index=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    handoff_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    handoff_reason: Mapped[str | None] = mapped_column(String(40))
    messages: Mapped[list["Message"]] = relationship(back_populates="conversation", order_by="Message.id")


class Message(Base):
    __tablename__ = "messages"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    conversation_id: Mapped[str] = mapped_column(ForeignKey("conversations.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=now)
    role: Mapped[str] = mapped_column(String(10))
    text: Mapped[str] = mapped_column(Text)
    lang: Mapped[str | None] = mapped_column(String(8))
    intent: Mapped[str | None] = mapped_column(String(64))
    confidence: Mapped[float | None] = mapped_column(Float)
    top: Mapped[list | None] = mapped_column(JSON)
    action: Mapped[str | None] = mapped_column(String(20))
    model_version: Mapped[str | None] = mapped_column(String(64))
    conversation: Mapped[Conversation] = relationship(back_populates="messages")


def _sqlite_pragmas(dbapi_connection, _record):
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")  # readers (agents) never block the writer (customers)
    cursor.execute("PRAGMA synchronous=FULL")  # a committed turn is on disk
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


class Store:
    """Conversations and their messages. Each writing method commits one transaction of its own; a
    caller that must write several things atomically (a whole turn) opens :meth:`session` and uses
    the static helpers inside one ``session.begin()``."""

    def __init__(self, url: str | None = None):
        self.url = url or database_url()
        self.engine = create_engine(self.url)
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
        Base.metadata.create_all(self.engine)
        self._session = sessionmaker(self.engine, expire_on_commit=False)

    def session(self) -> Session:
        return self._session()

    # -- writing ---------------------------------------------------------------------------------
    def new_conversation(self, lang: str | None = None) -> str:
        with self.session() as s, s.begin():
            conversation = Conversation(lang=lang)
            s.add(conversation)
        return conversation.id

    def get_or_create(self, s: Session, conversation_id: str | None) -> Conversation:
        conversation = s.get(Conversation, conversation_id) if conversation_id else None
        if conversation is None:
            conversation = Conversation(id=conversation_id or str(uuid.uuid4()))
            s.add(conversation)
            s.flush()
        return conversation

    @staticmethod
    def add_message(s: Session, conversation: Conversation, role: str, text: str, **fields) -> Message:
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}")
        message = Message(conversation_id=conversation.id, role=role, text=mask_sensitive(text), **fields)
        s.add(message)
        conversation.updated_at = now()
        return message

    def agent_message(self, conversation_id: str, text: str, lang: str | None = None) -> None:
        """An agent's reply: the conversation is now handled by a person."""
        text = text.strip()
        if not text:
            raise ValueError("the reply is empty")
        with self.session() as s, s.begin():
            conversation = s.get(Conversation, conversation_id)
            if conversation is None:
                raise ValueError(f"no conversation {conversation_id}")
            self.add_message(s, conversation, "agent", text, lang=lang or conversation.lang)
            conversation.status = "agent"

    def set_status(self, conversation_id: str, status: str, note: str | None = None) -> None:
        if status not in STATUSES:
            raise ValueError(f"unknown status {status!r}")
        with self.session() as s, s.begin():
            conversation = s.get(Conversation, conversation_id)
            if conversation is None:
                raise ValueError(f"no conversation {conversation_id}")
            conversation.status = status
            if status == "bot":
                conversation.failures = 0
            if note:
                self.add_message(s, conversation, "system", note, lang=conversation.lang)

    # -- reading ---------------------------------------------------------------------------------
    def conversation(self, conversation_id: str) -> dict | None:
        with self.session() as s:
            c = s.get(Conversation, conversation_id)
            return None if c is None else self._summary(s, c)

    def messages(self, conversation_id: str, after_id: int = 0) -> list[dict]:
        with self.session() as s:
            rows = s.scalars(select(Message).where(Message.conversation_id == conversation_id, Message.id > after_id)
                             .order_by(Message.id)).all()
            return [self._message(m) for m in rows]

    def queue(self) -> list[dict]:
        """Conversations waiting for an agent, oldest hand-off first."""
        with self.session() as s:
            rows = s.scalars(select(Conversation).where(Conversation.status == "waiting")
                             .order_by(Conversation.handoff_at, Conversation.created_at)).all()
            return [self._summary(s, c) for c in rows]

    def recent(self, limit: int = 20) -> list[dict]:
        with self.session() as s:
            rows = s.scalars(select(Conversation).order_by(Conversation.updated_at.desc()).limit(limit)).all()
            return [self._summary(s, c) for c in rows]

    def count_messages(self) -> int:
        with self.session() as s:
            return s.scalar(select(func.count(Message.id)))

    @staticmethod
    def _message(m: Message) -> dict:
        return {"id": m.id, "role": m.role, "text": m.text, "lang": m.lang, "intent": m.intent,
                "confidence": m.confidence, "top": m.top, "action": m.action, "model_version": m.model_version,
                "created_at": m.created_at.isoformat() if m.created_at else None}

    @staticmethod
    def _summary(s: Session, c: Conversation) -> dict:
        last = s.scalars(select(Message).where(Message.conversation_id == c.id, Message.role == "customer")
                         .order_by(Message.id.desc()).limit(1)).first()
        return {"id": c.id, "status": c.status, "lang": c.lang, "failures": c.failures,
                "created_at": c.created_at.isoformat() if c.created_at else None,
                "updated_at": c.updated_at.isoformat() if c.updated_at else None,
                "handoff_at": c.handoff_at.isoformat() if c.handoff_at else None,
                "handoff_reason": c.handoff_reason,
                "last_customer_message": last.text if last else None}
