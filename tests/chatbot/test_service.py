import time

import pytest

from chatbot.service import AdminDenied, Service, check_admin


def wait(job, timeout=240):
    deadline = time.time() + timeout
    while job.status == "running" and time.time() < deadline:
        time.sleep(0.2)
    return job


@pytest.fixture()
def service(tmp_path, tiny_model, tiny_data):
    return Service(home_dir=tmp_path, default_model=tiny_model, data=[str(tiny_data)])


def test_admin_password(monkeypatch):
    monkeypatch.delenv("CHATBOT_ADMIN_PASSWORD", raising=False)
    with pytest.raises(AdminDenied, match="disabled"):
        check_admin("anything")
    monkeypatch.setenv("CHATBOT_ADMIN_PASSWORD", "s3cret")
    with pytest.raises(AdminDenied, match="Wrong"):
        check_admin("guess")
    check_admin("s3cret")


def test_build_promote_rollback_delete(service):
    turn = service.respond_batch([{"conversation_id": None, "text": "cancel order stop 1"}])[0]
    job = wait(service.start_build(0.5, "whitened", "attn+mlp", epochs=1, max_per_intent=4))
    assert job.status == "done", job.error
    names = service.registry.names()
    assert names[0] == "default" and job.name in names
    summary = {s["name"]: s for s in service.registry.summaries()}[job.name]
    assert summary["parameters"] < 1e6 and summary["accuracy"] == job.result["accuracy"] and not summary["live"]
    assert service.assistant.version == "default"  # built, not live until promoted

    assert job.result["source"] == str(service.registry.folder("default"))  # the tuned model, compressed

    service.promote(job.name)
    assert service.registry.live == job.name and service.assistant.version == job.name
    # the live model is compressed now: the next build starts from the shipped one again
    again = wait(service.start_build(0.5, "plain", "attn", epochs=1, max_per_intent=2))
    assert again.status == "done", again.error
    assert again.result["source"] == str(service.registry.folder("default"))
    service.delete(again.name)
    later = service.respond_batch([{"conversation_id": turn.conversation_id, "text": "refund money back 3"}])[0]
    assert later.model_version == job.name
    with pytest.raises(ValueError, match="live"):
        service.delete(job.name)
    assert service.rollback() == "default" and service.assistant.version == "default"
    service.delete(job.name)
    assert job.name not in service.registry.names()
    # Every acknowledged turn is still there, with the model that answered it.
    versions = [m["model_version"] for m in service.store.messages(turn.conversation_id) if m["role"] == "bot"]
    assert versions == ["default", job.name]


def test_failed_and_cancelled_builds_leave_the_live_model(service, tmp_path):
    service.data = [str(tmp_path / "missing.csv")]
    job = wait(service.start_build(0.5, "whitened", "attn"))
    assert job.status == "failed" and "not found" in job.error
    assert service.registry.names() == ["default"] and service.registry.live == "default"
    assert not list((tmp_path / "versions").glob("*.building"))
    service.data = [str(p) for p in service.data]

    from conftest import make_tiny_data

    service.data = [str(make_tiny_data(tmp_path / "more.csv", per_intent_lang=40))]
    job = service.start_build(0.5, "plain", "attn", epochs=5)
    with pytest.raises(ValueError, match="already running"):
        service.start_build(0.5, "plain", "attn")
    assert service.cancel_jobs() == 1  # at once: loading the base alone takes longer than this
    assert wait(job).status == "cancelled"
    assert service.registry.names() == ["default"] and service.assistant.version == "default"
