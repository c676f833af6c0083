#!/usr/bin/env bash
# One command for the benchmark: our three services and the two
# peers (Node `ws`, Bun) under the same load, side by side.
#
#   bench/run.sh                 full run (3 repetitions; ~6 minutes here)
#   bench/run.sh --quick         1 repetition, shorter windows (~2 minutes)
#   options: --servers=ours,ws,bun  --reps=N  --workloads=dm_closed,dm_open,idle,storm,sync10k
#            (idle100k, not in the default set: 100,000 connections over 6 edges, ours only)
#            --store=sqlite|postgresql  our services' message and user store (default sqlite):
#            a fresh SQLite file pair, or a fresh database on one PostgreSQL 15 server
#            started for the whole bench, for every run
#            --baseline=DIR/latest.json  adds "ours / baseline" to the report (e.g. an older build)
#            --registry=memory|redis  connection-service's live state: in its memory (default) or
#            in one redis-server started for the whole bench (flushed before every run)
#            --replicas=N  connection-services and message-services each (default 1; N > 1 needs
#            --store=postgresql and --registry=redis): edges list every replica
# With Redis or PostgreSQL, every run's JSON line also counts the engines' work:
# redis_cmds (Redis commands processed, those run by scripts included), redis_scripts
# (script calls: round trips) and pg_calls (statements executed, from
# pg_stat_statements), for ops per message and per connect (docs/scaling.md), and
# redis_mem_growth: Redis's used_memory at its highest during the run minus before.
#
# Servers run pinned to one core (SERVER_CPUS, default 0), the load generator to
# another (CLIENT_CPUS, default 1). Every run gets freshly started servers.
# BENCH_OUT=DIR writes the results elsewhere (e.g. for a trial run).
# BENCH_STORE_DIR=DIR puts the SQLite files there (default: the run's /tmp dir).
# BUILD_DIR=DIR takes the services from another build (e.g. of an older commit in
# a git worktree); the load generator always comes from this checkout's build
# (LOADGEN_BUILD_DIR, default: BUILD_DIR if it builds this checkout, else build/).
# Services built before the store existed run without --store; sync10k is then n/a.
# While measuring it holds the build lock (/tmp/chat-build.lock), so nobody's
# build shares the cores with a measurement; BENCH_LOCK=0 turns that off.
# Writes bench/results/latest.md (medians, ratios, goals), latest.json (every
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
WORKLOADS=dm_closed,dm_open,idle,storm,sync10k
STORE=sqlite
REGISTRY=memory
REPLICAS=1
BASELINE=
for arg in "$@"; do
  case $arg in
    --quick) QUICK=1 ;;
    --reps=*) REPS=${arg#*=} ;;
    --servers=*) SERVERS=${arg#*=} ;;
    --workloads=*) WORKLOADS=${arg#*=} ;;
    --store=*) STORE=${arg#*=} ;;
    --registry=*) REGISTRY=${arg#*=} ;;
    --replicas=*) REPLICAS=${arg#*=} ;;
    --baseline=*) BASELINE=$(realpath "${arg#*=}") ;;
    -h|--help) sed -n 2,28p "$0"; exit 0 ;;
    *) echo "unknown argument: $arg" >&2; exit 2 ;;
  esac
done
case $STORE in
  sqlite|postgresql) ;;
  *) echo "--store must be sqlite or postgresql" >&2; exit 2 ;;
esac
case $REGISTRY in
  memory|redis) ;;
  *) echo "--registry must be memory or redis" >&2; exit 2 ;;
esac
if ! [[ $REPLICAS =~ ^[1-9][0-9]*$ ]]; then echo "--replicas must be a positive number" >&2; exit 2; fi
if ((REPLICAS > 1)) && [[ $STORE != postgresql || $REGISTRY != redis ]]; then
  echo "--replicas > 1 needs --store=postgresql and --registry=redis (shared state)" >&2
  exit 2
