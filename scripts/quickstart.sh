#!/usr/bin/env bash
# The local quickstart: installs the project into .venv, then runs the seed's example
# training request end to end through the REST API in local mode (no cluster needed).
# Usage: ./scripts/quickstart.sh [--epochs N] [--players N] [--frames N] [--home DIR]
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
# shellcheck disable=SC1091
. .venv/bin/activate
export PIP_DISABLE_PIP_VERSION_CHECK=1

echo "==> installing laxai-training (trainer + api) into .venv"
python -m pip install -q --upgrade pip
python -m pip install -q "torch==2.14.1" "torchvision==0.29.1"
python -m pip install -q -e ".[trainer,api]"

exec python scripts/quickstart.py "$@"
