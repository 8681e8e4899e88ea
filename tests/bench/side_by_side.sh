#!/usr/bin/env bash
# Side-by-side benchmark: stretto and the peer servers (Node/Fastify, Go net/http) measured with the
# same load generator, the same scenarios and sizes, in one run (../shared/bench/run-all.sh).
# Every server gets a fresh process per scenario, pinned to CPU 0; the load generator runs on CPU 1.
#
#   tests/bench/side_by_side.sh                 # full matrix (~10-15 min); needs a quiet machine
#   QUICK=1 PEERS=go tests/bench/side_by_side.sh   # tiny sizes, to check the plumbing
#
# Environment:
#   PEERS         peers besides stretto (default: "node go node-seq"; "" = stretto only)
#   STRETTO_CMD   how to start stretto (default: the `stretto` on PATH, else /tmp/venv/bin/stretto;
#                 a PyInstaller build works too: STRETTO_CMD=dist/stretto)
#   EXTRA         1 (default) also runs stretto-only extras: fanout @ the highest rate with
#                 reconnect + Last-Event-ID replay, and IDLE_MANY (default 10000) idle streams with
#                 heartbeats every 2 s, held 20 s (stretto bench idle, pinned to CPU 1), and the
#                 workflow scale rows (SCALE_STEPS x SCALE_WIDTH, SCALE_RUNS concurrent runs of 20)
#   QUICK         1 = tiny sizes (SUBS=20 EVENTS=20 RATES=20 IDLE_CONNS=50 STEPS=4 WIDTH=2 RUNS=1
#                 HTTP_SECONDS=1 IDLE_MANY=200); the sizes of run-all.sh can also be set one by one
#   BENCH_DIR     the shared bench (default: ../shared/bench next to the repository)
#   OUT_DIR       where results go (default: /tmp/bench-build/side-by-side/<timestamp>)
# Output: OUT_DIR/*.jsonl (one JSON line per run), OUT_DIR/meta.json (machine, date, versions) and
# OUT_DIR/table.md, the README's performance table (also printed at the end).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
BENCH_DIR="${BENCH_DIR:-$(cd "$ROOT/../shared/bench" 2>/dev/null && pwd || echo /work/shared/bench)}"
[ -x "$BENCH_DIR/run-all.sh" ] || { echo "no run-all.sh in $BENCH_DIR (set BENCH_DIR)" >&2; exit 2; }
if [ -z "${STRETTO_CMD:-}" ]; then
  STRETTO_CMD="$(command -v stretto || echo /tmp/venv/bin/stretto)"
fi
command -v "${STRETTO_CMD%% *}" >/dev/null || { echo "stretto not found: set STRETTO_CMD" >&2; exit 2; }
PEERS="${PEERS-node go node-seq}"
EXTRA="${EXTRA:-1}"
if [ "${QUICK:-0}" = 1 ]; then
  export SUBS="${SUBS:-20}" EVENTS="${EVENTS:-20}" RATES="${RATES:-20}" IDLE_CONNS="${IDLE_CONNS:-50}"
  export STEPS="${STEPS:-4}" WIDTH="${WIDTH:-2}" RUNS="${RUNS:-1}" HTTP_SECONDS="${HTTP_SECONDS:-1}"
  IDLE_MANY="${IDLE_MANY:-200}"
fi
IDLE_MANY="${IDLE_MANY:-10000}"
export PORT="${PORT:-18080}"
LATENCY_MS="${FAKE_AI_LATENCY_MS:-100}"
export FAKE_AI_LATENCY_MS="$LATENCY_MS"   # the peers' simulated model latency
OUT_DIR="${OUT_DIR:-${BENCH_BUILD_DIR:-/tmp/bench-build}/side-by-side/$(date +%Y%m%dT%H%M%S)}"
mkdir -p "$OUT_DIR"
export BENCH_RESULTS_DIR="$OUT_DIR"
DATA_ROOT="$(mktemp -d "${TMPDIR:-/tmp}/stretto-bench-data.XXXXXX")"
trap 'rm -rf "$DATA_ROOT"' EXIT

# stretto as run-peers.sh starts any command: `bash -c CMD` pinned to CPU 0, $PORT in its env.
# A fresh data directory (SQLite, generated JWT secret) per start; exec so the PID is the server.
stretto_cmd() { # extra env assignments...
  printf '%s ' "$@"
  printf 'STRETTO_OFFLINE_LATENCY_MS=%s STRETTO_LOG_LEVEL=warning exec %s serve --host 127.0.0.1 --port $PORT --data-dir "$(mktemp -d %s/run.XXXXXX)"' \
    "$LATENCY_MS" "$STRETTO_CMD" "$DATA_ROOT"
}
STRETTO_SPEC="stretto=$(stretto_cmd)"

