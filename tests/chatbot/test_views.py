import json

import pytest

from chatbot import views
from chatbot.versions import DEFAULT_VERSION, Registry


def message(i, role, text, **kw):
    base = {"id": i, "role": role, "text": text, "lang": "fr", "intent": None, "confidence": None, "top": None,
            "action": None, "model_version": None, "created_at": "2026-11-22T10:00:00+00:00"}
    return {**base, **kw}


def test_chat_history_shows_meta_only_when_asked():
    messages = [message(1, "customer", "où est mon colis", intent="track_order", confidence=0.91, action="answer"),
                message(2, "bot", "Votre colis…"), message(3, "agent", "Bonjour, ici Marie"),
                message(4, "system", "Un conseiller a rejoint la conversation")]
    with_meta = views.chat_history(messages, "Bienvenue", show_meta=True)
    assert [m["role"] for m in with_meta] == ["assistant", "user", "assistant", "assistant", "assistant"]
    assert "fr · track_order · 91% · answer" in with_meta[2]["content"]
    assert "Marie" in with_meta[3]["content"] and with_meta[4]["content"].startswith("*")
    without = views.chat_history(messages, "Bienvenue", show_meta=False)
    assert without[2]["content"] == "Votre colis…"


def test_tables_and_top_intents():
    row = views.queue_rows([{"id": "abc", "status": "waiting", "lang": "nl", "handoff_at": "2026-11-22T10:00:00+00:00",
                             "updated_at": None, "handoff_reason": "complaint", "last_customer_message": "slecht"}])[0]
    assert row[-1] == "abc" and len(row) == len(views.QUEUE_COLUMNS)
    top = {"top": [{"intent": "complaint", "confidence": 0.8}, {"intent": "review", "confidence": 0.1}]}
    assert views.top_intents(top) == {"complaint": 0.8, "review": 0.1} and views.top_intents(None) == {}


def test_registry_pointer_promotion_rollback_and_summaries(tmp_path, tiny_model):
    registry = Registry(tmp_path, tiny_model)
    assert registry.names() == [DEFAULT_VERSION] and registry.live == DEFAULT_VERSION
    built = registry.folder("v1")
    built.mkdir(parents=True)
    (built / "model.json").write_text((tiny_model / "model.json").read_text())
    (built / "evaluation.json").write_text(json.dumps({"summary": {"accuracy": 0.5, "parameters": 10, "ratio": 0.5,
                                                                    "method": "plain", "targets": "attn"}}))
    registry.set_live("v1")
    assert registry.live == "v1" and registry.previous == DEFAULT_VERSION
    rows = {r["name"]: r for r in registry.summaries()}
    assert rows["v1"]["live"] and rows["v1"]["accuracy"] == 0.5
    with pytest.raises(ValueError):
        registry.delete("v1")
    with pytest.raises(ValueError):
        registry.folder("../escape")
    registry.pointer.write_text("{broken")  # a damaged pointer falls back to the shipped default
    assert registry.live == DEFAULT_VERSION
    table = views.version_rows(registry.summaries())
    assert len(table) == 2 and all(len(r) == len(views.VERSION_COLUMNS) for r in table)


def test_audit_users_and_revealable_values():
    from chatbot.views import audit_rows, revealable_choices, user_rows

    rows = audit_rows([{"at": "2026-01-02T03:04:05+00:00", "actor": "marie", "action": "reveal", "target": "c1",
                        "detail": "message 4 value #1 (email)", "client": "10.0.0.1"}])
    assert rows == [["2026-01-02 03:04:05", "marie", "reveal", "c1", "message 4 value #1 (email)", "10.0.0.1"]]
    assert user_rows([{"name": "a", "role": "agent", "disabled": False, "locked_until": "x", "last_sign_in": None}]) \
        == [["a", "agent", "locked", ""]]
    messages = [{"id": 4, "role": "customer", "revealable": [{"index": 1, "kind": "email"}, {"index": 2, "kind": "phone"}]},
                {"id": 5, "role": "bot", "revealable": []}]
    assert revealable_choices(messages) == [("message 4 (customer) · email #1", "4:1"),
                                            ("message 4 (customer) · phone #2", "4:2")]
