#!/usr/bin/env bash
# The load test of docs/benchmarks.md, on this machine, in one run: `python -m chatbot loadtest` against
#   (a) one app process, SQLite, the classifier in the app's process (the default installation);
#   (b) two app processes on a PostgreSQL server, the classifier on Ray Serve (2 replicas), the
#       conversations' turns alternating between the processes.
# Everything listens on 127.0.0.1 and is stopped (and its files deleted) at the end, also on failure.
#
#   bash scripts/loadtest-setups.sh [OUT_DIR] [more loadtest options, e.g. --turns 3]
#
# LEVELS are the concurrency levels (default "10 50 100"; one loadtest call each, so that the replicas'
# batch counts can be read between them); CHATBOT_DEFAULT_MODEL picks the model (default: the shipped
# one); REPLICAS, CPUS_PER_REPLICA and GPUS_PER_REPLICA size the Ray Serve deployment (default 2 × 1 CPU).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/loadtest}
shift || true
LEVELS=${LEVELS:-10 50 100}
REPLICAS=${REPLICAS:-2}
CPUS_PER_REPLICA=${CPUS_PER_REPLICA:-1}
GPUS_PER_REPLICA=${GPUS_PER_REPLICA:-0}
WORK=$(mktemp -d /tmp/chatbot-loadtest.XXXXXX)
PGDIR=$(mktemp -u -d /tmp/chatbot-loadtest-pg.XXXXXX)  # made (and owned by the server's user) at start
PIDS=()

stop_all() {
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do
    for _ in $(seq 90); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
    kill -KILL "$pid" 2>/dev/null || true
  done
  PIDS=()
}
cleanup() {
  stop_all
  [ ! -d "$PGDIR" ] || python tests/postgres.py stop "$PGDIR"
  rm -rf "$WORK"
}
trap cleanup EXIT

wait_http() {  # URL, log file, PID
  for _ in $(seq 600); do
    curl -sf -o /dev/null "$1" && return 0
    kill -0 "$3" 2>/dev/null || { echo "process for $1 exited:"; tail -30 "$2"; return 1; }
    sleep 1
  done
  echo "$1 not ready"; tail -30 "$2"; return 1
}

start_app() {  # PORT HOME LOG [VAR=VALUE ...]
  local port=$1 home=$2 log=$3
  shift 3
  env CHATBOT_HOME="$home" CHATBOT_CHAT_TURNS_PER_MINUTE=0 GRADIO_SERVER_NAME=127.0.0.1 GRADIO_SERVER_PORT="$port" "$@" python app.py >"$log" 2>&1 &
  PIDS+=($!)
  APP_PID=$!
}

mkdir -p "$OUT"
export CHATBOT_SECRET_KEY CHATBOT_BROWSER_SECRET
CHATBOT_SECRET_KEY=$(python -c "import secrets; print(secrets.token_urlsafe(32))")
CHATBOT_BROWSER_SECRET=$(python -c "import secrets; print(secrets.token_urlsafe(32))")
unset CHATBOT_DATABASE_URL CHATBOT_CLASSIFIER_URL CHATBOT_ADMIN_PASSWORD
{
  echo "commit: $(git rev-parse --short HEAD)$(git diff --quiet || echo '+changes')"
  echo "cpu: $(nproc) × $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
  echo "memory: $(free -g | awk '/Mem:/ {print $2}') GiB; load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "model: ${CHATBOT_DEFAULT_MODEL:-assets/model}; Ray Serve: $REPLICAS replicas × $CPUS_PER_REPLICA CPU, $GPUS_PER_REPLICA GPU"
  echo "levels: $LEVELS; loadtest options: $*"
} | tee "$OUT/machine.txt"

echo "== (a) one process, SQLite, classifier in-process"
start_app 7901 "$WORK/a" "$WORK/a.log"
wait_http http://127.0.0.1:7901/ "$WORK/a.log" "$APP_PID"
for level in $LEVELS; do
  python -m chatbot loadtest --url http://127.0.0.1:7901/ --database "sqlite:///$WORK/a/conversations.db" \
    --label "1 process, SQLite, in-process" --concurrency "$level" --report "$OUT/one-process-c$level.json" "$@"
done
stop_all

echo "== (b) two processes, PostgreSQL, Ray Serve"
PG_URL=$(python tests/postgres.py start "$PGDIR")
# its own session: a Ctrl-C here reaches Ray only through the command's own shutdown
setsid env CHATBOT_HOME="$WORK/b" python -m chatbot serve --replicas "$REPLICAS" \
  --cpus-per-replica "$CPUS_PER_REPLICA" --gpus-per-replica "$GPUS_PER_REPLICA" --num-cpus "$(nproc)" --port 8901 >"$WORK/serve.log" 2>&1 &
SERVE_PID=$!
PIDS+=($SERVE_PID)
wait_http http://127.0.0.1:8901/classifier "$WORK/serve.log" "$SERVE_PID"
for port in 7902 7903; do
  start_app $port "$WORK/b" "$WORK/b$port.log" CHATBOT_DATABASE_URL="$PG_URL" \
    CHATBOT_CLASSIFIER_URL=http://127.0.0.1:8901/classifier
  wait_http http://127.0.0.1:$port/ "$WORK/b$port.log" "$APP_PID"
done
replica_batches() {  # the replicas' batch counts so far, as JSON (Serve routes each GET to some replica)
  python -c "
import json, httpx
seen = {}
for _ in range(60):
    info = httpx.get('http://127.0.0.1:8901/classifier', timeout=30).json()
    seen[info['replica']] = info['batches']
print(json.dumps(seen))"
}
for level in $LEVELS; do
  replica_batches >"$OUT/replicas-before-c$level.json"
  python -m chatbot loadtest --url http://127.0.0.1:7902/,http://127.0.0.1:7903/ --database "$PG_URL" \
    --label "2 processes, PostgreSQL, Ray Serve ($REPLICAS replicas)" --concurrency "$level" \
    --report "$OUT/two-processes-c$level.json" "$@"
  replica_batches >"$OUT/replicas-after-c$level.json"
done
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$OUT/machine.txt"
python - "$OUT" $LEVELS <<'PY'
import json, sys
out, levels = sys.argv[1], sys.argv[2:]
rows = [json.load(open(f"{out}/{name}-c{c}.json"))["levels"][0] for name in ("one-process", "two-processes")
        for c in levels]
from chatbot.loadtest import markdown
lines = [markdown(rows), "", "| concurrency | forward passes (both replicas) | messages (with 2 warm-up turns) | messages per pass | largest |",
         "|---|---|---|---|---|"]
for c in levels:
    before, after = (json.load(open(f"{out}/replicas-{when}-c{c}.json")) for when in ("before", "after"))
    passes = sum(after[r]["batches"] - before.get(r, {}).get("batches", 0) for r in after)
    messages = sum(after[r]["messages"] - before.get(r, {}).get("messages", 0) for r in after)
    largest = max(after[r]["largest"] for r in after)
    lines.append(f"| {c} | {passes} | {messages} | {messages / max(passes, 1):.2f} | {largest} (since start) |")
open(f"{out}/table.md", "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
PY
