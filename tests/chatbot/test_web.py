"""The server's guards on a stand-in app: body limit, uploads, sign-in throttle, batched call shapes."""

import json

import httpx
import pytest

from chatbot.web import route_path, Guard, Throttle, client_address, cross_site


async def echo(scope, receive, send):
    body, more = b"", True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    reply = json.dumps({"body": body.decode(), "client": client_address.get()}).encode()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": reply})


@pytest.fixture()
def client():
    guard = Guard(echo, max_body=1000, login_throttle=Throttle(limit=3, window_s=60),
                  batch_inputs={("", "chat"): 4, ("", 1): 3})
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=guard, client=("10.1.2.3", 5)), base_url="http://t")


@pytest.mark.anyio
async def test_guards(client):
    async with client:
        assert (await client.post("/gradio_api/queue/join", content=b"x" * 1001)).status_code == 413
        async def chunks():
            for _ in range(5):
                yield b"x" * 300
        assert (await client.post("/gradio_api/queue/join", content=chunks())).status_code == 413
        assert (await client.post("/staff/gradio_api/upload", content=b"file")).status_code == 403
        assert [(await client.post("/staff/login", data={"username": "a"})).status_code for _ in range(4)] == [
            200, 200, 200, 429]
        assert (await client.post("/login")).status_code == 429  # per client address, whatever the mount
        sent = await client.post("/gradio_api/call/chat", json={"data": []})
        assert json.loads(sent.json()["body"])["data"] == [None] * 4
        sent = await client.post("/gradio_api/queue/join", json={"data": [1, 2, 3, 4, 5], "fn_index": 1})
        assert json.loads(sent.json()["body"]) == {"data": [1, 2, 3], "fn_index": 1} and sent.json()["client"] == "10.1.2.3"
        untouched = await client.post("/gradio_api/queue/join", json={"data": [], "fn_index": 7})
        assert json.loads(untouched.json()["body"])["data"] == []
        # Gradio reads "1", 1.0 and true as handler 1: a call the shapes above would miss, whose one value
        # would break every other call of the batch it joins.
        for index in ("1", 1.0, True, [1]):
            refused = await client.post("/gradio_api/queue/join", json={"data": ["x"], "fn_index": index})
            assert refused.status_code == 400 and "fn_index" in refused.text


@pytest.mark.anyio
async def test_chat_turns_are_limited_per_client_address():
    guard = Guard(echo, batch_inputs={("", "chat"): 4, ("", 1): 3}, chat_throttle=Throttle(limit=3, window_s=60))
    one, other = (httpx.AsyncClient(transport=httpx.ASGITransport(app=guard, client=(ip, 5)), base_url="http://t")
                  for ip in ("10.0.0.1", "10.0.0.2"))
    async with one, other:
        turns = [(await one.post("/gradio_api/queue/join", json={"data": [], "fn_index": 1})).status_code,
                 (await one.post("/gradio_api/call/chat", json={"data": []})).status_code,
                 (await one.post("/gradio_api/queue/join", json={"data": [], "fn_index": 1})).status_code,
                 (await one.post("/gradio_api/call/chat", json={"data": []})).status_code]
        assert turns == [200, 200, 200, 429]
        # Gradio runs the handler the body names whatever the path says: the same turn by index
        by_index = await one.post("/gradio_api/run/predict", json={"data": [], "fn_index": 1, "batched": True})
        assert by_index.status_code == 429
        assert (await one.post("/gradio_api/queue/join", json={"data": [], "fn_index": 7})).status_code == 200  # not a turn
        assert (await other.post("/gradio_api/call/chat", json={"data": []})).status_code == 200  # another address


@pytest.mark.anyio
async def test_a_call_of_a_handler_that_does_not_exist_is_refused():
    guard = Guard(echo, handlers={"": {0, 1, "chat"}, "/staff": {0, 5}})
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=guard), base_url="http://t") as c:
        async def status(path, body):
            return (await c.post(path, json=body)).status_code

        assert await status("/gradio_api/queue/join", {"data": [], "fn_index": 2}) == 404
        assert await status("/staff/gradio_api/queue/join", {"data": [], "fn_index": 1}) == 404
        assert await status("/gradio_api/call/nonexistent", {"data": []}) == 404
        assert await status("/gradio_api/run/predict", {"data": [], "fn_index": 9}) == 404
        assert await status("/gradio_api/queue/join", {"data": [], "fn_index": 1}) == 200
        assert await status("/staff/gradio_api/queue/join", {"data": [], "fn_index": 5}) == 200
        assert await status("/gradio_api/call/chat", {"data": []}) == 200
        assert await status("/gradio_api/run/predict", {"data": [], "fn_index": 0}) == 200  # the body names it
        assert await status("/other/gradio_api/queue/join", {"data": [], "fn_index": 99}) == 200  # not ours to know
        # /call/<name> runs the handler it names, whatever index the body carries
        assert await status("/gradio_api/call/nonexistent", {"data": [], "fn_index": 0}) == 404
        assert await status("/gradio_api/call/v2/chat", {"data": [], "fn_index": 7}) == 200


