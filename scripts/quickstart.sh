#!/usr/bin/env bash
# The local quickstart: installs the project into .venv, then runs the seed's example
# training request end to end through the REST API in local mode (no cluster needed).
# Usage: ./scripts/quickstart.sh [--epochs N] [--players N] [--frames N] [--home DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/venv.sh trainer,api
exec python scripts/quickstart.py "$@"
