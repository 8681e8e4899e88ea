#!/usr/bin/env bash
# Side-by-side benchmark: stretto and the peer servers (Node/Fastify, Go net/http) measured with the
# same load generators, the same scenarios and sizes, interleaved in one run, REPEAT times.
# Every server gets a fresh process per scenario, pinned to CPU 0; the load runs on CPU 1. Per
# repeat, each scenario runs for every server in turn (the order rotates between repeats), so a
# change in the machine's load hits all servers alike; the table shows medians and spreads.
#
#   tests/bench/side_by_side.sh                  # full matrix, 3 repeats (~45-60 min); quiet machine
#   QUICK=1 tests/bench/side_by_side.sh          # tiny sizes, 1 repeat: checks the plumbing (~2 min)
#
# Environment:
#   PEERS         peers besides stretto (default: "node go node-seq"; node-seq runs only workflow)
#   REPEAT        full runs of the matrix (default 3; QUICK: 1)
#   SCENARIOS     subset of "fanout idle http workflow capacity startup" (default: all)
#   STRETTO_CMD   how to start stretto (default: the `stretto` on PATH, else /tmp/venv/bin/stretto;
#                 a PyInstaller build works too: STRETTO_CMD=dist/stretto)
#   STRETTO_BIN   also measure this single executable's start-up and idle RSS (a "[binary]" row)
#   EXTRA         1 (default) also runs stretto-only extras per repeat: fanout @ the highest rate with
#                 reconnect + Last-Event-ID replay, and IDLE_MANY (10000) idle streams with
#                 heartbeats every 2 s, held 20 s (stretto bench idle), and the workflow scale rows
#                 (SCALE_STEPS x SCALE_WIDTH, default 1000 x 100; SCALE_RUNS, default 100, concurrent
#                 runs of 20 steps; `stretto bench workflow --help`)
#   CAPACITY_STEPS  stream totals of the capacity scenario (stretto bench capacity, all servers,
#                 none pinned; stretto with --workers auto); each step held heartbeat (15 s) + 7 s
#   CAPACITY_MANY_STEPS  with the capacity scenario, also stretto with CAPACITY_WORKERS
#                 (default 10) worker processes on the same cores, each with its own open-files
#                 limit (a "[workers-N]" row): how many streams the machine holds when one
#                 process's limit is not the bound (default: empty, not run; e.g. 100000,190000)
#   QUICK         1 = tiny sizes (SUBS=20 EVENTS=20 RATES=20 IDLE_CONNS=50 STEPS=4 WIDTH=2 RUNS=1
#                 HTTP_SECONDS=1 IDLE_MANY=200 CAPACITY_STEPS=50, capacity held 3 s without the
#                 heartbeat check); the sizes can also be set one by one
#   MAX_OTHER     a run during which other processes used more than this % of a core is repeated
#                 (default 15; at most TRIES tries, default 3, QUICK 1; the last is kept); before
#                 each start it waits up to QUIET_S (default 60, QUICK 1) s for a quiet second
#   BENCH_DIR     the shared bench (default: ../shared/bench next to the repository)
#   OUT_DIR       where results go (default: /tmp/bench-build/side-by-side/<timestamp>)
# Output: OUT_DIR/results.jsonl (one JSON line per run, with "repeat" and "load_before": the load
# average and machine busy % just before the server started), results.disturbed.jsonl, meta.json
# (machine, date, versions, fd limit) and table.md, the README's performance table (also printed).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
BENCH_DIR="${BENCH_DIR:-$(cd "$ROOT/../shared/bench" 2>/dev/null && pwd || echo /work/shared/bench)}"
[ -x "$BENCH_DIR/run-peers.sh" ] || { echo "no run-peers.sh in $BENCH_DIR (set BENCH_DIR)" >&2; exit 2; }
LOAD_JS="$BENCH_DIR/load/load.js"
if [ -z "${STRETTO_CMD:-}" ]; then
  STRETTO_CMD="$(command -v stretto || echo /tmp/venv/bin/stretto)"
