"""Operator latency: create N TrainingJobs at once, time CR created -> Job created.

    python bench/operator_latency.py [--sizes 1 100 500] [--jobs 5000] [--latency-ms 5 20] [--running 10]

``--jobs N`` stores N finished TrainingJobs (completed, as the operator leaves them) before
the operator starts, so its startup
and its memory carry them; ``--latency-ms MIN [MAX]`` makes every emulator request wait a
uniformly drawn time (a loaded or remote API server).

For each N: a fresh Kubernetes API emulator (tests/support, loopback; in its own process,
``bench.remote_emulator``, unless ``--emulator-thread``) and a fresh operator *process* (``laxai-operator run``, KUBECONFIG pointing at the emulator), so the operator's
peak RSS (VmHWM from /proc, Linux) is its own and not mixed with the emulator's or this
script's. Once the operator's liveness endpoint answers, N TrainingJobs are written
straight into the emulator's store in one burst (after one warm-up TrainingJob, so the
operator's watches are up); a watch on Jobs (over HTTP, like any
client) stamps each Job's arrival. Latency = Job seen - its TrainingJob written
(monotonic clock, both in this process). Prints p50 / p99 / max, the time until the last
Job, the operator's peak RSS and the CPU seconds it spent on the burst.

The emulator shares the machine's cores with the operator (and evaluates the CRD's CEL rules
in Python), so the figures are an upper bound for the operator's own cost; on a real API
server the round trips differ.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.remote_emulator import RemoteEmulator  # noqa: E402
from tests.support.threaded import ThreadedKubeEmulator  # noqa: E402

NS = "default"
TJS = "training.laxai.io/v1alpha1/trainingjobs"
PROFILE = os.environ.get("BENCH_PROFILE", "").split()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def peak_rss_mib(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc), to tell the operator's cost from the emulator's."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except OSError:
        return float("nan")


def raw_events(list_fn: Any, *args: Any, stop: threading.Event) -> Iterator[tuple[str, dict[str, Any]]]:
    """Watch events as the API sends them (dicts: the client's model classes would spend this
    process's CPU, shared with the operator's), resumed from the last resourceVersion."""
    import kubernetes

    class RawWatch(kubernetes.watch.Watch):
        def get_return_type(self, func: Any) -> None:
            return None

    version = None
    while not stop.is_set():
        options: dict[str, Any] = {"timeout_seconds": 1}
        if version:
            options["resource_version"] = version
        for event in RawWatch().stream(list_fn, *args, **options):
            obj = event["raw_object"]
            if event["type"] == "ERROR":  # 410 Gone: start again from now
                version = None
                break
            version = obj["metadata"]["resourceVersion"]
            yield event["type"], obj
            if stop.is_set():
                return


def watch_jobs(emu: Any, seen: dict[str, float], stop: threading.Event) -> None:
    import kubernetes

    api = kubernetes.client.BatchV1Api(emu.api_client())
    for kind, obj in raw_events(api.list_namespaced_job, NS, stop=stop):
        if kind == "ADDED":
            seen.setdefault(obj["metadata"]["name"], time.monotonic())


def watch_running(emu: Any, running: dict[str, float], stop: threading.Event) -> None:
    """Stamp the moment each TrainingJob's status first says running (as its watch delivers it)."""
    import kubernetes

    api = kubernetes.client.CustomObjectsApi(emu.api_client())
    for _, obj in raw_events(api.list_namespaced_custom_object, "training.laxai.io", "v1alpha1", NS,
                             "trainingjobs", stop=stop):
        if (obj.get("status") or {}).get("phase") == "running":
            running.setdefault(obj["metadata"]["name"], time.monotonic())


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def seed_finished(emu: Any, count: int) -> None:
    """``count`` completed TrainingJobs, as the operator leaves them (status only: it writes
    nothing else into them)."""
    for i in range(count):
        name = f"done-{i:05d}"
        emu.create(TJS, {"apiVersion": "training.laxai.io/v1alpha1", "kind": "TrainingJob",
                         "metadata": {"name": name, "namespace": NS,
                                      "labels": {"training.laxai.io/tenant": f"t{i % 10}"}},
                         "spec": {"tenant_id": f"t{i % 10}"},
                         "status": {"phase": "completed", "reason": "Succeeded",
                                    "completionTime": "2026-01-01T00:00:00Z", "jobName": f"tj-{name}",
                                    "progress": {"status": "completed", "current_epoch": 50}}},
                   namespace=NS)