fi
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
# Store 10,000 messages for one user, then catch up a fresh connection in pages of 500.
SYNC10K="--messages=10000 --page=500 --window=32"

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# The checkout a build directory was configured from ("" if none yet).
source_of() { sed -n 's/^CMAKE_HOME_DIRECTORY:INTERNAL=//p' "$1/CMakeCache.txt" 2>/dev/null; }

# ---- build what is missing (never concurrently with anyone: flock) ----------
if [[ ! -f $BUILD/build.ninja ]]; then
  log "configuring $BUILD"
  flock "$LOCK" cmake -S "$ROOT" -B "$BUILD" -G Ninja >/dev/null
fi
SERVICES_SRC=$(source_of "$BUILD")
if [[ -n ${LOADGEN_BUILD_DIR:-} ]]; then
  LOADGEN_BUILD=$LOADGEN_BUILD_DIR
elif [[ $SERVICES_SRC -ef $ROOT ]]; then
  LOADGEN_BUILD=$BUILD
else
  LOADGEN_BUILD=$ROOT/build
fi
if [[ ! -f $LOADGEN_BUILD/build.ninja ]]; then
  log "configuring $LOADGEN_BUILD"
  flock "$LOCK" cmake -S "$ROOT" -B "$LOADGEN_BUILD" -G Ninja >/dev/null
elif ! grep -q 'bench/loadgen' "$LOADGEN_BUILD/build.ninja"; then
  log "reconfiguring $LOADGEN_BUILD (bench/ not known to it yet)"
  flock "$LOCK" cmake -S "$ROOT" -B "$LOADGEN_BUILD" >/dev/null
fi
LOADGEN=$LOADGEN_BUILD/bench/loadgen
EDGE=$BUILD/edge/edge
CS=$BUILD/connection-service/connection-service
MS=$BUILD/message-service/message-service
# Always let ninja bring the loadgen up to date: it is small, and a stale one
# would miss workloads (sync10k) or columns.
log "building loadgen in $LOADGEN_BUILD"
flock "$LOCK" cmake --build "$LOADGEN_BUILD" --target loadgen >/dev/null
targets=()
if [[ ,$SERVERS, == *,ours,* ]]; then
  [[ -x $EDGE ]] || targets+=(edge)
  [[ -x $CS ]] || targets+=(connection-service)
  [[ -x $MS ]] || targets+=(message-service)