fi
command -v "${STRETTO_CMD%% *}" >/dev/null || { echo "stretto not found: set STRETTO_CMD" >&2; exit 2; }
PEERS="${PEERS-node go node-seq}"
EXTRA="${EXTRA:-1}"
SCENARIOS="${SCENARIOS:-fanout idle http workflow capacity startup}"
CAPACITY_ARGS=()
if [ "${QUICK:-0}" = 1 ]; then
  SUBS="${SUBS:-20}" EVENTS="${EVENTS:-20}" RATES="${RATES:-20}" IDLE_CONNS="${IDLE_CONNS:-50}"
  STEPS="${STEPS:-4}" WIDTH="${WIDTH:-2}" RUNS="${RUNS:-1}" HTTP_SECONDS="${HTTP_SECONDS:-1}"
  IDLE_MANY="${IDLE_MANY:-200}" CAPACITY_STEPS="${CAPACITY_STEPS:-50}" REPEAT="${REPEAT:-1}"
  TRIES="${TRIES:-1}" QUIET_S="${QUIET_S:-1}"
  CAPACITY_ARGS=(--hold-s 3 --grace-s 60)
  SCALE_STEPS="${SCALE_STEPS:-40}" SCALE_WIDTH="${SCALE_WIDTH:-4}" SCALE_RUNS="${SCALE_RUNS:-4}"
  SCALE_ROUNDS="${SCALE_ROUNDS:-1}"
fi
SUBS="${SUBS:-1000}" EVENTS="${EVENTS:-200}" RATES="${RATES:-100 20}" IDLE_CONNS="${IDLE_CONNS:-2000}"
STEPS="${STEPS:-20}" WIDTH="${WIDTH:-10}" RUNS="${RUNS:-3}" HTTP_CONNS="${HTTP_CONNS:-50}"
HTTP_SECONDS="${HTTP_SECONDS:-5}" IDLE_MANY="${IDLE_MANY:-10000}" REPEAT="${REPEAT:-3}"
CAPACITY_STEPS="${CAPACITY_STEPS:-1000,2000,5000,10000,15000,19000,25000,30000,39000,50000}"
SCALE_STEPS="${SCALE_STEPS:-1000}" SCALE_WIDTH="${SCALE_WIDTH:-100}" SCALE_RUNS="${SCALE_RUNS:-100}"
SCALE_ROUNDS="${SCALE_ROUNDS:-3}"
MAX_OTHER="${MAX_OTHER:-15}" TRIES="${TRIES:-3}" QUIET_S="${QUIET_S:-60}"
export PORT="${PORT:-18080}"
LATENCY_MS="${FAKE_AI_LATENCY_MS:-100}"
export FAKE_AI_LATENCY_MS="$LATENCY_MS"   # the peers' simulated model latency
OUT_DIR="${OUT_DIR:-${BENCH_BUILD_DIR:-/tmp/bench-build}/side-by-side/$(date +%Y%m%dT%H%M%S)}"
mkdir -p "$OUT_DIR"
OUT="$OUT_DIR/results.jsonl"
DATA_ROOT="$(mktemp -d "${TMPDIR:-/tmp}/stretto-bench-data.XXXXXX")"
PID=""
trap '[ -n "$PID" ] && kill "$PID" 2>/dev/null; rm -rf "$DATA_ROOT"' EXIT
ulimit -n "$(ulimit -Hn)"   # the same open-files limit for every server (run-peers.sh does it too)
FD_LIMIT="$(ulimit -n)"
"$BENCH_DIR/run-peers.sh" build

