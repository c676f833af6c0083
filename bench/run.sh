#!/usr/bin/env bash
# One command for the benchmark: our three services and the two
# peers (Node `ws`, Bun) under the same load, side by side.
#
#   bench/run.sh                 full run (3 repetitions; ~5 minutes here)
#   bench/run.sh --quick         1 repetition, shorter windows (~1.5 minutes)
#   options: --servers=ours,ws,bun  --reps=N  --workloads=dm_closed,dm_open,idle,storm
#            (idle100k, not in the default set: 100,000 connections over 6 edges, ours only)
#
# Servers run pinned to one core (SERVER_CPUS, default 0), the load generator to
# another (CLIENT_CPUS, default 1). Every run gets freshly started servers.
# BENCH_OUT=DIR writes the results elsewhere (e.g. for a trial run).
# While measuring it holds the build lock (/tmp/chat-build.lock), so nobody's
# build shares the cores with a measurement; BENCH_LOCK=0 turns that off.
# Writes bench/results/latest.md (medians, ratios, targets), latest.json (every
# run's JSON line) and raw/ (each run's full output).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${BUILD_DIR:-$ROOT/build}
PEERS=$ROOT/bench/peers
OUT=${BENCH_OUT:-$ROOT/bench/results}
SERVER_CPUS=${SERVER_CPUS:-0}
CLIENT_CPUS=${CLIENT_CPUS:-1}
LOCK=/tmp/chat-build.lock

QUICK=0
REPS=3
SERVERS=ours,ws,bun
WORKLOADS=dm_closed,dm_open,idle,storm
for arg in "$@"; do
  case $arg in
    --quick) QUICK=1 ;;
    --reps=*) REPS=${arg#*=} ;;
    --servers=*) SERVERS=${arg#*=} ;;
    --workloads=*) WORKLOADS=${arg#*=} ;;
    -h|--help) sed -n 2,13p "$0"; exit 0 ;;
    *) echo "unknown argument: $arg" >&2; exit 2 ;;
  esac
done
if [[ $QUICK == 1 && $REPS == 3 ]]; then REPS=1; fi

# Workload parameters: full, then quick.
if [[ $QUICK == 0 ]]; then
  DM_CLOSED="--pairs=100 --window=16 --warmup=1 --duration=5"
  DM_OPEN="--pairs=1000 --rate=5000 --warmup=1 --duration=8"
  IDLE="--conns=19000 --procs=2 --concurrency=200 --settle=1 --hold=5"
  STORM="--conns=15000 --procs=1 --concurrency=200"
else
  DM_CLOSED="--pairs=100 --window=16 --warmup=1 --duration=3"
  DM_OPEN="--pairs=1000 --rate=5000 --warmup=1 --duration=4"
  IDLE="--conns=19000 --procs=2 --concurrency=200 --settle=1 --hold=2"
  STORM="--conns=10000 --procs=1 --concurrency=200"
fi

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# ---- build what is missing (never concurrently with anyone: flock) ----------
if [[ ! -f $BUILD/build.ninja ]]; then
  log "configuring $BUILD"
  flock "$LOCK" cmake -S "$ROOT" -B "$BUILD" -G Ninja >/dev/null
elif ! grep -q 'bench/loadgen' "$BUILD/build.ninja"; then
  log "reconfiguring $BUILD (bench/ not known to it yet)"
  flock "$LOCK" cmake -S "$ROOT" -B "$BUILD" >/dev/null
fi
LOADGEN=$BUILD/bench/loadgen
EDGE=$BUILD/edge/edge
CS=$BUILD/connection-service/connection-service
MS=$BUILD/message-service/message-service
targets=()
[[ -x $LOADGEN ]] || targets+=(loadgen)
if [[ ,$SERVERS, == *,ours,* ]]; then
  [[ -x $EDGE ]] || targets+=(edge)
  [[ -x $CS ]] || targets+=(connection-service)
  [[ -x $MS ]] || targets+=(message-service)
