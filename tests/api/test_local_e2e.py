"""End to end through HTTP: the local backend runs the real ``laxai-train`` on a tiny synthetic
dataset (CPU, random init, no downloads): one run to completed with metrics, one cancelled."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from laxai_api.app import create_app
from tests.api.backends.test_local import group_gone
from tests.api.conftest import local_settings, serve, wait_status

pytestmark = [pytest.mark.slow, pytest.mark.timeout(400)]

#: The smallest run that still trains: 2 epochs, P=4 x K=2 batches, 16-d embedding, no workers.
TINY = {"batch_size": 8, "images_per_player": 2, "num_workers": 0, "early_stopping_patience": 5}


def trainer_command() -> str:
    script = Path(sys.executable).with_name("laxai-train")
    return str(script) if script.exists() else f"{sys.executable} -m laxai_trainer.cli"


@pytest.fixture(scope="module")
def storage(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("e2e-storage")
    synth = subprocess.run(
        [*trainer_command().split(), "synth", "--out", str(root), "--tenant", "tenant1",
         "--players", "6", "--frames", "2", "--images-per-player", "4"],
        capture_output=True, text=True, timeout=120,
    )
    assert synth.returncode == 0, synth.stderr
    return root


@pytest.fixture
async def e2e_api(storage, tmp_path, monkeypatch):
    # The trainer inherits these: CPU, one thread, no weight downloads, wandb offline.
    monkeypatch.setenv("LAXAI_PRETRAINED_DOWNLOAD", "false")
    monkeypatch.setenv("LAXAI_DEVICE", "cpu")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("WANDB_MODE", "offline")
    settings = local_settings(tmp_path, storage_root=str(storage), trainer_command=trainer_command(),
                              cancel_grace_seconds=30)
    app = create_app(settings)
    async with serve(app) as client:
        yield client, app.state.backend


async def test_a_real_training_run_completes_with_metrics(e2e_api, storage):
    client, _ = e2e_api
    body = {"tenant_id": "tenant1", "custom_name": "e2e_run", "verbose": True,
            "training_kwargs": {"num_epochs": 2, **TINY}, "model_kwargs": {"embedding_dim": 16}}
    task_id = (await client.post("/api/v1/train", json=body)).json()["task_id"]
    final = await wait_status(client, task_id, {"completed", "failed", "cancelled"}, timeout=300)
    detail = (await client.get(f"/api/v1/train/{task_id}")).json()
    assert final["status"] == "completed", detail["message"]
    assert final["progress"]["current_epoch"] == 2 and final["progress"]["total_epochs"] == 2
    assert final["progress"]["current_loss"] is not None and final["progress"]["best_loss"] is not None
    metrics = detail["metrics"]
    assert 0 <= metrics["rank1"] <= 1 and 0 <= metrics["mAP"] <= 1 and metrics["epochs_completed"] == 2
    run = storage / "tenant1" / "runs" / "e2e_run"
    assert run.is_dir() and any(run.rglob("*.pt")), sorted(p.name for p in run.rglob("*"))
    logs = (await client.get(f"/api/v1/train/{task_id}/logs", params={"tail": 50})).json()
    assert logs["source"] == "file" and logs["lines"]


async def test_cancel_kills_a_running_real_trainer(e2e_api):
    client, backend = e2e_api
    body = {"tenant_id": "tenant1", "training_kwargs": {"num_epochs": 1000, **TINY},
            "model_kwargs": {"embedding_dim": 16}}
    task_id = (await client.post("/api/v1/train", json=body)).json()["task_id"]
    progress_file = backend.jobs_dir / task_id / "progress.json"
    deadline = time.monotonic() + 240
    while True:  # wait until the trainer reports (its signal handlers are installed by then)
        report = json.loads(progress_file.read_text()) if progress_file.exists() else {}
        if (report.get("progress") or {}).get("status") == "running":
            break
        assert time.monotonic() < deadline, report
        time.sleep(0.2)
    pid = backend._running[task_id].pid
    started = time.monotonic()
    response = await client.delete(f"/api/v1/train/{task_id}")
    assert response.status_code == 200, response.text
    assert response.json()["progress"]["message"].startswith("Cancelling")  # answered before the exit
    await wait_status(client, task_id, {"cancelled"}, timeout=60)
    assert group_gone(pid)
    assert time.monotonic() - started < 30  # stopped by SIGTERM (checkpoint, exit 75), not the SIGKILL
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    detail = (await client.get(f"/api/v1/train/{task_id}")).json()
    assert detail["status"] == "cancelled" and detail["reason"] == "Cancelled"
    last = (await client.get(f"/api/v1/train/{task_id}/logs", params={"tail": 1})).json()["lines"][-1]
    # "checkpoint at …", or "before training started" when the stop came during the dataset sync
    assert "Cancelled on request" in last and "Preempted" not in last
