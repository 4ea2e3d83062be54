"""Staff accounts: Argon2 hashes, sign-in, lockout, disabling, roles, Hugging Face allow-lists, bootstrap."""

import time
from datetime import datetime, timezone

import pytest

from chatbot.accounts import (AccessDenied, AccountDisabled, Accounts, Caller, LockoutPolicy, NotSignedIn, WrongRole,
                              hf_caller, hf_role, require)
from chatbot.audit import Audit
from chatbot.store import Store

PASSWORD = "correct horse battery staple"


@pytest.fixture()
def accounts(database_url):
    store = Store(database_url)
    return Accounts(store, Audit(store), LockoutPolicy(max_failures=3, window_s=60, lock_s=0.5))


def test_passwords_are_stored_as_argon2id_hashes(accounts):
    accounts.add("marie", "agent", PASSWORD)
    with accounts.store.engine.connect() as raw:
        stored = raw.exec_driver_sql("select password_hash from staff_accounts").scalar()
    assert stored.startswith("$argon2id$") and PASSWORD not in stored
    assert accounts.sign_in("marie", PASSWORD) and not accounts.sign_in("marie", PASSWORD + "x")
    assert not accounts.sign_in("nobody", PASSWORD)
    with pytest.raises(ValueError, match="at least"):
        accounts.add("short", "agent", "abc")
    with pytest.raises(ValueError, match="role"):
        accounts.add("boss", "owner", PASSWORD)
    with pytest.raises(ValueError, match="exists"):
        accounts.add("marie", "admin", PASSWORD)
    with pytest.raises(ValueError, match="user name"):
        accounts.add("../etc", "agent", PASSWORD)


def test_repeated_failures_lock_the_account_even_for_the_right_password(accounts):
    accounts.add("marie", "agent", PASSWORD)
    for _ in range(3):
        assert not accounts.sign_in("marie", "guess-guess-guess")
    assert not accounts.sign_in("marie", PASSWORD)  # locked
    assert accounts.list()[0]["locked_until"]
    time.sleep(0.6)  # the lock lasts lock_s
    assert accounts.sign_in("marie", PASSWORD)
    log = Audit(accounts.store).entries()
    assert [e["action"] for e in log][:2] == ["sign_in", "sign_in_failed"]
    assert "locked" in log[1]["detail"] and any("locked at this address for" in (e["detail"] or "") for e in log)


def test_a_lock_holds_at_the_guessing_address_only(database_url):
    """Staff names are no secret: guesses from one address must not lock the owner out elsewhere."""
    store = Store(database_url)
    accounts = Accounts(store, Audit(store), LockoutPolicy(max_failures=3, window_s=60, lock_s=60))
    accounts.add("admin", "admin", PASSWORD)
    for _ in range(3):
        assert not accounts.sign_in("admin", "guess-guess-guess", client="203.0.113.9")
    assert not accounts.sign_in("admin", PASSWORD, client="203.0.113.9")  # locked there
    row = next(r for r in accounts.list() if r["name"] == "admin")
    assert row["locked_until"] and row["locked_addresses"] == 1
    assert accounts.sign_in("admin", PASSWORD, client="198.51.100.7")  # the owner, elsewhere
    assert not accounts.sign_in("admin", PASSWORD, client="203.0.113.9")  # still locked there
    accounts.set_password("admin", PASSWORD + "!")  # a new password lifts every lock
    assert accounts.sign_in("admin", PASSWORD + "!", client="203.0.113.9")


def test_guessing_from_many_addresses_locks_the_account_everywhere(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'm.db'}")
    accounts = Accounts(store, lockout=LockoutPolicy(max_failures=3, account_max_failures=4, window_s=60, lock_s=60))
    accounts.add("admin", "admin", PASSWORD)
    for i in range(4):  # one guess each from four addresses (or one client naming four)
        assert not accounts.sign_in("admin", "guess-guess-guess", client=f"203.0.113.{i}")
    assert not accounts.sign_in("admin", PASSWORD, client="198.51.100.7")
    assert accounts.list()[0]["locked_everywhere"]
    accounts.set_disabled("admin", False)  # enabling (or a new password) lifts it
    assert accounts.sign_in("admin", PASSWORD, client="198.51.100.7")


def test_wrong_passwords_at_the_same_moment_are_all_counted(tmp_path):
    """SQLite has no row locks: each try takes the write lock first, so tries from one address that
    has no failures yet do not collide inserting its row (they did: IntegrityError, a 500)."""
    from concurrent.futures import ThreadPoolExecutor

    store = Store(f"sqlite:///{tmp_path / 'c.db'}")
    accounts = Accounts(store, lockout=LockoutPolicy(max_failures=6, window_s=60, lock_s=60))
    accounts.add("marie", "agent", PASSWORD)
    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(lambda _: accounts.sign_in("marie", "guess-guess-guess", client="10.0.0.9"), range(6)))
    assert results == [False] * 6
    assert accounts.list()[0]["locked_addresses"] == 1  # all six counted