fi
if ((${#targets[@]})); then
  log "building ${targets[*]}"
  flock "$LOCK" cmake --build "$BUILD" --target "${targets[@]}"
fi
if [[ ,$SERVERS, == *,ws,* || ,$SERVERS, == *,bun,* ]]; then
  if [[ ! -d $PEERS/node_modules/ws || ! -x $PEERS/node_modules/.bin/bun ]]; then
    log "installing the peers' npm packages"
    (cd "$PEERS" && npm ci --no-audit --no-fund >/dev/null)
  fi
fi

ulimit -n "$(ulimit -Hn)"   # 19,000 connections need more than the usual 1024 files

TMP=$(mktemp -d /tmp/chat-bench.XXXXXX)
PIDS=()
cleanup() {
  stop_servers
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Waits for the one "listening on HOST:PORT" line a server prints; echoes PORT.
wait_listening() {
  local file=$1 pid=$2 deadline=$((SECONDS + 30))
  while ((SECONDS < deadline)); do
    local port
    port=$(sed -n 's/^listening on .*:\([0-9][0-9]*\)$/\1/p' "$file" 2>/dev/null | head -1)
    if [[ -n $port ]]; then
      echo "$port"
      return 0
    fi
    if ! kill -0 "$pid" 2>/dev/null; then break; fi
    sleep 0.05
  done
  echo "server did not start; its output:" >&2
  cat "$file" "$file.err" >&2 || true
  return 1
}

# start_X sets URL, SERVER_PIDS and HELLO for the loadgen.
start_ours() {
  taskset -c "$SERVER_CPUS" 9>&- "$CS" --listen=127.0.0.1:0 >"$TMP/cs.out" 2>"$TMP/cs.out.err" &
  local cs_pid=$!; PIDS+=("$cs_pid")
  local cs_port; cs_port=$(wait_listening "$TMP/cs.out" "$cs_pid")
  taskset -c "$SERVER_CPUS" 9>&- "$MS" --listen=127.0.0.1:0 --connection_service=127.0.0.1:"$cs_port" \
    >"$TMP/ms.out" 2>"$TMP/ms.out.err" &
  local ms_pid=$!; PIDS+=("$ms_pid")
  local ms_port; ms_port=$(wait_listening "$TMP/ms.out" "$ms_pid")
  # Several edges share one connection-service and message-service (idle100k).
  local i urls=() pids=() edge_pid edge_port
  for ((i = 0; i < ${EDGES:-1}; i++)); do
    taskset -c "$SERVER_CPUS" 9>&- "$EDGE" --listen=127.0.0.1:0 --connection_service=127.0.0.1:"$cs_port" \
      --message_service=127.0.0.1:"$ms_port" --messages_per_second=1000000 \
      >"$TMP/edge$i.out" 2>"$TMP/edge$i.out.err" &
    edge_pid=$!; PIDS+=("$edge_pid")
    edge_port=$(wait_listening "$TMP/edge$i.out" "$edge_pid")
    urls+=("ws://127.0.0.1:$edge_port/")
    pids+=("edge$i=$edge_pid")
  done
  URL=$(IFS=,; echo "${urls[*]}")
  SERVER_PIDS=$(IFS=,; echo "${pids[*]}"),connection-service=$cs_pid,message-service=$ms_pid
  if ((${EDGES:-1} == 1)); then SERVER_PIDS=${SERVER_PIDS/edge0=/edge=}; fi
  HELLO=1
}
start_ws() {
  taskset -c "$SERVER_CPUS" 9>&- node "$PEERS/ws-relay.mjs" --listen=127.0.0.1:0 >"$TMP/ws.out" 2>"$TMP/ws.out.err" &
  local pid=$!; PIDS+=("$pid")
  URL=ws://127.0.0.1:$(wait_listening "$TMP/ws.out" "$pid")/
  SERVER_PIDS=ws=$pid
  HELLO=0
}
start_bun() {
  taskset -c "$SERVER_CPUS" 9>&- "$PEERS/node_modules/.bin/bun" "$PEERS/bun-relay.ts" --listen=127.0.0.1:0 \
    >"$TMP/bun.out" 2>"$TMP/bun.out.err" &
  local pid=$!; PIDS+=("$pid")
  URL=ws://127.0.0.1:$(wait_listening "$TMP/bun.out" "$pid")/
  SERVER_PIDS=bun=$pid
  HELLO=0
}
stop_servers() {
  local pid
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  PIDS=()
}

if [[ ${BENCH_LOCK:-1} == 1 ]]; then
  exec 9>"$LOCK"
  log "waiting for the build lock (builds and measurements do not overlap)"
  flock 9
fi

mkdir -p "$OUT/raw"
rm -f "$OUT"/raw/*.txt
RUN_ID=$(date -u +%Y%m%dT%H%M%SZ)
JSONL=$TMP/runs.jsonl
: >"$JSONL"
START=$SECONDS
IFS=, read -r -a server_list <<<"$SERVERS"
IFS=, read -r -a workload_list <<<"$WORKLOADS"
for rep in $(seq "$REPS"); do
  for workload in "${workload_list[@]}"; do
    for server in "${server_list[@]}"; do
      case $workload in
        dm_closed) args="dm --mode=closed $DM_CLOSED" ;;
        dm_open) args="dm --mode=open $DM_OPEN" ;;
        idle) args="idle $IDLE" ;;
        storm) args="storm $STORM" ;;
        idle100k)  # 100,000 live connections across several edges (ours only)
          [[ $server == ours ]] || continue
          args="idle --conns=100000 --procs=6 --concurrency=300 --settle=2 --hold=5" ;;
        *) echo "unknown workload $workload" >&2; exit 2 ;;
      esac
      EDGES=1
      [[ $workload == idle100k ]] && EDGES=6
      "start_$server"
      raw=$OUT/raw/$server-$workload-$rep.txt
      log "rep $rep/$REPS  $workload  $server"
      # shellcheck disable=SC2086
      if ! taskset -c "$CLIENT_CPUS" "$LOADGEN" 9>&- $args --url="$URL" --label="$server" \
          --wait-hello="$HELLO" --server-pids="$SERVER_PIDS" >"$raw" 2>&1; then
        log "loadgen failed for $server $workload (see $raw)"
      fi
      grep -v '^{' "$raw" | sed 's/^/    /' >&2 || true
      line=$(grep '^{"workload"' "$raw" | tail -1 || true)
      if [[ -n $line ]]; then
        printf '%s\n' "${line%\}},\"case\":\"$workload\",\"rep\":$rep}" >>"$JSONL"
      fi
      for pid in "${PIDS[@]}"; do
        kill -0 "$pid" 2>/dev/null || log "WARNING: a $server process ($pid) died during $workload"
      done
      stop_servers
    done
  done
done
log "runs took $((SECONDS - START)) s"

node "$ROOT/bench/report.mjs" --runs="$JSONL" --md="$OUT/latest.md" --json="$OUT/latest.json" \
  --quick="$QUICK" --reps="$REPS" --run-id="$RUN_ID"
cat "$OUT/latest.md"
