#!/usr/bin/env bash
# Builds the libFuzzer targets (build-fuzz/, clang) when needed and runs each
# for N seconds (default 20) from the seeds in tests/fuzz/corpus/<target>/.
# Inputs the fuzzer finds go to build-fuzz/corpus/<target>/, crashes to
# build-fuzz/artifacts/. Exits non-zero when a target finds a crash.
set -euo pipefail

seconds="${1:-20}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
build="${CHAT_FUZZ_BUILD_DIR:-$root/build-fuzz}"
lock=/tmp/chat-build.lock

if [[ ! -f "$build/build.ninja" ]]; then
  flock "$lock" cmake -G Ninja -S "$root/tests/fuzz" -B "$build" \
    -DCMAKE_CXX_COMPILER=clang++-14 -DCHAT_FUZZ=ON
fi
flock "$lock" cmake --build "$build"

declare -A max_len=([protocol_fuzz]=4096 [name_fuzz]=1024 [jwt_fuzz]=9000)
status=0
for target in protocol_fuzz name_fuzz jwt_fuzz; do
  work="$build/corpus/$target"
  mkdir -p "$work" "$build/artifacts"
  dict=()
  if [[ -f "$root/tests/fuzz/$target.dict" ]]; then dict=(-dict="$root/tests/fuzz/$target.dict"); fi
  echo "== $target for ${seconds}s"
  if ! "$build/$target" "$work" "$root/tests/fuzz/corpus/$target" "${dict[@]}" \
      -max_total_time="$seconds" -max_len="${max_len[$target]}" -print_final_stats=1 \
      -artifact_prefix="$build/artifacts/$target-" 2>"$build/$target.log"; then
    echo "!! $target failed; see $build/$target.log and $build/artifacts/"
    tail -n 40 "$build/$target.log"
    status=1
  fi
  grep -E '^(stat::number_of_executed_units|stat::average_exec_per_sec|stat::new_units_added)' \
    "$build/$target.log" || true
done
exit "$status"
