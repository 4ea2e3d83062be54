"""app.py as outsiders and staff reach it over HTTP, on a tiny model (no browser).

The customer app's handlers are called generically from its ``/config`` by an anonymous client,
with empty values and with every id it can find: it must get no other customer's text and write
into no other conversation. The staff app must refuse every handler to anonymous clients, and its
handlers must refuse a disabled account (and an agent on admin handlers) on the server.
"""

from __future__ import annotations

import json
from contextlib import closing
import re
from pathlib import Path

import httpx
import pytest

from authlib.integrations.base_client.errors import MismatchingStateError
from authlib.integrations.starlette_client import StarletteOAuth2App
from gradio_protocol import call, config

PASSWORD = "correct horse battery staple"
SECRET = "VICTIM-SECRET-9f1c3 order 5521 at 12 rue des Lilas"


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_model):
    import app
    from chatbot.service import Service

    service = Service(home_dir=tmp_path_factory.mktemp("home"), default_model=tiny_model)
    for name, role in (("root", "admin"), ("marie", "agent"), ("eve", "agent")):
        service.accounts.add(name, role, PASSWORD)
    victim = service.chat([f"cancel order stop {SECRET}"], [""], ["fr"])[0].conversation_id
    running = app.Server(app.create_server(service))
    yield running.url, service, victim
    running.close()


def signed_in(url: str, name: str) -> httpx.Client:
    client = httpx.Client(base_url=url, timeout=60)
    assert client.post("/staff/login", data={"username": name, "password": PASSWORD}).status_code == 200
    return client


def test_chat_endpoint_continues_a_conversation(server):
    from gradio_client import Client

    url, service, _ = server
    api = Client(url, verbose=False)
    first = api.predict("cancel order stop annuler commande", "", "fr-FR,fr;q=0.9", api_name="/chat")
    assert first["conversation_id"] and first["reply"]
    second = api.predict("refund money back", first["conversation_id"], "", api_name="/chat")
    assert second["conversation_id"] == first["conversation_id"]
    assert len(service.history(first["conversation_id"])) == 4
    # a client-chosen id is never honoured: a new conversation with a server id starts
    claimed = api.predict("where track parcel", "my-own-conversation-id", "", api_name="/chat")
    assert claimed["conversation_id"] not in ("my-own-conversation-id", first["conversation_id"])
    # the optional client message id: a retried turn is stored once
    retry = [api.predict("where parcel status", first["conversation_id"], "", "msg-42", api_name="/chat")
             for _ in range(2)]
    assert retry[0] == retry[1] and len(service.history(first["conversation_id"])) == 6


def test_analyse_endpoint_stores_nothing(server):
    from gradio_client import Client

    url, service, _ = server
    before = service.store.count_messages()
    result = Client(url, verbose=False).predict("cancel order", api_name="/analyse")
    assert result["lang"]["lang"] and len(result["top"]) == 3
    assert service.store.count_messages() == before


def test_only_the_two_endpoints_are_public(server):
    from gradio_client import Client

    api = Client(server[0], verbose=False)
    assert set(api.view_api(print_info=False, return_format="dict")["named_endpoints"]) == {"/chat", "/analyse"}


def test_bounds_before_work(server):
    url = server[0]
    with httpx.Client(base_url=url, timeout=60) as client:
        big = client.post("/gradio_api/call/chat", content=b'{"data": ["' + b"x" * (2 << 20) + b'"]}',
                          headers={"content-type": "application/json"})
        assert big.status_code == 413
        assert client.post("/gradio_api/upload", files={"files": ("a.txt", b"hello")}).status_code == 403
        assert client.post("/staff/gradio_api/upload", files={"files": ("a.txt", b"hello")}).status_code == 403
        assert client.get("/staff", follow_redirects=False).status_code in (301, 302, 307)
        for prefix in ("", "/staff"):  # a handler that does not exist: 404, not Gradio's 500
            for index in (99, -1):
                missing = client.post(f"{prefix}/gradio_api/queue/join",
                                      json={"data": [], "fn_index": index, "session_hash": "abcdefghijk"})
                assert missing.status_code == 404, (prefix, index)
        assert client.post("/gradio_api/call/nonexistent", json={"data": []}).status_code == 404
        assert client.post("/gradio_api/call/analyse", json={"data": ["hello"]}).status_code == 200


