#!/usr/bin/env bash
# Builds and starts the whole chat backend on 127.0.0.1 with default settings:
# connection-service :50051, message-service :50052, edge :8080 (web UI and
# WebSocket). Runs until Ctrl-C, or until one of the three exits (it then says
# which and stops the others).
#
# Environment (all optional):
#   CHAT_BUILD_DIR  use the binaries already built there instead of building
#                   build-release (no package check, no build)
#   CHAT_DATA_DIR   where the services keep their data (default
#                   <build dir>/data: messages.db, users.db)
# Logs: <build dir>/logs/<service>.log (stderr, appended; also shown here).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

if [[ -n "${CHAT_BUILD_DIR:-}" ]]; then
  build=$(cd "$CHAT_BUILD_DIR" && pwd)
else
  build=$root/build-release
  scripts/install-deps.sh
  cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCHAT_TESTS=OFF >/dev/null
  cmake --build "$build" --target connection-service message-service edge
fi
data=${CHAT_DATA_DIR:-$build/data}
logs=$build/logs
mkdir -p "$data" "$logs"
data=$(cd "$data" && pwd)

pids=()
declare -A names=()
dead=""  # the service whose exit stopped the others
helper=""  # the tail that shows the logs here

alive() {  # pid: running (not exited, not an unreaped zombie)
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  stat=${stat##*) }
  [[ ${stat%% *} != Z ]]
}

# TERM to every service still running, then wait for them (the edge drains its
# connections first: --drain_timeout_ms, 5 s by default); KILL after 20 s.
stop_all() {
  trap - INT TERM
  local pid left
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for ((left = 200; left > 0; left--)); do
    local running=0
    for pid in "${pids[@]}"; do alive "$pid" && running=1; done
    ((running)) || break
    sleep 0.1
  done
  for pid in "${pids[@]}"; do
    if alive "$pid"; then
      echo "${names[$pid]} did not stop within 20 s; killing it" >&2
      kill -KILL "$pid" 2>/dev/null || true
    fi
  done
  status=0
  for pid in "${pids[@]}"; do
    [[ $pid == "${dead:-}" ]] && continue  # reported already
    local rc=0
    wait "$pid" 2>/dev/null || rc=$?
    if ((rc != 0)); then
      echo "${names[$pid]} exited with status $rc" >&2
      status=1
    fi
  done
  if [[ -n $helper ]]; then
    kill "$helper" 2>/dev/null || true
    wait "$helper" 2>/dev/null || true
  fi
}
trap 'stop_all; exit 1' EXIT

# Each service's stderr is appended to its log, which one `tail` shows here;
# stdout goes to a file of its own, where the service's "listening on" line
# says it is ready. No pipes between the script and the services: nothing
# here can exit (or block them) behind their backs.
for name in connection-service message-service edge; do touch "$logs/$name.log"; done
# Ctrl-C reaches the whole process group: the tail ignores it so that the
# services' shutdown lines still show.
(
  trap '' INT
  exec tail -q -n 0 -F "$logs/connection-service.log" "$logs/message-service.log" \
    "$logs/edge.log" >&2
) &
helper=$!

start() {  # name, binary, args...
  local name=$1 out="$logs/$1.stdout" pid
  shift
  "$@" >"$out" 2>>"$logs/$name.log" &
  pid=$!
  pids+=("$pid")
  names[$pid]=$name
  local deadline=$((SECONDS + 30))
  until grep -q '^listening on' "$out"; do
    if ! alive "$pid"; then
      echo "$name exited before it was ready; see $logs/$name.log" >&2
      exit 1
    fi
    if ((SECONDS >= deadline)); then
      echo "$name was not ready within 30 s; see $logs/$name.log" >&2
      exit 1
    fi
    sleep 0.1
  done
}
start connection-service "$build/connection-service/connection-service" \
  --store="sqlite:$data/users.db"
start message-service "$build/message-service/message-service" \
  --store="sqlite:$data/messages.db"
start edge "$build/edge/edge" --web_root="$root/edge/web"

cat <<MSG

  Chat is running.  Open  http://127.0.0.1:8080/  in a browser,
  or:  wscat -c 'ws://127.0.0.1:8080/?name=alice'

  Data: $data   Logs: $logs   Stop: Ctrl-C
MSG

interrupted=""
trap 'interrupted=1' INT TERM
rc=0
wait -n -p dead "${pids[@]}" || rc=$?
trap - EXIT
if [[ -n $interrupted ]]; then
  echo "stopping" >&2
  stop_all
  exit "$status"
fi
echo "${names[$dead]:-a service} exited (status $rc); stopping the others" >&2
stop_all
exit 1