def test_failures_outside_the_window_do_not_add_up(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'w.db'}")
    accounts = Accounts(store, lockout=LockoutPolicy(max_failures=2, window_s=0.3, lock_s=60))
    accounts.add("marie", "agent", PASSWORD)
    assert not accounts.sign_in("marie", "nope-nope-nope")
    time.sleep(0.4)
    assert not accounts.sign_in("marie", "nope-nope-nope")  # a new window: one failure
    assert accounts.sign_in("marie", PASSWORD)


def test_disabled_accounts_cannot_sign_in_or_act(accounts):
    accounts.add("marie", "agent", PASSWORD)
    accounts.set_disabled("marie", True)
    assert not accounts.sign_in("marie", PASSWORD)
    caller = accounts.caller("marie")
    assert caller.disabled
    with pytest.raises(AccountDisabled):
        require(caller, "agent")
    accounts.set_disabled("marie", False)
    assert accounts.sign_in("marie", PASSWORD)
    accounts.set_password("marie", "another long password")
    assert not accounts.sign_in("marie", PASSWORD) and accounts.sign_in("marie", "another long password")
    actions = [e["action"] for e in Audit(accounts.store).entries()]
    assert {"user_add", "user_disable", "user_enable", "user_passwd"} <= set(actions)


def test_roles():
    agent, admin = Caller("a", "agent"), Caller("b", "admin")
    assert require(agent, "agent") is agent and require(admin, "agent") is admin and require(admin, "admin") is admin
    with pytest.raises(WrongRole):
        require(agent, "admin")
    with pytest.raises(NotSignedIn):
        require(None, "agent")
    with pytest.raises(AccessDenied):
        require(Caller("c", "customer"), "agent")
    assert issubclass(AccessDenied, PermissionError)


def test_hugging_face_allow_lists():
    env = {"CHATBOT_HF_ADMINS": "Alice, bob", "CHATBOT_HF_AGENTS": "carol,,dave "}
    assert hf_role("alice", env) == "admin" and hf_role("BOB", env) == "admin"
    assert hf_role("carol", env) == "agent" and hf_role("dave", env) == "agent"
    assert hf_role("mallory", env) is None and hf_role("", env) is None and hf_role(None, env) is None
    assert hf_role("alice", {}) is None


def test_a_hugging_face_caller_is_hf_and_a_listed_name():
    env = {"CHATBOT_HF_ADMINS": "alice", "CHATBOT_HF_AGENTS": "carol"}
    assert hf_caller("hf:alice", env) == Caller("hf:alice", "admin", via="huggingface")
    assert hf_caller("hf:carol", env).role == "agent"
    assert hf_caller("alice", env) is None and hf_caller("xx:alice", env) is None  # only hf: names
    assert hf_caller("hf:mallory", env) is None and hf_caller("hf:", env) is None and hf_caller(None, env) is None
    assert hf_caller("hf:alice", {}) is None  # taken off the list: gone at the next call


def test_hugging_face_sign_outs_outlive_the_process_that_noted_them(database_url, monkeypatch):
    """A Hugging Face session lives in its cookie: the sign-out that ends it is kept in the database, so a
    restarted app (a new Store and Accounts on the same database) refuses a copy of the cookie too."""
    store = Store(database_url)
    sessions = Accounts(store).hf_sessions
    assert sessions.record("alice") is None
    before = time.time()
    assert sessions.sign_in("Alice", "id-1", "10.0.0.1")
    sessions.sign_out("Alice", "10.0.0.1")
    first = sessions.record("alice")
    assert first.sub == "id-1" and before - 1 <= first.signed_out_at <= time.time() + 1
    restarted = Accounts(Store(database_url)).hf_sessions
    assert restarted.record("ALICE") == first and restarted.record("bob") is None
    time.sleep(0.01)
    restarted.sign_out("alice")
    assert sessions.record("alice").signed_out_at > first.signed_out_at  # the later one counts, wherever noted
    latest = sessions.record("alice").signed_out_at
    monkeypatch.setattr("chatbot.accounts.now", lambda: datetime.fromtimestamp(before - 60, timezone.utc))
    sessions.sign_out("alice")  # noted late by a process whose clock is behind: the later time stays
    assert sessions.record("alice").signed_out_at == latest
    trail = Audit(store).entries()
    assert [(e["actor"], e["action"]) for e in trail] == [("hf:alice", "sign_out"), ("hf:alice", "sign_out"),
                                                          ("hf:Alice", "sign_out"), ("hf:Alice", "sign_in")]
    assert trail[2]["client"] == "10.0.0.1"


