import inspect
import json
import time
import types

import pytest

from chatbot import views
from chatbot.accounts import AccessDenied, AccountDisabled, NotSignedIn, WrongRole
from chatbot.folder import ModelFolder
from chatbot.service import Service

PASSWORD = "correct horse battery staple"


def wait(job, timeout=240):
    deadline = time.time() + timeout
    while job.status == "running" and time.time() < deadline:
        time.sleep(0.2)
    return job


def make_service(home, tiny_model, tiny_data):
    service = Service(home_dir=home, default_model=tiny_model, data=[str(tiny_data)])
    service.accounts.add("root", "admin", PASSWORD)
    service.accounts.add("marie", "agent", PASSWORD)
    service.accounts.add("gone", "admin", PASSWORD)
    service.accounts.set_disabled("gone", True)
    return service


@pytest.fixture()
def service(tmp_path, tiny_model, tiny_data):
    return make_service(tmp_path, tiny_model, tiny_data)


@pytest.fixture(scope="module")
def shared(tmp_path_factory, tiny_model, tiny_data):
    """One service for the tests that only read or are refused (loading one takes a while)."""
    return make_service(tmp_path_factory.mktemp("shared"), tiny_model, tiny_data)


def admin(service):
    return service.caller("root", client="127.0.0.1")


# Every staff and admin method with arguments that would work for the right caller.
AGENT_METHODS = {"staff_member": (), "staff_analyse": ("hello",), "inbox": (), "conversation": ("CID",),
                 "take_over": ("CID",), "send": ("CID", "hello"), "close": ("CID",), "reveal": ("CID", 0, 1),
                 "out_of_scope": ()}
ADMIN_METHODS = {"erase": ("CID",), "audit_log": (), "users": (), "versions": (), "promote": ("default",),
                 "rollback": (), "delete": ("nothing",), "start_build": (0.5, "plain", "attn"), "jobs": (),
                 "start_soup": (["default", "default2"],),
                 "cancel_job": ("JOB",), "serving": ()}


def test_every_staff_method_is_listed_here():
    """A new public Service method taking a caller must be added to the role checks below."""
    takes_caller = {name for name, fn in inspect.getmembers(Service, inspect.isfunction)
                    if not name.startswith("_") and "caller" in inspect.signature(fn).parameters}
    assert takes_caller == set(AGENT_METHODS) | set(ADMIN_METHODS)


@pytest.mark.parametrize("method", sorted(AGENT_METHODS) + sorted(ADMIN_METHODS))
def test_staff_methods_refuse_anonymous_and_disabled_callers(shared, method):
    service = shared
    cid = service.respond_batch([{"conversation_id": None, "text": "cancel order stop 1"}])[0].conversation_id
    args = [cid if a == "CID" else a for a in {**AGENT_METHODS, **ADMIN_METHODS}[method]]
    args = ["v-nothing-running" if a == "JOB" else a for a in args]
    before = service.store.count_messages()
    with pytest.raises(NotSignedIn):
        getattr(service, method)(None, *args)
    with pytest.raises(NotSignedIn):
        getattr(service, method)(service.caller("no-such-user"), *args)
    with pytest.raises(AccountDisabled):
        getattr(service, method)(service.caller("gone"), *args)
    if method in ADMIN_METHODS:
        with pytest.raises(WrongRole):
            getattr(service, method)(service.caller("marie"), *args)
    assert service.store.count_messages() == before and service.store.conversation(cid)["status"] == "bot"
    assert all(e["action"] in ("user_add", "user_disable") for e in service.audit.entries())


