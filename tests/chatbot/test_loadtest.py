"""``python -m chatbot loadtest``: bounded, localhost only, and its check finds lost and reordered turns."""

import json

import pytest

from chatbot.loadtest import LoadTestArgs, TurnResult, check_stored, percentile, run_loadtest
from chatbot.store import Store


@pytest.mark.parametrize("bad", [{"url": ["http://example.com:7860/"]}, {"url": []}, {"concurrency": [0]},
                                 {"concurrency": [500]}, {"turns": 50}, {"timeout_s": 0},
                                 {"url": ["file:///etc/passwd"]}])
def test_arguments_are_bounded_and_local(bad):
    with pytest.raises(ValueError):
        LoadTestArgs(**{"url": ["http://127.0.0.1:7860/"], **bad})


def test_the_check_counts_lost_and_reordered_turns(tmp_path):
    url = f"sqlite:///{tmp_path / 'c.db'}"
    store = Store(url)
    cid = {}
    for n, order in ((0, (0, 1, 2)), (1, (1, 0, 2)), (2, (0, 2))):  # 1: stored out of order, 2: turn 1 lost
        with store.session() as s, s.begin():
            conversation = store.get_or_create(s, None)
            cid[n] = conversation.id
            for t in order:
                store.add_message(s, conversation, "customer", f"m{t}", client_message_id=f"r-{n}-{t}")
                store.add_message(s, conversation, "bot", "ok")
    results = [TurnResult(n, t, 0, f"r-{n}-{t}", sent=True, acknowledged=True, conversation_id=cid[n])
               for n in range(3) for t in range(3)]
    results.append(TurnResult(3, 0, 0, "r-3-0", sent=True, error="HTTP 500"))
    report = check_stored(url, results)
    assert report == {"acknowledged": 9, "stored": 8, "lost": 1, "duplicated": 0, "out_of_order_conversations": 1,
                      "stored_not_acknowledged": 0}


def test_percentiles():
    assert percentile([], 0.5) is None and percentile([3.0], 0.95) == 3.0
    assert percentile([float(i) for i in range(1, 101)], 0.5) in (50.0, 51.0)
    assert percentile([float(i) for i in range(1, 101)], 0.95) == 95.0


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_model):
    import app
    from chatbot.service import Service

    home = tmp_path_factory.mktemp("home")
    service = Service(home_dir=home, default_model=tiny_model)
    running = app.Server(app.create_server(service, limit=0))  # every conversation comes from 127.0.0.1
    yield running.url, service
    running.close()


def test_a_small_run_against_a_real_server(server, tmp_path):
    url, service = server
    report = tmp_path / "load.json"
    rows = run_loadtest(LoadTestArgs(url=[url, url], concurrency=[2, 4], turns=2, timeout_s=60, max_seconds=120,
                                     database=service.store.url, report=str(report), label="tiny"))
    assert [r["concurrency"] for r in rows] == [2, 4]
    for row in rows:
        assert row["turns_acknowledged"] == row["turns_sent"] == 2 * row["concurrency"] and row["errors"] == 0
        assert row["stored"]["acknowledged"] == row["stored"]["stored"] == 2 * row["concurrency"]
        assert row["stored"]["lost"] == row["stored"]["duplicated"] == row["stored"]["out_of_order_conversations"] == 0
        assert 0 < row["latency_s"]["p50"] <= row["latency_s"]["p95"] <= row["latency_s"]["max"]
    assert json.loads(report.read_text())["levels"][1]["concurrency"] == 4
    assert "| tiny | 4 | 8 / 8 | 0 |" in report.with_suffix(".md").read_text()
