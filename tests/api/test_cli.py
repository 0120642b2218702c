"""``laxai-api``: --help lists the settings; the local backend without keys stays on loopback."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import httpx
import pytest

from laxai_api.cli import bind_refusal, build_parser, is_loopback, main
from laxai_api.settings import ApiSettings


def test_help_lists_every_laxai_setting():
    text = build_parser().format_help()
    for name in ("LAXAI_BACKEND", "LAXAI_HOME", "LAXAI_STORAGE_ROOT", "LAXAI_NAMESPACE", "LAXAI_AUTH_ENABLED",
                 "LAXAI_API_KEYS_FILE", "LAXAI_API_KEYS", "LAXAI_MAX_CONCURRENT_JOBS",
                 "LAXAI_CANCEL_GRACE_SECONDS", "LAXAI_TRAINER_COMMAND"):
        assert name in text


@pytest.mark.parametrize(("host", "loopback"), [("127.0.0.1", True), ("::1", True), ("localhost", True),
                                                ("0.0.0.0", False), ("10.1.2.3", False)])
def test_is_loopback(host, loopback):
    assert is_loopback(host) is loopback


def test_local_without_keys_refuses_other_hosts(capsys):
    assert main(["--backend", "local", "--host", "0.0.0.0"]) == 2
    assert "refusing to bind 0.0.0.0" in capsys.readouterr().err
    assert bind_refusal(ApiSettings(backend="local"), "127.0.0.1") is None
    assert bind_refusal(ApiSettings(backend="local", auth_enabled=True, api_keys='{"k": "*"}'), "0.0.0.0") is None
    assert bind_refusal(ApiSettings(backend="kubernetes"), "0.0.0.0") is None


def test_auth_without_keys_refuses_to_start(capsys, monkeypatch):
    monkeypatch.setenv("LAXAI_AUTH_ENABLED", "true")
    assert main(["--backend", "local"]) == 2
    assert "no API keys are configured" in capsys.readouterr().err


def test_serves_on_loopback(tmp_path):
    """The installed console script starts, serves /health and the API, and stops on SIGTERM."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {"LAXAI_HOME": str(tmp_path / "home"), "LAXAI_TRAINER_COMMAND": sys.executable, "PATH": "/usr/bin:/bin",
           "LAXAI_AUTH_ENABLED": "true", "LAXAI_API_KEYS": json.dumps({"sk-test": "tenant1"})}
    proc = subprocess.Popen([sys.executable, "-m", "laxai_api.cli", "--port", str(port)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=2)
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline and proc.poll() is None, "laxai-api did not start"
                time.sleep(0.2)
        assert health.status_code == 200, health.text
        listed = httpx.get(f"http://127.0.0.1:{port}/api/v1/train/jobs", headers={"X-API-Key": "sk-test"})
        assert listed.json() == {"total_jobs": 0, "jobs": [], "continue": None}
    finally:
        proc.terminate()
        output = proc.communicate(timeout=30)[0]
    assert "sk-test" not in output  # keys are never logged
