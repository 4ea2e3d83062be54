"""``python -m chatbot loadtest``: conversations against running app servers, then a check of what was
stored against what was acknowledged.

For each concurrency level (10, 50, 100 by default) as many conversations run at once, each a few
turns of real customer messages (the test split of our data, one language per conversation), through
the public API (``/chat`` with a client message id, as a careful client sends it). With several
``--url`` the turns of each conversation go to the servers in turn (what a load balancer without
affinity does between turns). Measured per level: turns per second, latency per turn (p50, p95, max,
from the request to the answer), errors; then the database is read: every acknowledged turn must be
stored exactly once and in the order it was sent (lost, duplicated, out of order are counted).

Bounded so that it cannot become a weapon: localhost only, at most 200 conversations at once and 20
turns each, a timeout per turn and a time limit per level (turns not started by then are skipped
and reported).
"""

from __future__ import annotations

import csv
import json
import random
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import httpx

from chatbot.settings import INTENT_DATA, ROOT, database_url

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


@dataclass
class LoadTestArgs:
    url: list[str]
    """App servers to load (http://127.0.0.1:7860/); several: each conversation's turns alternate between them."""
    concurrency: list[int] = field(default_factory=lambda: [10, 50, 100])
    """Concurrency levels, run one after the other: that many conversations at once."""
    turns: int = 3
    """Turns per conversation (each waits for the previous answer, as a customer does)."""
    timeout_s: float = 120.0
    """A turn not answered within this is an error."""
    max_seconds: float = 300.0
    """Per level: no turn starts after this (the skipped ones are reported)."""
    database: str | None = None
    """Database the servers write to, read to check the stored turns (default: $CHATBOT_DATABASE_URL or the
    SQLite file in $CHATBOT_HOME)."""
    report: str | None = None
    """Write the results here as JSON (and beside it as Markdown, .md)."""
    label: str = ""
    """Name of the set-up in the report (e.g. "1 process, SQLite")."""
    seed: int = 0
    """Seed for the messages each conversation sends."""

    def __post_init__(self):
        if not self.url:
            raise ValueError("give at least one --url")
        for url in self.url:
            parsed = urlparse(url)
            if parsed.scheme not in ("http", "https") or parsed.hostname not in LOCAL_HOSTS:
                raise ValueError(f"{url}: the load test runs against this machine only (http://127.0.0.1:PORT/)")
        if not self.concurrency or not all(1 <= c <= 200 for c in self.concurrency):
            raise ValueError("concurrency levels must be in 1..200")
        if not 1 <= self.turns <= 20:
            raise ValueError("turns must be in 1..20")
        if not 1 <= self.timeout_s <= 600 or not 1 <= self.max_seconds <= 3600:
            raise ValueError("timeout must be in 1..600 s and the time limit in 1..3600 s")


# ==================================================================== one turn through the public API
def call_chat(client: httpx.Client, data: list | None = None, timeout: float = 120.0,
              content: bytes | None = None) -> tuple[int, dict | None]:
    """POST ``gradio_api/call/chat`` and read its answer: (HTTP status, the turn or None). ``content``
    sends a raw body instead of ``data`` (how tests send malformed requests)."""
    if content is None:
        content = json.dumps({"data": data}).encode()
    posted = client.post("gradio_api/call/chat", content=content, headers={"content-type": "application/json"},
                         timeout=timeout)
    if posted.status_code != 200:
        return posted.status_code, None
    event = posted.json()["event_id"]
    with client.stream("GET", f"gradio_api/call/chat/{event}", timeout=timeout) as stream:
        kind = None
        for line in stream.iter_lines():
            if line.startswith("event:"):
                kind = line[6:].strip()
            elif line.startswith("data:") and kind in ("complete", "error"):
                payload = json.loads(line[5:]) if kind == "complete" else None
                return 200, payload[0] if payload else None
    return 200, None


