#!/usr/bin/env bash
# Installs cognito-local, the Cognito-compatible identity provider the profile
# end-to-end test runs, from package-lock.json when it is missing (ctest runs
# this as the cognito_install fixture).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
if [[ ! -d node_modules/cognito-local ]]; then
  if ! command -v npm >/dev/null 2>&1; then
    echo "npm is missing: scripts/install-deps.sh --browser installs it" >&2
    exit 1
  fi
  npm ci --no-audit --no-fund --loglevel=error
fi
