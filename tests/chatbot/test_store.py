"""The conversation store, every test on SQLite and on a real PostgreSQL server (``database_url`` in
tests/conftest.py); the tests at the end check what several app processes sharing one database need."""

import threading
import time
from datetime import timedelta

import pytest
from sqlalchemy import create_engine, inspect, text

from chatbot.keys import Vault
from chatbot.settings import STORED_CHARS
from chatbot.pii import mask_sensitive
from chatbot.store import SCHEMA_VERSION, Conversation, SchemaError, Store, now, upgrade, valid_conversation_id


@pytest.fixture()
def store(database_url):
    return Store(database_url, vault=Vault("test key, not secret"))


def dump(url: str) -> str:
    """Every row of every table, as text, read through a connection of its own."""
    engine = create_engine(url)
    try:
        with engine.connect() as raw:
            return "\n".join(str(row) for table in inspect(raw).get_table_names()
                             for row in raw.execute(text(f"select * from {table}")))
    finally:
        engine.dispose()


def test_masks_cards_ibans_and_emails():
    text = ("card 4111 1111 1111 1111, iban DE89 3704 0044 0532 0130 00, mail jan.de.vries@example.nl, "
            "order 1234567890123")
    masked = mask_sensitive(text)
    assert "4111 1111" not in masked and "[card ****1111]" in masked
    assert "3704" not in masked and "[IBAN DE…00 #2]" in masked
    assert "example.nl" not in masked and "[email #1]" in masked
    assert "1234567890123" in masked  # not a valid card number (Luhn): an order id stays


def test_conversation_ids_are_server_made_and_never_chosen_by_a_client(store):
    made = store.new_conversation()
    assert valid_conversation_id(made) and len(made) == 32  # token_urlsafe(24): 192 random bits
    assert len({store.new_conversation() for _ in range(50)}) == 50
    for claimed in ("my-own-id", "x" * 32 + "y", "../../etc/passwd", "", None, 42, ["a"], "A" * 32,
                    "123e4567-e89b-42d3-a456-426614174000"):
        with store.session() as s, s.begin():
            conversation = store.get_or_create(s, claimed)
        assert conversation.id != claimed and valid_conversation_id(conversation.id)
    with store.session() as s, s.begin():
        assert store.get_or_create(s, made).id == made  # a known id continues its conversation
    assert store.conversation("'; drop table messages; --") is None and store.messages(12) == []


def test_the_last_bot_action_is_what_the_next_message_answers(store):
    with store.session() as s, s.begin():
        conversation = store.get_or_create(s, None)
        assert store.last_bot_action(s, conversation) is None
        store.add_message(s, conversation, "customer", "what's the weather?", action="out_of_scope")
        assert store.last_bot_action(s, conversation) is None  # the customer spoke last
        store.add_message(s, conversation, "bot", "Sorry, that's not something I can help with", action="out_of_scope")
        assert store.last_bot_action(s, conversation) == "out_of_scope"
        cid = conversation.id
    store.agent_message(cid, "Hello, Marie here")
    with store.session() as s, s.begin():
        assert store.last_bot_action(s, store.get_or_create(s, cid)) is None  # a person spoke since


def test_values_are_masked_before_the_cut_and_kept_encrypted(store):
    cid = store.new_conversation()
    long = "x" * (STORED_CHARS - 8) + " 4111 1111 1111 1111 and mail jan@example.nl"
    with store.session() as s, s.begin():
        conversation = store.get_or_create(s, cid)
        store.add_message(s, conversation, "customer", long)
        store.add_message(s, conversation, "customer", "mail jan@example.nl or call +33 6 12 34 56 78")
    first, second = store.messages(cid)
    assert len(first["text"]) == STORED_CHARS and "4111" not in first["text"] and "[card" in first["text"]
    assert second["text"] == "mail [email #1] or call [phone #2]"
    assert second["revealable"] == [{"index": 1, "kind": "email"}, {"index": 2, "kind": "phone"}]
    stored = dump(store.url)
    assert "mail [email #1]" in stored  # the dump sees the messages
    assert "jan@example.nl" not in stored and "12 34 56" not in stored and "4111" not in stored
    assert store.reveal(cid, second["id"], 2) == {"kind": "phone", "value": "+33 6 12 34 56 78"}
    with pytest.raises(ValueError):
        store.reveal(cid, second["id"], 3)
    other = store.new_conversation()
    with pytest.raises(ValueError):
        store.reveal(other, second["id"], 1)  # one conversation's values only through its own id


