#!/usr/bin/env bash
# Installs the project and its test tools into .venv, then runs lint and the whole test suite.
# Usage: ./scripts/test.sh [pytest args...]        (needs only Python 3.11+ on the machine)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/venv.sh dev

echo "==> fetching tools the tests use (helm, kubectl, checkov); tests skip with a reason where one is missing"
python -m tests.helm.tools fetch || echo "warning: some tools could not be fetched; their tests will skip"

if ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "==> installing chromium (the /docs and /redoc browser test); it skips where this fails"
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } \
    || echo "warning: chromium could not be installed; the browser test will skip"
fi

echo "==> ruff"
ruff check .

echo "==> pytest"
python -m pytest --durations=25 "$@"
