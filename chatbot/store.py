"""Conversation store on SQLAlchemy: a SQLite file by default, any database URL through one setting.

Every turn (the customer's message, the bot's reply and the conversation's new state) is written in
one transaction and committed before :class:`~chatbot.assistant.Assistant` returns, so what a
customer has seen acknowledged survives a crash; a turn that fails half-way leaves nothing. A
retried turn (the same client message id in the same conversation) is stored once.

Several app processes may share one database (PostgreSQL through ``CHATBOT_DATABASE_URL``, psycopg 3):
the turns of one conversation are serialised in the database, not in a process, by a row lock on
the conversation (``SELECT … FOR UPDATE``) taken first in every transaction that writes to it, so
whichever process serves a turn, an agent's reply or a take-over, they are applied one after the
other and stored in order. The schema is created and upgraded by :func:`upgrade` (at every start,
under a database lock, so processes starting together do it once): the version reached is kept in
the table ``schema_version``, and each step of :data:`UPGRADES` takes an older database one version
further (to change the schema, append a step; a released step is never edited). A database newer
than the code is refused rather than written to.

A conversation id is a capability: server-generated, unguessable (192 random bits), never taken
from a client. Personal data is masked before anything is written (``chatbot.pii``): e-mails, phone
numbers and IBANs are kept encrypted beside the message (``Message.sealed``) so that staff can
reveal one; card numbers, codes and expiry dates are not kept at all.
"""

from __future__ import annotations

import re
import secrets
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone

from sqlalchemy import (JSON, Column, DateTime, Float, ForeignKey, Index, Integer, MetaData, String, Table, Text,
                        create_engine, delete, event, false, func, inspect, make_url, or_, select, text, update)
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship, sessionmaker

from chatbot.pii import Masked, mask
from chatbot.settings import OUT_OF_SCOPE, STORED_CHARS, database_url

STATUSES = ("bot", "waiting", "agent", "closed")
ROLES = ("customer", "bot", "agent", "system")
CONVERSATION_ID = re.compile(r"^[A-Za-z0-9_-]{32}$")
"""What the server hands out (``secrets.token_urlsafe(24)``); anything else is not a conversation id."""
LEGACY_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
"""Ids of conversations stored before (UUID4): staff can still open them, customers start anew."""
CLIENT_MESSAGE_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")


def now() -> datetime:
    return datetime.now(timezone.utc)


def new_conversation_id() -> str:
    return secrets.token_urlsafe(24)


def valid_conversation_id(value, legacy: bool = False) -> bool:
    """True for a string of the server's id format (and, with ``legacy``, an old UUID id)."""
    return isinstance(value, str) and bool(CONVERSATION_ID.match(value) or (legacy and LEGACY_ID.match(value)))


def _utc(moment: datetime) -> datetime:
    """A stored time as an aware UTC time (SQLite hands them back naive)."""
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)


# --- schema -------------------------------------------------------------------------------------
class Base(DeclarativeBase):
    pass


