import json
from datetime import datetime, timezone

import pytest

from chatbot import views
from chatbot.versions import DEFAULT_VERSION, Registry, _umask


def message(i, role, text, **kw):
    base = {"id": i, "role": role, "text": text, "lang": "fr", "intent": None, "confidence": None, "top": None,
            "action": None, "model_version": None, "created_at": "2026-11-22T10:00:00+00:00"}
    return {**base, **kw}


WORDS = {"assistant": "Assistant virtuel", "agent": "Service client", "waiting": "Vous êtes dans la file",
         "closed": "Conversation close", "something_else": "Autre chose"}
NOW = datetime(2026, 11, 22, 10, 30, tzinfo=timezone.utc)


def test_the_customer_sees_text_as_text_roles_and_the_agent_s_name_never_internal_labels():
    messages = [message(1, "customer", "<b>gras</b> [lien](http://evil) <img src=x onerror=alert(1)>",
                        intent="track_order", confidence=0.91, action="answer", entities={"order": "48213"}),
                message(2, "bot", "Votre colis…", action="answer"),
                message(3, "system", "Un conseiller a rejoint la conversation", author="marie"),
                message(4, "agent", "Bonjour, ici Marie <script>x()</script>", author="marie.dupont")]
    page = views.customer_chat({"status": "agent", "messages": messages, "choices": []}, "Bienvenue", WORDS)
    assert "<b>gras</b>" not in page and "&lt;b&gt;gras&lt;/b&gt;" in page and "<img" not in page
    assert "<script>" not in page and "href" not in page  # nothing a person wrote becomes markup or a link
    assert page.count('data-role="customer"') == 1 and page.count('data-role="bot"') == 2  # greeting + reply
    assert 'data-role="agent"' in page and "Marie Dupont · Service client" in page
    assert 'class="cb-note" data-role="system"' in page
    for internal in ("track_order", "0.91", "91%", "answer", "48213", "marie.dupont"):
        assert internal not in page, internal


def test_choices_are_buttons_and_the_state_is_told():
    choices = [{"intent": "track_order", "label": "Suivre une commande"}, {"intent": "something_else",
                                                                            "label": "Autre chose"}]
    asking = views.customer_chat({"status": "bot", "messages": [message(1, "bot", "Lequel ?")], "choices": choices},
                                 "Bienvenue", WORDS)
    assert asking.count('class="cb-chip"') == 2 and 'data-pick="something_else"' in asking
    waiting = views.customer_chat({"status": "waiting", "messages": [], "choices": []}, "Bienvenue", WORDS)
    assert 'data-banner="waiting"' in waiting and "Vous êtes dans la file" in waiting
    assert 'data-banner="closed"' in views.customer_chat({"status": "closed", "messages": []}, "Bienvenue", WORDS)
    sending = views.customer_chat({"status": "bot", "messages": [], "choices": choices}, "Bienvenue", WORDS,
                                  pending="où est <mon> colis")
    assert "cb-typing" in sending and "cb-chip" not in sending and "où est &lt;mon&gt; colis" in sending
    assert views.chat_signature({"messages": [message(7, "bot", "x")], "status": "bot"}) == "7:bot"


def summary(cid, status, **kw):
    base = {"id": cid, "status": status, "lang": "nl", "handoff_at": None, "updated_at": "2026-11-22T10:20:00+00:00",
            "handoff_reason": None, "last_customer_message": "hallo", "last_customer_at": None, "unread": 0,
            "agent": None, "last_message_id": 3}
    return {**base, **kw}


