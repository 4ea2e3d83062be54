import sqlite3
from datetime import timedelta

import pytest

from chatbot.keys import Vault
from chatbot.settings import STORED_CHARS
from chatbot.pii import mask_sensitive
from chatbot.store import Conversation, Store, now, valid_conversation_id


@pytest.fixture()
def store(tmp_path):
    return Store(f"sqlite:///{tmp_path / 's.db'}", vault=Vault("test key, not secret"))


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
    with sqlite3.connect(store.url.removeprefix("sqlite:///")) as raw:
        dump = "\n".join(str(row) for row in raw.iterdump())
    assert "jan@example.nl" not in dump and "12 34 56" not in dump and "4111" not in dump
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


def test_a_database_from_before_gets_the_new_columns(tmp_path):
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as raw:
        raw.executescript("""
            create table conversations (id varchar(36) primary key, created_at datetime, updated_at datetime,
              lang varchar(8), status varchar(10), failures integer, handoff_at datetime, handoff_reason varchar(40));
            create table messages (id integer primary key autoincrement, conversation_id varchar(36), created_at
              datetime, role varchar(10), text text, lang varchar(8), intent varchar(64), confidence float, top json,
              action varchar(20), model_version varchar(64));
            insert into conversations values ('123e4567-e89b-42d3-a456-426614174000', null, null, 'fr', 'bot', 0,
              null, null);
            insert into messages (conversation_id, role, text) values ('123e4567-e89b-42d3-a456-426614174000',
              'customer', 'bonjour');
        """)
    store = Store(f"sqlite:///{path}")
    old = "123e4567-e89b-42d3-a456-426614174000"
    assert [m["text"] for m in store.messages(old)] == ["bonjour"]
    store.agent_message(old, "Bonjour, ici Marie", author="marie")  # the new columns of both tables work
    assert store.conversation(old)["agent"] == "marie" and store.messages(old)[-1]["author"] == "marie"


def test_turns_survive_an_engine_dropped_without_closing(tmp_path):
    url = f"sqlite:///{tmp_path / 'c.db'}"
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
    # And another process (plain sqlite3) sees the same committed rows.
    with sqlite3.connect(tmp_path / "c.db") as raw:
        assert raw.execute("select count(*) from messages").fetchone()[0] == 10


def test_queue_is_oldest_handoff_first_and_agent_flow(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'q.db'}")
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
    store.agent_message(cid, "Bonjour !", author="paul")  # answering counts as having seen it
    summary = store.conversation(cid)
    assert summary["unread"] == 0 and summary["agent"] == "paul" and summary["last_role"] == "agent"
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
