#!/usr/bin/env bash
# Installs the project and its test tools into .venv, then runs lint and the whole test suite.
# Usage: ./scripts/test.sh [pytest args...]        (needs only Python 3.11+ on the machine)
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
# shellcheck disable=SC1091
. .venv/bin/activate
export PIP_DISABLE_PIP_VERSION_CHECK=1

echo "==> installing (torch, project with [dev] extras)"
python -m pip install -q --upgrade pip
# The torch pair first, pinned: a CUDA build that also runs on CPU (served from local disk where available).
python -m pip install -q "torch==2.14.1" "torchvision==0.29.1"
python -m pip install -q -e ".[dev]"

echo "==> fetching tools the tests use (helm, kubectl, checkov); tests skip with a reason where one is missing"
python -m tests.helm.tools fetch || echo "warning: some tools could not be fetched; their tests will skip"

echo "==> ruff"
ruff check .

echo "==> pytest"
python -m pytest "$@"
