"""Past one machine, rehearsed on this one: two app processes (``python app.py``) on one PostgreSQL
database, the classifier served by Ray Serve with two replicas (the tiny model), all on 127.0.0.1.

100 conversations whose turns alternate between the two processes: every turn is answered and stored
exactly once and in order; a version promoted mid-run (by an admin in a third process) reaches both
replicas, and the turns are stored with the version that answered them; a conversation handed off
through the app processes is in the queue of an agent in the third process, who takes it over and
replies, and the customer's next turn (at the other process) is left to the agent.

One Ray instance for the module (local, 2 CPUs, small object store, no dashboard), stopped at the end;
the app processes are stopped too. About a minute on 2 cores.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, text

from chatbot.loadtest import call_chat
from chatbot.serving import ServeArgs, ServedClassifier, deploy
from chatbot.versions import Registry
from postgres import free_port

pytestmark = pytest.mark.scale
ROOT = Path(__file__).resolve().parent.parent
CONVERSATIONS, TURNS = 100, 3
TEXTS = ["where track parcel status", "refund money back", "cancel order stop"]
PASSWORD = "a long admin password"


@dataclass
class Cluster:
    home: Path
    database: str
    classifier: str
    apps: list[str]
    default_model: Path


def wait_ready(url: str, process: subprocess.Popen, log: Path, seconds: float = 240) -> None:
    deadline = time.time() + seconds
    while time.time() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"app process exited ({process.returncode}):\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(url, timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(1)
    raise RuntimeError(f"app process not ready after {seconds} s:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, postgres, tiny_model):
    import ray
    from ray import serve

    home = tmp_path_factory.mktemp("shared-home")
    Registry(home, tiny_model)
    shutil.copytree(tiny_model, home / "versions" / "v2")  # the version promoted mid-run
    database = postgres.new_database()
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=80 * 1024 * 1024, configure_logging=False,
             log_to_driver=False)
    apps, logs = [], []
    try:
        classifier = deploy(ServeArgs(replicas=2, cpus_per_replica=0.5, max_batch_size=32, batch_wait_ms=10,
                                      reload_check_s=0.5, port=free_port(), home=str(home),
                                      default_model=str(tiny_model)))
        env = {**os.environ, "CHATBOT_HOME": str(home), "CHATBOT_DATABASE_URL": database,
               "CHATBOT_CLASSIFIER_URL": classifier, "CHATBOT_DEFAULT_MODEL": str(tiny_model),
               "CHATBOT_SECRET_KEY": "shared by the app servers of this test", "GRADIO_SERVER_NAME": "127.0.0.1",
               "CHATBOT_BROWSER_SECRET": "shared by the app servers of this test, too",
               "CHATBOT_CHAT_TURNS_PER_MINUTE": "0"}  # every conversation comes from 127.0.0.1
        env.pop("CHATBOT_ADMIN_PASSWORD", None)
        urls = []
        for i in range(2):
            port = free_port()
            log = tmp_path_factory.mktemp("logs") / f"app{i}.log"
            with log.open("w") as out:
                apps.append(subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                                             env={**env, "GRADIO_SERVER_PORT": str(port)}))
            urls.append(f"http://127.0.0.1:{port}/")
            logs.append(log)
        for url, process, log in zip(urls, apps, logs):
            wait_ready(url, process, log)
        yield Cluster(home, database, classifier, urls, tiny_model)
    finally:
        for process in apps:
            process.terminate()
        for process in apps:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
        serve.shutdown()
        ray.shutdown()


def served_versions(url: str) -> dict[str, str]:
    """{replica: version} of one probe."""
    answer = httpx.post(url, json={"texts": ["where parcel"], "k": 1}, timeout=30).json()
    return {answer["replica"]: answer["predictions"][0]["version"]}


def replicas_serving(url: str, version: str, seconds: float = 60) -> dict[str, str]:
    """Probe until two replicas have answered with ``version``; {replica: version} last seen of each."""
    seen: dict[str, str] = {}
    deadline = time.time() + seconds
    while time.time() < deadline:
        seen.update(served_versions(url))
        if len(seen) >= 2 and set(seen.values()) == {version}:
            break
        time.sleep(0.05)
    return seen


@pytest.fixture()
def staff(cluster, monkeypatch):
    """The Service of a third process (agents and admins), on the same database and classifier."""
    from chatbot.service import Service

    monkeypatch.setenv("CHATBOT_CLASSIFIER_URL", cluster.classifier)
    monkeypatch.setenv("CHATBOT_SECRET_KEY", "shared by the app servers of this test")
    service = Service(home_dir=cluster.home, database=cluster.database, default_model=cluster.default_model)
    if not service.accounts.has_admin():
        service.accounts.add("boss", "admin", PASSWORD)
    return service


def test_two_app_processes_ray_serve_and_postgres(cluster, staff):
    assert set(replicas_serving(cluster.classifier, "default").values()) == {"default"}
    assert httpx.get(cluster.classifier, timeout=30).json()["threads"] == 1  # cpus_per_replica, not every core
    admin = staff.caller("boss")
    answered, promoted, results = [0], threading.Event(), {}
    count = threading.Lock()

    def conversation(n: int) -> None:
        cid, turns = "", []
        clients = [httpx.Client(base_url=url, timeout=120) for url in cluster.apps]
        try:
            for t in range(TURNS):
                message = f"{TEXTS[(n + t) % 3]} {n % 10}"
                status, turn = call_chat(clients[(n + t) % 2], [message, cid, "en-GB,en;q=0.9", f"c{n}-t{t}"])
                assert status == 200 and turn and turn["reply"] and turn["action"] != "error", (n, t, status, turn)
                assert not cid or turn["conversation_id"] == cid
                cid = turn["conversation_id"]
                turns.append((f"c{n}-t{t}", message, turn["model_version"]))
                with count:
                    answered[0] += 1
                    if answered[0] == CONVERSATIONS:  # a third of the turns: promote now
                        promoted.set()
        finally:
            for client in clients:
                client.close()
        results[n] = (cid, turns)

    def promote():
        assert promoted.wait(300)
        staff.promote(admin, "v2")

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=33) as pool:
        promotion = pool.submit(promote)
        jobs = [pool.submit(conversation, n) for n in range(CONVERSATIONS)]
        for job in jobs:
            job.result(timeout=600)  # every turn answered (the asserts inside)
        promotion.result(timeout=60)
    elapsed = time.perf_counter() - started

    # The promotion reached both replicas; turns stored once the replicas had switched carry v2.
    switched = replicas_serving(cluster.classifier, "v2")
    assert len(switched) == 2 and set(switched.values()) == {"v2"}, switched
    assert staff.audit.entries(action="promote")[0]["target"] == "v2"

    # Every turn stored exactly once and in order, the bot's reply right after it.
    engine = create_engine(cluster.database)
    with engine.connect() as db:
        rows = db.execute(text("select conversation_id, role, client_message_id, text, model_version from messages "
                               "order by id")).all()
    engine.dispose()
    stored: dict[str, list] = {}
    for cid, role, client_id, message, version in rows:
        stored.setdefault(cid, []).append((role, client_id, message, version))
    assert len({cid for cid, _ in results.values()}) == CONVERSATIONS
    versions = set()
    for n, (cid, turns) in results.items():
        assert [r[0] for r in stored[cid]] == ["customer", "bot"] * TURNS, (n, stored[cid])
        customer = [r for r in stored[cid] if r[0] == "customer"]
        assert [(r[1], r[2]) for r in customer] == [(client_id, message) for client_id, message, _ in turns]
        assert [r[3] for r in customer] == [v for _, _, v in turns]  # stored with the version that answered
        versions |= {v for _, _, v in turns}
    assert versions == {"default", "v2"}, versions  # turns on both sides of the promotion

    # A customer's turn after the switch, through each process: answered by v2.
    for url in cluster.apps:
        with httpx.Client(base_url=url, timeout=60) as client:
            status, turn = call_chat(client, ["where track parcel", "", "en", "after-promotion"])
        assert status == 200 and turn["model_version"] == "v2", turn
    print(f"\n{CONVERSATIONS} conversations × {TURNS} turns over 2 app processes: {elapsed:.1f} s")


def test_queue_take_over_and_agent_reply_whichever_process_serves_whom(cluster, staff):
    """A conversation handed off through the app processes reaches the agent of a third process."""
    client = ServedClassifier(cluster.classifier)
    words = ["order", "parcel", "back", "where", "money", "cancel", "hello"]
    candidates = [f"{a} {b} {c}" for a in words for b in words for c in words if len({a, b, c}) == 3]
    unsure = sorted(zip(client.predict(candidates, k=2), candidates), key=lambda pc: pc[0].confidence)[0][1]
    cid, actions = "", []
    clients = [httpx.Client(base_url=url, timeout=60) for url in cluster.apps]
    for t in range(3):  # three unanswered turns, alternating processes: handed off to a person
        status, turn = call_chat(clients[t % 2], [unsure, cid, "en", f"h-{t}"])
        cid = turn["conversation_id"]
        actions.append(turn["action"])
    assert actions[-1] == "handoff" and all(a in ("clarify", "fallback") for a in actions[:-1]), (unsure, actions)

    agent_name = "marie"
    if staff.accounts.caller(agent_name) is None:
        staff.accounts.add(agent_name, "agent", PASSWORD)
    agent = staff.caller(agent_name)
    assert cid in [c["id"] for c in staff.inbox(agent)["waiting"]]
    staff.take_over(agent, cid)
    staff.send(agent, cid, "Hello, Marie here. Let me look at your order.")
    status, turn = call_chat(clients[1], ["thank you", cid, "en", "h-3"])  # the other process
    assert turn["action"] == "agent" and turn["reply"] == ""  # the bot stays quiet
    roles = [m["role"] for m in staff.conversation(agent, cid)["messages"]]
    assert roles == ["customer", "bot"] * 3 + ["system", "agent", "customer"], roles
    assert cid not in [c["id"] for c in staff.inbox(agent)["waiting"]]
    for c in clients:
        c.close()
