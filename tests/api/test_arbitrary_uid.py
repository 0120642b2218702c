"""The API serves under a uid with no passwd entry (OpenShift restricted): issue 10 item 8."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from tests.support import arbitrary_uid


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _health(url: str) -> dict | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return json.loads(resp.read())
    except OSError:
        return None


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["local", "kubernetes"])
def test_api_serves_under_a_uid_without_passwd_entry(kube_emulator, backend):
    arbitrary_uid.require_root_and_unknown_uid()
    work = arbitrary_uid.shared_dir()
    port = _free_port()
    try:
        env = arbitrary_uid.environment(os.environ, work) | {
            "LAXAI_BACKEND": backend, "LAXAI_HOME": str(work / "home"), "LAXAI_NAMESPACE": "default",
            "KUBECONFIG": str(arbitrary_uid.readable_copy(kube_emulator.kubeconfig_path, work))}
        proc = subprocess.Popen([sys.executable, "-m", "laxai_api.cli", "--port", str(port)], env=env, cwd=work,
                                preexec_fn=arbitrary_uid.preexec(), stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
        try:
            deadline, health = time.monotonic() + 40, None
            while health is None and proc.poll() is None and time.monotonic() < deadline:
                health = _health(f"http://127.0.0.1:{port}/health")
                time.sleep(0.2)
        finally:
            proc.terminate()
            out, _ = proc.communicate(timeout=30)
        assert health is not None and health.get("status") == "ok", (health, out[-2000:])
        assert "getpwuid" not in out and "Traceback" not in out, out[-2000:]
    finally:
        shutil.rmtree(work, ignore_errors=True)