def test_agents_act_and_every_action_is_audited(service):
    agent = service.caller("marie", client="10.0.0.7")
    turn = service.respond_batch([{"conversation_id": None, "text": "refund money back mail jan@example.nl"}])[0]
    cid = turn.conversation_id
    assert service.history(cid)[0]["text"] == "refund money back mail [email #1]"
    assert [c["id"] for c in service.inbox(agent)["recent"]] == [cid]
    service.take_over(agent, cid)
    service.send(agent, cid, "Hello, I am Marie.")
    assert service.history(cid)[-1]["author"] == "marie" and service.history(cid)[-2]["author"] == "marie"
    view = service.conversation(agent, cid)
    customer = view["messages"][0]
    assert customer["revealable"] == [{"index": 1, "kind": "email"}]
    assert service.reveal(agent, cid, customer["id"], 1) == {"kind": "email", "value": "jan@example.nl"}
    service.close(agent, cid)
    with pytest.raises(ValueError):
        service.send(agent, "no-such-conversation", "hello")
    with pytest.raises(ValueError, match="closed"):
        service.send(agent, cid, "are you still there?")  # closed: the customer's next message starts anew
    log = service.audit.entries()
    assert [e["action"] for e in log[:4]] == ["close", "reveal", "send", "take_over"]
    assert all(e["actor"] == "marie" and e["target"] == cid and e["client"] == "10.0.0.7" for e in log[:4])
    assert "email" in log[1]["detail"] and "jan@" not in log[1]["detail"]
    assert service.erase(admin(service), cid) == len(view["messages"]) + 1  # and the note of the close
    assert service.history(cid) == [] and service.audit_log(admin(service))[0]["action"] == "erase"


def test_customers_read_only_their_own_conversation(shared):
    service = shared
    mine = service.chat(["where track parcel 2"], [""], ["en"])[0].conversation_id
    assert len(service.history(mine)) == 2
    for other in ("", None, 7, "x" * 32, mine[:-1], "../" + mine):
        assert service.history(other) == []
    assert isinstance(AccessDenied("x"), PermissionError)


def test_the_app_starts_on_the_previous_version_when_the_live_one_does_not_load(tmp_path, tiny_model, tiny_data):
    """A version promoted broken (from an app that does not load models itself), or whose folder no longer
    loads on this machine: customers still get the chat, on the previous version."""
    import shutil

    service = make_service(tmp_path, tiny_model, tiny_data)
    shutil.copytree(tiny_model, service.registry.folder("v2"))
    service.registry.set_live("v2")
    (service.registry.folder("v2") / "adapter" / "adapter_model.safetensors").write_bytes(b"not weights")
    restarted = Service(home_dir=tmp_path, default_model=tiny_model, data=[str(tiny_data)])
    assert restarted.assistant.version == "default" and restarted.registry.live == "v2"
    assert restarted.serving(admin(restarted)) == "default" and restarted.versions(admin(restarted))[0]["name"] == "default"
    served = restarted.assistant.classifier = types.SimpleNamespace(info=lambda timeout: {"version": f"v{timeout}"})
    assert restarted.serving(admin(restarted)) == "v5"  # what Ray Serve's replica says, asked with a short wait
    served.info = lambda timeout: 1 / 0  # no replica answers
    assert restarted.serving(admin(restarted)) is None
    assert restarted.respond_batch([{"conversation_id": None, "text": "cancel order stop 1"}])[0].model_version == "default"


def test_promote_rollback_and_delete_are_audited_before_they_happen(service, monkeypatch):
    caller = admin(service)
    for bad in ("x" * 200, "../escape"):  # not a version name: refused before anything, audit included
        with pytest.raises(ValueError, match="invalid version name"):
            service.promote(caller, bad)
    assert service.audit.entries(action="promote") == []
    with pytest.raises(Exception, match="not a model folder"):
        service.promote(caller, "v-missing")
    tried, failed = service.audit.entries()[:2][::-1]
    assert (tried["action"], tried["detail"], failed["action"]) == ("promote", None, "promote")
    assert failed["detail"].startswith("failed: ModelLoadError") and "not a model folder" in failed["detail"]

    def audit_down(*args, **kwargs):
        raise ConnectionError("database down")

    monkeypatch.setattr(service.audit, "record", audit_down)
    deleted = []
    monkeypatch.setattr(service.registry, "delete", deleted.append)
    with pytest.raises(ConnectionError):
        service.delete(caller, "v1")
    assert deleted == []  # an action that cannot be audited does not happen


def test_a_build_cancelled_as_it_finishes_is_not_published(service, tiny_model):
    """The admin was told "Cancelling…" and the audit says so: the version must not appear."""
    import shutil

    caller = admin(service)

    def make(staging, progress):
        shutil.copytree(tiny_model, staging, dirs_exist_ok=True)
        progress(1.0, "scored")
        service.cancel_job(caller, staging.name)  # after the last progress check, before the rename
        return {"accuracy": 1.0}

    job = wait(service._start_job(caller, "dense", {}, make, "build", "test"))
    assert job.status == "cancelled" and job.name not in service.registry.names()
    assert not service.registry.staging(job.name).exists()
    with pytest.raises(ValueError, match="not running"):
        service.cancel_job(caller, job.name)