{
  echo "date: $(date -u +%Y-%m-%dT%H:%MZ)"
  echo "stretto: $STRETTO_CMD ($("$STRETTO_CMD" version 2>/dev/null | head -1 || echo '?'))"
  echo "peers: ${PEERS:-none}; bench: $BENCH_DIR; results: $OUT_DIR"
} >&2

# shellcheck disable=SC2086 # PEERS is a word list
"$BENCH_DIR/run-all.sh" $PEERS "$STRETTO_SPEC"

if [ "$EXTRA" = 1 ]; then
  ulimit -n "$(ulimit -Hn)"
  rate="${RATES:-100 20}"; rate="${rate%% *}"
  # Overload with recovery: subscribers the server drops reconnect with Last-Event-ID (replay).
  pid=$("$BENCH_DIR/run-peers.sh" cmd "$PORT" 0 "$(stretto_cmd)")
  taskset -c 1 node "$BENCH_DIR/load/load.js" fanout --url "http://127.0.0.1:$PORT" --label stretto+reconnect \
    --subs "${SUBS:-1000}" --events "${EVENTS:-200}" --rate "$rate" --pid "$pid" --reconnect \
    | tee -a "$OUT_DIR/extra.jsonl" || true
  kill "$pid" 2>/dev/null || true; sleep 2
  # Many idle streams with heartbeats flowing (the 10x-connections target).
  pid=$("$BENCH_DIR/run-peers.sh" cmd "$PORT" 0 "$(stretto_cmd STRETTO_SSE_HEARTBEAT_S=2)")
  taskset -c 1 $STRETTO_CMD bench idle --url "http://127.0.0.1:$PORT" --label "stretto+heartbeat-2s" \
    --conns "$IDLE_MANY" --hold-s 20 --pid "$pid" --json --quiet \
    | tee -a "$OUT_DIR/extra.jsonl" || true
  kill "$pid" 2>/dev/null || true
fi

# Workflow scale rows (stretto only; `stretto bench workflow --help`): cost vs steps (1000 steps at
# width 100) and vs runs (100 concurrent runs of 20 steps), with the server's limits lifted.
if [ "$EXTRA" = 1 ]; then
  scale_server="STRETTO_MAX_PLAN_STEPS=1000 STRETTO_RUN_CONCURRENCY=100 STRETTO_AI_CONCURRENCY=1000 STRETTO_GLOBAL_CONCURRENCY=1000 STRETTO_MAX_RUNS_PER_USER=100"
  if [ "${QUICK:-0}" = 1 ]; then SCALE_STEPS="${SCALE_STEPS:-40}" SCALE_RUNS="${SCALE_RUNS:-4}" SCALE_ROUNDS=1; fi
  for row in "${SCALE_STEPS:-1000} ${SCALE_WIDTH:-100} 1" "20 10 ${SCALE_RUNS:-100}"; do
    set -- $row
    pid=$("$BENCH_DIR/run-peers.sh" cmd "$PORT" 0 "$(stretto_cmd $scale_server)")
    taskset -c 1 $STRETTO_CMD bench workflow --url "http://127.0.0.1:$PORT" --label "stretto-scale" \
      --steps "$1" --width "$2" --concurrent "$3" --runs "${SCALE_ROUNDS:-3}" --latency-ms "$LATENCY_MS" \
      --pid "$pid" --json --quiet | tee -a "$OUT_DIR/extra.jsonl" || true
    kill "$pid" 2>/dev/null || true; sleep 2
  done
fi

STRETTO_VERSION="$($STRETTO_CMD version 2>/dev/null | head -1 || echo stretto)" \
NODE_VERSION="$(node --version 2>/dev/null || echo '?')" \
GO_VERSION="$(go version 2>/dev/null | cut -d' ' -f3 || echo '?')" \
WRK_VERSION="$(wrk -v 2>&1 | head -1 | cut -d' ' -f2 || echo '?')" \
python3 - "$OUT_DIR/meta.json" <<'PY'
import datetime, json, os, platform, sys
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
mem_kb = next((int(l.split()[1]) for l in open("/proc/meminfo") if l.startswith("MemTotal")), 0)
env = os.environ
meta = {
    "date": datetime.date.today().isoformat(),
    "machine": f"{os.cpu_count()}-core VM ({cpu}), {mem_kb / 1048576:.0f} GB RAM, Linux "
    f"{platform.release()}; server pinned to CPU 0, load generator to CPU 1",
    "versions": f"{env['STRETTO_VERSION']}, node {env['NODE_VERSION']}, {env['GO_VERSION']}, "
    f"wrk {env['WRK_VERSION']}",
}
with open(sys.argv[1], "w") as out:
    json.dump(meta, out, indent=2)
PY
python3 "$HERE/results_table.py" "$OUT_DIR" | tee "$OUT_DIR/table.md"
echo "results: $OUT_DIR" >&2