def test_a_hugging_face_name_is_held_by_the_account_that_first_signed_in(database_url):
    """Usernames can be given up and taken again: the account id (``sub``) of the first sign-in holds the
    name until an admin releases it."""
    store = Store(database_url)
    sessions = Accounts(store).hf_sessions
    assert sessions.sign_in("alice", "id-1") and sessions.sign_in("ALICE", "id-1")
    assert not sessions.sign_in("alice", "id-2")  # someone else under her old name
    assert sessions.record("alice").sub == "id-1"
    failed = Audit(store).entries(action="sign_in_failed")[0]
    assert failed["actor"] == "hf:alice" and "another Hugging Face account" in failed["detail"]
    assert sessions.release("hf:Alice", actor="cli:root") == "id-1"
    assert sessions.record("alice").sub is None
    assert sessions.release("carol") is None and sessions.record("carol") is None  # never held: nothing written
    assert sessions.sign_in("alice", "id-2") and sessions.record("alice").sub == "id-2"
    assert not sessions.sign_in("alice", "id-1")
    assert sessions.release("alice", sub="id-1") == "id-2" and sessions.record("alice").sub == "id-1"
    assert sessions.release("dave", sub="id-4") is None and sessions.record("dave").sub == "id-4"
    released = Audit(store).entries(action="hf_release")
    assert [e["actor"] for e in released] == ["cli", "cli", "cli:root"] and "id-1" in released[2]["detail"]


def test_hugging_face_sign_ins_at_several_processes_hold_one_row(database_url):
    """Two processes seeing a name's first sign-in at once: one row, held by one account."""
    import threading

    processes = [Accounts(Store(database_url)).hf_sessions for _ in range(4)]
    results = []
    threads = [threading.Thread(target=lambda p=p, i=i: results.append(p.sign_in("dave", f"id-{i % 2}")))
               for i, p in enumerate(processes)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    holder = processes[0].record("dave").sub
    assert sorted(results) == [False, False, True, True] and holder in ("id-0", "id-1")


def test_the_staff_sign_in_setting(monkeypatch):
    from chatbot.settings import staff_sign_in

    monkeypatch.delenv("CHATBOT_STAFF_SIGN_IN", raising=False)
    assert staff_sign_in() == "password"
    monkeypatch.setenv("CHATBOT_STAFF_SIGN_IN", " HuggingFace ")
    assert staff_sign_in() == "huggingface"
    monkeypatch.setenv("CHATBOT_STAFF_SIGN_IN", "oauth")
    with pytest.raises(ValueError, match="CHATBOT_STAFF_SIGN_IN must be one of password, huggingface"):
        staff_sign_in()


def test_bootstrap_admin_only_when_there_is_none(accounts):
    assert not accounts.bootstrap_admin(None)
    assert accounts.bootstrap_admin(PASSWORD)
    assert accounts.caller("admin").role == "admin" and accounts.sign_in("admin", PASSWORD)
    assert not accounts.bootstrap_admin("a different password")  # an admin exists: nothing changes
    assert accounts.sign_in("admin", PASSWORD)


def test_failures_at_several_processes_add_up(postgres_url):
    """Wrong passwords tried at three app processes at once lock the account after max_failures in all
    (each try locks the account's row until it is counted)."""
    import threading

    policy = LockoutPolicy(max_failures=6, window_s=60, lock_s=60)
    processes = [Accounts(Store(postgres_url), lockout=policy) for _ in range(3)]
    processes[0].add("marie", "agent", PASSWORD)
    barrier = threading.Barrier(3)

    def guesses(accounts):
        barrier.wait()
        for _ in range(2):
            accounts.sign_in("marie", "guess-guess-guess")

    threads = [threading.Thread(target=guesses, args=(a,)) for a in processes]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert processes[1].list()[0]["locked_until"]  # 6 failures counted, none lost
    assert not processes[2].sign_in("marie", PASSWORD)


def test_processes_starting_together_bootstrap_one_admin(postgres_url):
    import threading

    processes = [Accounts(Store(postgres_url)) for _ in range(4)]
    barrier, created = threading.Barrier(4), []

    def start(accounts):
        barrier.wait()
        created.append(accounts.bootstrap_admin(PASSWORD))

    threads = [threading.Thread(target=start, args=(a,)) for a in processes]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(created) == [False, False, False, True]  # no process failed to start
    assert [u["name"] for u in processes[0].list()] == ["admin"]
