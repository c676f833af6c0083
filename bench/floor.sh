#!/usr/bin/env bash
# What one gRPC stream hop costs on this machine, with no work on either side:
# bench/grpc_floor (an echo server and a paced client, gRPC's async API, one
# thread each) both pinned to core 0, like our servers in bench/run.sh.
#
#   bench/floor.sh [RATE...]     default: 1000 5000 20000, then 80000 (beyond
#                                what one core can answer: its max rate)
#
# Each run prints one JSON line: CPU-µs and voluntary switches per message on
# each side, and the round trip. "--up/--down" are one chat message's EdgeUp
# and EdgeDown sizes (128 and 320 bytes); the batched lines send 16 of them per
# gRPC message, as the edge's link does when messages come together.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD:-$ROOT/build}
LOCK=${LOCK:-/tmp/chat-build.lock}
SECONDS_PER_RUN=${SECONDS_PER_RUN:-4}
BIN=$BUILD/bench/grpc_floor
if [[ ! -x $BIN ]]; then
  [[ -f $BUILD/build.ninja ]] || flock "$LOCK" cmake -S "$ROOT" -B "$BUILD" -G Ninja >/dev/null
  flock "$LOCK" cmake --build "$BUILD" --target grpc_floor >/dev/null
fi
TMP=$(mktemp -d)
SERVER=
cleanup() {
  [[ -n $SERVER ]] && kill "$SERVER" 2>/dev/null && wait "$SERVER" 2>/dev/null
  rm -rf "$TMP"
}
trap cleanup EXIT

# run RATE UP DOWN: one server, one client, both on core 0.
run() {
  taskset -c 0 "$BIN" --serve --down="$3" >"$TMP/server.out" 2>"$TMP/server.err" &
  SERVER=$!
  local port=
  for _ in $(seq 1 100); do
    port=$(sed -n 's/^listening on .*:\([0-9]*\)$/\1/p' "$TMP/server.out")
    [[ -n $port ]] && break
    sleep 0.05
  done
  if [[ -z $port ]]; then
    echo "grpc_floor server did not start: $(cat "$TMP/server.err")" >&2
    exit 1
  fi
  taskset -c 0 "$BIN" --target="127.0.0.1:$port" --rate="$1" --seconds="$SECONDS_PER_RUN" \
    --up="$2" --down="$3"
  kill "$SERVER" 2>/dev/null || true
  wait "$SERVER" 2>/dev/null || true
  SERVER=
}

rates=("$@")
[[ ${#rates[@]} -gt 0 ]] || rates=(1000 5000 20000 80000)
for rate in "${rates[@]}"; do run "$rate" 128 320; done
# 16 chat messages per gRPC message each way: 5,000 of them a second is
# 80,000 chat messages a second.
run 5000 2048 5120