def test_the_inbox_puts_waiting_first_with_reason_wait_flag_preview_and_unread():
    boxes = {"waiting": [summary("w1", "waiting", handoff_reason="complaint", handoff_at="2026-11-22T10:26:00+00:00",
                                 unread=2, last_customer_message="<i>slecht</i> " + "x" * 200)],
             "agent": [summary("a1", "agent", agent="paul", unread=1)],
             "recent": [summary("r1", "bot", lang="xx", unread=3)]}
    page = views.inbox(boxes, selected="a1", now=NOW)
    assert page.index('data-section="waiting"') < page.index('data-section="agent"') < page.index('data-section="recent"')
    assert 'data-waiting="1"' in page and 'class="ib-badge" data-count="1"' in page
    assert "Complaint" in page and "waiting 4 min" in page and "flag-nl" in page and "With Paul" in page
    assert "&lt;i&gt;slecht&lt;/i&gt;" in page and "x" * 91 not in page  # escaped, cut
    assert page.count("ib-new") == 2 and "2 new" in page and "3 new" not in page  # the bot's are nobody's to read
    assert 'class="ib-row ib-unread ib-selected" data-id="a1"' in page and 'data-pick="w1"' in page
    assert views.flag("xx").count("flag-none") == 1 and "?" in views.flag(None)
    assert views.inbox_signature(boxes) != views.inbox_signature({**boxes, "agent": [summary("a1", "agent", unread=2)]})


def test_the_agent_sees_the_conversation_as_a_chat_with_what_the_bot_understood():
    messages = [message(1, "customer", "où est ma commande <48213>", intent="track_order", confidence=0.934,
                        action="answer", entities={"order": "48213"}, top=[{"intent": "track_order", "confidence": 0.934}]),
                message(2, "bot", "Votre colis…", action="answer"),
                message(3, "customer", "raconte une blague", intent="out_of_scope", confidence=0.8),
                message(4, "agent", "Bonjour", author="marie")]
    page = views.conversation(messages)
    assert 'data-message="1"' in page and 'data-pick="1"' in page and 'data-pick="2"' not in page
    assert "track_order" in page and "0.93" in page and "order: 48213" in page and "flag-fr" in page
    assert "&lt;48213&gt;" in page and 'class="cv-oos"' in page and "Marie (agent)" in page
    assert views.top_intents(views.latest_customer(messages)) == {} and views.top_intents(messages[0]) == {
        "track_order": 0.934}
    head = views.conversation_header({"status": "waiting", "lang": "fr", "handoff_reason": "contact_human_agent",
                                      "agent": None, "created_at": "2026-11-22T10:00:00+00:00"}, now=NOW)
    assert "waiting for an agent" in head and "Asked for a person" in head and "30 min ago" in head


def test_out_of_scope_report_and_builds_list():
    found = {"days": 3, "total": 3, "per_day": [("2026-11-20", 0), ("2026-11-21", 1), ("2026-11-22", 2)],
             "messages": [message(9, "customer", "tell me a <joke>", conversation_id="c9")]}
    page = views.out_of_scope(found)
    assert 'data-day="2026-11-22" data-count="2"' in page and "<b>3</b>" in page and "&lt;joke&gt;" in page
    assert 'data-pick="c9"' in page
    job = {"name": "v1-plain", "params": {"ratio": 0.5, "method": "plain", "targets": "attn", "epochs": 1},
           "started_by": "root", "status": "running", "progress": 0.42, "stage": "healing", "error": None,
           "started": NOW.timestamp() - 90, "finished": None, "cancelling": False, "accuracy": None, "parameters": None}
    done = {**job, "name": "v0", "status": "done", "progress": 1.0, "accuracy": 0.9512, "parameters": 2.5e8}
    page = views.jobs([job, done], now=NOW)
    assert page.count('class="jb-cancel"') == 1 and 'data-pick="v1-plain"' in page and "42%" in page and "healing" in page
    assert "by root, 1 min ago" in page and "accuracy 0.9512, 250.0 M parameters" in page
    cancelling = views.jobs([{**job, "cancelling": True}], now=NOW)
    assert 'class="jb-cancel"' not in cancelling and 'data-state="cancelling"' in cancelling
    assert views.jobs_signature([job]) != views.jobs_signature([{**job, "progress": 0.5}])
    souped = views.jobs([{**job, "params": {"soup": ["v1-<b>", "v2"]}}, {**job, "params": {**job["params"], "seed": 3}}],
                        now=NOW)
    assert "soup of v1-&lt;b&gt;, v2" in souped and "epochs 1, seed 3" in souped
    default_recipe = {**job["params"], "params_keep": 0.9, "min_saving": 0.5, "keep_layers": 11, "trim_vocab": True}
    assert ("parameter share 0.9, plain, attn, saving ≥ 0.5, first 11 layers, trimmed vocabulary, epochs 1"
            in views.jobs([{**job, "params": default_recipe}], now=NOW))
    adapter = {**default_recipe, "lora_r": 16, "lora_targets": "attn+mlp"}
    assert "trimmed vocabulary, LoRA r16 on attn+mlp, epochs 1" in views.jobs([{**job, "params": adapter}], now=NOW)