class Conversation(Base):
    __tablename__ = "conversations"
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_conversation_id)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=now)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=now, index=True)
    lang: Mapped[str | None] = mapped_column(String(8))
    status: Mapped[str] = mapped_column(String(10), default="bot", index=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    handoff_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    handoff_reason: Mapped[str | None] = mapped_column(String(40))
    agent: Mapped[str | None] = mapped_column(String(64))
    """The staff member who took the conversation over or last answered in it."""
    seen_id: Mapped[int | None] = mapped_column(Integer)
    """The last message staff have seen (customer messages after it are unread in the agents' inbox)."""
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
    client_message_id: Mapped[str | None] = mapped_column(String(64))
    """The id a client gave a customer message, so that a retried turn is stored once."""
    sealed: Mapped[list | None] = mapped_column(JSON)
    """``[{"kind", "token"}]``: the encrypted values behind the text's ``#n`` placeholders."""
    author: Mapped[str | None] = mapped_column(String(64))
    """The staff member who wrote an agent message (or whose action a system note records)."""
    choices: Mapped[list | None] = mapped_column(JSON)
    """``[{"intent", "label"}]`` a bot message offered the customer to pick from (a clarification)."""
    entities: Mapped[dict | None] = mapped_column(JSON)
    """What a customer message gave (``chatbot.entities``: order, amount, date; ``email: "given"``)."""
    conversation: Mapped[Conversation] = relationship(back_populates="messages")
    __table_args__ = (Index("ix_messages_client_message_id", "conversation_id", "client_message_id", unique=True),)


# --- engine and schema upgrades -------------------------------------------------------------------
SCHEMA_VERSION = 3
"""The schema version this code writes (the last step of :data:`UPGRADES`)."""
SCHEMA_LOCK = 815_015
"""PostgreSQL advisory lock key held while the schema is checked and upgraded (any constant will do)."""
_versions = Table("schema_version", MetaData(), Column("version", Integer, nullable=False))


class SchemaError(RuntimeError):
    """The database's schema is newer than this code: upgrade the app before it writes there."""


def _create_conversations(connection: Connection) -> None:
    """1: the conversations and messages tables (as this code defines them, when missing)."""
    Base.metadata.create_all(connection, tables=[Conversation.__table__, Message.__table__])


def _add_message_columns(connection: Connection) -> None:
    """2: client message ids (a retried turn is stored once) and sealed values, for messages tables made
    before them (nullable columns, no data changes), and the unique index on (conversation, client id)."""
    present = {c["name"] for c in inspect(connection).get_columns("messages")}
    for column in Message.__table__.columns:
        if column.name not in present:
            kind = column.type.compile(dialect=connection.dialect)
            connection.execute(text(f"ALTER TABLE messages ADD COLUMN {column.name} {kind}"))
    if "ix_messages_client_message_id" not in {i["name"] for i in inspect(connection).get_indexes("messages")}:
        next(i for i in Message.__table__.indexes if i.name == "ix_messages_client_message_id").create(connection)


def _add_console_columns(connection: Connection) -> None:
    """3: who handles a conversation and what its agent has seen; who wrote a message, the choices a bot
    message offered and what a customer message gave (nullable columns, no data changes)."""
    for table in (Conversation.__table__, Message.__table__):
        present = {c["name"] for c in inspect(connection).get_columns(table.name)}
        for column in table.columns:
            if column.name not in present:
                kind = column.type.compile(dialect=connection.dialect)
                connection.execute(text(f"ALTER TABLE {table.name} ADD COLUMN {column.name} {kind}"))


UPGRADES = (_create_conversations, _add_message_columns, _add_console_columns)
"""Step ``n`` (1-based) takes a database at version ``n - 1`` to version ``n``. Every step is also safe on
a database that has what it adds (databases made before versions were recorded start at 0)."""
assert len(UPGRADES) == SCHEMA_VERSION


@contextmanager
def _schema_lock(engine: Engine):
    """A transaction that holds the schema lock: on PostgreSQL an advisory lock, so app processes that
    start together upgrade one after the other (DDL is transactional there: all of it or nothing);
    SQLite serves one process and locks the whole file when it writes."""
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": SCHEMA_LOCK})
        yield connection


def schema_version(connection: Connection) -> int:
    """The version the database records (0: none recorded, or no table yet)."""
    if not inspect(connection).has_table(_versions.name):
        return 0
    return connection.execute(select(func.max(_versions.c.version))).scalar() or 0


def upgrade(engine: Engine) -> tuple[int, int]:
    """Bring the database to :data:`SCHEMA_VERSION`; returns (version before, version after).

    Raises :class:`SchemaError` when the database is newer than this code."""
    with _schema_lock(engine) as connection:
        before = schema_version(connection)
        if before > SCHEMA_VERSION:
            raise SchemaError(f"the database's schema is version {before}, newer than this code's "
                              f"({SCHEMA_VERSION}): upgrade the app (a newer version wrote to this database)")
        for step in UPGRADES[before:]:
            step(connection)
        if before < SCHEMA_VERSION:
            _versions.create(connection, checkfirst=True)
            connection.execute(_versions.delete())
            connection.execute(_versions.insert().values(version=SCHEMA_VERSION))
    return before, SCHEMA_VERSION


SQLITE_BUSY_S = 30.0
"""How long a SQLite writer waits for the database's one write lock before its transaction fails. Under a
burst of turns on a small machine, pysqlite's default of 5 s cost customers their turn ("database is
locked"); the chat's own timeouts are longer than this."""


def make_engine(url: str) -> Engine:
    """An engine for ``url``: ``postgresql://`` and ``postgres://`` go through psycopg 3; connections are
    checked before use (a restarted database server costs no turn); SQLite gets its pragmas, and its
    writers wait up to :data:`SQLITE_BUSY_S` for the write lock."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() == "postgresql":
        return create_engine(parsed, pool_pre_ping=True, pool_recycle=1800)
    if parsed.get_backend_name() == "sqlite":
        engine = create_engine(parsed, connect_args={"timeout": SQLITE_BUSY_S})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(parsed)


def _sqlite_pragmas(dbapi_connection, _record):
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")  # readers (agents) never block the writer (customers)
    cursor.execute("PRAGMA synchronous=FULL")  # a committed turn is on disk
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def sqlite_write_lock(s: Session, table: Table) -> None:
    """Before a writer reads what it will write: on SQLite, a no-op write (to ``table``) that takes the
    database's write lock now. SQLite has no row locks (``FOR UPDATE`` is dropped) and pysqlite begins
    a transaction only at its first write, so without it the read that follows could be older than a
    change committed meanwhile (a take-over, a failed sign-in), and the write after it would undo or
    collide with that change. Call it first in the transaction. On PostgreSQL it does nothing: the
    rows are locked by the reads themselves (``with_for_update``)."""
    if s.get_bind().dialect.name == "sqlite":
        key = next(iter(table.primary_key.columns))
        s.execute(update(table).where(false()).values({key: key}))


class Store:
    """Conversations and their messages. Each writing method commits one transaction of its own; a
    caller that must write several things atomically (a whole turn) opens :meth:`session` and uses
    the static helpers inside one ``session.begin()``.

    ``vault`` (:class:`chatbot.keys.Vault`) encrypts the personal values masked out of messages;
    without one, the installation's key is used (made at the first value that needs it)."""

    def __init__(self, url: str | None = None, vault=None):
        self.url = url or database_url()
        self.engine = make_engine(self.url)
        upgrade(self.engine)
        self._session = sessionmaker(self.engine, expire_on_commit=False)
        self._vault = vault

    @property
    def vault(self):
        if self._vault is None:
            from chatbot.keys import Vault

            self._vault = Vault()
        return self._vault

    def session(self) -> Session:
        return self._session()

    def ensure_tables(self, *tables: Table) -> None:
        """Create the tables other modules define (accounts, audit) when missing, under the schema lock."""
        with _schema_lock(self.engine) as connection:
            Base.metadata.create_all(connection, tables=list(tables))

    # -- writing ---------------------------------------------------------------------------------
    def new_conversation(self, lang: str | None = None) -> str:
        with self.session() as s, s.begin():
            conversation = Conversation(lang=lang)
            s.add(conversation)
        return conversation.id

    def get_or_create(self, s: Session, conversation_id) -> Conversation:
        """The conversation ``conversation_id`` names, locked for the rest of the transaction (another
        process's turn or agent action on it waits for this one to commit), or a NEW one with a fresh
        server id when it names none (unknown, malformed, missing): a client never chooses an id."""
        conversation = self._for_write(s, conversation_id) if valid_conversation_id(conversation_id) else None
        if conversation is None:
            conversation = Conversation(id=new_conversation_id())
            s.add(conversation)
            s.flush()
        return conversation

    def add_message(self, s: Session, conversation: Conversation, role: str, text: str, **fields) -> Message:
        """Mask, then cut to ``STORED_CHARS`` (in this order), seal the revealable values, add the message."""
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}")
        masked = mask(text)
        sealed = [{"kind": v["kind"], "token": self.vault.seal(v["value"])} for v in masked.values] or None
        message = Message(conversation_id=conversation.id, role=role, text=Store.stored_text(masked),
                          sealed=sealed, **fields)
        s.add(message)
        conversation.updated_at = now()
        return message

    @staticmethod
    def stored_text(masked: Masked) -> str:
        """What is stored of a message whose :func:`mask` result is ``masked``."""
        return masked.text[:STORED_CHARS]

    @staticmethod
    def given(s: Session, conversation: Conversation) -> dict:
        """What the conversation's customer messages gave so far (``entities``; a later value wins)."""
        found: dict = {}
        for entities in s.scalars(select(Message.entities).where(Message.conversation_id == conversation.id,
                                                                 Message.role == "customer").order_by(Message.id)):
            found.update(entities or {})
        return found

    @staticmethod
    def last_bot_action(s: Session, conversation: Conversation) -> str | None:
        """The action of the conversation's latest message when the bot wrote it (what the customer's next
        message answers), else None."""
        last = s.scalars(select(Message).where(Message.conversation_id == conversation.id)
                         .order_by(Message.id.desc()).limit(1)).first()
        return last.action if last is not None and last.role == "bot" else None

    def last_bot_action_of(self, conversation_id: str) -> str | None:
        """:meth:`last_bot_action` in a session of its own, read before the turn's transaction."""
        with self.session() as s:
            conversation = s.get(Conversation, conversation_id)
            return None if conversation is None else self.last_bot_action(s, conversation)

    @staticmethod
    def stored_turn(s: Session, conversation: Conversation, client_message_id: str | None) -> list[Message] | None:
        """The customer message with this client id and the messages after it up to the next customer
        message (the bot's reply), when the turn was stored already."""
        if not client_message_id:
            return None
        first = s.scalars(select(Message).where(Message.conversation_id == conversation.id,
                                                Message.client_message_id == client_message_id)).first()
        if first is None:
            return None
        following = s.scalars(select(Message).where(Message.conversation_id == conversation.id, Message.id > first.id)
                              .order_by(Message.id).limit(3)).all()
        reply = []
        for m in following:
            if m.role == "customer":
                break
            reply.append(m)
        return [first, *reply]

    def agent_message(self, conversation_id: str, text: str, lang: str | None = None, audit=None,
                      author: str | None = None, check=None) -> int:
        """An agent's reply (written by ``author``): the conversation is now handled by a person. It
        marks nothing seen: a customer message that arrived after the agent last opened the
        conversation stays unread (opening it marks it seen). ``check(conversation)`` runs under the
        conversation's lock and raises ValueError to refuse (it was closed meanwhile, say);
        ``audit(session)`` writes the audit entry inside the same transaction. Returns the message id."""
        text = (text or "").strip()
        if not text:
            raise ValueError("the reply is empty")
        with self.session() as s, s.begin():
            conversation = self._existing(s, conversation_id, lock=True)
            if check:
                check(conversation)
            message = self.add_message(s, conversation, "agent", text, lang=lang or conversation.lang, author=author)
            conversation.status = "agent"
            if author:
                conversation.agent = author
            s.flush()
            if audit:
                audit(s)
        return message.id

    def set_status(self, conversation_id: str, status: str, note: str | None = None, audit=None,
                   author: str | None = None, check=None) -> bool:
        """The conversation's new status, with a system ``note`` (recording ``author``'s action); a
        person taking over becomes the conversation's agent. ``check(conversation)`` runs under the
        conversation's lock: it raises ValueError to refuse, returns False when there is nothing to do
        (False is returned, nothing written). True when written."""
        if status not in STATUSES:
            raise ValueError(f"unknown status {status!r}")
        with self.session() as s, s.begin():
            conversation = self._existing(s, conversation_id, lock=True)
            if check and check(conversation) is False:
                return False
            conversation.status = status
            if status == "bot":
                conversation.failures = 0
            if status == "agent" and author:
                conversation.agent = author
            if note:
                self.add_message(s, conversation, "system", note, lang=conversation.lang, author=author)
            if audit:
                audit(s)
        return True

    def mark_seen(self, conversation_id, message_id: int) -> None:
        """Staff have seen the conversation up to ``message_id`` (its unread count drops)."""
        with self.session() as s, s.begin():
            conversation = self._existing(s, conversation_id, lock=True)
            conversation.seen_id = max(conversation.seen_id or 0, int(message_id))

    def erase(self, conversation_id: str, audit=None) -> int:
        """Delete one conversation and everything in it (on the customer's request); returns the
        number of messages deleted."""
        with self.session() as s, s.begin():
            conversation = self._existing(s, conversation_id, lock=True)
            count = s.execute(delete(Message).where(Message.conversation_id == conversation.id)).rowcount
            s.delete(conversation)
            if audit:
                audit(s)
        return count

    def purge(self, older_than: timedelta, audit=None) -> int:
        """Delete every conversation whose last activity is older than ``older_than``; returns how many."""
        cutoff = now() - older_than
        with self.session() as s, s.begin():
            # Locked as read (SQLite: the write lock first; PostgreSQL: the rows, skipping those a turn
            # holds): a customer writing meanwhile either waits and then starts a new conversation, or
            # keeps theirs, never has it deleted after answering.
            sqlite_write_lock(s, Conversation.__table__)
            ids = s.scalars(select(Conversation.id).where(Conversation.updated_at < cutoff)
                            .with_for_update(skip_locked=True)).all()
            for chunk in range(0, len(ids), 500):
                part = ids[chunk:chunk + 500]
                s.execute(delete(Message).where(Message.conversation_id.in_(part)))
                s.execute(delete(Conversation).where(Conversation.id.in_(part)))
            if audit:
                audit(s, len(ids))
        return len(ids)

    # -- reading ---------------------------------------------------------------------------------
    def conversation(self, conversation_id) -> dict | None:
        if not valid_conversation_id(conversation_id, legacy=True):
            return None
        with self.session() as s:
            c = s.get(Conversation, conversation_id)
            return None if c is None else self._summary(s, c)

    def messages(self, conversation_id, after_id: int = 0) -> list[dict]:
        if not valid_conversation_id(conversation_id, legacy=True):
            return []
        with self.session() as s:
            rows = s.scalars(select(Message).where(Message.conversation_id == conversation_id, Message.id > after_id)
                             .order_by(Message.id)).all()
            return [self._message(m) for m in rows]

    def reveal(self, conversation_id: str, message_id: int, index: int) -> dict:
        """``{"kind", "value"}`` of the ``#index`` value of one message of this conversation."""
        with self.session() as s:
            message = s.get(Message, int(message_id))
            if message is None or message.conversation_id != conversation_id or not message.sealed:
                raise ValueError("no such value in this conversation")
            if not 1 <= int(index) <= len(message.sealed):
                raise ValueError("no such value in this conversation")
            item = message.sealed[int(index) - 1]
        return {"kind": item["kind"], "value": self.vault.open(item["token"])}

    def queue(self, limit: int = 200) -> list[dict]:
        """Conversations waiting for an agent, oldest hand-off first (at most ``limit``)."""
        with self.session() as s:
            rows = s.scalars(select(Conversation).where(Conversation.status == "waiting")
                             .order_by(Conversation.handoff_at, Conversation.created_at).limit(limit)).all()
            return [self._summary(s, c) for c in rows]

    def count_waiting(self) -> int:
        with self.session() as s:
            return s.scalar(select(func.count()).select_from(Conversation).where(Conversation.status == "waiting"))

    def recent(self, limit: int = 20) -> list[dict]:
        with self.session() as s:
            rows = s.scalars(select(Conversation).order_by(Conversation.updated_at.desc()).limit(limit)).all()
            return [self._summary(s, c) for c in rows]

    def with_status(self, status: str, limit: int = 50) -> list[dict]:
        """Conversations in one status, most recently active first."""
        with self.session() as s:
            rows = s.scalars(select(Conversation).where(Conversation.status == status)
                             .order_by(Conversation.updated_at.desc()).limit(limit)).all()
            return [self._summary(s, c) for c in rows]

    def out_of_scope(self, since: datetime, limit: int = 200) -> dict:
        """Customer messages the bot found out of scope since ``since``: ``{"per_day": [(YYYY-MM-DD,
        count)] oldest first, "messages": [the newest ``limit`` messages, with their conversation_id]}``."""
        found = (Message.role == "customer", Message.intent == OUT_OF_SCOPE, Message.created_at >= since,
                 or_(Message.action.is_(None), Message.action.not_in(("waiting", "agent"))))  # not what they told a person
        with self.session() as s:
            days: dict[str, int] = {}
            for moment in s.scalars(select(Message.created_at).where(*found)):
                day = _utc(moment).date().isoformat()
                days[day] = days.get(day, 0) + 1
            rows = s.scalars(select(Message).where(*found).order_by(Message.id.desc()).limit(limit)).all()
            messages = [{**self._message(m), "conversation_id": m.conversation_id} for m in rows]
        return {"per_day": sorted(days.items()), "messages": messages}

    def count_messages(self) -> int:
        with self.session() as s:
            return s.scalar(select(func.count(Message.id)))

    @staticmethod
    def _for_write(s: Session, conversation_id: str) -> Conversation | None:
        """The conversation, read fresh and locked until commit (SQLite: the write lock taken first,
        :func:`sqlite_write_lock`; PostgreSQL: its row), or None."""
        sqlite_write_lock(s, Conversation.__table__)
        return s.get(Conversation, conversation_id, with_for_update=True, populate_existing=True)

    @staticmethod
    def _existing(s: Session, conversation_id, lock: bool = False) -> Conversation:
        """The conversation (locked until commit with ``lock``, as writers need), else ValueError."""
        conversation = None
        if valid_conversation_id(conversation_id, legacy=True):
            conversation = Store._for_write(s, conversation_id) if lock else s.get(Conversation, conversation_id)
        if conversation is None:
            raise ValueError("no such conversation")
        return conversation

    @staticmethod
    def _message(m: Message) -> dict:
        return {"id": m.id, "role": m.role, "text": m.text, "lang": m.lang, "intent": m.intent,
                "confidence": m.confidence, "top": m.top, "action": m.action, "model_version": m.model_version,
                "created_at": _utc(m.created_at).isoformat() if m.created_at else None,
                "revealable": [{"index": i, "kind": v["kind"]} for i, v in enumerate(m.sealed or [], 1)],
                "author": m.author, "choices": m.choices, "entities": m.entities}

    @staticmethod
    def _summary(s: Session, c: Conversation) -> dict:
        last = s.scalars(select(Message).where(Message.conversation_id == c.id, Message.role == "customer")
                         .order_by(Message.id.desc()).limit(1)).first()
        latest = s.scalars(select(Message).where(Message.conversation_id == c.id)
                           .order_by(Message.id.desc()).limit(1)).first()
        unread = s.scalar(select(func.count(Message.id)).where(
            Message.conversation_id == c.id, Message.role == "customer", Message.id > (c.seen_id or 0)))
        iso = lambda moment: _utc(moment).isoformat() if moment else None  # noqa: E731
        return {"id": c.id, "status": c.status, "lang": c.lang, "failures": c.failures,
                "created_at": iso(c.created_at), "updated_at": iso(c.updated_at), "handoff_at": iso(c.handoff_at),
                "handoff_reason": c.handoff_reason,
                "last_customer_message": last.text if last else None,
                "last_customer_at": iso(last.created_at) if last else None,
                "last_message_id": latest.id if latest else 0, "last_role": latest.role if latest else None,
                "agent": c.agent, "unread": unread or 0}