def ids_in(value) -> set[str]:
    return set(re.findall(r"(?<![A-Za-z0-9_-])[A-Za-z0-9_-]{32}(?![A-Za-z0-9_-])", json.dumps(value)))


def every_handler(client: httpx.Client, prefix: str, deps: list[dict], ids: set[str], extra=()) -> list[dict]:
    """Each handler with empty values, then with each id found so far in every input slot."""
    results = []
    for dep in deps:
        width = len(dep["inputs"])
        variants = [[None] * width, [""] * width]
        for found in sorted(ids) + list(extra):
            variants += [[found] * width, [found, *([""] * (width - 1))] if width else []]
        for data in variants:
            result = call(client, dep["id"], data, prefix, event_data={"index": [0, 0], "value": data[:1]})
            results.append({"fn": dep.get("api_name"), "data": data, **result})
            ids |= ids_in(result["output"])
    return results


def test_an_anonymous_client_gets_no_other_conversation_and_writes_into_none(server):
    url, service, victim = server
    before = service.history(victim)
    with httpx.Client(base_url=url, timeout=60) as client:
        page = config(client)
        mine = call(client, next(d["id"] for d in page["dependencies"] if d.get("api_name") == "chat"),
                    ["where track parcel", "", "en", ""])
        ids = ids_in(page) | ids_in(mine["output"])
        assert ids and victim not in ids
        near_miss = victim[:-1] + ("y" if victim.endswith("x") else "x")  # one character off, never the id itself
        results = every_handler(client, "", page["dependencies"], ids,
                                extra=("A" * 32, near_miss, "../" * 3, "123e4567-e89b-42d3-a456-426614174000"))
    assert len(results) > 4 * len(page["dependencies"])
    assert any(r["success"] for r in results)  # the calls went through; refusing everything proves nothing
    for r in results:
        assert SECRET not in r["text"] and "VICTIM" not in r["text"] and victim not in r["text"], r["fn"]
    assert service.history(victim) == before  # nothing written into the victim's conversation
    names = {d.get("api_name") for d in page["dependencies"]}
    assert not names & {"queues", "open_conversation", "agent_send", "admin_refresh"}  # no staff handler here


def staff_dependencies(url: str) -> list[dict]:
    with closing(signed_in(url, "root")) as admin:
        return config(admin, "/staff/")["dependencies"]


def test_the_staff_app_refuses_every_handler_to_anonymous_clients(server):
    url, service, victim = server
    deps = staff_dependencies(url)
    assert len(deps) > 15
    with httpx.Client(base_url=url, timeout=60) as client:
        assert client.get("/staff/config").status_code == 401
        assert client.get("/staff/gradio_api/info").status_code == 401
        for dep in deps:
            for data in ([None] * len(dep["inputs"]), [victim] * len(dep["inputs"])):
                assert call(client, dep["id"], data, "/staff/")["status"] == 401, dep.get("api_name")