def test_plot_points_are_labelled_and_identical_builds_share_a_label(tmp_path):
    rows = [{"name": "default", "method": "none", "targets": "", "parameters": 268e6, "accuracy": 0.964},
            {"name": "v2-whitened", "method": "whitened", "targets": "attn", "parameters": 220e6, "accuracy": 0.958},
            {"name": "v3-whitened", "method": "whitened", "targets": "attn", "parameters": 220e6, "accuracy": 0.958},
            {"name": "broken", "method": "plain", "targets": "attn"}]
    points = views.labelled_points(rows, live="v3-whitened")
    assert [(label, live) for _, _, label, live in points] == [("v2-whitened\nv3-whitened", True), ("default", False)]
    assert views.plot_versions(rows, tmp_path / "p.png", live="default").stat().st_size > 1000


def test_registry_pointer_promotion_rollback_and_summaries(tmp_path, tiny_model):
    registry = Registry(tmp_path, tiny_model)
    assert registry.names() == [DEFAULT_VERSION] and registry.live == DEFAULT_VERSION
    built = registry.folder("v1")
    built.mkdir(parents=True)
    (built / "model.json").write_text((tiny_model / "model.json").read_text())
    (built / "evaluation.json").write_text(json.dumps({"summary": {"accuracy": 0.5, "parameters": 10, "ratio": 0.5,
                                                                    "method": "plain", "targets": "attn"}}))
    unfinished = registry.staging("v2")  # a build in progress, its model.json already written
    unfinished.mkdir(parents=True)
    (unfinished / "model.json").write_text((tiny_model / "model.json").read_text())
    assert not any("v2" in name for name in registry.names())
    with pytest.raises(ValueError):
        registry.set_live("v2")
    registry.set_live("v1")
    assert registry.live == "v1" and registry.previous == DEFAULT_VERSION
    built2 = registry.folder("v3")
    built2.mkdir(parents=True)
    (built2 / "model.json").write_text((tiny_model / "model.json").read_text())
    registry.set_live("v3")
    assert registry.previous == "v1"
    (registry.root / ".trash" / "v0-0a1b2c3d" / "adapter").mkdir(parents=True)  # an earlier delete's leftovers
    registry.delete("v1")  # the version rollback would go back to: rollback has nowhere to go now
    assert list((registry.root / ".trash").iterdir()) == [] and not built.exists()
    assert registry.previous is None and registry.live == "v3"
    (built / "model.json").parent.mkdir(parents=True)
    (built / "model.json").write_text((tiny_model / "model.json").read_text())
    (built / "evaluation.json").write_text(json.dumps({"summary": {"accuracy": 0.5, "parameters": 10, "ratio": 0.5,
                                                                    "method": "plain", "targets": "attn"}}))
    registry.set_live("v1")
    assert registry.live == "v1" and registry.previous == "v3"
    rows = {r["name"]: r for r in registry.summaries()}
    assert rows["v1"]["live"] and rows["v1"]["accuracy"] == 0.5
    with pytest.raises(ValueError):
        registry.delete("v1")
    with pytest.raises(ValueError):
        registry.folder("../escape")
    for damaged in ("{broken", '{"live": 5}', '["v1"]', '{"live": "v1", "previous": {"a": 1}}'):
        registry.pointer.write_text(damaged)  # a damaged pointer falls back to the shipped default
        assert registry.live == DEFAULT_VERSION and registry.previous is None
    table = views.version_rows(registry.summaries())
    assert len(table) == 3 and all(len(r) == len(views.VERSION_COLUMNS) for r in table)
    pruned = views.version_rows([{"name": "v", "live": False, "targets": "attn+mlp", "keep_layers": 12}])[0]
    assert pruned[views.VERSION_COLUMNS.index("targets")] == "attn+mlp · first 12 layers"
    souped = views.version_rows([{"name": "s", "live": False, "targets": "attn+mlp", "soup": ["runs/a", "runs/b"]}])[0]
    assert souped[views.VERSION_COLUMNS.index("targets")] == "attn+mlp · soup of 2"
    shared = views.version_rows([{"name": "d", "live": False, "ratio": 1.0, "params_keep": 0.9, "targets": "attn+mlp",
                                  "vocab": "trimmed"}])[0]
    assert shared[2] == "share 0.9" and shared[views.VERSION_COLUMNS.index("targets")] == "attn+mlp · trimmed vocabulary"
    healed = views.version_rows([{"name": "h", "live": False, "targets": "attn", "lora": {"r": 16, "layers": "attn+mlp"}}])[0]
    assert healed[views.VERSION_COLUMNS.index("targets")] == "attn · LoRA r16 on attn+mlp"


