"""The local quickstart: the seed's example request, end to end, on this machine.

Generates a synthetic dataset for tenant1, starts ``laxai-api --backend local`` on
loopback, submits ``examples/seed_request.json`` (the README's curl body; ``num_epochs``
lowered with ``--epochs``, and ``num_workers`` set to what this machine's CPUs can feed),
follows progress with a live bar,
prints the final metrics and where the model and checkpoints are, and stops the API.
Run again with the same home, the finished run is 409 ``run_already_finished``: the script
then resubmits with ``resume_from_checkpoint: false`` (the earlier run is archived).
Ctrl-C at any point stops the API and its trainer (their whole process group).

Run it through ``./scripts/quickstart.sh``, which creates the virtual environment first.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from laxai_api.progress_view import ProgressView
from laxai_trainer.cpus import available_cpus

ROOT = Path(__file__).resolve().parent.parent
SEED_REQUEST = ROOT / "examples" / "seed_request.json"
TERMINAL = ("completed", "failed", "cancelled")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=3,
                        help="num_epochs sent instead of the example's 10, to keep the run short (default 3)")
    parser.add_argument("--home", type=Path, default=ROOT / ".laxai" / "quickstart",
                        help="folder for the dataset, job database, logs and run outputs")
    parser.add_argument("--players", type=int, default=12, help="synthetic players per frame")
    parser.add_argument("--frames", type=int, default=3, help="synthetic frame datasets")
    parser.add_argument("--port", type=int, default=0, help="API port on 127.0.0.1 (default: a free one)")
    parser.add_argument("--timeout", type=float, default=1800, help="give up after this many seconds")
    parser.add_argument("--num-workers", type=int, default=None,
                        help="training_kwargs.num_workers (default: the CPUs available minus one, at most 4)")
    return parser.parse_args(argv)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def quick_workers(cpus: int) -> int:
    """DataLoader workers that do not slow this machine down: one CPU stays for training."""
    return min(max(cpus - 1, 0), 4)


def seed_request(epochs: int, num_workers: int) -> dict:
    body = json.loads(SEED_REQUEST.read_text())
    body["training_kwargs"]["num_epochs"] = epochs
    # The example leaves num_workers at its default (8): 9 processes crawl on a 2-core laptop.
    body["training_kwargs"]["num_workers"] = num_workers
    return body


def start_api(env: dict[str, str], port: int, log_path: Path) -> subprocess.Popen:
    """laxai-api in its own process group, so one signal stops it and its trainers."""
    log = log_path.open("w")
    return subprocess.Popen(
        ["laxai-api", "--backend", "local", "--host", "127.0.0.1", "--port", str(port)],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )


def stop(proc: subprocess.Popen) -> None:
    """SIGTERM the API's process group (it cancels running trainers), then SIGKILL."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    except ProcessLookupError:
        pass


