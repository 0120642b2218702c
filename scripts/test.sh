#!/usr/bin/env bash
# Installs the project and its test tools into .venv, then runs lint and the whole test suite.
# Usage: ./scripts/test.sh [pytest args...]        (needs only Python 3.11+ on the machine)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/venv.sh dev

echo "==> fetching tools the tests use (helm, kubectl, checkov); tests skip with a reason where one is missing"
python -m tests.helm.tools fetch || echo "warning: some tools could not be fetched; their tests will skip"

echo "==> ruff"
ruff check .

echo "==> pytest"
python -m pytest "$@"