def test_a_promote_and_a_delete_at_once_both_hold(tmp_path, tiny_model, monkeypatch):
    """Two admins (two processes sharing ``versions/``, or two threads): one promotes C while the other
    deletes A, the version rollback would go back to. Each reads and writes the pointer under its lock,
    so the promote is not undone and the pointer stays whole, even on a slow disk."""
    import os
    import threading
    import time

    registry, other = Registry(tmp_path, tiny_model), Registry(tmp_path, tiny_model)
    for name in ("vA", "vB", "vC"):
        registry.folder(name).mkdir(parents=True)
        (registry.folder(name) / "model.json").write_text((tiny_model / "model.json").read_text())
    registry.set_live("vA")
    registry.set_live("vB")
    fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (time.sleep(0.2), fsync(fd)))  # a slow disk: a wide window
    errors = []

    def delete():
        time.sleep(0.05)
        try:
            other.delete("vA")
        except Exception as err:  # noqa: BLE001
            errors.append(err)

    threads = [threading.Thread(target=registry.set_live, args=("vC",)), threading.Thread(target=delete)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and json.loads(registry.pointer.read_text())["live"] == "vC"
    assert registry.live == "vC" and registry.previous == "vB" and registry.names() == [DEFAULT_VERSION, "vB", "vC"]
    assert sorted(p.name for p in registry.root.iterdir() if p.is_file()) == [".lock", "live.json"]  # no temporary left
    with pytest.raises(ValueError, match="live"):
        other.delete("vC")
    assert registry.pointer.stat().st_mode & 0o777 == 0o666 & ~_umask()  # readable by replicas of other users
    with pytest.raises(ValueError, match="no version"):
        other.delete("live.json")  # a file, not a version
    registry.pointer.write_text('{"live": "vC", "prev')  # damaged: the listing says default, replicas are told
    assert registry.live == DEFAULT_VERSION
    with pytest.raises(ValueError, match="damaged"):
        registry.pointed()
    with pytest.raises(ValueError, match="damaged"):  # replicas may still serve vB: it stays
        other.delete("vB")
    registry.set_live("vB")  # promoting repairs it
    assert registry.pointed() | {"promoted_at": None} == {"live": "vB", "previous": None, "promoted_at": None}
    registry.pointer.unlink()  # no pointer yet: the default, as written
    assert registry.pointed()["live"] == DEFAULT_VERSION


def test_version_names_say_the_recipe_and_are_never_taken_twice(tmp_path, tiny_model, monkeypatch):
    from datetime import datetime, timezone

    from chatbot import versions

    class Frozen(datetime):
        @classmethod
        def now(cls, tz=None):
            return datetime(2026, 12, 1, 7, 0, 0, tzinfo=timezone.utc)

    monkeypatch.setattr(versions, "datetime", Frozen)
    registry = Registry(tmp_path, tiny_model)
    names = [registry.new_name(0.5, "plain", "attn"), registry.new_name(1.0, "whitened", "attn"),
             registry.new_name(1.0, "whitened", "attn+mlp", params_keep=0.9, keep_layers=11, trim_vocab=True,
                               min_saving=0.5, seed=2)]
    assert names == ["v20261201-070000-plain-attn-r0.5", "v20261201-070000-dense",
                     "v20261201-070000-whitened-attn_mlp-p0.9-s0.5-l11-tv-seed2"]
    longest = registry.new_name(0.95, "whitened", "attn+mlp", params_keep=0.95, keep_layers=11, trim_vocab=True,
                                min_saving=0.55, seed=2**31 - 1)
    assert len(longest) <= 64 - len("-9999") and longest.endswith("-seed2147483647")
    kind = Registry.build_kind(0.95, "whitened", "attn+mlp", 0.95, 11, True, 0.55, 2**31 - 1).split("-")
    assert set(longest.removeprefix("v20261201-070000-").split("-")) < set(kind)  # whole parts, none cut short
    registry.folder(longest).mkdir()  # a valid name, and a second one still fits
    assert registry.new_name(0.95, "whitened", "attn+mlp", params_keep=0.95, keep_layers=11, trim_vocab=True,
                             min_saving=0.55, seed=2**31 - 1) == longest + "-2"
    registry.folder(names[0]).mkdir()
    registry.staging(names[0] + "-2").mkdir(parents=True)  # a build in progress holds its name too
    assert registry.new_name(0.5, "plain", "attn") == names[0] + "-3"
    # another process reserving the name between this one's look and its mkdir: the next name
    given = iter(["v1-x", "v1-x", "v1-x-2"])
    monkeypatch.setattr(registry, "stamped_name", lambda kind, taken=(): next(given))
    first, second = registry.reserve("x"), registry.reserve("x")
    assert first == ("v1-x", registry.staging("v1-x")) and second[0] == "v1-x-2" and second[1].is_dir()


def test_the_admin_tab_says_when_customers_are_answered_by_another_version_than_the_live_one():
    assert views.live_note("v2", "v2") == "Live version: **v2**"
    assert views.live_note("v2", "v2", "promote v2: done") == "promote v2: done"
    assert "customers are answered by **default**" in views.live_note("v2", "default", "promote v2: done")
    assert "did not say which version" in views.live_note("v2", None)


def test_audit_users_and_revealable_values():
    from chatbot.views import audit_rows, revealable_choices, user_rows

    rows = audit_rows([{"at": "2026-01-02T03:04:05+00:00", "actor": "marie", "action": "reveal", "target": "c1",
                        "detail": "message 4 value #1 (email)", "client": "10.0.0.1"}])
    assert rows == [["2026-01-02 03:04:05", "marie", "reveal", "c1", "message 4 value #1 (email)", "10.0.0.1"]]
    assert user_rows([{"name": "a", "role": "agent", "disabled": False, "locked_until": "x", "last_sign_in": None}]) \
        == [["a", "agent", "locked at 1 address", ""]]
    messages = [{"id": 4, "role": "customer", "revealable": [{"index": 1, "kind": "email"}, {"index": 2, "kind": "phone"}]},
                {"id": 5, "role": "bot", "revealable": []}]
    assert revealable_choices(messages) == [("message 4 (customer) · email #1", "4:1"),
                                            ("message 4 (customer) · phone #2", "4:2")]