def test_build_promote_rollback_delete(service):
    turn = service.respond_batch([{"conversation_id": None, "text": "cancel order stop 1"}])[0]
    job = wait(service.start_build(admin(service), 0.5, "whitened", "attn+mlp", epochs=1, max_per_intent=4))
    assert job.status == "done", job.error
    names = service.registry.names()
    assert names[0] == "default" and job.name in names
    summary = {s["name"]: s for s in service.registry.summaries()}[job.name]
    assert summary["parameters"] < 1e6 and summary["accuracy"] == job.result["accuracy"] and not summary["live"]
    assert service.assistant.version == "default"  # built, not live until promoted

    assert job.result["source"] == str(service.registry.folder("default"))  # the tuned model, compressed

    opener, stages = service.open_classifier, []

    def first_load(folder, progress=None):  # as load_serving does when it exports a version the first time
        if progress is not None:
            progress(0.4, "exporting")
        return opener(folder, progress=progress)

    service.open_classifier = first_load
    service.promote(admin(service), job.name, progress=lambda fraction, stage="": stages.append(stage))
    assert service.registry.live == job.name and service.assistant.version == job.name
    assert stages == ["exporting"]  # what the admin's progress bar shows
    # the live model is compressed now: the next build starts from the shipped one again
    again = wait(service.start_build(admin(service), 0.5, "plain", "attn", epochs=1, max_per_intent=2))
    assert again.status == "done", again.error
    assert again.result["source"] == str(service.registry.folder("default"))
    service.delete(admin(service), again.name)
    later = service.respond_batch([{"conversation_id": turn.conversation_id, "text": "refund money back 3"}])[0]
    assert later.model_version == job.name
    with pytest.raises(ValueError, match="live"):
        service.delete(admin(service), job.name)
    assert service.rollback(admin(service)) == "default" and service.assistant.version == "default"
    service.delete(admin(service), job.name)
    assert job.name not in service.registry.names()
    # Every acknowledged turn is still there, with the model that answered it.
    versions = [m["model_version"] for m in service.store.messages(turn.conversation_id) if m["role"] == "bot"]
    assert versions == ["default", job.name]


def test_builds_with_other_seeds_average_into_a_version(service):
    """An admin builds the same recipe with two seeds and averages them: the soup is a version like
    any build (scored, listed, promotable); what cannot be averaged is refused before anything runs."""
    root = admin(service)
    a, b = (wait(service.start_build(root, 0.5, "whitened", "attn", epochs=1, max_per_intent=4, seed=s)) for s in (0, 1))
    assert a.status == b.status == "done", (a.error, b.error)
    assert a.result["accuracy"] is not None and b.params["seed"] == 1 and b.name.endswith("-r0.5-seed1")
    for names, problem in (([a.name], "two different"), ([a.name, a.name], "two different"), ("v1,v2", "choose"),
                           ([a.name, "nothing"], "no version"), (["default", a.name], "same start")):
        with pytest.raises(ValueError, match=problem):
            service.start_soup(root, names)
    for bad, problem in (({"seed": -1}, "seed"), ({"seed": 1.5}, "whole"), ({"seed": None}, "whole"), ({"keep_layers": 0}, "keep layers"),
                         ({"params_keep": 1.0}, "params keep"), ({"min_saving": "x"}, "numbers"),
                         ({"trim_vocab": "yes"}, "yes or no"), ({"ratio": None}, "ratio"), ({"lora_r": 0}, "LoRA rank"),
                         ({"lora_r": 65}, "LoRA rank"), ({"lora_r": True}, "LoRA rank"), ({"lora_r": "8"}, "LoRA rank"),
                         ({"lora_r": 2.0}, "LoRA rank"), ({"lora_targets": "all"}, "LoRA goes"),
                         ({"lora_targets": None}, "LoRA goes")):
        with pytest.raises(ValueError, match=problem):
            service.start_build(root, **{"ratio": 0.5, "method": "plain", "targets": "attn", **bad})
    assert [j["name"] for j in service.jobs(root)] == [b.name, a.name]  # nothing started by the refusals
    job = wait(service.start_soup(root, [a.name, b.name]))
    assert job.status == "done", job.error
    row = {s["name"]: s for s in service.registry.summaries()}[job.name]
    assert row["soup"] == [str(service.registry.folder(n)) for n in (a.name, b.name)]
    assert row["accuracy"] == job.result["accuracy"] and row["parameters"] == a.result["parameters"]
    service.promote(root, job.name)
    turn = service.respond_batch([{"conversation_id": None, "text": "cancel order stop 1"}])[0]
    assert turn.model_version == job.name
    cancelled = service.start_soup(root, [a.name, b.name])
    service.cancel_job(root, cancelled.name)
    assert wait(cancelled).status == "cancelled" and cancelled.name not in service.registry.names()
    assert [e["action"] for e in service.audit.entries()][:4] == ["cancel", "soup", "promote", "soup"]