# stretto as run-peers.sh starts any command: `bash -c CMD` pinned to CPU 0, $PORT in its env.
# A fresh data directory (SQLite, generated JWT secret) per start; exec so the PID is the server.
# The per-user stream limit is lifted: the bench holds thousands of streams as one user.
stretto_cmd() { # [binary] [extra serve flags] [env assignments...]: prints the command line
  local bin="$1" flags="$2"; shift 2
  printf '%s ' "$@"
  printf 'STRETTO_OFFLINE_LATENCY_MS=%s STRETTO_MAX_STREAMS_PER_USER=1000000 STRETTO_LOG_LEVEL=warning exec %s serve --host 127.0.0.1 --port $PORT --data-dir "$(mktemp -d %s/run.XXXXXX)" %s' \
    "$LATENCY_MS" "$bin" "$DATA_ROOT" "$flags"
}
peer_cmd() { # the command line of a server for startup.py
  case "$1" in
    stretto) stretto_cmd "$STRETTO_CMD" "" ;;
    stretto+binary) stretto_cmd "$STRETTO_BIN" "" ;;
    node) echo "NODE_PATH=${BENCH_BUILD_DIR:-/tmp/bench-build}/node-fastify/node_modules exec node $BENCH_DIR/peers/node-fastify/server.js" ;;
    go) echo "exec ${BENCH_BUILD_DIR:-/tmp/bench-build}/go-nethttp/server" ;;
  esac
}

quiet() { # waits up to QUIET_S s for a second in which the machine is <10% busy; sets BUSY (%)
  local u n s i u2 n2 s2 i2 busy idle
  for _ in $(seq "$QUIET_S"); do
    read -r _ u n s i _ </proc/stat; sleep 1; read -r _ u2 n2 s2 i2 _ </proc/stat
    busy=$(( (u2 + n2 + s2) - (u + n + s) )); idle=$(( i2 - i ))
    BUSY=$(( busy * 100 / (busy + idle + 1) ))
    [ "$BUSY" -lt 10 ] && return 0
  done
  echo "warning: machine still busy after $QUIET_S s; measuring anyway (see other_cpu_pct)" >&2
}
SERVER_CPU=0 CLIENT_PIN=(taskset -c 1)
start() { # server [serve flags] [env...] -> sets PID; pinned to SERVER_CPU ("" = not pinned)
  case "$1" in
    stretto) PID=$("$BENCH_DIR/run-peers.sh" cmd "$PORT" "$SERVER_CPU" "$(stretto_cmd "$STRETTO_CMD" "${2:-}" "${@:3}")") ;;
    *) PID=$("$BENCH_DIR/run-peers.sh" "$1" "$PORT" "$SERVER_CPU") ;;
  esac
}
stop() { # SIGTERM, then SIGKILL after 5 s; then a second for sockets to settle
  [ -n "$PID" ] || return 0
  local parent
  parent=$(ps -o ppid= -p "$PID" 2>/dev/null | tr -d ' ' || true)
  # With --workers the listening PID is a worker: stop its supervisor (it stops the others).
  if [ -n "$parent" ] && [ "$(readlink "/proc/$parent/exe" 2>/dev/null)" = "$(readlink "/proc/$PID/exe" 2>/dev/null)" ]; then
    PID="$parent"
  fi
  kill "$PID" 2>/dev/null || true
  for _ in $(seq 50); do kill -0 "$PID" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$PID" 2>/dev/null || true
  PID=""
  sleep 1
}
annotate() { # json-line repeat busy-before: adds "repeat" and "load_before" to a result line
  python3 -c '
import json, sys
line, repeat, busy = sys.argv[1:4]
try:
    result = json.loads(line)
except ValueError:
    result = {"error": "no JSON result: " + line[:200]}
one, five, _ = open("/proc/loadavg").read().split(maxsplit=2)
result["repeat"] = int(repeat)
result["load_before"] = {"loadavg1": float(one), "loadavg5": float(five), "busy_pct": int(busy)}
print(json.dumps(result))' "$1" "$2" "$3"
}
record() { # label try line...: keeps the line, or moves a disturbed one aside (returns 1: retry)
  local try="$1" line="$2" other
  other=$(python3 -c 'import json,sys; print(round(json.loads(sys.argv[1]).get("other_cpu_pct") or 0))' "$line" 2>/dev/null || echo 0)
  if [ "$other" -le "$MAX_OTHER" ] || [ "$try" -ge "$TRIES" ]; then echo "$line" | tee -a "$OUT"; return 0; fi
  echo "try $try disturbed (other_cpu_pct $other), repeating" >&2
  echo "$line" >>"${OUT%.jsonl}.disturbed.jsonl"
  return 1
}
measure() { # repeat server label serve-flags -- client command... ("@PID" becomes the server's PID)
  local rep="$1" server="$2" label="$3" flags="$4" line try; shift 5
  for try in $(seq "$TRIES"); do
    quiet
    local busy="$BUSY"
    start "$server" "$flags" || { echo "$server did not start" >&2; continue; }
    line=$("${CLIENT_PIN[@]}" "${@/@PID/$PID}" --url "http://127.0.0.1:$PORT" --label "$label") || true
    stop
    record "$try" "$(annotate "$line" "$rep" "$busy")" && return 0
  done
}
rotate() { # repeat servers...: the servers, rotated by the repeat number
  local rep="$1"; shift
  local n=$# k i; k=$(( (rep - 1) % n ))
  for i in $(seq 0 $((n - 1))); do local j=$(( (i + k) % n + 1 )); echo "${!j}"; done
}

