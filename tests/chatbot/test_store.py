import sqlite3

import pytest

from chatbot.store import Store, mask_sensitive


def test_masks_cards_ibans_and_emails():
    text = ("card 4111 1111 1111 1111, iban DE89 3704 0044 0532 0130 00, mail jan.de.vries@example.nl, "
            "order 1234567890123")
    masked = mask_sensitive(text)
    assert "4111 1111" not in masked and "[card ****1111]" in masked
    assert "3704" not in masked and "[IBAN DE…00]" in masked
    assert "example.nl" not in masked and "[email]" in masked
    assert "1234567890123" in masked  # not a valid card number (Luhn): an order id stays


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