def test_an_admin_build_takes_the_whole_compression_recipe(service):
    """A parameter share, a minimum saving, the layers kept and the vocabulary trim reach the build,
    its name and its row, as ``python -m chatbot build`` takes them."""
    job = wait(service.start_build(admin(service), 1.0, "whitened", "attn+mlp", epochs=1, max_per_intent=4,
                                   params_keep=0.5, min_saving=0.1, keep_layers=1, trim_vocab=True,
                                   lora_r=4, lora_targets="attn+mlp"))
    assert job.status == "done", job.error
    assert job.name.endswith("-whitened-attn_mlp-p0.5-s0.1-l1-tv")
    row = {s["name"]: s for s in service.registry.summaries()}[job.name]
    assert (row["params_keep"], row["min_saving"], row["keep_layers"], row["vocab"]) == (0.5, 0.1, 1, "trimmed")
    assert (row["lora"]["r"], row["lora"]["layers"]) == (4, "attn+mlp")
    folder = service.registry.folder(job.name)
    spec = ModelFolder.read(folder)
    assert spec.compression["keep_layers"] == 1 and spec.compression["params_keep"] == 0.5 and spec.vocab["kept"] > 0
    adapter = json.loads((ModelFolder.adapter_dir(folder) / "adapter_config.json").read_text())
    assert (adapter["r"], adapter["lora_alpha"]) == (4, 8)  # the healing adapter the admin asked for
    assert any(m.endswith("gate_proj") or ".gate_proj." in m for m in adapter["target_modules"])
    assert service.audit.entries()[0]["detail"].endswith(", seed 0, LoRA r4 on attn+mlp, parameter share 0.5, "
                                                         "minimum saving 0.1, first layers 1, trimmed vocabulary True")


def test_a_job_says_it_ended_only_once_its_staging_folder_is_gone(service, tmp_path, monkeypatch):
    """Whoever waits on the status (the admin tab, a test) finds nothing left behind, however slow the
    removal: a failed build's folder goes before it is reported failed."""
    import shutil

    real = shutil.rmtree

    def slow(path, *args, **kwargs):
        time.sleep(1.0)
        real(path, *args, **kwargs)

    monkeypatch.setattr(shutil, "rmtree", slow)
    service.data = [str(tmp_path / "missing.csv")]
    job = wait(service.start_build(admin(service), 0.5, "whitened", "attn"))
    assert job.status == "failed" and not list((tmp_path / "versions" / ".staging").glob("*"))