SERVERS=(stretto)
for peer in $PEERS; do [ "$peer" = node-seq ] || SERVERS+=("$peer"); done
{
  echo "date: $(date -u +%Y-%m-%dT%H:%MZ); uptime: $(uptime)"
  echo "stretto: $STRETTO_CMD ($("$STRETTO_CMD" version 2>/dev/null | head -1 || echo '?'))"
  echo "servers: ${SERVERS[*]}; repeats: $REPEAT; scenarios: $SCENARIOS; ulimit -n $FD_LIMIT; results: $OUT_DIR"
} >&2

for rep in $(seq "$REPEAT"); do
  mapfile -t order < <(rotate "$rep" "${SERVERS[@]}")
  for scenario in $SCENARIOS; do
    case "$scenario" in
      fanout) for rate in $RATES; do for s in "${order[@]}"; do
        measure "$rep" "$s" "$s" "" -- node "$LOAD_JS" fanout --subs "$SUBS" --events "$EVENTS" --rate "$rate" --pid @PID
      done; done ;;
      idle) for s in "${order[@]}"; do
        measure "$rep" "$s" "$s" "" -- node "$LOAD_JS" idle --conns "$IDLE_CONNS" --pid @PID
      done ;;
      http) for s in "${order[@]}"; do
        measure "$rep" "$s" "$s" "" -- node "$LOAD_JS" http --path /api/health --conns "$HTTP_CONNS" --seconds "$HTTP_SECONDS" --pid @PID
      done ;;
      workflow)
        wf=("${order[@]}"); [[ " $PEERS " == *" node-seq "* ]] && wf+=(node-seq)
        for s in "${wf[@]}"; do
          measure "$rep" "$s" "$s" "" -- node "$LOAD_JS" workflow --steps "$STEPS" --width "$WIDTH" --runs "$RUNS"
        done ;;
      capacity)
        # Nothing pinned: stretto gets a worker per core (--workers auto), Go GOMAXPROCS 2, Node
        # its one event loop; the client's CPU share is in the result (it must not be the limit).
        SERVER_CPU="" CLIENT_PIN=(env)
        for s in "${order[@]}"; do
          flags=""; [ "$s" = stretto ] && flags="--workers auto"
          measure "$rep" "$s" "$s" "$flags" -- $STRETTO_CMD bench capacity --steps "$CAPACITY_STEPS" \
            "${CAPACITY_ARGS[@]}" --pid @PID --json --quiet
        done
        # Past one process's open-files limit, which bounds --workers auto at about twice one
        # process's streams: N workers on the same two cores show what the machine holds.
        if [ -n "${CAPACITY_MANY_STEPS:-}" ]; then
          workers="${CAPACITY_WORKERS:-10}"
          measure "$rep" stretto "stretto+workers-$workers" "--workers $workers" -- $STRETTO_CMD bench capacity \
            --steps "$CAPACITY_MANY_STEPS" "${CAPACITY_ARGS[@]}" --pid @PID --json --quiet
        fi
        SERVER_CPU=0 CLIENT_PIN=(taskset -c 1) ;;
      startup)
        st=("${order[@]}"); [ -n "${STRETTO_BIN:-}" ] && st+=(stretto+binary)
        for s in "${st[@]}"; do
          quiet; busy="$BUSY"
          line=$(taskset -c 1 python3 "$HERE/startup.py" --label "$s" --port "$PORT" --cpu 0 "$(peer_cmd "$s")" | tail -1) || true
          record "$TRIES" "$(annotate "$line" "$rep" "$busy")"
        done ;;
      *) echo "unknown scenario $scenario" >&2; exit 2 ;;
    esac
  done

  # --- stretto-only rows (EXTRA=1) ------------------------------------------------------------
  if [ "$EXTRA" = 1 ]; then
    rate="${RATES%% *}"
    # Overload with recovery: subscribers the server drops reconnect with Last-Event-ID (replay).
    measure "$rep" stretto stretto+reconnect "" -- node "$LOAD_JS" fanout --subs "$SUBS" \
      --events "$EVENTS" --rate "$rate" --pid @PID --reconnect
    # Many idle streams with heartbeats flowing: memory per stream at 10,000 (issue 19: <= 15.6 KB).
    quiet; busy="$BUSY"
    start stretto "" STRETTO_SSE_HEARTBEAT_S=2
    line=$(taskset -c 1 $STRETTO_CMD bench idle --url "http://127.0.0.1:$PORT" --label "stretto+heartbeat-2s" \
      --conns "$IDLE_MANY" --hold-s 20 --pid "$PID" --json --quiet) || true
    stop
    record "$TRIES" "$(annotate "$line" "$rep" "$busy")"
    # Workflow scale rows: cost vs steps (1000 steps at width 100) and vs runs (100 concurrent runs
    # of 20 steps), with the server's limits lifted so they do not set the wall time.
    scale_flags="--max-plan-steps 1000 --run-concurrency 100 --ai-concurrency 1000 --global-concurrency 1000 --max-runs-per-user 100"
    for row in "$SCALE_STEPS $SCALE_WIDTH 1" "20 10 $SCALE_RUNS"; do
      set -- $row
      measure "$rep" stretto stretto+scale "$scale_flags" -- $STRETTO_CMD bench workflow --steps "$1" \
        --width "$2" --concurrent "$3" --runs "$SCALE_ROUNDS" --latency-ms "$LATENCY_MS" --pid @PID --json --quiet
    done
  fi
