"""Fixtures of the API tests: settings, the fake trainer, and in-process API clients."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest

from laxai_api.app import create_app
from laxai_api.backends.base import Backend
from laxai_api.settings import ApiSettings

FAKE_TRAINER = f"{sys.executable} {Path(__file__).parent / 'fake_trainer.py'}"
TERMINAL = {"completed", "failed", "cancelled"}
#: Tenants local_settings gives a (empty) dataset folder; the fake trainer reads no data.
DATASET_TENANTS = ("tenant1", "tenant2", "t1")


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    """Settings come from each test, never from the developer's shell."""
    for name in list(os.environ):
        if name.startswith("LAXAI_"):
            monkeypatch.delenv(name)


def local_settings(tmp_path: Path, **overrides) -> ApiSettings:
    values = {
        "backend": "local", "home": tmp_path / "home", "storage_root": str(tmp_path / "storage"),
        "trainer_command": FAKE_TRAINER, "cancel_grace_seconds": 3.0, "max_concurrent_jobs": 2,
    }
    values.update(overrides)
    if "storage_root" not in overrides:  # the local backend refuses a tenant without datasets
        for tenant in DATASET_TENANTS:
            (tmp_path / "storage" / tenant / "datasets" / "frame_0000").mkdir(parents=True, exist_ok=True)
    return ApiSettings(**values)


async def stop_all(backend: Backend) -> None:
    """Cancel every trainer the local backend runs and wait for each to exit (cancel itself
    answers at once)."""
    from laxai_api.errors import JobFinished

    for trainer in list(getattr(backend, "_running", {}).values()):
        try:
            await backend.cancel(trainer.task_id)
        except JobFinished:
            pass
        await asyncio.wait_for(trainer.done.wait(), 60)


@asynccontextmanager
async def serve(app, headers: dict[str, str] | None = None) -> AsyncIterator[httpx.AsyncClient]:
    """The app in-process: its backend started, an httpx client on its ASGI interface."""
    backend: Backend = app.state.backend
    await backend.start()
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver", headers=headers) as client:
            yield client
    finally:
        await backend.close()


async def wait_status(client: httpx.AsyncClient, task_id: str, wanted: set[str], timeout: float = 20.0) -> dict:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        body = (await client.get(f"/api/v1/train/{task_id}/status")).json()
        if body["status"] in wanted:
            return body
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{task_id} still {body['status']}, wanted {wanted}: {body}")
        await asyncio.sleep(0.05)


@pytest.fixture
async def local_api(tmp_path) -> AsyncIterator[httpx.AsyncClient]:
    async with serve(create_app(local_settings(tmp_path))) as client:
        yield client


# ---- one harness, both backends -------------------------------------------------------------

from dataclasses import dataclass  # noqa: E402

from laxai_api.backends.kubernetes import KubernetesBackend  # noqa: E402
from laxai_api.backends.local import LocalBackend  # noqa: E402
from tests.support.fixtures import kube_emulator  # noqa: E402, F401 - the emulator fixture
from tests.support.threaded import TRAININGJOBS, ThreadedKubeEmulator  # noqa: E402

#: A job the fake trainer runs for minutes (until cancelled); and one that ends at once.
LONG = {"training_kwargs": {"num_epochs": 5000}, "wandb_tags": ["fake-sleep=0.05"]}
SHORT = {"training_kwargs": {"num_epochs": 1}}
NAMESPACE = "default"


@dataclass
class Harness:
    """The API over one backend, and how a test moves a job along on that backend:
    locally the fake trainer really runs; in Kubernetes the test plays the operator."""

    client: httpx.AsyncClient
    kind: str
    kube: ThreadedKubeEmulator | None = None

    async def submit(self, tenant: str = "tenant1", extra: dict | None = None, **headers: str) -> str:
        body = {"tenant_id": tenant, **SHORT, **(extra or {})}
        response = await self.client.post("/api/v1/train", json=body, headers=headers)
        assert response.status_code == 200, response.text
        return response.json()["task_id"]

    async def running_job(self, tenant: str = "tenant1", extra: dict | None = None) -> str:
        task_id = await self.submit(tenant, {**LONG, **(extra or {})})
        if self.kube:
            self.kube.patch_status(TRAININGJOBS, NAMESPACE, task_id, {
                "phase": "running", "progress": {"status": "running", "current_epoch": 1, "total_epochs": 5000}})
        await wait_status(self.client, task_id, {"running"})
        return task_id

    async def finished_job(self, tenant: str = "tenant1", phase: str = "completed", extra: dict | None = None) -> str:
        task_id = await self.submit(tenant, extra)
        if self.kube:
            self.kube.patch_status(TRAININGJOBS, NAMESPACE, task_id, {
                "phase": phase, "progress": {"status": phase, "current_epoch": 1, "total_epochs": 1},
                "metrics": {"rank1": 0.5, "mAP": 0.25}, "completionTime": "2026-01-01T00:00:00Z"})
        await wait_status(self.client, task_id, {phase})
        return task_id


def make_backend(kind: str, settings: ApiSettings, kube: ThreadedKubeEmulator | None) -> Backend:
    if kind == "kubernetes":
        return KubernetesBackend(settings, api_client=kube.api_client())
    return LocalBackend(settings)


@asynccontextmanager
async def harness_for(kind: str, tmp_path: Path, kube, headers=None, **overrides) -> AsyncIterator[Harness]:
    settings = local_settings(tmp_path, backend=kind, namespace=NAMESPACE, **overrides)
    backend = make_backend(kind, settings, kube)
    async with serve(create_app(settings, backend), headers=headers) as client:
        try:
            yield Harness(client, kind, kube)
        finally:
            await stop_all(backend)  # never leave a trainer running


@pytest.fixture(params=["local", "kubernetes"])
def backend_kind(request) -> str:
    return request.param


@pytest.fixture
def kube(backend_kind, request):
    return request.getfixturevalue("kube_emulator") if backend_kind == "kubernetes" else None


@pytest.fixture
async def api(backend_kind, kube, tmp_path) -> AsyncIterator[Harness]:
    async with harness_for(backend_kind, tmp_path, kube) as harness:
        yield harness


# ---- a live server on loopback (for the clients and the CLI) --------------------------------

import socket  # noqa: E402
import threading  # noqa: E402

import uvicorn  # noqa: E402


class LiveServer:
    """uvicorn serving an app on 127.0.0.1 (a pre-bound socket) in a background thread."""

    def __init__(self, app):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = __import__("time").monotonic() + 20
        while not self.server.started:
            assert __import__("time").monotonic() < deadline, "uvicorn did not start"
            __import__("time").sleep(0.02)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
        self.sock.close()


@pytest.fixture
def live_server(tmp_path):
    """The local backend with the fake trainer, served on loopback."""
    app = create_app(local_settings(tmp_path))
    with LiveServer(app) as server:
        yield server
        backend = app.state.backend
        for trainer in list(getattr(backend, "_running", {}).values()):
            import signal as _signal

            from laxai_api.backends.local import kill_group

            kill_group(trainer.pid, _signal.SIGKILL)