@pytest.mark.anyio
async def test_the_guard_sees_the_paths_the_routes_see_under_a_root_path():
    """``uvicorn --root-path /bot``: the scope's path starts with /bot, the mounts do not."""
    guard = Guard(echo, same_origin=("/staff",), handlers={"/staff": {0}})
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=guard, root_path="/bot"),
                                 base_url="https://bot.example") as c:
        evil = {"origin": "https://evil.example"}
        assert (await c.post("/bot/staff/gradio_api/queue/join", json={"fn_index": 0}, headers=evil)).status_code == 403
        assert (await c.post("/bot/staff/gradio_api/queue/join", json={"fn_index": 99})).status_code == 404
        assert (await c.post("/bot/staff/gradio_api/queue/join", json={"fn_index": 0})).status_code == 200
    assert route_path({"path": "/bot", "root_path": "/bot"}) == "/"
    assert route_path({"path": "/botany/x", "root_path": "/bot"}) == "/botany/x"


@pytest.fixture()
def anyio_backend():
    return "asyncio"


@pytest.mark.anyio
async def test_other_sites_pages_cannot_call_the_staff_console():
    """A signed-in agent's browser sends their cookie with any page's request: the guard refuses what
    another site's page asks of the staff mount, and leaves the customers' (a public API) alone."""
    guard = Guard(echo, same_origin=("/staff",))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=guard), base_url="https://bot.example") as c:
        evil = {"origin": "https://evil.example"}
        assert (await c.post("/staff/gradio_api/queue/join", json={}, headers=evil)).status_code == 403
        preflight = {**evil, "access-control-request-method": "POST"}
        assert (await c.options("/staff/gradio_api/queue/join", headers=preflight)).status_code == 403
        assert (await c.get("/staff/gradio_api/queue/data", headers={"origin": "null"})).status_code == 403
        assert (await c.get("/staff/config", headers={"sec-fetch-site": "cross-site", "sec-fetch-mode": "cors"})
                ).status_code == 403
        assert (await c.get("/staff/logout", headers={"sec-fetch-site": "cross-site", "sec-fetch-mode": "navigate"})
                ).status_code == 403
        assert (await c.get("/logout", headers={"sec-fetch-site": "cross-site", "sec-fetch-mode": "navigate"})
                ).status_code == 403
        # its own pages, a link from elsewhere, a client with no browser, and the customers' API from anywhere
        for headers in ({"origin": "https://bot.example"}, {"origin": "https://BOT.example:443"},
                        {"sec-fetch-site": "cross-site", "sec-fetch-mode": "navigate"}, {}):
            assert (await c.post("/staff/gradio_api/queue/join", json={}, headers=headers)).status_code == 200, headers
        assert (await c.post("/gradio_api/queue/join", json={}, headers=evil)).status_code == 200
        assert (await c.get("/staffing", headers=evil)).status_code == 200


@pytest.mark.anyio
async def test_a_browser_too_old_for_fetch_metadata_is_not_signed_out_by_another_site():
    """Without ``Sec-Fetch-Site``, the ``Origin`` or ``Referer`` of a sign-out says which page asked."""
    guard = Guard(echo, same_origin=("/staff",))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=guard), base_url="https://bot.example") as c:
        for path in ("/logout", "/staff/logout"):
            for headers in ({"referer": "https://evil.example/page"}, {"origin": "https://evil.example"},
                            {"referer": "https://bot.example.evil.example/"}):
                assert (await c.get(path, headers=headers)).status_code == 403, (path, headers)
            for headers in ({"referer": "https://bot.example/staff/"}, {}, {"sec-fetch-site": "same-origin",
                                                                           "referer": "https://evil.example/"}):
                assert (await c.get(path, headers=headers)).status_code == 200, (path, headers)
        assert (await c.get("/", headers={"referer": "https://evil.example/"})).status_code == 200  # only sign-outs


def test_what_counts_as_another_site():
    assert not cross_site({b"origin": b"http://localhost:7860", b"host": b"localhost:7860"})
    assert cross_site({b"origin": b"http://localhost:7861", b"host": b"localhost:7860"})
    assert cross_site({b"origin": b"https://bot.example.evil.example", b"host": b"bot.example"})
    # behind a proxy that names the public host
    assert not cross_site({b"origin": b"https://x.hf.space", b"host": b"10.0.0.5:7860", b"x-forwarded-host": b"x.hf.space"})
    assert cross_site({b"origin": b"https://y.hf.space", b"host": b"10.0.0.5:7860", b"x-forwarded-host": b"x.hf.space"})
    assert not cross_site({b"sec-fetch-site": b"same-origin", b"sec-fetch-mode": b"cors"})