def run_once(n: int, timeout: float, jobs: int = 0, latency: tuple[float, float] | None = None,
             running: int = 0, kubectl: bool = False, emulator_thread: bool = False) -> dict[str, float]:
    emulator = ThreadedKubeEmulator if emulator_thread else RemoteEmulator
    with emulator(request_latency=latency) as emu:
        seed_finished(emu, jobs)
        health = free_port()
        env = {**os.environ, "KUBECONFIG": str(emu.kubeconfig_path), "LAXAI_WATCH_NAMESPACES": NS,
               "LAXAI_METRICS_PORT": "0", "LAXAI_HEALTH_PORT": str(health),
               # this checkout's packages, not whichever laxai_operator happens to be installed
               "PYTHONPATH": os.pathsep.join(str(ROOT / p) for p in ("operator", "api_shim", "trainer_image", "."))}
        proc = subprocess.Popen([sys.executable, *PROFILE, "-m", "laxai_operator.cli", "run", "--log-format", "plain"],
                                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        seen: dict[str, float] = {}
        stop = threading.Event()
        watcher = threading.Thread(target=watch_jobs, args=(emu, seen, stop), daemon=True)
        running_at: dict[str, float] = {}
        tj_watcher = threading.Thread(target=watch_running, args=(emu, running_at, stop), daemon=True)
        try:
            deadline = time.monotonic() + 180
            while True:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{health}/healthz", timeout=1):
                        break
                except OSError:
                    if time.monotonic() > deadline or proc.poll() is not None:
                        raise RuntimeError("the operator did not become ready") from None
                    time.sleep(0.1)
            watcher.start()
            tj_watcher.start()
            # Ready = watches established: one warm-up TrainingJob round trip before the burst.
            emu.create(TJS, {"apiVersion": "training.laxai.io/v1alpha1", "kind": "TrainingJob",
                             "metadata": {"name": "warmup", "namespace": NS}, "spec": {"tenant_id": "bench"}},
                       namespace=NS)
            emu.wait_for(lambda: "tj-warmup" in seen, timeout=180, message="warm-up Job")
            # Jobs already running through the burst: their pods start during it (the status update timed).
            for i in range(running):
                emu.create(TJS, {"apiVersion": "training.laxai.io/v1alpha1", "kind": "TrainingJob",
                                 "metadata": {"name": f"live-{i}", "namespace": NS}, "spec": {"tenant_id": "bench"}},
                           namespace=NS)
            emu.wait_for(lambda: all(f"tj-live-{i}" in seen for i in range(running)), timeout=180,
                         message="Jobs of the running TrainingJobs")
            created: dict[str, float] = {}
            started: dict[str, float] = {}
            # as the API creates them (tenant label set); --kubectl: without it (the operator adds it)
            labels = {} if kubectl else {"training.laxai.io/tenant": "bench"}
            cpu_before = cpu_seconds(proc.pid)
            burst_start = time.monotonic()
            for i in range(n):
                name = f"bench-{i:04d}"
                emu.create(TJS, {"apiVersion": "training.laxai.io/v1alpha1", "kind": "TrainingJob",
                                 "metadata": {"name": name, "namespace": NS, "labels": labels},
                                 "spec": {"tenant_id": "bench", "gpus": 1}}, namespace=NS)
                created[f"tj-{name}"] = time.monotonic()
                if running and i % max(1, n // running) == 0 and len(started) < running:
                    live = f"live-{len(started)}"
                    emu.make_pod_for_job(f"tj-{live}", NS, phase="Running")
                    started[live] = time.monotonic()
            burst = time.monotonic() - burst_start
            end = time.monotonic() + timeout
            while len(seen.keys() & created.keys()) < n and time.monotonic() < end:
                time.sleep(0.05)
            done = seen.keys() & created.keys()
            if len(done) < n:
                print(f"  warning: only {len(done)}/{n} Jobs within {timeout}s", file=sys.stderr)
            latencies = [seen[k] - created[k] for k in done]
            status_lag = []
            for live, t0 in started.items():  # stamped by the watch when it happened, not when looked at
                emu.wait_for(lambda live=live: live in running_at, timeout=timeout, message=f"{live} running")
                status_lag.append(running_at[live] - t0)
            rss = peak_rss_mib(proc.pid)
            cpu = cpu_seconds(proc.pid) - cpu_before
        finally:
            stop.set()
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
    return {
        "n": n, "done": len(latencies), "burst_s": burst,
        "p50_ms": 1000 * percentile(latencies, 0.5), "p99_ms": 1000 * percentile(latencies, 0.99),
        "max_ms": 1000 * max(latencies), "mean_ms": 1000 * statistics.fmean(latencies),
        "all_s": max(seen[k] for k in done) - burst_start, "peak_rss_mib": rss or float("nan"), "cpu_s": cpu,
        "status_max_ms": 1000 * max(status_lag) if status_lag else float("nan"),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 100, 500])
    parser.add_argument("--timeout", type=float, default=300, help="seconds to wait for all Jobs of one size")
    parser.add_argument("--jobs", type=int, default=0, help="finished TrainingJobs stored before the operator starts")
    parser.add_argument("--running", type=int, default=0,
                        help="TrainingJobs whose pods start during the burst: prints the slowest pending→running")
    parser.add_argument("--latency-ms", type=float, nargs="+", metavar="MS",
                        help="every emulator request waits MIN [MAX] ms (uniform), e.g. 5 20")
    parser.add_argument("--emulator-thread", action="store_true",
                        help="the emulator in a thread of this process (its CPU takes the lock of the process "
                             "that stamps the times) instead of its own process, as a real API server is")
    parser.add_argument("--kubectl", action="store_true",
                        help="burst TrainingJobs without the tenant label, as kubectl creates them")
    args = parser.parse_args(argv)
    latency = None
    if args.latency_ms:
        low, high = (args.latency_ms * 2)[:2]
        latency = (low / 1000, high / 1000)
    where = "a thread of this process" if args.emulator_thread else "its own process"
    print(f"{args.jobs} finished TrainingJobs stored; emulator in {where}, latency {args.latency_ms or 0} ms")
    print(f"{'N':>5} {'jobs':>5} {'burst s':>8} {'p50 ms':>9} {'p99 ms':>9} {'max ms':>9} {'all done s':>10} "
          f"{'peak RSS MiB':>12} {'op CPU s':>8} {'status max ms':>13}")
    for n in args.sizes:
        r = run_once(n, args.timeout, args.jobs, latency, args.running, args.kubectl, args.emulator_thread)
        print(f"{r['n']:>5} {r['done']:>5} {r['burst_s']:>8.2f} {r['p50_ms']:>9.1f} {r['p99_ms']:>9.1f} "
              f"{r['max_ms']:>9.1f} {r['all_s']:>10.2f} {r['peak_rss_mib']:>12.1f} {r['cpu_s']:>8.2f} {r['status_max_ms']:>13.1f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