def test_staff_handlers_refuse_a_disabled_account_and_agents_on_admin_handlers(server):
    url, service, victim = server
    deps = staff_dependencies(url)
    before = service.history(victim)
    eve = signed_in(url, "eve")
    service.accounts.set_disabled("eve", True)  # her session is still open: every handler must check
    try:
        results = every_handler(eve, "/staff/", deps, {victim})
    finally:
        service.accounts.set_disabled("eve", False)
        eve.close()
    refused = [r for r in results if r["fn"] != "admin_load"]  # which shows an agent nothing, silently
    assert refused and not any(r["success"] for r in refused)
    assert any("disabled" in r["text"] for r in results)
    for r in results:
        assert SECRET not in r["text"], r["fn"]
    assert service.history(victim) == before
    assert [e["action"] for e in service.audit.entries(50) if e["actor"] == "eve"] == ["sign_in"]

    versions = [s["name"] for s in service.registry.summaries()]
    with closing(signed_in(url, "marie")) as marie:
        results = every_handler(marie, "/staff/", deps, {victim, "default"})
    admin_handlers = [r for r in results if r["fn"] in ("admin_refresh", "start_build", "start_soup", "cancel_build", "promote",
                                                        "rollback", "delete", "erase_conversation")]
    assert admin_handlers and not any(r["success"] for r in admin_handlers)
    assert any("Only admins" in r["text"] for r in admin_handlers)
    assert not any("root" in json.dumps(r["output"]) for r in results)  # the users table and audit trail
    assert service.store.conversation(victim) is not None and [s["name"] for s in service.registry.summaries()] == versions
    admin_actions = {"erase", "build", "soup", "cancel", "promote", "rollback", "delete"}
    assert not [e for e in service.audit.entries(500) if e["action"] in admin_actions]


def test_a_click_without_event_data_is_a_click_on_nothing(server):
    """A select handler called without event data (an API client; a browser always sends it) answers
    as for a click on nothing, for a customer and for staff, instead of failing inside Gradio."""
    url = server[0]
    with httpx.Client(base_url=url, timeout=60) as customer, closing(signed_in(url, "root")) as admin:
        for client, prefix in ((customer, ""), (admin, "/staff/")):
            clicks = [d for d in config(client, prefix)["dependencies"] if d.get("collects_event_data")]
            assert clicks, prefix
            for dep in clicks:
                for event_data in (None, {}, "x"):
                    result = call(client, dep["id"], [None] * len(dep["inputs"]), prefix, event_data=event_data)
                    # the Cancel of a build that does not exist says so; every other click succeeds
                    assert result["success"] or "no such build" in result["text"], (prefix, dep["id"], result["text"][-400:])


def test_an_admin_reaches_the_admin_handlers(server):
    url, service, _ = server
    deps = {d.get("api_name"): d["id"] for d in staff_dependencies(url)}
    import tempfile

    with closing(signed_in(url, "root")) as admin:
        result = call(admin, deps["admin_refresh"], [], "/staff/")
        assert result["success"], result["text"][-500:]
        plot = result["output"]["data"][2]
        assert admin.get(plot["url"]).content[:4] in (b"RIFF", b"\x89PNG")  # the plot, served by Gradio
    assert "Live version" in json.dumps(result["output"]) and "root" in json.dumps(result["output"])
    assert not list(Path(tempfile.gettempdir()).glob("chatbot-plot-*"))  # and not left behind at each view


def test_customers_sending_at_once_each_get_their_own_turn(tmp_path, tiny_model):
    """Gradio runs a batch of several sessions' calls with the first caller's session state: whatever
    the batched chat handler reads must come from each customer's own page, or every customer in the
    batch gets the first one's message (and answer)."""
    import secrets
    import threading
    import time

    import app
    from chatbot.service import Service

    service = Service(home_dir=tmp_path, default_model=tiny_model)
    classifier = service.assistant.classifier
    predict = classifier.predict

    def slow_on_purpose(texts, *args, **kwargs):  # holds the model's queue, so that the next two batch
        if any("slowly" in t for t in texts):
            time.sleep(2)
        return predict(texts, *args, **kwargs)

    classifier.predict = slow_on_purpose
    running = app.Server(app.create_server(service))
    texts = {"H": "answer slowly please: where is my parcel", "A": "cancel order stop annuler commande",
             "B": "refund money back for the blue shoes"}
    conversations: dict[str, str] = {}
    try:
        deps = config(httpx.Client(base_url=running.url, timeout=60))["dependencies"]
        stage = next(d["id"] for d in deps if d.get("queue") is False and len(d["inputs"]) == 3
                     and len(d["outputs"]) == 4)
        batched = next(d["id"] for d in deps if d.get("batch") and d.get("api_name") != "chat")

        def customer(who: str) -> None:  # what the page does: stage (the message shows), then the batched turn
            session = f"{who}-{secrets.token_hex(8)}"
            with httpx.Client(base_url=running.url, timeout=60) as client:
                staged = client.post("/gradio_api/run/predict", json={
                    "data": [texts[who], "", "en"], "fn_index": stage, "session_hash": session}).json()["data"]
                joined = client.post("/gradio_api/queue/join", json={
                    "data": [staged[0], "", "en"], "fn_index": batched, "session_hash": session})
                assert joined.status_code == 200, joined.text
                with client.stream("GET", "/gradio_api/queue/data", params={"session_hash": session}) as events:
                    for line in events.iter_lines():
                        message = json.loads(line[5:]) if line.startswith("data:") else {}
                        if message.get("msg") == "process_completed":
                            conversations[who] = message["output"]["data"][0]
                            return

        holder = threading.Thread(target=customer, args=("H",))
        holder.start()
        time.sleep(0.5)
        together = [threading.Thread(target=customer, args=(who,)) for who in "AB"]
        for t in together:
            t.start()
        for t in [holder, *together]:
            t.join()
    finally:
        running.close()
    for who, text in texts.items():
        said = [m["text"] for m in service.store.messages(conversations[who]) if m["role"] == "customer"]
        assert said == [text], who


