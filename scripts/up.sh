#!/usr/bin/env bash
# Builds and starts the whole chat backend on 127.0.0.1 with default settings:
# connection-service :50051, message-service :50052, edge :8080 (web UI and
# WebSocket). Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cmake -S . -B build-release -G Ninja -DCMAKE_BUILD_TYPE=Release -DCHAT_TESTS=OFF >/dev/null
cmake --build build-release --target connection-service message-service edge

pids=()
cleanup() {
  trap - INT TERM EXIT
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup INT TERM EXIT

mkdir -p build-release/logs
start() {  # name, binary, args...
  local name=$1; shift
  local fifo
  fifo=$(mktemp -u)
  mkfifo "$fifo"
  "$@" >"$fifo" 2> >(tee -a "build-release/logs/$name.log" >&2) &
  pids+=($!)
  # Wait for the service's "listening on" line (it prints it when ready).
  if ! timeout 15 grep -q -m1 '^listening on' "$fifo"; then
    echo "$name did not start; see build-release/logs/$name.log" >&2
    exit 1
  fi
  cat "$fifo" >/dev/null &
  rm -f "$fifo"
}
start connection-service build-release/connection-service/connection-service
start message-service build-release/message-service/message-service
start edge build-release/edge/edge --web_root="$PWD/edge/web"

cat <<MSG

  Chat is running.  Open  http://127.0.0.1:8080/  in a browser,
  or:  wscat -c 'ws://127.0.0.1:8080/?name=alice'

  Logs: build-release/logs/   Stop: Ctrl-C
MSG
wait -n