def test_failed_and_cancelled_builds_leave_the_live_model(service, tmp_path):
    service.data = [str(tmp_path / "missing.csv")]
    job = wait(service.start_build(admin(service), 0.5, "whitened", "attn"))
    assert job.status == "failed" and "not found" in job.error
    assert service.registry.names() == ["default"] and service.registry.live == "default"
    assert not list((tmp_path / "versions" / ".staging").glob("*"))
    service.data = [str(p) for p in service.data]

    from conftest import make_tiny_data

    service.data = [str(make_tiny_data(tmp_path / "more.csv", per_intent_lang=40))]
    job = service.start_build(admin(service), 0.5, "plain", "attn", epochs=5)
    with pytest.raises(ValueError, match="already running"):
        service.start_build(admin(service), 0.5, "plain", "attn")
    listed = service.jobs(admin(service))
    assert [j["name"] for j in listed[:2]] == [job.name, listed[1]["name"]] and listed[0]["status"] == "running"
    assert listed[0]["started_by"] == "root" and listed[1]["status"] == "failed"
    with pytest.raises(ValueError, match="not running"):
        service.cancel_job(admin(service), listed[1]["name"])  # aimed at one job: the failed one is left alone
    with pytest.raises(ValueError, match="no such build"):
        service.cancel_job(admin(service), "v-unknown")
    assert job.status == "running"
    assert service.cancel_job(admin(service), job.name) == job.name  # at once: loading the base takes longer
    assert wait(job).status == "cancelled" and service.jobs(admin(service))[0]["status"] == "cancelled"
    assert service.registry.names() == ["default"] and service.assistant.version == "default"
    actions = [e["action"] for e in service.audit.entries()]
    assert actions[:3] == ["cancel", "build", "build"]


def test_the_first_admin_is_bootstrapped_from_the_environment_only_once(tmp_path, tiny_model, monkeypatch, caplog):
    monkeypatch.setenv("CHATBOT_ADMIN_PASSWORD", "short")
    service = Service(home_dir=tmp_path, default_model=tiny_model)  # refused, but customers are served
    assert service.caller("admin") is None and "No admin created" in caplog.text
    monkeypatch.setenv("CHATBOT_ADMIN_PASSWORD", PASSWORD)
    service = Service(home_dir=tmp_path, default_model=tiny_model)
    assert service.caller("admin").role == "admin" and "Created the admin account 'admin'" in caplog.text
    monkeypatch.setenv("CHATBOT_ADMIN_PASSWORD", "another long password")
    service = Service(home_dir=tmp_path, default_model=tiny_model)  # an admin exists: nothing changes
    assert service.sign_in("admin", PASSWORD) and not service.sign_in("admin", "another long password")


def test_the_inbox_puts_waiting_first_and_unread_replies_back_in_front(service):
    agent = service.caller("marie")
    quiet = service.chat(["cancel order stop 1"], [""], ["en"])[0].conversation_id
    waiting = service.chat(["refund money back 2"], [""], ["en"])[0].conversation_id
    service.store.set_status(waiting, "waiting")
    handled = service.chat(["where track parcel 3"], [""], ["en"])[0].conversation_id
    service.conversation(agent, handled)  # Marie reads it, then answers
    service.send(agent, handled, "Hello, Marie here.")
    inbox = service.inbox(agent)
    assert [c["id"] for c in inbox["waiting"]] == [waiting]
    assert [c["id"] for c in inbox["agent"]] == [handled] and inbox["agent"][0]["unread"] == 0
    assert quiet in [c["id"] for c in inbox["recent"]] and handled not in [c["id"] for c in inbox["recent"]]
    service.chat(["thanks, and the parcel status"], [handled], ["en"])  # the customer answers the agent
    assert service.inbox(agent)["agent"][0]["unread"] == 1  # back to the agent's attention
    view = service.conversation(agent, handled)  # opening it: seen
    assert view["info"]["unread"] == 0 and service.inbox(agent)["agent"][0]["unread"] == 0
    assert view["suggested"]["greeting"] == ""  # Marie already wrote
    service.chat(["are you still there?"], [handled], ["en"])  # arrives while Marie types her next reply
    service.send(agent, handled, "The parcel left our depot today.")
    assert service.inbox(agent)["agent"][0]["unread"] == 1  # her reply does not hide what she has not read


def test_the_inbox_lists_a_bounded_number_of_waiting_conversations_and_counts_them_all(service, monkeypatch):
    import chatbot.service

    monkeypatch.setattr(chatbot.service, "INBOX_WAITING", 2)
    ids = [service.chat([f"refund money back {i}"], [""], ["en"])[0].conversation_id for i in range(3)]
    for cid in ids:
        service.store.set_status(cid, "waiting")
    inbox = service.inbox(service.caller("marie"))
    assert [c["id"] for c in inbox["waiting"]] == ids[:2] and inbox["waiting_total"] == 3
    page = views.inbox(inbox)
    assert 'data-waiting="3"' in page and "1 more waiting" in page
    assert views.inbox_signature(inbox) != views.inbox_signature({**inbox, "waiting_total": 4})  # redrawn