@dataclass
class TurnResult:
    conversation: int
    turn: int
    server: int
    client_message_id: str
    sent: bool = False
    acknowledged: bool = False
    """Answered with a reply (any action but ``error``)."""
    error: str | None = None
    latency_s: float | None = None
    conversation_id: str | None = None
    action: str | None = None


def messages() -> dict[str, list[str]]:
    """Test-split customer messages per language (never trained on)."""
    by_lang: dict[str, list[str]] = {}
    for path in INTENT_DATA:
        with open(ROOT / path, newline="") as f:
            for row in csv.DictReader(f):
                if row.get("split") == "test":
                    by_lang.setdefault(row["lang"], []).append(row["text"])
    return by_lang


def conversation(args: LoadTestArgs, run: str, n: int, texts: list[str], lang: str, deadline: float,
                 clients: list[httpx.Client]) -> list[TurnResult]:
    """One customer: ``args.turns`` turns, each sent after the previous answer, alternating servers."""
    results, cid = [], ""
    for t in range(args.turns):
        server = (n + t) % len(args.url)
        result = TurnResult(n, t, server, f"{run}-{n}-{t}")
        results.append(result)
        if time.monotonic() > deadline or (t and not cid):
            result.error = "not sent (time limit)" if time.monotonic() > deadline else "not sent (no conversation)"
            continue
        result.sent = True
        started = time.perf_counter()
        try:
            status, turn = call_chat(clients[server], [texts[t], cid, lang, result.client_message_id], args.timeout_s)
        except httpx.HTTPError as err:
            status, turn, result.error = 0, None, f"{type(err).__name__}"
        result.latency_s = time.perf_counter() - started
        if turn and turn.get("conversation_id"):
            result.conversation_id, result.action = turn["conversation_id"], turn.get("action")
            cid = cid or turn["conversation_id"]
            if turn["conversation_id"] != cid:
                result.error = "answered in another conversation"
            elif turn.get("action") == "error" or not turn.get("reply"):
                result.error = f"error reply ({turn.get('action')})"
            else:
                result.acknowledged = True
        elif not result.error:
            result.error = f"HTTP {status}" if status != 200 else "no answer"
    return results


# ==================================================================== what was stored
def check_stored(database: str, results: list[TurnResult]) -> dict:
    """Compare the acknowledged turns with the customer messages stored in their conversations."""
    from sqlalchemy import select

    from chatbot.store import Message, Store

    store = Store(database)
    by_conversation: dict[str, list[TurnResult]] = {}
    for r in results:
        if r.conversation_id:
            by_conversation.setdefault(r.conversation_id, []).append(r)
    stored: dict[str, list[str | None]] = {cid: [] for cid in by_conversation}
    ids = list(by_conversation)
    with store.session() as s:
        for start in range(0, len(ids), 500):
            rows = s.execute(select(Message.conversation_id, Message.client_message_id)
                             .where(Message.conversation_id.in_(ids[start:start + 500]), Message.role == "customer")
                             .order_by(Message.id)).all()
            for cid, client_id in rows:
                stored[cid].append(client_id)
    store.engine.dispose()
    acknowledged = [r for r in results if r.acknowledged]
    lost = sum(1 for r in acknowledged if r.client_message_id not in stored.get(r.conversation_id, []))
    duplicated = sum(len(ids_) - len(set(ids_)) for ids_ in stored.values())
    out_of_order = 0
    for cid, turns in by_conversation.items():
        sent = [r.client_message_id for r in sorted(turns, key=lambda r: r.turn) if r.acknowledged]
        kept = list(dict.fromkeys(i for i in stored[cid] if i in sent))  # first copies, in stored order
        if kept != [i for i in sent if i in kept]:
            out_of_order += 1
    extra = sum(1 for r in results if r.sent and not r.acknowledged and r.conversation_id
                and r.client_message_id in stored.get(r.conversation_id, []))
    return {"acknowledged": len(acknowledged), "stored": sum(len(v) for v in stored.values()), "lost": lost,
            "duplicated": duplicated, "out_of_order_conversations": out_of_order,
            "stored_not_acknowledged": extra}


