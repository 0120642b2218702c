"""Throughput of the test Kubernetes API emulator (tests/support/kube_emulator.py).

Run from the repository root: ``python -m bench.kube_emulator [--n 1000]``.
Prints creates/s through the official client, list and get latency with N objects,
and how long a watch takes to deliver N events.
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time

import kubernetes

from tests.support.threaded import ThreadedKubeEmulator

GROUP, VERSION, PLURAL = "training.laxai.io", "v1alpha1", "trainingjobs"


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=1000, help="TrainingJobs to create")
    args = parser.parse_args()
    with ThreadedKubeEmulator() as emu, emu.api_client() as client:
        api = kubernetes.client.CustomObjectsApi(client)
        seen = threading.Event()
        count = 0

        def watch() -> None:
            nonlocal count
            stream = kubernetes.watch.Watch()
            for _ in stream.stream(api.list_namespaced_custom_object, GROUP, VERSION, "default", PLURAL,
                                   resource_version=emu.call(lambda: emu.store.resource_version),
                                   timeout_seconds=600):
                count += 1
                if count >= args.n:
                    seen.set()
                    stream.stop()

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        time.sleep(0.2)
        started = time.perf_counter()
        create_ms = []
        for i in range(args.n):
            t0 = time.perf_counter()
            api.create_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, {
                "metadata": {"name": f"bench-{i}", "labels": {"tenant": f"t{i % 10}"}},
                "spec": {"tenant_id": f"t{i % 10}"}})
            create_ms.append((time.perf_counter() - t0) * 1000)
        elapsed = time.perf_counter() - started
        seen.wait(60)
        watch_s = time.perf_counter() - started
        print(f"creates: {args.n} in {elapsed:.2f}s = {args.n / elapsed:.0f}/s; "
              f"p50 {statistics.median(create_ms):.1f} ms, p99 {percentile(create_ms, 0.99):.1f} ms")
        print(f"watch: {count} events delivered {watch_s:.2f}s after the first create")
        for label, call in [
            ("get", lambda: api.get_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "bench-7")),
            (f"list all {args.n}", lambda: api.list_namespaced_custom_object(GROUP, VERSION, "default", PLURAL)),
            ("list tenant=t3", lambda: api.list_namespaced_custom_object(GROUP, VERSION, "default", PLURAL,
                                                                         label_selector="tenant=t3")),
            ("list limit=50", lambda: api.list_namespaced_custom_object(GROUP, VERSION, "default", PLURAL,
                                                                        limit=50)),
        ]:
            samples = []
            for _ in range(50):
                t0 = time.perf_counter()
                call()
                samples.append((time.perf_counter() - t0) * 1000)
            print(f"{label}: p50 {statistics.median(samples):.1f} ms, p99 {percentile(samples, 0.99):.1f} ms")


if __name__ == "__main__":
    main()