fi
if ((${#targets[@]})); then
  log "building ${targets[*]}"
  flock "$LOCK" cmake --build "$BUILD" --target "${targets[@]}"
fi
# Named in the report only when the services come from another checkout.
SERVICES_COMMIT=
if [[ -n $SERVICES_SRC && ! $SERVICES_SRC -ef $ROOT ]]; then
  SERVICES_COMMIT=$(git -C "$SERVICES_SRC" rev-parse --short HEAD 2>/dev/null || echo '?')
fi

# Services built before the store (and before --metrics_listen) reject those flags.
has_flag() {
  local help
  help=$("$1" --helpfull 2>&1 || true)
  grep -q -- "^ *--$2 " <<<"$help"
}
MS_FLAGS=() CS_FLAGS=()
HAS_STORE=0
if [[ ,$SERVERS, == *,ours,* ]]; then
  if has_flag "$MS" store && has_flag "$CS" store; then HAS_STORE=1; fi
  # Metrics off: their fixed default ports would collide between runs.
  has_flag "$MS" metrics_listen && MS_FLAGS+=(--metrics_listen=)
  has_flag "$CS" metrics_listen && CS_FLAGS+=(--metrics_listen=)
fi
if ((HAS_STORE)); then
  case $STORE in
    sqlite) STORE_DESC="SQLite (WAL, synchronous=NORMAL: the services' default), a fresh file per run" ;;
    postgresql) STORE_DESC="PostgreSQL 15 on the servers' core (fsync on, synchronous_commit on: its defaults), a fresh database per run" ;;
  esac
else
  STORE=none
  STORE_DESC="none (services built before the store)"
fi
if [[ ,$SERVERS, == *,ws,* || ,$SERVERS, == *,bun,* ]]; then
  if [[ ! -d $PEERS/node_modules/ws || ! -x $PEERS/node_modules/.bin/bun ]]; then
    log "installing the peers' npm packages"
    (cd "$PEERS" && npm ci --no-audit --no-fund >/dev/null)
  fi
fi

ulimit -n "$(ulimit -Hn)"   # 19,000 connections need more than the usual 1024 files

TMP=$(mktemp -d /tmp/chat-bench.XXXXXX)
# SQLite files go here (BENCH_STORE_DIR, e.g. /dev/shm to take the disk out).
STORE_DIR=$TMP
if [[ -n ${BENCH_STORE_DIR:-} ]]; then STORE_DIR=$(mktemp -d "$BENCH_STORE_DIR/chat-bench.XXXXXX"); fi
PIDS=()
PG_DIR=
cleanup() {
  stop_servers
  stop_postgres
  stop_redis
  rm -rf "$TMP" "$STORE_DIR"
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

# ---- PostgreSQL: one server for the whole bench, a fresh database per run ----
PG_BIN=/usr/lib/postgresql/15/bin
PG_PORT=
PG_PID=
# As the postgres user when we are root (initdb and the server refuse root).
AS_PG=()
((EUID == 0)) && AS_PG=(runuser -u postgres --)
start_postgres() {
  [[ -x $PG_BIN/pg_ctl ]] || { echo "PostgreSQL 15 is not installed ($PG_BIN)" >&2; exit 1; }
  PG_DIR=$(mktemp -d /tmp/chat-bench-pg.XXXXXX)
  ((EUID == 0)) && chown postgres: "$PG_DIR"
  "${AS_PG[@]}" "$PG_BIN/initdb" -N -A trust -U chat -E UTF8 -D "$PG_DIR/data" >"$PG_DIR/initdb.log" 2>&1 ||
    { cat "$PG_DIR/initdb.log" >&2; exit 1; }
  local try
  for try in 1 2 3 4 5; do
    PG_PORT=$((20000 + RANDOM % 40000))
    # A port something already listens on would fail the start; try another.
    if (exec 3<>"/dev/tcp/127.0.0.1/$PG_PORT") 2>/dev/null; then continue; fi
    # The postmaster and every backend it forks inherit the servers' CPUs.
    if pg_ctl_do start; then
      PG_PID=$(head -1 "$PG_DIR/data/postmaster.pid")
      log "PostgreSQL 15 on 127.0.0.1:$PG_PORT (pid $PG_PID, CPUs $SERVER_CPUS)"
      return 0
    fi
  done
  echo "PostgreSQL did not start; its log:" >&2
  cat "$PG_DIR/server.log" >&2 || true
  exit 1
}
pg_ctl_do() {
  taskset -c "$SERVER_CPUS" 9>&- "${AS_PG[@]}" "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/server.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $PG_PORT -k $PG_DIR -c shared_preload_libraries=pg_stat_statements" \
    "$@" >/dev/null
}
stop_postgres() {
  [[ -n $PG_DIR ]] || return 0
  [[ -n $PG_PID ]] && pg_ctl_do stop -m fast || true
  rm -rf "$PG_DIR"
  PG_DIR= PG_PID=
}

# ---- Redis: one server for the whole bench, flushed before every run -------
REDIS_PORT=
REDIS_PID=
start_redis() {
  command -v redis-server >/dev/null || { echo "redis-server is not installed" >&2; exit 1; }
  local try
  for try in 1 2 3 4 5; do
    REDIS_PORT=$((20000 + RANDOM % 40000))
    if (exec 3<>"/dev/tcp/127.0.0.1/$REDIS_PORT") 2>/dev/null; then continue; fi
    taskset -c "$SERVER_CPUS" 9>&- redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save "" \
      --appendonly no --dir "$TMP" >"$TMP/redis.out" 2>&1 &
    REDIS_PID=$!
    local deadline=$((SECONDS + 10))
    while ((SECONDS < deadline)); do
      if [[ $(redis-cli -p "$REDIS_PORT" ping 2>/dev/null) == PONG ]]; then
        log "Redis on 127.0.0.1:$REDIS_PORT (pid $REDIS_PID, CPUs $SERVER_CPUS)"
        return 0
      fi
      kill -0 "$REDIS_PID" 2>/dev/null || break
      sleep 0.05
    done
    kill -KILL "$REDIS_PID" 2>/dev/null || true
    wait "$REDIS_PID" 2>/dev/null || true
  done
  echo "redis-server did not start:" >&2
  cat "$TMP/redis.out" >&2 || true
  exit 1
}
stop_redis() {
  [[ -n $REDIS_PID ]] || return 0
  kill -TERM "$REDIS_PID" 2>/dev/null || true
  wait "$REDIS_PID" 2>/dev/null || true
  REDIS_PID=
}
redis_used_memory() {
  redis-cli -p "$REDIS_PORT" info memory 2>/dev/null | tr -d '\r' | sed -n 's/^used_memory://p'
}
# The engines' work so far, as JSON fields (empty without Redis/PostgreSQL).
engine_counts() {
  local out=
  if [[ -n $REDIS_PID ]]; then
    local n
    local n scripts
    n=$(redis-cli -p "$REDIS_PORT" info stats | tr -d '\r' | sed -n 's/^total_commands_processed://p')
    # Round trips that ran a script (each also counts its commands in redis_cmds).
    scripts=$(redis-cli -p "$REDIS_PORT" info commandstats | tr -d '\r' |
      sed -n 's/^cmdstat_eval\(sha\)\{0,1\}:calls=\([0-9]*\),.*/\2/p' | awk '{s += $1} END {print s + 0}')
    out+=",\"redis_cmds\":${n:-0},\"redis_scripts\":${scripts:-0}"
  fi
  if [[ -n $PG_PID && $RUN_NO -gt 0 ]]; then
    local calls
    calls=$(9>&- psql -h 127.0.0.1 -p "$PG_PORT" -U chat -d "run$RUN_NO" -Atq \
      -c "SELECT coalesce(sum(calls), 0) FROM pg_stat_statements" 2>/dev/null || echo 0)
    out+=",\"pg_calls\":${calls:-0}"
  fi
  printf '%s' "$out"
}
# Subtracts two engine_counts outputs field by field.
engine_delta() {
  python3 -c '
import json, sys
a = json.loads("{" + sys.argv[1].lstrip(",") + "}")
b = json.loads("{" + sys.argv[2].lstrip(",") + "}")
print("".join(",\"%s\":%d" % (k, b[k] - a.get(k, 0)) for k in b), end="")' "$1" "$2"
}

# A fresh store for one run of our services: sets MS_STORE and CS_STORE flags.
RUN_NO=0
new_store() {
  RUN_NO=$((RUN_NO + 1))
  MS_STORE=() CS_STORE=()
  case $STORE in
    sqlite)
      mkdir -p "$STORE_DIR/run$RUN_NO"
      MS_STORE=(--store="sqlite:$STORE_DIR/run$RUN_NO/messages.db")
      CS_STORE=(--store="sqlite:$STORE_DIR/run$RUN_NO/users.db") ;;
    postgresql)
      9>&- "$PG_BIN/createdb" -h 127.0.0.1 -p "$PG_PORT" -U chat "run$RUN_NO"
      9>&- psql -h 127.0.0.1 -p "$PG_PORT" -U chat -d "run$RUN_NO" -q \
        -c "CREATE EXTENSION IF NOT EXISTS pg_stat_statements" -c "SELECT pg_stat_statements_reset()" >/dev/null
      MS_STORE=(--store="postgresql://chat@127.0.0.1:$PG_PORT/run$RUN_NO")
      CS_STORE=("${MS_STORE[@]}") ;;
  esac
}
# Drops the run's store once its servers are gone (a 1.5M-message run is ~0.5 GB).
drop_store() {
  case $STORE in
    sqlite) rm -rf "$STORE_DIR/run$RUN_NO" ;;
    postgresql) 9>&- "$PG_BIN/dropdb" -h 127.0.0.1 -p "$PG_PORT" -U chat --force "run$RUN_NO" || true ;;
  esac
}