# ==================================================================== a level, the run, the report
def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def run_level(args: LoadTestArgs, concurrency: int, level: int) -> dict:
    by_lang = messages()
    langs = sorted(by_lang)
    rng = random.Random(f"{args.seed}-{level}-{concurrency}")
    run = f"lt{int(time.time())}{rng.randrange(1 << 16):04x}"
    plans = []
    for n in range(concurrency):
        lang = langs[n % len(langs)]
        plans.append((n, rng.sample(by_lang[lang], args.turns), f"{lang}-{lang.upper()},{lang};q=0.9"))
    deadline = time.monotonic() + args.max_seconds
    limits = httpx.Limits(max_connections=concurrency + 8, max_keepalive_connections=concurrency + 8)
    clients = [httpx.Client(base_url=url, limits=limits) for url in args.url]
    start = time.perf_counter()
    try:
        with ThreadPoolExecutor(max_workers=concurrency) as pool:
            jobs = [pool.submit(conversation, args, run, n, texts, accept, deadline, clients)
                    for n, texts, accept in plans]
            results = [r for job in jobs for r in job.result()]
    finally:
        for client in clients:
            client.close()
    wall = time.perf_counter() - start
    latencies = [r.latency_s for r in results if r.acknowledged]
    errors: dict[str, int] = {}
    for r in results:
        if r.error:
            errors[r.error] = errors.get(r.error, 0) + 1
    acked = sum(r.acknowledged for r in results)
    row = {"label": args.label, "servers": len(args.url), "concurrency": concurrency, "conversations": concurrency,
           "turns_planned": len(results), "turns_sent": sum(r.sent for r in results), "turns_acknowledged": acked,
           "errors": sum(1 for r in results if r.sent and not r.acknowledged), "error_kinds": errors,
           "wall_s": round(wall, 2), "turns_per_s": round(acked / wall, 2) if wall else None,
           "latency_s": {"p50": _round(percentile(latencies, 0.5)), "p95": _round(percentile(latencies, 0.95)),
                         "max": _round(max(latencies) if latencies else None),
                         "mean": _round(statistics.fmean(latencies) if latencies else None)},
           "actions": _count(r.action for r in results if r.acknowledged)}
    row["stored"] = check_stored(args.database or database_url(), results)
    return row


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def _count(values) -> dict:
    counts: dict = {}
    for v in values:
        counts[v] = counts.get(v, 0) + 1
    return counts


def markdown(rows: list[dict]) -> str:
    lines = ["| set-up | concurrent conversations | turns answered / sent | errors | wall s | turns/s | p50 s | p95 s "
             "| max s | stored | lost | duplicated | out of order |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lat, st = r["latency_s"], r["stored"]
        lines.append(f"| {r['label'] or '-'} | {r['concurrency']} | {r['turns_acknowledged']} / {r['turns_sent']} "
                     f"| {r['errors']} | {r['wall_s']} | {r['turns_per_s']} | {lat['p50']} | {lat['p95']} "
                     f"| {lat['max']} | {st['stored']} | {st['lost']} | {st['duplicated']} "
                     f"| {st['out_of_order_conversations']} |")
    return "\n".join(lines) + "\n"


def warm_up(args: LoadTestArgs) -> None:
    """One turn per server before the levels (not counted): first connections, lazy loads, caches."""
    for i, url in enumerate(args.url):
        with httpx.Client(base_url=url) as client:
            call_chat(client, ["Where is my parcel?", "", "en", f"warm-up-{int(time.time())}-{i}"], args.timeout_s)


def run_loadtest(args: LoadTestArgs) -> list[dict]:
    warm_up(args)
    rows = []
    for level, concurrency in enumerate(args.concurrency):
        row = run_level(args, concurrency, level)
        rows.append(row)
        print(json.dumps(row), flush=True)
    table = markdown(rows)
    print(table, flush=True)
    if args.report:
        path = Path(args.report)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"args": asdict(args), "levels": rows}, indent=2) + "\n")
        path.with_suffix(".md").write_text(table)
    return rows
