#!/usr/bin/env bash
# Runs the browser test of the web UI against the real binaries in $BUILD_DIR (default: build/
# at the repository root; a relative BUILD_DIR is taken from the current directory).
# Installs what it needs when missing: Debian's chromium, and playwright-core from npm (never a
# browser download of Playwright's own).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
export BUILD_DIR="$(realpath -m "${BUILD_DIR:-$repo/build}")"

if [[ ! -x /usr/bin/chromium ]]; then
  echo "browser test: installing Debian's chromium" >&2
  sudo_cmd=()
  [[ $(id -u) -eq 0 ]] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq chromium >/dev/null
fi

cd "$here"
if [[ ! -d node_modules/playwright-core ]]; then
  echo "browser test: installing playwright-core" >&2
  # The download of Playwright's own browsers is off: the test uses /usr/bin/chromium.
  PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error
fi

# The UI's stream bookkeeping first (no browser), then the page against the real binaries.
node --test stream.test.mjs
exec node chat.spec.mjs