def test_out_of_scope_counts_every_day_of_the_window(service):
    cid = service.chat(["cancel order stop 1"], [""], ["en"])[0].conversation_id
    with service.store.session() as s, s.begin():
        conversation = service.store.get_or_create(s, cid)
        service.store.add_message(s, conversation, "customer", "tell me a joke", intent="out_of_scope")
        service.store.add_message(s, conversation, "customer", "thanks, are you still there?", intent="out_of_scope",
                                  action="agent")  # written to a person: not a request the bot missed
    found = service.out_of_scope(service.caller("marie"), days=7)
    assert len(found["per_day"]) == 7 and found["per_day"][-1][1] == 1 and found["total"] == 1
    assert [m["text"] for m in found["messages"]] == ["tell me a joke"] and found["messages"][0]["conversation_id"] == cid


def test_a_customer_picks_only_a_choice_offered_now(service):
    cid = service.chat(["cancel order stop 1"], [""], ["en"])[0].conversation_id
    assert service.customer_view(cid)["choices"] == []
    with pytest.raises(ValueError, match="not offered"):
        service.choose(cid, "get_refund")
    with service.store.session() as s, s.begin():  # as if the bot had asked
        conversation = service.store.get_or_create(s, cid)
        service.store.add_message(s, conversation, "bot", "Cancel or refund?", choices=[
            {"intent": "cancel_order", "label": "Cancel an order"}, {"intent": "something_else", "label": "Other"}])
    view = service.customer_view(cid)
    assert [c["intent"] for c in view["choices"]] == ["cancel_order", "something_else"] and view["status"] == "bot"
    turn = service.choose(cid, "cancel_order")
    assert turn.action == "answer" and service.history(cid)[-2]["text"] == "Cancel an order"
    assert service.customer_view(cid)["choices"] == []  # answered: no longer offered
    assert service.customer_view("x" * 32) == {"lang": "en", "status": None, "messages": [], "choices": []}


def test_agents_do_not_take_each_others_conversations_or_write_into_a_closed_one(service, monkeypatch):
    service.accounts.add("paul", "agent", PASSWORD)
    marie, paul = service.caller("marie"), service.caller("paul")
    cid = service.chat(["refund money back 1"], [""], ["en"])[0].conversation_id
    service.take_over(marie, cid)
    service.take_over(marie, cid)  # a double click: nothing new
    notes = [m for m in service.store.messages(cid) if m["role"] == "system"]
    assert len(notes) == 1 and service.store.conversation(cid)["agent"] == "marie"
    for act in (lambda: service.take_over(paul, cid), lambda: service.send(paul, cid, "Paul here")):
        with pytest.raises(ValueError, match="marie is handling"):
            act()
    service.conversation(marie, cid)  # Marie has read everything so far
    service.chat(["and the refund?"], [cid], ["en"])  # the customer writes: new for Marie
    assert service.conversation(paul, cid)["info"]["unread"] == 1  # Paul only looks...
    assert service.inbox(marie)["agent"][0]["unread"] == 1  # ...and it stays new for Marie
    assert service.conversation(marie, cid)["info"]["unread"] == 0
    service.take_over(admin(service), cid)  # an admin may take it (Marie went home)
    assert service.store.conversation(cid)["agent"] == "root"

    # Marie's reply and Paul's close race: the close commits between her check and her write.
    other = service.chat(["refund money back 2"], [""], ["en"])[0].conversation_id
    service.take_over(marie, other)
    checked = service._open

    def closed_meanwhile(conversation_id):
        info = checked(conversation_id)
        service.store.set_status(conversation_id, "closed", "closed by someone else")
        return info

    monkeypatch.setattr(service, "_open", closed_meanwhile)
    for act in (lambda: service.send(marie, other, "Still there?"), lambda: service.take_over(marie, other),
                lambda: service.close(marie, other)):
        with pytest.raises(ValueError, match="closed"):
            act()
    assert service.store.conversation(other)["status"] == "closed"
    assert not [m for m in service.store.messages(other) if m["role"] == "agent"]
