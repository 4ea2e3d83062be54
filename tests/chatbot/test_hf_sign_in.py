"""Reading a Hugging Face sign-in from the session cookie (the whole way in is tested in tests/test_app.py)."""

import asyncio
import threading
from types import SimpleNamespace

from chatbot.accounts import HfRecord
from chatbot.hf_sign_in import SessionUser, StaffGate, refusal, session_user, staff_user


def session(name, expires_at=2_000_000_000.0, expires_in=28_800, sub="id-1"):
    return {"oauth_info": {"expires_at": expires_at, "expires_in": expires_in,
                           "userinfo": {"preferred_username": name, "sub": sub}}}


def test_the_user_until_the_sign_in_expires():
    assert session_user(session("alice"), now=1_000.0) == SessionUser("alice", "id-1", 2_000_000_000.0 - 28_800)
    assert session_user(session("alice", expires_at=999.0), now=1_000.0) is None
    for never in (None, "2100-01-01", True):  # a session without an expiry is not trusted at all
        assert session_user(session("alice", expires_at=never), now=1_000.0) is None
    assert session_user(session("alice", expires_in=None), now=1_000.0).issued == float("-inf")


def test_no_user_from_an_empty_or_odd_session():
    for odd in (None, {}, {"oauth_info": None}, {"oauth_info": "alice"}, {"oauth_info": {"userinfo": None}},
                {"oauth_info": {"userinfo": {"preferred_username": 7}}}, session(""), session("alice", sub=None),
                session("alice", sub="")):
        assert session_user(odd, now=1_000.0) is None, odd


def test_signing_out_ends_every_session_signed_in_before():
    """The session lives in the cookie: a copy taken before the sign-out must not work after it."""
    issued = 2_000_000_000.0 - 28_800
    user = SessionUser("alice", "id-1", issued)
    assert refusal(user, HfRecord("id-1", None)) is None
    assert refusal(user, HfRecord("id-1", issued + 60)) == "signed out"
    assert refusal(user, HfRecord("id-1", issued)) == "signed out"
    assert refusal(user, HfRecord("id-1", issued + 0.5)) == "signed out"  # in the second it was issued in
    assert refusal(user, HfRecord("id-1", issued - 1)) is None  # signed in again since
    assert refusal(SessionUser("alice", "id-1", float("-inf")), HfRecord("id-1", issued)) == "signed out"


def test_only_the_account_that_holds_a_name_is_let_in():
    """A staff member renamed themselves and someone else took the old name, which is still on the lists;
    a name no account holds (first use, released, a session from before) needs a fresh sign-in."""
    assert refusal(SessionUser("alice", "id-2", 0.0), HfRecord("id-1", None)) == "taken"
    assert refusal(SessionUser("alice", "id-2", 0.0), HfRecord(None, None)) == "not held"
    assert refusal(SessionUser("alice", "id-2", 0.0), None) == "not held"


def test_staff_user_names_only_listed_users_with_a_good_session(monkeypatch):
    monkeypatch.setenv("CHATBOT_HF_AGENTS", "carol")
    monkeypatch.delenv("CHATBOT_HF_ADMINS", raising=False)

    def staff(session, lookup=None):
        return asyncio.run(staff_user(SimpleNamespace(scope=session), lookup))

    assert staff({"session": session("Carol")}) == "hf:Carol"
    assert staff({"session": session("mallory")}) is None
    assert staff({}) is None  # no session middleware: nobody
    asked = []

    def lookup(name):
        asked.append((name, threading.current_thread() is threading.main_thread()))
        return HfRecord("id-1", None)

    assert staff({"session": session("Carol")}, lookup) == "hf:Carol"
    assert staff({"session": session("mallory")}, lookup) is None
    assert asked == [("Carol", False)]  # only about listed users, and off the event loop's thread
    assert staff({"session": session("Carol")}, lambda name: HfRecord("id-9", None)) is None
    assert staff({"session": session("Carol")}, lambda name: None) is None
    assert staff({"session": session("Carol")}, lambda name: HfRecord("id-1", 2_000_000_000.0)) is None


def test_a_sign_out_the_database_cannot_note_still_signs_the_browser_out(monkeypatch, caplog):
    monkeypatch.setenv("CHATBOT_HF_ADMINS", "alice")

    class DatabaseDown:
        def record(self, name):
            raise ConnectionError("database down")

        sign_out = record

    reached = []

    async def gradio(scope, receive, send):  # Gradio's /logout, which forgets the session in the browser
        reached.append(scope["path"])

    gate = StaffGate(gradio, DatabaseDown())
    asyncio.run(gate({"type": "http", "method": "GET", "path": "/logout", "session": session("alice")}, None, None))
    assert reached == ["/logout"] and "could not note the sign-out of hf:alice" in caplog.text


def test_the_gate_guards_the_staff_page_under_a_root_path(monkeypatch):
    """Served under a prefix (``uvicorn --root-path /bot``), the path in the scope starts with it."""
    monkeypatch.setenv("CHATBOT_HF_ADMINS", "alice")

    class Sessions:
        def __init__(self):
            self.signed_out = []

        def record(self, name):
            return HfRecord(sub="id-1", signed_out_at=None)

        def sign_out(self, name, client=None):
            self.signed_out.append(name)

    async def gradio(scope, receive, send):
        reached.append(scope["path"])

    sent, reached, sessions = [], [], Sessions()

    async def send(message):
        sent.append(message)

    gate = StaffGate(gradio, sessions)
    base = {"type": "http", "method": "GET", "root_path": "/bot"}
    asyncio.run(gate({**base, "path": "/bot/staff/", "session": {}}, None, send))
    assert reached == [] and sent[0]["status"] == 302  # to Hugging Face's sign-in, not to the console
    assert dict(sent[0]["headers"])[b"location"] == b"/bot/login/huggingface?_target_url=/bot/staff/"
    monkeypatch.setenv("CHATBOT_HF_ADMINS", "")
    asyncio.run(gate({**base, "path": "/bot/staff/", "session": session("alice")}, None, send))
    assert sent[2]["status"] == 403 and b"href='/bot/logout'" in sent[3]["body"]
    monkeypatch.setenv("CHATBOT_HF_ADMINS", "alice")
    asyncio.run(gate({**base, "path": "/bot/logout", "session": session("alice")}, None, send))
    assert sessions.signed_out == ["alice"] and reached == ["/bot/logout"]
