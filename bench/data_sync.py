"""Data-sync throughput against fake-gcs-server on loopback: concurrent vs one-by-one.

Run from the repository root:
``python -m bench.data_sync [--files 2000] [--workers 16] [--latency-ms 0 10]``.
Generates a synthetic tenant (small JPEG crops), uploads it to a fresh bucket, then times
- ``sync_datasets`` (transfer_manager, ``--workers`` threads) into an empty cache,
- the same files downloaded one by one (``download_file`` in a loop),
- a second ``sync_datasets`` over the warm cache (listing + manifest check, no downloads),
and prints files/s and MB/s. ``run(...)`` returns the figures as a dict (used by
``bench/trainer_throughput.py``).

On loopback a request costs only CPU, so the client and the server compete for the same
cores and concurrency gains little. ``--latency-ms`` puts a TCP proxy in front of the
server that delays each client→server chunk (≈ one request) by that much, as a real
GCS round trip does (10-50 ms from a pod); that is where concurrent downloads pay off.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from laxai_trainer.reid.data.synth import generate
from laxai_trainer.storage import open_storage
from laxai_trainer.sync import sync_datasets

TENANT = "bench"
PLAYERS, VAL_PLAYERS, IMAGES = 10, 5, 10  # 150 crops per frame dataset


@contextlib.contextmanager
def latency_proxy(upstream_port: int, latency_ms: float) -> Iterator[str]:
    """A loopback TCP proxy to 127.0.0.1:upstream_port delaying client→server data; yields its URL."""
    loop = asyncio.new_event_loop()
    ready: dict[str, object] = {}
    started = threading.Event()

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float) -> None:
        try:
            while chunk := await reader.read(65536):
                if delay:
                    await asyncio.sleep(delay)
                writer.write(chunk)
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def handle(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            server_r, server_w = await asyncio.open_connection("127.0.0.1", upstream_port)
            await asyncio.gather(pipe(client_r, server_w, latency_ms / 1000), pipe(server_r, client_w, 0))
        except (ConnectionError, asyncio.CancelledError):  # shutdown or a dropped connection
            client_w.close()

    async def serve() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        ready["port"] = server.sockets[0].getsockname()[1]
        ready["server"] = server
        started.set()

    thread = threading.Thread(target=lambda: (loop.run_until_complete(serve()), loop.run_forever()), daemon=True)
    thread.start()
    started.wait(10)
    try:
        yield f"http://127.0.0.1:{ready['port']}"
    finally:

        async def shutdown() -> None:
            ready["server"].close()  # type: ignore[attr-defined]
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(shutdown(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()


def _rate(files: int, nbytes: int, seconds: float) -> dict[str, float]:
    return {
        "seconds": round(seconds, 3),
        "files_per_s": round(files / seconds, 1),
        "mb_per_s": round(nbytes / seconds / 1e6, 2),
    }


def run(
    files: int = 2000, workers: int = 16, endpoint: str | None = None, seed: int = 0, latency_ms: float = 0.0
) -> dict[str, Any]:
    """Time the sync of about `files` crops; starts its own fake-gcs-server unless `endpoint` is given.

    `latency_ms` > 0 sends the downloads through a proxy that adds that much per request.
    """
    from tests.trainer.fake_gcs import FakeGCS, create_bucket

    server = None if endpoint else FakeGCS()
    url = endpoint or server.url
    work = Path(tempfile.mkdtemp(prefix="laxai-bench-sync-"))
    try:
        frames = max(1, math.ceil(files / ((PLAYERS + VAL_PLAYERS) * IMAGES)))
        t0 = time.perf_counter()
        summary = generate(work / "src", TENANT, players=PLAYERS, frames=frames, images_per_player=IMAGES,
                           val_players=VAL_PLAYERS, seed=seed)
        generate_s = time.perf_counter() - t0

        bucket = f"bench-{uuid.uuid4().hex[:8]}"
        create_bucket(url, bucket)
        storage = open_storage(f"gs://{bucket}", endpoint=url)
        src = work / "src"
        pairs = [(p, p.relative_to(src).as_posix()) for p in sorted(src.rglob("*.jpg"))]
        t0 = time.perf_counter()
        storage.upload_many(pairs, max_workers=workers)
        upload_s = time.perf_counter() - t0

        with contextlib.ExitStack() as stack:
            if latency_ms > 0:
                port = int(url.rsplit(":", 1)[1])
                storage = open_storage(f"gs://{bucket}", endpoint=stack.enter_context(latency_proxy(port, latency_ms)))
            t0 = time.perf_counter()
            result = sync_datasets(storage, TENANT, work / "cache-concurrent", max_workers=workers)
            concurrent_s = time.perf_counter() - t0

            listing = storage.list_files(f"{TENANT}/datasets")
            t0 = time.perf_counter()
            for info in listing:
                storage.download_file(info.path, work / "cache-serial" / info.path)
            serial_s = time.perf_counter() - t0

            t0 = time.perf_counter()
            warm = sync_datasets(storage, TENANT, work / "cache-concurrent", max_workers=workers)
            warm_s = time.perf_counter() - t0

        n, nbytes = result.files_downloaded, result.bytes_downloaded
        return {
            "files": n,
            "bytes": nbytes,
            "datasets": result.processed,
            "workers": workers,
            "latency_ms": latency_ms,
            "generate": {"seconds": round(generate_s, 3), "crops_per_s": round(summary.images / generate_s, 1)},
            "upload_concurrent": _rate(len(pairs), summary.bytes, upload_s),
            "sync_concurrent": _rate(n, nbytes, concurrent_s),
            "download_one_by_one": _rate(len(listing), sum(f.size for f in listing), serial_s),
            "speedup": round(serial_s / concurrent_s, 2),
            "sync_warm_cache": {"seconds": round(warm_s, 3), "files_downloaded": warm.files_downloaded,
                                "files_skipped": warm.files_skipped},
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if server is not None:
            server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=2000, help="about this many crops (default 2000)")
    parser.add_argument("--workers", type=int, default=16, help="transfer_manager threads (default 16)")
    parser.add_argument("--endpoint", help="an already running fake-gcs-server (default: start one)")
    parser.add_argument("--latency-ms", type=float, nargs="+", default=[0.0, 10.0],
                        help="added per-request latency, one run per value (default: 0 10)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON only")
    args = parser.parse_args()
    runs = [run(args.files, args.workers, args.endpoint, latency_ms=ms) for ms in args.latency_ms]
    if args.json:
        print(json.dumps(runs, indent=2))
        return
    for out in runs:
        report(out)


def report(out: dict[str, Any]) -> None:
    mb = out["bytes"] / 1e6
    print(f"data sync over fake-gcs-server (loopback, +{out['latency_ms']:g} ms per request): "
          f"{out['files']} crops, {mb:.1f} MB, {out['datasets']} datasets")
    print(f"  generate (synth)        {out['generate']['crops_per_s']:>9.1f} crops/s")
    for key, label in (("upload_concurrent", f"upload, {out['workers']} threads"),
                       ("sync_concurrent", f"sync, {out['workers']} threads"),
                       ("download_one_by_one", "download one by one")):
        r = out[key]
        print(f"  {label:<23} {r['files_per_s']:>9.1f} files/s {r['mb_per_s']:>8.2f} MB/s  ({r['seconds']:.2f} s)")
    print(f"  concurrent / one-by-one {out['speedup']:>9.2f}x")
    w = out["sync_warm_cache"]
    print(f"  re-sync, warm cache     {w['seconds']:>9.2f} s ({w['files_downloaded']} downloaded, "
          f"{w['files_skipped']} skipped)")


if __name__ == "__main__":
    main()