def test_erase_and_purge(store):
    old, recent = store.new_conversation(), store.new_conversation()
    for cid in (old, recent):
        with store.session() as s, s.begin():
            store.add_message(s, store.get_or_create(s, cid), "customer", f"hello from {cid}")
    with store.session() as s, s.begin():
        s.get(Conversation, old).updated_at = now() - timedelta(days=91)
    audited = []
    assert store.purge(timedelta(days=90), audit=lambda s, n: audited.append(n)) == 1 and audited == [1]
    assert store.conversation(old) is None and store.messages(old) == [] and store.conversation(recent)
    assert store.erase(recent) == 1 and store.conversation(recent) is None and store.count_messages() == 0
    with pytest.raises(ValueError):
        store.erase(recent)


OLD_SCHEMA = {  # the tables as the first release made them (no client message ids, no sealed values)
    "sqlite": "id integer primary key autoincrement",
    "postgresql": "id serial primary key",
}


def test_a_database_from_before_gets_the_new_columns(database_url):
    engine = create_engine(database_url)
    with engine.begin() as raw:
        raw.execute(text("""create table conversations (id varchar(36) primary key, created_at timestamp,
              updated_at timestamp, lang varchar(8), status varchar(10), failures integer, handoff_at timestamp,
              handoff_reason varchar(40))"""))
        raw.execute(text(f"""create table messages ({OLD_SCHEMA[engine.dialect.name]}, conversation_id varchar(36),
              created_at timestamp, role varchar(10), text text, lang varchar(8), intent varchar(64),
              confidence float, top json, action varchar(20), model_version varchar(64))"""))
        raw.execute(text("""insert into conversations values ('123e4567-e89b-42d3-a456-426614174000', null, null,
              'fr', 'bot', 0, null, null)"""))
        raw.execute(text("""insert into messages (conversation_id, role, text) values
              ('123e4567-e89b-42d3-a456-426614174000', 'customer', 'bonjour')"""))
    engine.dispose()
    store = Store(database_url)
    assert [m["text"] for m in store.messages("123e4567-e89b-42d3-a456-426614174000")] == ["bonjour"]
    with store.engine.connect() as raw:
        assert {"client_message_id", "sealed", "author", "choices", "entities"} <= {
            c["name"] for c in inspect(raw).get_columns("messages")}
        assert {"agent", "seen_id"} <= {c["name"] for c in inspect(raw).get_columns("conversations")}
        assert raw.execute(text("select version from schema_version")).scalars().all() == [SCHEMA_VERSION]
    assert upgrade(store.engine) == (SCHEMA_VERSION, SCHEMA_VERSION)  # nothing left to do
    old = "123e4567-e89b-42d3-a456-426614174000"
    store.agent_message(old, "Bonjour, ici Marie", author="marie")  # the new columns of both tables work
    assert store.conversation(old)["agent"] == "marie" and store.messages(old)[-1]["author"] == "marie"
    with store.session() as s, s.begin():  # the unique index the upgrade made: a retried turn is stored once
        conversation = store.get_or_create(s, store.new_conversation())
        store.add_message(s, conversation, "customer", "once", client_message_id="m-1")
    with pytest.raises(Exception, match="(?i)unique"):
        with store.session() as s, s.begin():
            store.add_message(s, store.get_or_create(s, conversation.id), "customer", "twice",
                              client_message_id="m-1")


def test_a_database_newer_than_the_code_is_refused(database_url):
    store = Store(database_url)
    with store.engine.begin() as raw:
        raw.execute(text("update schema_version set version = :v"), {"v": SCHEMA_VERSION + 1})
    with pytest.raises(SchemaError, match="newer"):
        Store(database_url)


def test_turns_survive_an_engine_dropped_without_closing(database_url):
    url = database_url
    store = Store(url)
    ids = []
    for i in range(5):
        with store.session() as s, s.begin():
            conversation = store.get_or_create(s, None)
            store.add_message(s, conversation, "customer", f"message {i}", lang="fr")
            store.add_message(s, conversation, "bot", f"reply {i}", lang="fr")
            ids.append(conversation.id)
    # A turn that fails half-way is rolled back entirely.
    with pytest.raises(RuntimeError):
        with store.session() as s, s.begin():
            conversation = store.get_or_create(s, ids[0])
            store.add_message(s, conversation, "customer", "half a turn")
            raise RuntimeError("crash in the middle of a turn")
    del store  # no close(), no dispose(): as if the process died
    reopened = Store(url)
    for i, cid in enumerate(ids):
        assert [m["text"] for m in reopened.messages(cid)] == [f"message {i}", f"reply {i}"]
    assert reopened.count_messages() == 10
    # And another connection of its own sees the same committed rows.
    assert dump(url).count("message ") == 5 and "half a turn" not in dump(url)