def test_one_address_may_send_only_so_many_chat_turns(tmp_path, tiny_model):
    import app
    from chatbot.service import Service

    service = Service(home_dir=tmp_path, default_model=tiny_model)
    running = app.Server(app.create_server(service, limit=2))
    try:
        with httpx.Client(base_url=running.url, timeout=60) as client:
            codes = [client.post("/gradio_api/call/chat", json={"data": ["where parcel", "", "en"]}).status_code
                     for _ in range(3)]
    finally:
        running.close()
    assert codes == [200, 200, 429]


def test_taking_over_keeps_the_agents_own_draft(server):
    from types import SimpleNamespace

    import app

    _, service, _ = server
    marie = SimpleNamespace(username="marie", client=SimpleNamespace(host="127.0.0.1"))
    cid = service.chat(["refund money back, draft test"], [""], ["en"])[0].conversation_id
    shown = app.agent_take_over(service, cid, "My own words, half written", "the suggestion", marie)
    assert shown[3] == app.gr.skip() and shown[4] == app.gr.skip()  # the box and what was suggested stay
    other = service.chat(["refund money back, second"], [""], ["en"])[0].conversation_id
    shown = app.agent_take_over(service, other, "the suggestion", "the suggestion", marie)  # not edited
    assert isinstance(shown[3], str) and shown[3] != "the suggestion"  # a fresh suggestion replaces it


# ----------------------------------------------------------------- staff sign-in with Hugging Face
OAUTH_SECRET = "test-oauth-secret"


@pytest.fixture(scope="module")
def hf_server(tmp_path_factory, tiny_model):
    """The app as a Space with ``hf_oauth: true`` and ``CHATBOT_STAFF_SIGN_IN=huggingface`` would run it:
    alice is on the admins' list, bob on the agents', a password account exists but must not count."""
    import gradio.oauth

    import app
    from chatbot.service import Service

    with pytest.MonkeyPatch.context() as mp:
        for env, value in (("SYSTEM", "spaces"), ("SPACE_ID", "us/chatbot"), ("CHATBOT_HF_ADMINS", "alice"),
                           ("CHATBOT_HF_AGENTS", "Bob"), ("CHATBOT_STAFF_SIGN_IN", "huggingface")):
            mp.setenv(env, value)
        for name, value in (("OAUTH_CLIENT_ID", "test-client"), ("OAUTH_CLIENT_SECRET", OAUTH_SECRET),
                            ("OAUTH_SCOPES", "openid profile"), ("OPENID_PROVIDER_URL", "http://127.0.0.1:9")):
            mp.setattr(gradio.oauth, name, value)
        mp.setattr(StarletteOAuth2App, "authorize_access_token", hugging_face_answers)
        service = Service(home_dir=tmp_path_factory.mktemp("home"), default_model=tiny_model)
        service.accounts.add("root", "admin", PASSWORD)
        running = app.Server(app.create_server(service))
        yield running.url, service
        running.close()


