#!/usr/bin/env bash
# Builds everything and runs every test: unit, in-process gRPC, end-to-end
# with the real binaries, the docker-compose wiring check, the fuzzers for a
# short time and the browser test.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh --browser
cmake -S . -B build -G Ninja >/dev/null
cmake --build build
cd build
ctest --output-on-failure --timeout 300 -j2 "$@"