def test_queue_is_oldest_handoff_first_and_agent_flow(database_url):
    store = Store(database_url)
    first, second = store.new_conversation("nl"), store.new_conversation("fr")
    store.set_status(second, "waiting")
    store.set_status(first, "waiting")
    with store.session() as s, s.begin():
        from chatbot.store import Conversation, now
        from datetime import timedelta

        s.get(Conversation, second).handoff_at = now() - timedelta(minutes=5)
        s.get(Conversation, first).handoff_at = now()
    assert [c["id"] for c in store.queue()] == [second, first]
    store.agent_message(second, "Bonjour, je suis Marie.")
    assert store.conversation(second)["status"] == "agent"
    assert [c["id"] for c in store.queue()] == [first]
    with pytest.raises(ValueError):
        store.agent_message(first, "   ")
    with pytest.raises(ValueError):
        store.set_status(first, "sleeping")


# --- several app processes on one PostgreSQL database ----------------------------------------------
# Each "process" is a Store of its own (its own engine and connections, nothing shared in Python), so
# whatever keeps them correct has to be in the database. Threads stand in for processes: the locks
# under test are the server's, which cannot tell the difference.
def run_together(jobs: list) -> list:
    """Start every job at the same moment in a thread of its own; their results, or their errors."""
    barrier, results = threading.Barrier(len(jobs)), [None] * len(jobs)

    def run(i, job):
        barrier.wait()
        try:
            results[i] = job()
        except Exception as err:  # noqa: BLE001 - reported by the test
            results[i] = err

    threads = [threading.Thread(target=run, args=(i, job)) for i, job in enumerate(jobs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    return results


def test_turns_of_one_conversation_are_serialised_across_processes(postgres_url):
    """Four processes write turns to one conversation at the same time, each turn slow between its
    customer message and its reply: the turns never interleave and no update of the conversation is
    lost (the row lock of ``get_or_create``)."""
    stores = [Store(postgres_url, vault=Vault("test key, not secret")) for _ in range(4)]
    cid = stores[0].new_conversation("en")

    def turns(p: int):
        for t in range(5):
            with stores[p].session() as s, s.begin():
                conversation = stores[p].get_or_create(s, cid)
                failures = conversation.failures
                stores[p].add_message(s, conversation, "customer", f"p{p} t{t}")
                time.sleep(0.02)  # the other processes' turns arrive meanwhile
                stores[p].add_message(s, conversation, "bot", f"reply to p{p} t{t}")
                conversation.failures = failures + 1
        return True

    assert run_together([lambda p=p: turns(p) for p in range(4)]) == [True] * 4
    texts = [m["text"] for m in stores[0].messages(cid)]
    assert len(texts) == 40 and len(set(texts)) == 40
    assert texts[1::2] == [f"reply to {t}" for t in texts[0::2]]  # every reply right after its message
    assert stores[0].conversation(cid)["failures"] == 20  # no lost update


def test_agent_actions_and_customer_turns_from_different_processes(postgres_url):
    """An agent (one process) takes over while a customer's turn (another process) is being stored:
    the take-over waits for the turn, and the next turn sees the agent."""
    customer_side, agent_side = Store(postgres_url), Store(postgres_url)
    cid = customer_side.new_conversation("fr")
    in_turn = threading.Event()

    def customer_turn():
        with customer_side.session() as s, s.begin():
            conversation = customer_side.get_or_create(s, cid)
            customer_side.add_message(s, conversation, "customer", "je veux un humain")
            conversation.status = "waiting"
            in_turn.set()
            time.sleep(0.3)
            customer_side.add_message(s, conversation, "bot", "un conseiller arrive")

    def agent():
        in_turn.wait(10)
        agent_side.set_status(cid, "agent", "Marie a rejoint la conversation")
        agent_side.agent_message(cid, "Bonjour, ici Marie")

    assert run_together([customer_turn, agent]) == [None, None]
    assert [m["role"] for m in agent_side.messages(cid)] == ["customer", "bot", "system", "agent"]
    assert customer_side.conversation(cid)["status"] == "agent"  # the agent's status, not the turn's "waiting"


def test_processes_starting_together_create_the_schema_once(postgres_url):
    """Eight app processes start on an empty database at once: each gets a working store and
    the schema is made once (the advisory lock around :func:`chatbot.store.upgrade`)."""
    from chatbot.accounts import Accounts

    def start():
        store = Store(postgres_url)
        Accounts(store)  # its tables and the audit trail's, too
        return store.new_conversation()

    results = run_together([start] * 8)
    assert all(valid_conversation_id(r) for r in results), results
    with create_engine(postgres_url).connect() as raw:
        assert raw.execute(text("select version from schema_version")).scalars().all() == [SCHEMA_VERSION]
        assert raw.execute(text("select count(*) from conversations")).scalar() == 8


def test_the_migrate_command_creates_then_finds_nothing_to_do(database_url, capsys):
    from chatbot.__main__ import main

    assert main(["migrate", "--database", database_url]) == 0
    assert f"version 0 → {SCHEMA_VERSION}" in capsys.readouterr().out
    assert main(["migrate", "--database", database_url]) == 0
    assert "(up to date)" in capsys.readouterr().out
    with create_engine(database_url).connect() as raw:
        assert {"conversations", "messages", "staff_accounts", "audit_log", "schema_version"} <= set(
            inspect(raw).get_table_names())


def test_unread_customer_messages_and_who_handles_a_conversation(store):
    cid = store.new_conversation("fr")
    with store.session() as s, s.begin():
        conversation = store.get_or_create(s, cid)
        store.add_message(s, conversation, "customer", "où est ma commande 48213", entities={"order": "48213"})
        store.add_message(s, conversation, "bot", "Lequel ?", choices=[{"intent": "track_order", "label": "Suivi"}])
        store.add_message(s, conversation, "customer", "allô ?")
    summary = store.conversation(cid)
    assert summary["unread"] == 2 and summary["last_role"] == "customer" and summary["agent"] is None
    first, bot, _ = store.messages(cid)
    assert first["entities"] == {"order": "48213"} and bot["choices"][0]["intent"] == "track_order"
    store.mark_seen(cid, first["id"])
    assert store.conversation(cid)["unread"] == 1
    store.set_status(cid, "agent", "Marie a rejoint la conversation", author="marie")
    assert store.messages(cid)[-1]["author"] == "marie" and store.conversation(cid)["agent"] == "marie"
    store.agent_message(cid, "Bonjour !", author="paul")  # a reply does not mark "allô ?" seen: it may have
    summary = store.conversation(cid)                      # arrived after paul last opened the conversation
    assert summary["unread"] == 1 and summary["agent"] == "paul" and summary["last_role"] == "agent"
    store.mark_seen(cid, store.messages(cid)[-1]["id"])
    assert store.conversation(cid)["unread"] == 0
    assert [c["id"] for c in store.with_status("agent")] == [cid] and store.with_status("waiting") == []
    with pytest.raises(ValueError):
        store.mark_seen("no-such-conversation", 1)


def test_out_of_scope_messages_per_day(store):
    cid = store.new_conversation("en")
    with store.session() as s, s.begin():
        conversation = store.get_or_create(s, cid)
        for text, days_ago in (("tell me a joke", 0), ("capital of France?", 0), ("do you sell bikes", 2),
                               ("very old one", 40)):
            message = store.add_message(s, conversation, "customer", text, intent="out_of_scope")
            message.created_at = now() - timedelta(days=days_ago)
        store.add_message(s, conversation, "customer", "where is my parcel", intent="track_order")
        store.add_message(s, conversation, "bot", "I can help with orders…", intent="out_of_scope")
    found = store.out_of_scope(now() - timedelta(days=14))
    today, two_days_ago = now().date().isoformat(), (now() - timedelta(days=2)).date().isoformat()
    assert found["per_day"] == [(two_days_ago, 1), (today, 2)]
    assert [m["text"] for m in found["messages"]] == ["do you sell bikes", "capital of France?", "tell me a joke"]
    assert all(m["conversation_id"] == cid for m in found["messages"])
    assert len(store.out_of_scope(now() - timedelta(days=14), limit=1)["messages"]) == 1


def test_a_sqlite_writer_waits_for_the_write_lock_longer_than_pysqlite_would(tmp_path):
    """A burst of turns on a small machine queues writers; pysqlite's 5 s default failed some turns
    ("database is locked"), so the store's connections wait SQLITE_BUSY_S, with WAL for readers."""
    from chatbot.store import SQLITE_BUSY_S

    store = Store(f"sqlite:///{tmp_path / 'busy.db'}")
    with store.engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() == int(SQLITE_BUSY_S * 1000) > 5000
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