async def hugging_face_answers(client, request, **kwargs) -> dict:
    """What Hugging Face answers Gradio's ``/login/callback`` (its token exchange, which cannot run here):
    the user named by the callback's ``code``."""
    import time

    if request.query_params.get("state") == "bad":
        raise MismatchingStateError()
    name = request.query_params["code"]
    return {"access_token": "t", "expires_at": int(time.time() + 3600), "expires_in": 3600,
            "userinfo": {"preferred_username": name, "sub": request.query_params.get("sub", f"id-{name}")}}


def hf_session(username: str, expires_in: float = 3600, secret: str = OAUTH_SECRET, sub: str | None = None) -> dict:
    """The cookie Gradio's ``/login/callback`` sets after Hugging Face signed ``username`` in
    (Starlette's SessionMiddleware format, with the key Gradio derives from the OAuth secret)."""
    import base64
    import hashlib
    import time

    from itsdangerous import TimestampSigner

    info = {"access_token": "t", "expires_at": int(time.time() + expires_in), "expires_in": 3600,
            "userinfo": {"preferred_username": username, "name": username, "sub": sub or f"id-{username}"}}
    data = base64.b64encode(json.dumps({"oauth_info": info}).encode())
    key = hashlib.sha256((secret + "-v4").encode()).hexdigest()
    return {"session": TimestampSigner(key).sign(data).decode()}


