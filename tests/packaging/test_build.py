"""The project builds without a warning: no deprecation with a deadline, no notice box.

The PEP 517 hook runs in a subprocess on a copy of the sources (a build writes build/
and *.egg-info next to pyproject.toml), offline, with the installed setuptools; every
line it prints is checked.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ("pyproject.toml", "README.md", "trainer_image", "operator", "api_shim")
WARNING = re.compile(r"warn|deprecat|!!|\*{20}", re.IGNORECASE)

pytestmark = pytest.mark.slow


def build(tmp_path: Path) -> tuple[str, Path]:
    src = tmp_path / "src"
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            src.mkdir(exist_ok=True)
            shutil.copy(ROOT / name, src / name)
    out = tmp_path / "dist"
    out.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    hook = "import sys; from setuptools import build_meta as b; print(b.build_wheel(sys.argv[1]))"
    done = subprocess.run(
        [sys.executable, "-W", "default", "-c", hook, str(out)], cwd=src, env=env,
        capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr, out / done.stdout.strip().splitlines()[-1]


def test_wheel_builds_without_a_warning(tmp_path):
    output, wheel = build(tmp_path)
    assert [line for line in output.splitlines() if WARNING.search(line)] == []
    with zipfile.ZipFile(wheel) as whl:
        metadata = next(whl.read(n).decode() for n in whl.namelist() if n.endswith(".dist-info/METADATA"))
        names = whl.namelist()
    assert "License-Expression: LicenseRef-Proprietary" in metadata
    assert "laxai_api/docs_pages.py" in names and "laxai_trainer/reid/engine/trainer.py" in names