def wait_healthy(client: httpx.Client, proc: subprocess.Popen, log_path: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"laxai-api exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
        try:
            if client.get("/health").status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    raise SystemExit(f"laxai-api did not become healthy in {timeout:.0f}s; see {log_path}")


def follow(client: httpx.Client, task_id: str, timeout: float) -> dict:
    """Poll the status every second and draw it (laxai_api.progress_view: steps, labelled
    numbers, the trainer's ETA, the whole message; one line per change when piped)."""
    deadline = time.monotonic() + timeout
    view = ProgressView(sys.stderr)
    try:
        while True:
            status = client.get(f"/api/v1/train/{task_id}/status").json()
            view.update(status)
            if status["status"] in TERMINAL:
                return status
            if time.monotonic() > deadline:
                raise SystemExit(f"timed out after {timeout:.0f}s; job {task_id} is {status['status']}")
            time.sleep(1)
    finally:
        view.close()


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    home = args.home.resolve()
    storage = home / "storage"
    home.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "LAXAI_HOME": str(home), "LAXAI_STORAGE_ROOT": str(storage), "LAXAI_BACKEND": "local"}

    print(f"==> generating a synthetic dataset for tenant1 under {storage}")
    subprocess.run(
        ["laxai-train", "synth", "--out", str(storage), "--tenant", "tenant1",
         "--players", str(args.players), "--frames", str(args.frames)],
        env=env, check=True,
    )

    port = args.port or free_port()
    log_path = home / "api.log"
    print(f"==> starting laxai-api (local backend) on http://127.0.0.1:{port}  (log: {log_path})")
    proc = start_api(env, port, log_path)
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30)
    submitted = False  # from the moment the POST is sent until the job has finished
    try:
        wait_healthy(client, proc, log_path)
        body = seed_request(args.epochs, quick_workers(available_cpus()) if args.num_workers is None else args.num_workers)
        print("==> POST /api/v1/train", json.dumps(body))
        submitted = True
        accepted = client.post("/api/v1/train", json=body)
        if accepted.status_code == 409 and accepted.json()["details"].get("error_type") == "run_already_finished":
            # An earlier quickstart trained this custom_name already: start it over, the documented way.
            print(f"    {accepted.json()['message']}")
            body["resume_from_checkpoint"] = False
            print("==> POST /api/v1/train again with resume_from_checkpoint: false (the old run is archived)")
            accepted = client.post("/api/v1/train", json=body)
        if accepted.status_code != 200:
            raise SystemExit(f"submit failed: {accepted.status_code} {accepted.text}")
        task_id = accepted.json()["task_id"]
        print(f"    task_id: {task_id}")
        final = follow(client, task_id, args.timeout)
        submitted = False  # finished: nothing left to cancel
        return report(final, client.get(f"/api/v1/train/{final['task_id']}").json(), storage)
    except KeyboardInterrupt:
        print("\ninterrupted: cancelling the job and stopping the API", file=sys.stderr)
        return 130
    finally:
        if submitted:
            cancel_active(client)
        client.close()
        stop(proc)


def cancel_active(client: httpx.Client, timeout: float = 60) -> None:
    """The local API leaves trainers running across its own restarts, so cancel them first:
    DELETE stops a trainer's process group (SIGTERM, then SIGKILL after a grace period).
    Every pending or running job of this quickstart's own API is cancelled, so an interrupt
    that lands before the POST's answer leaves no trainer behind either."""
    cancelling: list[str] = []
    for status in ("pending", "running"):  # queued first: a freed slot would start one
        try:
            jobs = client.get("/api/v1/train/jobs", params={"status": status, "limit": 1000}).json()["jobs"]
        except (httpx.HTTPError, ValueError, KeyError) as exc:
            print(f"warning: could not list {status} jobs: {exc}", file=sys.stderr)
            continue
        for job in jobs:
            try:
                client.delete(f"/api/v1/train/{job['task_id']}")
                cancelling.append(job["task_id"])
            except httpx.HTTPError as exc:
                print(f"warning: could not cancel {job['task_id']}: {exc}", file=sys.stderr)
    # DELETE answers at once; the trainers checkpoint and exit within the API's grace period.
    deadline = time.monotonic() + timeout
    for task_id in cancelling:
        while time.monotonic() < deadline:
            try:
                if client.get(f"/api/v1/train/{task_id}/status").json()["status"] in TERMINAL:
                    break
            except (httpx.HTTPError, ValueError, KeyError):
                break
            time.sleep(0.2)


def report(final: dict, detail: dict, storage: Path) -> int:
    progress = final["progress"]
    metrics = detail.get("metrics") or {}
    print(f"==> {progress['status']}: {progress.get('message') or ''}")
    if progress["status"] != "completed":
        print("\n".join(progress.get("logs") or []), file=sys.stderr)
        return 1
    print(f"    rank-1 {_fmt(metrics.get('rank1'))}   rank-5 {_fmt(metrics.get('rank5'))}   "
          f"mAP {_fmt(metrics.get('mAP'))}   best epoch {metrics.get('best_epoch')}")
    run = metrics.get("run_uri") or str(storage / "tenant1" / "runs" / "api_test_run")
    print(f"    model:       {metrics.get('model_uri') or run + '/final/'}")
    print(f"    checkpoints: {run}/checkpoints/")
    print(f"    metrics:     {run}/metrics.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