def test_hugging_face_sign_in_lets_in_whom_the_lists_name_with_their_role(hf_server):
    url, service = hf_server
    with httpx.Client(base_url=url, timeout=60) as nobody:
        to_hf = nobody.get("/staff/", follow_redirects=False)
        assert to_hf.status_code == 302 and to_hf.headers["location"] == "/login/huggingface?_target_url=/staff/"
        assert nobody.get("/staff/config").status_code == 401
        # a password account is no way in under Hugging Face sign-in
        nobody.post("/staff/login", data={"username": "root", "password": PASSWORD})
        assert nobody.get("/staff/config").status_code == 401
    for cookie in (hf_session("alice", expires_in=-10), hf_session("alice", secret="forged")):
        with httpx.Client(base_url=url, timeout=60, cookies=cookie) as stale:
            assert stale.get("/staff/", follow_redirects=False).status_code == 302
            assert stale.get("/staff/config").status_code == 401

    with httpx.Client(base_url=url, timeout=60, cookies=hf_session("alice")) as early:  # no account holds the name
        assert early.get("/staff/", follow_redirects=False).status_code == 302  # yet: signing in takes it
        assert early.get("/staff/config").status_code == 401
    for user in ("alice", "bob", "mallory"):  # back from Hugging Face: a listed user's sign-in is audited
        with httpx.Client(base_url=url, timeout=60) as browser:
            back = browser.get(f"/login/callback?code={user}&state=s", follow_redirects=False)
            assert back.status_code in (302, 307) and "session=" in back.headers["set-cookie"]
    signed_in = service.audit.entries(action="sign_in")
    assert [(e["actor"], e["action"], e["client"]) for e in signed_in] == [("hf:bob", "sign_in", "127.0.0.1"),
                                                                         ("hf:alice", "sign_in", "127.0.0.1")]
    with httpx.Client(base_url=url, timeout=60, cookies=hf_session("alice")) as again:  # a callback that fails
        assert again.get("/login/callback?code=alice&state=bad", follow_redirects=False).status_code in (302, 307)
    assert len(service.audit.entries(action="sign_in")) == 2  # is no sign-in
    # alice renamed herself and someone else took "alice", still on the list: the first account holds the name
    with httpx.Client(base_url=url, timeout=60) as browser:
        browser.get("/login/callback?code=alice&sub=id-thief&state=s", follow_redirects=False)
    assert "another Hugging Face account" in service.audit.entries(action="sign_in_failed")[0]["detail"]
    with httpx.Client(base_url=url, timeout=60, cookies=hf_session("alice", sub="id-thief")) as thief:
        page = thief.get("/staff/", follow_redirects=False)
        assert page.status_code == 403 and "hf-release" in page.text and "id-thief" in page.text
        assert thief.get("/staff/config").status_code == 401
        thief.get("/logout", follow_redirects=False)  # ends nobody's sessions: the name is not theirs
    assert not service.audit.entries(action="sign_out")

    copied = hf_session("alice", expires_in=3600 - 5)  # signed in a few seconds earlier
    with httpx.Client(base_url=url, timeout=60, cookies=hf_session("alice")) as alice:
        assert alice.get("/staff/").status_code == 200
        deps = {d.get("api_name"): d["id"] for d in config(alice, "/staff/")["dependencies"]}
        shown = call(alice, deps["staff_load"], [], "/staff/")
        assert shown["success"] and "Signed in as **hf:alice** (admin) · [Sign out](/logout)" in shown["output"]["data"][0]
        assert call(alice, deps["admin_refresh"], [], "/staff/")["success"]
        # a page on another site cannot use alice's cookie (Gradio would let any origin read the answer)
        evil = {"origin": "https://evil.example"}
        assert alice.post("/staff/gradio_api/queue/join", headers=evil,
                          json={"data": [], "fn_index": deps["admin_refresh"], "session_hash": "e"}).status_code == 403
        assert alice.options("/staff/gradio_api/queue/join",
                             headers={**evil, "access-control-request-method": "POST"}).status_code == 403
        out = alice.get("/logout", follow_redirects=False)  # Gradio's OAuth route, not the customer app's
        assert out.status_code in (302, 307) and out.headers["location"] == "/"
        assert "session=null" in out.headers.get("set-cookie", "")
        assert service.audit.entries(action="sign_out")[0]["actor"] == "hf:alice"
    with httpx.Client(base_url=url, timeout=60, cookies=copied) as replay:  # her cookie, copied before
        assert replay.get("/staff/config").status_code == 401
        assert replay.get("/staff/", follow_redirects=False).status_code == 302
        replay.get("/logout", follow_redirects=False)  # a signed-out copy notes no new sign-out
    assert len(service.audit.entries(action="sign_out")) == 1
    with httpx.Client(base_url=url, timeout=60, cookies=hf_session("bob")) as bob:  # the lists ignore case
        refused = call(bob, deps["admin_refresh"], [], "/staff/")
        assert not refused["success"] and "Only admins" in refused["text"]
        assert call(bob, deps["staff_load"], [], "/staff/")["success"]
        from chatbot.accounts import Accounts
        from chatbot.store import Store

        Accounts(Store(service.store.url)).hf_sessions.sign_out("BOB")  # at another process of the app
        assert bob.get("/staff/config").status_code == 401

    with httpx.Client(base_url=url, timeout=60, cookies=hf_session("<b>mallory</b>")) as mallory:
        page = mallory.get("/staff/", follow_redirects=False)
        assert page.status_code == 403 and "&lt;b&gt;mallory&lt;/b&gt;" in page.text and "<b>mallory" not in page.text
        assert mallory.get("/staff/config").status_code == 401
        assert call(mallory, deps["staff_load"], [], "/staff/")["status"] == 401
        mallory.get("/logout", follow_redirects=False)  # not on the lists: nothing of hers in the database
    assert [e["actor"] for e in service.audit.entries(action="sign_out")] == ["hf:BOB", "hf:alice"]
    assert service.accounts.hf_sessions.record("<b>mallory</b>") is None


def test_hugging_face_sign_in_is_refused_outside_a_space(tmp_path, tiny_model, monkeypatch):
    import app
    from chatbot.service import Service

    monkeypatch.delenv("SYSTEM", raising=False)
    service = Service(home_dir=tmp_path, default_model=tiny_model, sign_in="huggingface")
    with pytest.raises(RuntimeError, match="hf_oauth"):
        app.create_server(service)
