"""API latency on loopback: p50/p99 of status, list and POST with N jobs stored, POST
throughput and peak RSS, for each backend (local: SQLite, queue-only so no trainer starts;
kubernetes: the API emulator from tests/support, optionally with a per-request latency
drawn from ``--latency-ms MIN MAX``, e.g. 5 20). uvicorn serves on 127.0.0.1; an httpx
client measures. Peak RSS is this process's (the API, and for kubernetes the emulator too).

    python bench/api_latency.py [--jobs 5000] [--requests 300] [--posts 300] [--latency-ms 5 20]
                                [--backend local kubernetes]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import resource
import socket
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

import httpx
import uvicorn

from laxai_api.app import create_app
from laxai_api.backends.base import now_rfc3339
from laxai_api.backends.kubernetes import CREATED_AT_ANNOTATION, KubernetesBackend
from laxai_api.backends.local import LocalBackend
from laxai_api.backends.local_store import JobStore
from laxai_api.settings import ApiSettings
from laxai_operator.resource import TrainingJobSpec

BODY = {"tenant_id": "tenant1", "training_kwargs": {"num_epochs": 10, "batch_size": 32}}


@contextmanager
def serve(app):
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return statistics.median(ordered) * 1000, p99 * 1000


def timed(client: httpx.Client, requests: int, path: Callable[[], str]) -> tuple[float, float]:
    samples = []
    for _ in range(requests):
        url = path()
        start = time.perf_counter()
        response = client.get(url)
        samples.append(time.perf_counter() - start)
        response.raise_for_status()
    return percentiles(samples)


async def post_throughput(url: str, posts: int, concurrency: int = 8) -> tuple[float, float, float]:
    """(jobs/s, p50 ms, p99 ms) of ``posts`` POSTs, ``concurrency`` at a time."""
    samples: list[float] = []
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        queue = iter(range(posts))

        async def worker():
            for _ in queue:
                t0 = time.perf_counter()
                (await client.post("/api/v1/train", json=BODY)).raise_for_status()
                samples.append(time.perf_counter() - t0)

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return posts / (time.perf_counter() - start), *percentiles(samples)


def measure(name: str, app, task_ids: list[str], args) -> None:
    with serve(app) as url, httpx.Client(base_url=url, timeout=60) as client:
        client.get("/health").raise_for_status()
        rows = [
            ("GET status", timed(client, args.requests, lambda: f"/api/v1/train/{random.choice(task_ids)}/status")),
            ("GET detail", timed(client, args.requests, lambda: f"/api/v1/train/{random.choice(task_ids)}")),
            ("GET jobs (limit 100)", timed(client, max(20, args.requests // 5), lambda: "/api/v1/train/jobs")),
            ("GET jobs ?tenant_id (limit 100)", timed(client, max(20, args.requests // 5),
                                                      lambda: "/api/v1/train/jobs?tenant_id=tenant7")),
            ("GET jobs (limit 1000)", timed(client, max(10, args.requests // 20), lambda: "/api/v1/train/jobs?limit=1000")),
        ]
        throughput, *post = asyncio.run(post_throughput(url, args.posts))
        rows.append(("POST (8 concurrent)", tuple(post)))
        total = client.get("/api/v1/train/jobs?limit=1").json()["total_jobs"]
    print(f"\n{name} backend: {len(task_ids)} jobs stored (then {total} after the POSTs)")
    print(f"  {'request':<34} {'p50 ms':>8} {'p99 ms':>8}")
    for label, (p50, p99) in rows:
        print(f"  {label:<34} {p50:>8.2f} {p99:>8.2f}")
    print(f"  POST /api/v1/train (8 concurrent): {throughput:.0f} jobs/s over {args.posts} submissions")
    print(f"  peak RSS of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
    index = getattr(app.state.backend, "index", None)
    if index is not None:
        print(f"  TrainingJob cache: {len(index.jobs)} jobs, {sum(len(j.doc) for j in index.jobs.values()) / 1024:.0f} KiB"
              " of trimmed objects")


def bench_local(args, workdir: Path) -> None:
    settings = ApiSettings(backend="local", home=workdir / "home", storage_root=str(workdir / "storage"),
                           max_concurrent_jobs=0)  # queue only: no trainer starts
    store = JobStore(Path(settings.home).resolve() / "jobs.sqlite3")
    task_ids = []
    for i in range(args.jobs):
        task_id = str(uuid.uuid4())
        store.insert(task_id, TrainingJobSpec(tenant_id=f"tenant{i % 10}"), "Training job queued")
        task_ids.append(task_id)
    store.close()
    measure("local", create_app(settings, LocalBackend(settings)), task_ids, args)


def bench_kubernetes(args, workdir: Path) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo root: tests.support
    from tests.support.threaded import TRAININGJOBS, ThreadedKubeEmulator

    settings = ApiSettings(backend="kubernetes", namespace="default", storage_root=str(workdir / "storage"))
    latency = None
    if args.latency_ms:
        low, high = (args.latency_ms * 2)[:2]
        latency = (low / 1000, high / 1000)
    with ThreadedKubeEmulator(workdir=workdir, request_latency=latency) as kube:
        task_ids = []
        for i in range(args.jobs):
            task_id = str(uuid.uuid4())
            kube.create(TRAININGJOBS, {
                "apiVersion": "training.laxai.io/v1alpha1", "kind": "TrainingJob",
                "metadata": {"name": task_id, "labels": {"training.laxai.io/tenant": f"tenant{i % 10}"},
                             "annotations": {CREATED_AT_ANNOTATION: now_rfc3339()}},
                "spec": {"tenant_id": f"tenant{i % 10}"},
                "status": {"phase": "running", "progress": {"status": "running", "current_epoch": 3}},
            }, "default")
            task_ids.append(task_id)
        measure("kubernetes (emulator)", create_app(settings, KubernetesBackend(settings, kube.api_client())),
                task_ids, args)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--requests", type=int, default=300, help="status/detail requests (lists: fewer)")
    parser.add_argument("--posts", type=int, default=300)
    parser.add_argument("--latency-ms", type=float, nargs="+", metavar="MS",
                        help="kubernetes: every emulator request waits MIN [MAX] ms (uniform), e.g. 5 20")
    parser.add_argument("--backend", nargs="+", default=["local", "kubernetes"], choices=["local", "kubernetes"])
    args = parser.parse_args()
    random.seed(0)
    for backend in args.backend:
        with tempfile.TemporaryDirectory(prefix=f"laxai-bench-{backend}-") as tmp:
            (bench_local if backend == "local" else bench_kubernetes)(args, Path(tmp))


if __name__ == "__main__":
    main()
