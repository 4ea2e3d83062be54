"""Reading a Hugging Face sign-in from the session cookie (the whole way in is tested in tests/test_app.py)."""

from types import SimpleNamespace

from chatbot.hf_sign_in import staff_user, username


def session(name, expires_at=2_000_000_000.0, expires_in=28_800):
    return {"oauth_info": {"expires_at": expires_at, "expires_in": expires_in, "userinfo": {"preferred_username": name}}}


def test_username_until_the_sign_in_expires():
    assert username(session("alice"), now=1_000.0) == "alice"
    assert username(session("alice", expires_at=999.0), now=1_000.0) is None
    for never in (None, "2100-01-01", True):  # a session without an expiry is not trusted at all
        assert username(session("alice", expires_at=never), now=1_000.0) is None


def test_signing_out_ends_every_session_signed_in_before():
    """The session lives in the cookie: a copy taken before the sign-out must not work after it."""
    issued = 2_000_000_000.0 - 28_800
    signed_out = {"alice": issued + 60}.get
    assert username(session("Alice"), now=1_000.0, signed_out=signed_out) is None
    assert username(session("bob"), now=1_000.0, signed_out=signed_out) == "bob"
    assert username(session("alice", expires_at=2_000_000_100.0), now=1_000.0, signed_out=signed_out) == "alice"
    assert username(session("alice", expires_in=None), now=1_000.0, signed_out=signed_out) is None


def test_no_username_from_an_empty_or_odd_session():
    for odd in (None, {}, {"oauth_info": None}, {"oauth_info": "alice"}, {"oauth_info": {"userinfo": None}},
                {"oauth_info": {"userinfo": {"preferred_username": 7}}}, session("")):
        assert username(odd, now=1_000.0) is None, odd


def test_staff_user_names_only_listed_users(monkeypatch):
    monkeypatch.setenv("CHATBOT_HF_AGENTS", "carol")
    monkeypatch.delenv("CHATBOT_HF_ADMINS", raising=False)
    assert staff_user(SimpleNamespace(scope={"session": session("carol")})) == "hf:carol"
    assert staff_user(SimpleNamespace(scope={"session": session("mallory")})) is None
    assert staff_user(SimpleNamespace(scope={})) is None  # no session middleware: nobody