done

STRETTO_VERSION="$($STRETTO_CMD version 2>/dev/null | head -1 || echo stretto)" \
NODE_VERSION="$(node --version 2>/dev/null || echo '?')" \
GO_VERSION="$(go version 2>/dev/null | cut -d' ' -f3 || echo '?')" \
WRK_VERSION="$(wrk -v 2>&1 | head -1 | cut -d' ' -f2 || true)" \
FD_LIMIT="$FD_LIMIT" REPEAT="$REPEAT" \
python3 - "$OUT_DIR/meta.json" <<'PY'
import datetime, json, os, platform, sys
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
mem_kb = next((int(l.split()[1]) for l in open("/proc/meminfo") if l.startswith("MemTotal")), 0)
env = os.environ
meta = {
    "date": datetime.date.today().isoformat(),
    "machine": f"{os.cpu_count()}-core VM ({cpu}), {mem_kb / 1048576:.0f} GB RAM, Linux "
    f"{platform.release()}; server pinned to CPU 0, load generator to CPU 1; "
    f"ulimit -n {env['FD_LIMIT']} for every server; {env['REPEAT']} interleaved repeat(s)",
    "versions": f"{env['STRETTO_VERSION']}, node {env['NODE_VERSION']}, {env['GO_VERSION']}, "
    f"wrk {env['WRK_VERSION']}",
}
with open(sys.argv[1], "w") as out:
    json.dump(meta, out, indent=2)
PY
python3 "$HERE/results_table.py" "$OUT_DIR" | tee "$OUT_DIR/table.md"
echo "results: $OUT_DIR" >&2
