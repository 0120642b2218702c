"""The Kubernetes API emulator (tests/support) in a child process, for benchmarks.

A real API server is another process: its CPU does not take the measuring process's
interpreter lock. ``RemoteEmulator`` starts a ``ThreadedKubeEmulator`` in a spawned child and
forwards its store helpers (``create``, ``make_pod_for_job``, ``get``, …: no HTTP) over a
pipe; clients reach it over HTTP as they would a cluster (``url``, ``kubeconfig_path``,
``api_client()``). The cores are still shared: the figures include the emulator's CPU on the
same machine, not its lock.
"""

from __future__ import annotations

import multiprocessing
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

ROOT = Path(__file__).resolve().parents[1]
T = TypeVar("T")


def _serve(conn: Any, options: dict[str, Any]) -> None:
    sys.path.insert(0, str(ROOT))
    from tests.support.threaded import ThreadedKubeEmulator

    with ThreadedKubeEmulator(**options) as emu:
        conn.send((emu.url, str(emu.kubeconfig_path)))
        while True:
            try:
                request = conn.recv()
            except EOFError:  # the parent went away
                return
            if request is None:
                return
            name, args, kwargs = request
            try:
                conn.send((True, getattr(emu, name)(*args, **kwargs)))
            except Exception as exc:  # the caller sees it as its own
                conn.send((False, exc))


class RemoteEmulator:
    """``with RemoteEmulator(request_latency=(0.005, 0.02)) as emu: emu.create(...)``."""

    def __init__(self, **options: Any) -> None:
        self.options = options

    def __enter__(self) -> RemoteEmulator:
        ctx = multiprocessing.get_context("spawn")
        self._conn, theirs = ctx.Pipe()
        self._child = ctx.Process(target=_serve, args=(theirs, self.options), daemon=True)
        self._child.start()
        theirs.close()  # the child's end: a child that dies makes recv() raise EOFError, not hang
        self.url, kubeconfig = self._conn.recv()
        self.kubeconfig_path = Path(kubeconfig)
        return self

    def __exit__(self, *exc: object) -> None:
        self._conn.send(None)
        self._child.join(30)

    def _remote(self, name: str, *args: Any, **kwargs: Any) -> Any:
        self._conn.send((name, args, kwargs))
        ok, value = self._conn.recv()
        if not ok:
            raise value
        return value

    def create(self, resource: str, body: dict[str, Any], namespace: str | None = None) -> dict[str, Any]:
        return self._remote("create", resource, body, namespace=namespace)

    def get(self, resource: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        return self._remote("get", resource, namespace, name)

    def patch(self, resource: str, namespace: str | None, name: str, patch: Any) -> dict[str, Any]:
        return self._remote("patch", resource, namespace, name, patch)

    def make_pod_for_job(self, job: str, namespace: str, **kwargs: Any) -> dict[str, Any]:
        return self._remote("make_pod_for_job", job, namespace, **kwargs)

    def api_client(self) -> Any:
        import kubernetes.client

        configuration = kubernetes.client.Configuration()
        configuration.host = self.url
        return kubernetes.client.ApiClient(configuration)

    @staticmethod
    def wait_for(predicate: Callable[[], T], timeout: float = 10, interval: float = 0.05,
                 message: str = "condition") -> T:
        deadline = time.monotonic() + timeout
        while not (value := predicate()):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{message} not met within {timeout}s")
            time.sleep(interval)
        return value
