# Sourced by the scripts: create .venv if needed, activate it, install the project with
# the extras given as arguments (e.g. `. scripts/venv.sh trainer,api`).
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
# shellcheck disable=SC1091
. .venv/bin/activate
export PIP_DISABLE_PIP_VERSION_CHECK=1
echo "==> installing laxai-training[$1] into .venv"
python -m pip install -q --upgrade pip
# The torch pair first, pinned: a CUDA build that also runs on CPU (served from local disk where available).
python -m pip install -q "torch==2.14.1" "torchvision==0.29.1"
# A regular install (rebuilt on every run): an editable one prints setuptools' notice box;
# the tests import the source tree anyway (pytest pythonpath in pyproject.toml).
python -m pip install -q ".[$1]"
