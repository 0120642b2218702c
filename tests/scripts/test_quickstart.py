"""scripts/quickstart.sh: the README's main command, run end to end in a temporary folder."""

import importlib.util
import json
import os
import subprocess
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_quickstart_trains_the_seed_example_to_completion(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    result = subprocess.run(
        [str(ROOT / "scripts" / "quickstart.sh"), "--epochs", "1", "--players", "6", "--frames", "2",
         "--home", str(tmp_path)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "==> completed" in result.stdout
    assert "rank-1" in result.stdout and "mAP" in result.stdout

    run = tmp_path / "storage" / "tenant1" / "runs" / "api_test_run"  # the seed's custom_name
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["final"]["mAP"] > 0
    assert any((run / "checkpoints").iterdir())
    # The request was the seed's example body, epochs lowered by the flag: its values reached the trainer.
    config = json.loads((run / "config.json").read_text())
    assert config["training_kwargs"]["batch_size"] == 32 and config["model_kwargs"]["embedding_dim"] == 256
    assert config["training_kwargs"]["num_epochs"] == 1
    assert config["training_kwargs"]["num_workers"] == min(max(len(os.sched_getaffinity(0)) - 1, 0), 4)
    # Paths one can paste into ls; pip's own lines (this machine's index is a file:// URL) are not ours.
    ours = [line for line in (result.stdout + result.stderr).splitlines() if not line.removeprefix("WARNING: ").startswith(("Location ", "Looking in"))]
    assert not [line for line in ours if "file://" in line]
    # The API was stopped: no process still holds the quickstart's home folder open.
    leftover = subprocess.run(["pgrep", "-f", str(tmp_path)], capture_output=True, text=True)
    assert leftover.stdout.strip() == "", leftover.stdout


def test_the_quickstart_picks_workers_the_cpus_can_feed():
    quickstart = load_quickstart()
    assert [quickstart.quick_workers(n) for n in (1, 2, 4, 16)] == [0, 1, 3, 4]
    body = quickstart.seed_request(2, 1)
    assert body["training_kwargs"]["num_workers"] == 1 and body["training_kwargs"]["batch_size"] == 32


def load_quickstart():
    spec = importlib.util.spec_from_file_location("quickstart", ROOT / "scripts" / "quickstart.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.timeout(60)
def test_an_interrupt_cancels_every_active_job_of_its_api(tmp_path):
    """Ctrl-C may land before the POST's answer names the job: every pending or running job
    of the quickstart's own API is cancelled, so no trainer outlives the script."""
    from laxai_api.app import create_app
    from laxai_api.backends.local import process_alive
    from tests.api.conftest import LONG, LiveServer, local_settings

    app = create_app(local_settings(tmp_path))  # two trainers at once, the third queued
    with LiveServer(app) as server, httpx.Client(base_url=server.url, timeout=30) as client:
        ids = [client.post("/api/v1/train", json={"tenant_id": "tenant1", **LONG}).json()["task_id"]
               for _ in range(3)]
        pids = [t.pid for t in app.state.backend._running.values()]
        assert len(pids) == 2
        load_quickstart().cancel_active(client)
        statuses = [client.get(f"/api/v1/train/{i}/status").json()["status"] for i in ids]
    assert statuses == ["cancelled"] * 3
    assert not any(process_alive(pid, task_id) for pid, task_id in zip(pids, ids[:2], strict=True))
