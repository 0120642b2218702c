"""LaxAIClient (async) and LaxAIClientSync against a live uvicorn on 127.0.0.1."""

from __future__ import annotations

import json

import pytest

from laxai_api.app import create_app
from laxai_api.client import LaxAIClient, LaxAIClientSync, LaxAIError
from tests.api.conftest import LONG, LiveServer, local_settings
from tests.contract_cases import SEED_REQUEST

pytestmark = pytest.mark.timeout(120)
FAST = {**SEED_REQUEST, "training_kwargs": {**SEED_REQUEST["training_kwargs"], "num_epochs": 3}}


async def test_async_client_full_cycle(live_server):
    async with LaxAIClient(live_server.url) as client:
        started = await client.start_training(FAST)
        assert started["status"] == "accepted" and started["progress"]["status"] == "pending"
        seen = []
        final = await client.wait_for_completion(started["task_id"], on_progress=seen.append, poll_interval=0.05)
        assert final["status"] == "completed" and final["progress"]["current_epoch"] == 3
        assert seen[-1] == final and len(seen) >= 1
        status = await client.get_training_status(started["task_id"])
        assert status["status"] == "completed"
        jobs = await client.list_training_jobs(status="completed", tenant_id="tenant1", limit=5)
        assert [j["task_id"] for j in jobs["jobs"]] == [started["task_id"]]
        logs = await client.get_logs(started["task_id"], tail=1)
        assert logs["lines"] == ["done"]
        with pytest.raises(LaxAIError) as info:
            await client.cancel_training_job(started["task_id"])
        assert info.value.status_code == 409 and info.value.error == "job_finished"
        assert info.value.body["details"]["status"] == "completed"


async def test_async_wait_with_an_async_callback_and_cancel(live_server):
    async with LaxAIClient(live_server.url) as client:
        started = await client.start_training({"tenant_id": "tenant1", **LONG})
        calls = []

        async def on_progress(status):
            calls.append(status["status"])
            if status["status"] == "running":
                await client.cancel_training_job(started["task_id"])

        final = await client.wait_for_completion(started["task_id"], on_progress=on_progress, poll_interval=0.05)
        assert final["status"] == "cancelled" and "running" in calls


async def test_async_client_errors_carry_the_body(live_server):
    async with LaxAIClient(live_server.url) as client:
        with pytest.raises(LaxAIError) as info:
            await client.start_training({"tenant_id": "tenant1", "training_kwargs": {"num_epoch": 3}})
        assert info.value.status_code == 422
        assert info.value.details["errors"][0]["field"] == "training_kwargs.num_epoch"
        with pytest.raises(LaxAIError) as info:
            await client.get_training_status("missing")
        assert info.value.status_code == 404 and info.value.message == "Training job 'missing' not found"


def test_sync_client_full_cycle_and_idempotency(live_server):
    with LaxAIClientSync(live_server.url) as client:
        first = client.start_training(FAST, idempotency_key="once")
        assert client.start_training(FAST, idempotency_key="once")["task_id"] == first["task_id"]
        final = client.wait_for_completion(first["task_id"], poll_interval=0.05, timeout=60)
        assert final["status"] == "completed"
        assert client.get_training_job(first["task_id"])["metrics"]["rank1"] == 0.5
        assert client.list_training_jobs()["total_jobs"] == 1
        assert client.health()["status"] == "ok"


def test_wait_timeout(live_server):
    with LaxAIClientSync(live_server.url) as client:
        started = client.start_training({"tenant_id": "tenant1", **LONG})
        with pytest.raises(TimeoutError):
            client.wait_for_completion(started["task_id"], poll_interval=0.05, timeout=0.2)
        client.cancel_training_job(started["task_id"])


def test_connection_errors_are_typed():
    with LaxAIClientSync("http://127.0.0.1:9", timeout=2) as client, pytest.raises(LaxAIError) as info:
        client.list_training_jobs()
    assert info.value.status_code == 0 and info.value.error == "connection_error"


def test_api_key_from_argument_and_environment(tmp_path, monkeypatch):
    keys = tmp_path / "keys.json"
    keys.write_text(json.dumps({"sk-1": "tenant1"}))
    app = create_app(local_settings(tmp_path, auth_enabled=True, api_keys_file=keys))
    with LiveServer(app) as server:
        with LaxAIClientSync(server.url) as anonymous, pytest.raises(LaxAIError) as info:
            anonymous.list_training_jobs()
        assert info.value.status_code == 401
        with LaxAIClientSync(server.url, api_key="sk-1") as client:
            assert client.list_training_jobs()["total_jobs"] == 0
        monkeypatch.setenv("LAXAI_API_KEY", "sk-1")
        monkeypatch.setenv("LAXAI_API_URL", server.url)
        with LaxAIClientSync() as client:
            assert client.base_url == server.url and client.list_training_jobs()["total_jobs"] == 0
