"""Load on the real server (localhost, a tiny model): 100 concurrent conversations with malformed
requests mixed in. Every well-formed turn is answered and stored exactly once; retries are stored once."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from chatbot.loadtest import call_chat

CONVERSATIONS, TURNS = 100, 3
TEXTS = ["where track parcel status", "refund money back", "cancel order stop"]


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_model):
    import app
    from chatbot.service import Service

    service = Service(home_dir=tmp_path_factory.mktemp("home"), default_model=tiny_model)
    running = app.Server(app.create_server(service, limit=0))  # every conversation comes from 127.0.0.1
    yield running.url, service
    running.close()


def conversation(url: str, n: int) -> dict:
    with httpx.Client(base_url=url, timeout=120) as client:
        cid, turns = "", []
        for t in range(TURNS):
            text = f"{TEXTS[t]} {n}"
            status, turn = call_chat(client, [text, cid, "en-GB,en;q=0.9", f"c{n}-t{t}"])
            assert status == 200 and turn and turn["reply"], (n, t, status, turn)
            if cid:
                assert turn["conversation_id"] == cid
            cid = turn["conversation_id"]
            if n % 10 == 0 and t == 1:  # a client that retries (timeout on its side): same message id
                status, again = call_chat(client, [text, cid, "en-GB,en;q=0.9", f"c{n}-t{t}"])
                assert status == 200 and again["reply"] == turn["reply"]
            turns.append(text)
        return {"id": cid, "texts": turns}


MALFORMED = [
    ["where parcel", 12345, "en", ""],  # a non-string id
    ["where parcel", "", ["en", "fr"], ""],  # a list as Accept-Language
    ["where \ud800 parcel \udfff", "", "en", ""],  # lone surrogates
    [None, None, None, None],
    [["a", "list"], {"$ne": ""}, 7, ["x"]],
    ["where parcel", "A" * 32, "en", "not a valid / id"],
    [],  # no values at all (Gradio zips a batch's inputs: this one would empty everybody's)
    ["where parcel", "", "en"],  # the published 3-argument call, without a client message id
]


def malformed(url: str, i: int) -> tuple[int, dict | None]:
    with httpx.Client(base_url=url, timeout=120) as client:
        if i == len(MALFORMED):
            return call_chat(client, content=b'{"data": ["' + b"x" * (2 << 20) + b'"]}')  # over the body limit
        if i == len(MALFORMED) + 1:
            return call_chat(client, content=b"{not json")
        return call_chat(client, MALFORMED[i])


def test_100_concurrent_conversations_with_malformed_requests_mixed_in(server):
    url, service = server
    before = service.store.count_messages()
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=32) as pool:
        jobs = [pool.submit(conversation, url, n) for n in range(CONVERSATIONS)]
        bad = [pool.submit(malformed, url, i) for i in range(len(MALFORMED) + 2)]
        done = [j.result(timeout=300) for j in jobs]
        bad_results = [b.result(timeout=300) for b in bad]
    elapsed = time.perf_counter() - start
    assert elapsed < 240, f"{elapsed:.0f} s"
    assert len({d["id"] for d in done}) == CONVERSATIONS
    for d in done:
        stored = [m["text"] for m in service.history(d["id"]) if m["role"] == "customer"]
        assert stored == d["texts"], d  # every turn exactly once, in order
        assert [m["role"] for m in service.history(d["id"])] == ["customer", "bot"] * TURNS
    statuses = [status for status, _ in bad_results]
    assert statuses[len(MALFORMED):] == [413, 422]  # too large; not JSON
    answered = [turn for status, turn in bad_results[:len(MALFORMED)] if status == 200 and turn]
    assert len(answered) == len(MALFORMED)  # every malformed request got its own clear reply
    assert all(t["reply"] and t["conversation_id"] != "A" * 32 for t in answered)
    stored = service.store.count_messages() - before
    assert CONVERSATIONS * TURNS * 2 <= stored <= CONVERSATIONS * TURNS * 2 + 2 * len(MALFORMED)
    print(f"\n{CONVERSATIONS} conversations × {TURNS} turns + {len(bad)} malformed requests: {elapsed:.1f} s")