# start_X sets URL, SERVER_PIDS and HELLO for the loadgen.
start_ours() {
  new_store
  local registry=()
  if [[ $REGISTRY == redis ]]; then
    9>&- redis-cli -p "$REDIS_PORT" flushall >/dev/null
    registry=(--registry="redis://127.0.0.1:$REDIS_PORT")
  fi
  # REPLICAS connection-services and message-services; every edge lists them all.
  local r cs_pid cs_port ms_pid ms_port cs_targets=() ms_targets=() service_pids=()
  for ((r = 0; r < REPLICAS; r++)); do
    taskset -c "$SERVER_CPUS" 9>&- "$CS" --listen=127.0.0.1:0 "${CS_FLAGS[@]}" "${CS_STORE[@]}" \
      "${registry[@]}" >"$TMP/cs$r.out" 2>"$TMP/cs$r.out.err" &
    cs_pid=$!; PIDS+=("$cs_pid")
    cs_port=$(wait_listening "$TMP/cs$r.out" "$cs_pid")
    cs_targets+=("127.0.0.1:$cs_port")
    service_pids+=("connection-service$r=$cs_pid")
  done
  local cs_list; cs_list=$(IFS=,; echo "${cs_targets[*]}")
  for ((r = 0; r < REPLICAS; r++)); do
    taskset -c "$SERVER_CPUS" 9>&- "$MS" --listen=127.0.0.1:0 --connection_service="$cs_list" \
      "${MS_FLAGS[@]}" "${MS_STORE[@]}" >"$TMP/ms$r.out" 2>"$TMP/ms$r.out.err" &
    ms_pid=$!; PIDS+=("$ms_pid")
    ms_port=$(wait_listening "$TMP/ms$r.out" "$ms_pid")
    ms_targets+=("127.0.0.1:$ms_port")
    service_pids+=("message-service$r=$ms_pid")
  done
  local ms_list; ms_list=$(IFS=,; echo "${ms_targets[*]}")
  # Several edges share the services (idle100k).
  local i urls=() pids=() edge_pid edge_port
  for ((i = 0; i < ${EDGES:-1}; i++)); do
    taskset -c "$SERVER_CPUS" 9>&- "$EDGE" --listen=127.0.0.1:0 --connection_service="$cs_list" \
      --message_service="$ms_list" --messages_per_second=1000000 --rate_burst=1000000 \
      >"$TMP/edge$i.out" 2>"$TMP/edge$i.out.err" &
    edge_pid=$!; PIDS+=("$edge_pid")
    edge_port=$(wait_listening "$TMP/edge$i.out" "$edge_pid")
    urls+=("ws://127.0.0.1:$edge_port/")
    pids+=("edge$i=$edge_pid")
  done
  URL=$(IFS=,; echo "${urls[*]}")
  SERVER_PIDS=$(IFS=,; echo "${pids[*]},${service_pids[*]}")
  if ((${EDGES:-1} == 1)); then SERVER_PIDS=${SERVER_PIDS/edge0=/edge=}; fi
  if ((REPLICAS == 1)); then
    SERVER_PIDS=${SERVER_PIDS/connection-service0=/connection-service=}
    SERVER_PIDS=${SERVER_PIDS/message-service0=/message-service=}
  fi
  # The engines' work is the services' work: their CPU, context switches and
  # memory count in "all server processes".
  [[ $STORE == postgresql ]] && SERVER_PIDS+=",postgres=tree:$PG_PID"
  [[ $REGISTRY == redis ]] && SERVER_PIDS+=",redis=$REDIS_PID"
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
  if ((${#PIDS[@]})) && [[ $STARTED == ours ]]; then drop_store; fi
  PIDS=()
}
STARTED=

if [[ ${BENCH_LOCK:-1} == 1 ]]; then
  exec 9>"$LOCK"
  log "waiting for the build lock (builds and measurements do not overlap)"
  flock 9
fi
if [[ $STORE == postgresql && ,$SERVERS, == *,ours,* ]]; then start_postgres; fi
if [[ $REGISTRY == redis && ,$SERVERS, == *,ours,* ]]; then start_redis; fi

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
        sync10k)  # catch-up from the store: ours only (the peers store nothing)
          [[ $server == ours ]] || continue
          if ((!HAS_STORE)); then log "sync10k: these services have no store, skipped"; continue; fi
          args="sync $SYNC10K" ;;
        *) echo "unknown workload $workload" >&2; exit 2 ;;
      esac
      EDGES=1
      [[ $workload == idle100k ]] && EDGES=6
      STARTED=$server
      "start_$server"
      raw=$OUT/raw/$server-$workload-$rep.txt
      log "rep $rep/$REPS  $workload  $server"
      engines_before=$(engine_counts)
      # Redis memory at its highest during the run (per connection: idle, storm).
      redis_sampler=
      if [[ $server == ours && -n $REDIS_PID ]]; then
        redis_mem_base=$(redis_used_memory)
        (
          peak=0
          while kill -0 "$REDIS_PID" 2>/dev/null; do
            m=$(redis_used_memory)
            ((m > peak)) && peak=$m && echo "$peak" >"$TMP/redis_peak"
            sleep 0.2
          done
        ) 9>&- &
        redis_sampler=$!
      fi
      # shellcheck disable=SC2086
      if ! taskset -c "$CLIENT_CPUS" "$LOADGEN" 9>&- $args --url="$URL" --label="$server" \
          --wait-hello="$HELLO" --server-pids="$SERVER_PIDS" >"$raw" 2>&1; then
        log "loadgen failed for $server $workload (see $raw)"
      fi
      grep -v '^{' "$raw" | sed 's/^/    /' >&2 || true
      redis_growth=
      if [[ -n $redis_sampler ]]; then
        kill "$redis_sampler" 2>/dev/null || true
        wait "$redis_sampler" 2>/dev/null || true
        redis_growth=$(($(cat "$TMP/redis_peak" 2>/dev/null || echo "$redis_mem_base") - redis_mem_base))
        rm -f "$TMP/redis_peak"
      fi
      line=$(grep '^{"workload"' "$raw" | tail -1 || true)
      if [[ -n $line ]]; then
        store=none engines=
        if [[ $server == ours ]]; then
          store=$STORE
          engines=$(engine_delta "$engines_before" "$(engine_counts)")
        fi
        [[ -n $redis_growth ]] && engines+=",\"redis_mem_growth\":$redis_growth"
        printf '%s\n' "${line%\}},\"case\":\"$workload\",\"rep\":$rep,\"store\":\"$store\"$engines}" >>"$JSONL"
      fi
      if [[ $server == ours && -n $PG_PID ]]; then
        # Where the database work went: the statements run most, with their calls.
        { echo "PostgreSQL statements by calls (this run):"
          9>&- psql -h 127.0.0.1 -p "$PG_PORT" -U chat -d "run$RUN_NO" -Atq -F ' | ' -c \
            "SELECT calls, round(total_exec_time::numeric, 1) AS ms, left(regexp_replace(query, '\s+', ' ', 'g'), 160)
             FROM pg_stat_statements ORDER BY calls DESC LIMIT 15" 2>&1 || true
        } >>"$raw"
      fi
      if [[ $server == ours && -n $REDIS_PID ]]; then
        { echo "Redis commands by calls (since the bench started):"
          redis-cli -p "$REDIS_PORT" info commandstats | tr -d '\r' | grep '^cmdstat' | sort -t= -k2 -rn | head -15
        } >>"$raw"
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
  --quick="$QUICK" --reps="$REPS" --run-id="$RUN_ID" --store="$STORE" --store-desc="$STORE_DESC" \
  ${SERVICES_COMMIT:+--services-commit="$SERVICES_COMMIT"} ${BASELINE:+--baseline="$BASELINE"}
cat "$OUT/latest.md"
