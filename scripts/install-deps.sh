#!/usr/bin/env bash
# Installs the Debian 12 packages the build, the services and the tests need,
# skipping what is already there. Usage: scripts/install-deps.sh [--browser]
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config git
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev
  libboost1.81-dev libboost-json1.81-dev
  libabsl-dev libgtest-dev libgmock-dev libspdlog-dev
  libjwt-dev libssl-dev libcurl4-openssl-dev
  libjemalloc-dev clang-14 libclang-rt-14-dev
  libsqlite3-dev libpq-dev postgresql-15
  prometheus-cpp-dev prometheus haproxy
  redis-server redis-sentinel libhiredis-dev
  python3 python3-yaml curl
  python3-grpcio python3-protobuf python3-websocket openssl
)
if [[ "${1:-}" == "--browser" ]]; then
  packages+=(chromium nodejs npm)
fi

missing=()
for p in "${packages[@]}"; do
  # nodejs/npm may come from elsewhere (nvm, NodeSource): a working command is enough.
  case "$p" in
    nodejs) command -v node >/dev/null 2>&1 && continue ;;
    npm) command -v npm >/dev/null 2>&1 && continue ;;
  esac
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if ((${#missing[@]} == 0)); then
  exit 0
fi
echo "installing: ${missing[*]}" >&2
sudo=""
if [[ $(id -u) -ne 0 ]]; then sudo="sudo"; fi
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
