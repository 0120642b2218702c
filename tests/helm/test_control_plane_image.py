"""The control-plane Dockerfile: hadolint clean, no torch, a numeric non-root user, and the
commands and ports the chart runs."""

from __future__ import annotations

import re
import subprocess

import pytest

from tests.helm import tools
from tests.helm.tools import REPO_ROOT

DOCKERFILE = REPO_ROOT / "images" / "control-plane" / "Dockerfile"
DOCKERIGNORE = REPO_ROOT / "images" / "control-plane" / "Dockerfile.dockerignore"


def test_hadolint_clean():
    try:
        hadolint = tools.hadolint()
    except tools.ToolUnavailable as exc:
        pytest.skip(str(exc))
    result = subprocess.run([str(hadolint), "--failure-threshold", "info", str(DOCKERFILE)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_catches_problems(tmp_path):
    """hadolint really checks (an unpinned base image and a root user are reported)."""
    try:
        hadolint = tools.hadolint()
    except tools.ToolUnavailable as exc:
        pytest.skip(str(exc))
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python\nRUN pip install fastapi\n")
    result = subprocess.run([str(hadolint), str(bad)], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "DL3006" in result.stdout


def test_image_contents():
    text = DOCKERFILE.read_text()
    stages = re.findall(r"^FROM (\S+)", text, flags=re.M)
    assert stages and all(s.startswith("python:3.11-slim") for s in stages)
    assert re.search(r'pip install --no-cache-dir "\.\[operator,api\]"', text)
    for install in re.findall(r"pip install[^\n]*", text):
        assert "torch" not in install and "trainer" not in install and "dev" not in install, install
    assert "pip show torch" in text  # the build fails if a dependency pulls torch in
    users = re.findall(r"^USER (\S+)", text, flags=re.M)
    assert users and re.fullmatch(r"[1-9][0-9]{3,}:[1-9][0-9]{3,}", users[-1]), "numeric non-root USER last"
    assert "EXPOSE 8000 8080 8081" in text


def test_build_context_is_filtered():
    """The context sends only the sources (never .venv or .cache, gigabytes here)."""
    lines = [ln for ln in DOCKERIGNORE.read_text().splitlines() if ln and not ln.startswith("#")]
    assert lines[0] == "*"
    copied = set(re.findall(r"^COPY (?!--from)(.+) \S+$", DOCKERFILE.read_text(), flags=re.M))
    sources = {part for line in copied for part in line.split()}
    allowed = {ln[1:].rstrip("/") for ln in lines if ln.startswith("!")}
    assert sources <= allowed, f"COPY sources excluded by the .dockerignore: {sources - allowed}"
