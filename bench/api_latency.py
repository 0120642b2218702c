"""API latency on loopback: p50/p99 of status, list and POST with N jobs stored, POST
throughput and peak RSS, for each backend (local: SQLite, queue-only so no trainer starts;
kubernetes: the API emulator from tests/support, optionally with a per-request latency
drawn from ``--latency-ms MIN MAX``, e.g. 5 20). uvicorn serves on 127.0.0.1; an httpx
client measures (GETs one at a time from this process; POSTs from a child process, 1
and then 8 at a time, so the load's CPU is not the API's). Every POST carries an
Idempotency-Key and a custom_name, so the idempotency and run-name checks run. Each row says how many calls it timed; the
limit-1000 list's first call (a cold one, if anything is lazy) is printed on its own too.

The emulator stands in for the API server, which runs on other machines: with
``--emulator-process`` (the default) it runs in a child process, so its CPU does not take
this process's interpreter lock; ``--emulator-thread`` runs it in a thread of this process
(the earlier setup: figures then include the emulator's CPU). Peak RSS is this process's
(the API and the client). The load average is printed before and after: the figures are
only as quiet as the machine.

    python -m bench.api_latency [--jobs 5000] [--requests 300] [--list-requests 200] [--posts 300]
                                [--latency-ms 5 20] [--backend local kubernetes] [--emulator-thread]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
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
from concurrent.futures import ProcessPoolExecutor
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


def post_body(i: int) -> dict:
    return {"tenant_id": f"tenant{i % 10}", "custom_name": f"bench-{uuid.uuid4().hex[:12]}",
            "training_kwargs": {"num_epochs": 10, "batch_size": 32}}


def load() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


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


def timed(client: httpx.Client, requests: int, path: Callable[[], str]) -> list[float]:
    samples = []
    for _ in range(requests):
        url = path()
        start = time.perf_counter()
        response = client.get(url)
        samples.append(time.perf_counter() - start)
        response.raise_for_status()
    return samples


def posts_from_a_client_process(url: str, posts: int, concurrency: int) -> tuple[float, list[float]]:
    """:func:`post_throughput` from a child process: the load's own CPU stays out of the API's process."""
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(run_posts, url, posts, concurrency).result()


def run_posts(url: str, posts: int, concurrency: int) -> tuple[float, list[float]]:
    return asyncio.run(post_throughput(url, posts, concurrency))


async def post_throughput(url: str, posts: int, concurrency: int) -> tuple[float, list[float]]:
    """(jobs/s, seconds of each) of ``posts`` POSTs, ``concurrency`` at a time."""
    samples: list[float] = []
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        queue = iter(range(posts))

        async def worker():
            for i in queue:
                headers = {"Idempotency-Key": str(uuid.uuid4())}
                t0 = time.perf_counter()
                (await client.post("/api/v1/train", json=post_body(i), headers=headers)).raise_for_status()
                samples.append(time.perf_counter() - t0)

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return posts / (time.perf_counter() - start), samples


def wait_ready(client: httpx.Client, timeout: float = 300) -> float:
    """Poll /health as a readiness probe does (503 until the backend is ready); seconds it took."""
    start = time.perf_counter()
    while (response := client.get("/health")).status_code == 503 and time.perf_counter() - start < timeout:
        time.sleep(0.2)
    response.raise_for_status()
    return time.perf_counter() - start


def measure(name: str, app, task_ids: list[str], args) -> None:
    print(f"\n{name} backend: {len(task_ids)} jobs stored; {load()}")
    with serve(app) as url, httpx.Client(base_url=url, timeout=60) as client:
        ready = wait_ready(client)
        lists = args.list_requests
        big = timed(client, lists, lambda: "/api/v1/train/jobs?limit=1000")  # first: nothing warmed it
        rows = [
            ("GET status", timed(client, args.requests, lambda: f"/api/v1/train/{random.choice(task_ids)}/status")),
            ("GET detail", timed(client, args.requests, lambda: f"/api/v1/train/{random.choice(task_ids)}")),
            ("GET jobs (limit 100)", timed(client, lists, lambda: "/api/v1/train/jobs")),
            ("GET jobs ?tenant_id (limit 100)", timed(client, lists, lambda: "/api/v1/train/jobs?tenant_id=tenant7")),
            ("GET jobs (limit 1000)", big),
        ]
        rates = []
        for concurrency, posts in ((1, max(1, args.posts // 3)), (8, args.posts)):
            throughput, samples = posts_from_a_client_process(url, posts, concurrency)
            rows.append((f"POST ({concurrency} at a time)", samples))
            rates.append((concurrency, throughput, posts))
        total = client.get("/api/v1/train/jobs?limit=1").json()["total_jobs"]
    print(f"  {'request':<34} {'calls':>6} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    for label, samples in rows:
        p50, p99 = percentiles(samples)
        print(f"  {label:<34} {len(samples):>6} {p50:>8.2f} {p99:>8.2f} {max(samples) * 1000:>8.2f}")
    print(f"  ready (GET /health 200, what the readiness probe waits for) {ready:.2f} s after the start")
    print(f"  GET jobs (limit 1000), first call after ready: {big[0] * 1000:.2f} ms")
    for concurrency, throughput, posts in rates:
        print(f"  POST /api/v1/train ({concurrency} at a time): {throughput:.0f} jobs/s over {posts} submissions")
    print(f"  {total} jobs after the POSTs; {load()}")
    print(f"  peak RSS of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
    index = getattr(app.state.backend, "index", None)
    if index is not None:
        docs = sum(len(j.doc) for j in index.jobs.values()) / 1024
        items = sum(len(getattr(j, "item", b"")) for j in index.jobs.values()) / 1024
        print(f"  TrainingJob cache: {len(index.jobs)} jobs, {docs:.0f} KiB of trimmed objects,"
              f" {items:.0f} KiB of ready list items")


def bench_local(args, workdir: Path) -> None:
    settings = ApiSettings(backend="local", home=workdir / "home", storage_root=str(workdir / "storage"),
                           max_concurrent_jobs=0)  # queue only: no trainer starts
    for i in range(10):  # the local backend refuses a tenant without a dataset folder (none is read: no trainer)
        (workdir / "storage" / f"tenant{i}" / "datasets" / "d1").mkdir(parents=True)
    store = JobStore(Path(settings.home).resolve() / "jobs.sqlite3")
    task_ids = []
    for i in range(args.jobs):
        task_id = str(uuid.uuid4())
        store.insert(task_id, TrainingJobSpec(tenant_id=f"tenant{i % 10}"), "Training job queued")
        task_ids.append(task_id)
    store.close()
    measure("local", create_app(settings, LocalBackend(settings)), task_ids, args)


def seed(kube, jobs: int) -> list[str]:
    """``jobs`` running TrainingJobs of 10 tenants, as the API creates them; their task ids."""
    task_ids = []
    for i in range(jobs):
        task_id = str(uuid.uuid4())
        kube.create("training.laxai.io/v1alpha1/trainingjobs", {
            "apiVersion": "training.laxai.io/v1alpha1", "kind": "TrainingJob",
            "metadata": {"name": task_id, "labels": {"training.laxai.io/tenant": f"tenant{i % 10}"},
                         "annotations": {CREATED_AT_ANNOTATION: now_rfc3339()}},
            "spec": {"tenant_id": f"tenant{i % 10}", "custom_name": f"run{i}"},
            "status": {"phase": "running", "progress": {"status": "running", "current_epoch": 3}},
        }, "default")
        task_ids.append(task_id)
    return task_ids


@contextmanager
def emulator(args, workdir: Path):
    """(the emulator's URL, the seeded task ids); the emulator in its own process unless --emulator-thread."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo root: tests.support, bench
    from bench.remote_emulator import RemoteEmulator
    from tests.support.threaded import ThreadedKubeEmulator

    latency = None
    if args.latency_ms:
        low, high = (args.latency_ms * 2)[:2]
        latency = (low / 1000, high / 1000)
    served = ThreadedKubeEmulator if args.emulator_thread else RemoteEmulator
    with served(workdir=workdir, request_latency=latency) as kube:
        yield kube.url, seed(kube, args.jobs)


def bench_kubernetes(args, workdir: Path) -> None:
    import kubernetes.client

    settings = ApiSettings(backend="kubernetes", namespace="default", storage_root=str(workdir / "storage"))
    with emulator(args, workdir) as (url, task_ids):
        configuration = kubernetes.client.Configuration()
        configuration.host = url
        where = "a thread of this process" if args.emulator_thread else "its own process"
        measure(f"kubernetes (emulator in {where}, latency {args.latency_ms or 0} ms)",
                create_app(settings, KubernetesBackend(settings, kubernetes.client.ApiClient(configuration))),
                task_ids, args)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--requests", type=int, default=300, help="status and detail requests")
    parser.add_argument("--list-requests", type=int, default=200, help="requests of each list row")
    parser.add_argument("--posts", type=int, default=300, help="POSTs 8 at a time (and a third as many one at a time)")
    parser.add_argument("--latency-ms", type=float, nargs="+", metavar="MS",
                        help="kubernetes: every emulator request waits MIN [MAX] ms (uniform), e.g. 5 20")
    parser.add_argument("--backend", nargs="+", default=["local", "kubernetes"], choices=["local", "kubernetes"])
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--emulator-process", dest="emulator_thread", action="store_false", default=False,
                       help="kubernetes: the emulator in a child process (default)")
    where.add_argument("--emulator-thread", dest="emulator_thread", action="store_true",
                       help="kubernetes: the emulator in a thread of this process (its CPU shares the GIL)")
    args = parser.parse_args()
    random.seed(0)
    for backend in args.backend:
        with tempfile.TemporaryDirectory(prefix=f"laxai-bench-{backend}-") as tmp:
            (bench_local if backend == "local" else bench_kubernetes)(args, Path(tmp))


if __name__ == "__main__":
    main()
