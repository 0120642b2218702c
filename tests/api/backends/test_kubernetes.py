"""Kubernetes-backend specifics against the API emulator (shared behaviour is in test_app.py)."""

from __future__ import annotations

import asyncio

import kubernetes
import pytest

from laxai_api.app import create_app
from laxai_api.backends.base import ListQuery
from laxai_api.backends.kubernetes import (
    KubernetesBackend,
    record_from_object,
)
from laxai_api.job_views import summary
from laxai_api.schemas import JobList
from tests.api.conftest import NAMESPACE, TRAININGJOBS, local_settings, serve
from tests.support.threaded import ThreadedKubeEmulator


@pytest.fixture
async def kapi(kube_emulator, tmp_path):
    settings = local_settings(tmp_path, backend="kubernetes", namespace=NAMESPACE)
    backend = KubernetesBackend(settings, api_client=kube_emulator.api_client())
    async with serve(create_app(settings, backend)) as client:
        client.backend = backend
        yield client


async def cached(client, obj: dict) -> None:
    """Wait until the app's cache holds ``obj`` (another writer's change reaches it by the watch)."""
    index, rv = client.backend.index, int(obj["metadata"]["resourceVersion"])
    for _ in range(500):
        entry = index.get(obj["metadata"]["name"])
        if entry is not None and entry.rv >= rv:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"{obj['metadata']['name']} not cached")


def trainingjob_lists(kube) -> list[str]:
    """The TrainingJob collection reads (not watches) in the emulator's request log."""
    return kube.call(lambda: [r._raw_request.path_qs for r in kube.emulator._requests
                              if r._raw_request.method == "GET" and "watch=true" not in r._raw_request.path_qs
                              and r._raw_request.path.endswith("/trainingjobs")])


def trainingjob(name: str, tenant: str, labels: dict | None = None, status: dict | None = None) -> dict:
    body = {"apiVersion": "training.laxai.io/v1alpha1", "kind": "TrainingJob",
            "metadata": {"name": name, "labels": labels or {}},
            "spec": {"tenant_id": tenant, "custom_name": "cpu_smoke", "training_kwargs": {"num_epochs": 2}, "gpus": 0}}
    if status:
        body["status"] = status
    return body


async def test_kubectl_created_jobs_are_addressable_by_name(kapi, kube_emulator):
    created = kube_emulator.create(TRAININGJOBS, trainingjob("cpu-smoke", "tenant1", status={
        "phase": "running", "reason": "Running", "message": "epoch 1/2",
        "progress": {"status": "running", "current_epoch": 1, "total_epochs": 2, "current_loss": 0.7, "best_loss": 0.6},
        "conditions": [{"type": "Running", "status": "True", "reason": "PodRunning", "lastTransitionTime": "2026-01-01T00:00:00Z"}],
        "startTime": "2026-01-01T00:00:00Z", "attempts": 1}), NAMESPACE)
    status = (await kapi.get("/api/v1/train/cpu-smoke/status")).json()
    assert status["status"] == "running" and status["progress"]["current_loss"] == 0.7
    assert status["progress"]["best_loss"] == 0.6 and status["message"] == "epoch 1/2"
    detail = (await kapi.get("/api/v1/train/cpu-smoke")).json()
    assert detail["run_name"] == "cpu_smoke" and detail["spec"]["gpus"] == 0
    assert detail["conditions"][0]["reason"] == "PodRunning" and detail["started_at"] == "2026-01-01T00:00:00Z"
    assert detail["attempts"] == 1
    await cached(kapi, created)
    listed = (await kapi.get("/api/v1/train/jobs")).json()
    assert [j["task_id"] for j in listed["jobs"]] == ["cpu-smoke"]


async def test_tenant_comes_from_the_spec_not_a_forged_label(kapi, kube_emulator):
    forged = kube_emulator.create(TRAININGJOBS, trainingjob("forged", "tenant2",
                                                            labels={"training.laxai.io/tenant": "tenant1"}), NAMESPACE)
    await cached(kapi, forged)
    listed = (await kapi.get("/api/v1/train/jobs", params={"tenant_id": "tenant1"})).json()
    assert listed["total_jobs"] == 0
    assert (await kapi.get("/api/v1/train/forged")).json()["tenant_id"] == "tenant2"


async def test_cancel_is_a_merge_patch_of_spec_cancel_only(kapi, kube_emulator):
    task_id = (await kapi.post("/api/v1/train", json={"tenant_id": "tenant1", "custom_name": "keep"})).json()["task_id"]
    before = kube_emulator.get(TRAININGJOBS, NAMESPACE, task_id)
    response = (await kapi.delete(f"/api/v1/train/{task_id}")).json()
    after = kube_emulator.get(TRAININGJOBS, NAMESPACE, task_id)
    assert after["spec"] == {**before["spec"], "cancel": True}
    assert response["message"] == "Cancellation requested"
    detail = (await kapi.get(f"/api/v1/train/{task_id}")).json()
    assert detail["reason"] == "CancelRequested"


async def test_logs_outlive_the_pods_via_storage(kapi, kube_emulator, tmp_path):
    pytest.importorskip("laxai_trainer.storage", reason="laxai_trainer.storage is not written yet")
    posted = await kapi.post("/api/v1/train", json={"tenant_id": "tenant1"})
    assert posted.status_code == 200, posted.text
    task_id = posted.json()["task_id"]
    assert (await kapi.get(f"/api/v1/train/{task_id}/logs")).json() == {"task_id": task_id, "source": "none", "lines": []}
    saved = tmp_path / "storage" / "tenant1" / "runs" / task_id / "logs" / "trainer.log"
    saved.parent.mkdir(parents=True)
    saved.write_text("".join(f"line {i}\n" for i in range(50)))
    body = (await kapi.get(f"/api/v1/train/{task_id}/logs", params={"tail": 3})).json()
    assert body == {"task_id": task_id, "source": "storage", "lines": ["line 47", "line 48", "line 49"]}


async def test_unreachable_api_server_is_503(tmp_path):
    configuration = kubernetes.client.Configuration()
    configuration.host = "http://127.0.0.1:9"  # discard port: connection refused
    configuration.retries = 0
    settings = local_settings(tmp_path, backend="kubernetes", namespace=NAMESPACE)
    backend = KubernetesBackend(settings, api_client=kubernetes.client.ApiClient(configuration), sync_timeout=0.2)
    async with serve(create_app(settings, backend)) as client:
        health = await client.get("/health")
        assert health.status_code == 503 and health.json()["error"] == "backend_unavailable"
        assert health.json()["details"]["namespace"] == NAMESPACE
        for response in (await client.get("/api/v1/train/jobs"), await client.get("/api/v1/train/x/status"),
                         await client.post("/api/v1/train", json={"tenant_id": "tenant1"})):
            assert response.status_code == 503 and response.json()["error"] == "backend_unavailable", response.text


async def test_missing_crd_is_503_on_health(tmp_path):
    with ThreadedKubeEmulator(crd_paths=(), workdir=tmp_path) as kube:
        settings = local_settings(tmp_path, backend="kubernetes", namespace=NAMESPACE)
        async with serve(create_app(settings, KubernetesBackend(settings, api_client=kube.api_client()))) as client:
            health = await client.get("/health")
    assert health.status_code == 503 and "CRD" in health.json()["details"]["error"]


def test_unreadable_specs_are_skipped_not_500():
    assert record_from_object({"metadata": {"name": "x"}, "spec": {"tenant_id": "../bad"}}) is None
    partial = record_from_object({"metadata": {"name": "y"}, "spec": {"tenant_id": "t1", "training_kwargs": "junk"},
                                  "status": {"phase": "running", "progress": "junk"}})
    assert partial.tenant_id == "t1" and partial.phase.value == "running"


async def test_run_fields_reach_the_trainingjob_spec(kapi, kube_emulator):
    body = {"tenant_id": "tenant1", "gpus": 0, "resources": {"cpu": "2", "memory": "4Gi"},
            "nodeSelector": {"pool": "cpu"}, "backoffLimit": 1, "activeDeadlineSeconds": 600}
    task_id = (await kapi.post("/api/v1/train", json=body)).json()["task_id"]
    spec = kube_emulator.get(TRAININGJOBS, NAMESPACE, task_id)["spec"]
    assert {k: spec[k] for k in body} == body


async def test_logs_from_a_gcs_run_folder(kube_emulator, tmp_path, monkeypatch):
    """gs:// storage roots (what Helm deploys): the saved log is read through google-cloud-storage."""
    from tests.trainer.fake_gcs import FakeGCS, FakeGCSUnavailable

    try:
        server = FakeGCS()
    except FakeGCSUnavailable as exc:
        pytest.skip(f"fake-gcs-server not available: {exc}")
    try:
        server.create_bucket("laxai-logs")
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", server.url)
        from laxai_trainer.storage import open_storage

        settings = local_settings(tmp_path, backend="kubernetes", namespace=NAMESPACE, storage_root="gs://laxai-logs")
        backend = KubernetesBackend(settings, api_client=kube_emulator.api_client())
        async with serve(create_app(settings, backend)) as client:
            task_id = (await client.post("/api/v1/train", json={"tenant_id": "tenant1", "custom_name": "gcs_run"})).json()["task_id"]
            open_storage("gs://laxai-logs").write_bytes("tenant1/runs/gcs_run/logs/trainer.log", b"a\nb\nc\n")
            body = (await client.get(f"/api/v1/train/{task_id}/logs", params={"tail": 2})).json()
        assert body == {"task_id": task_id, "source": "storage", "lines": ["b", "c"]}
    finally:
        server.stop()


async def test_the_configured_namespace_is_used(kube_emulator, tmp_path):
    settings = local_settings(tmp_path, backend="kubernetes", namespace="team-a")
    async with serve(create_app(settings, KubernetesBackend(settings, api_client=kube_emulator.api_client()))) as client:
        task_id = (await client.post("/api/v1/train", json={"tenant_id": "tenant1"})).json()["task_id"]
        assert (await client.get(f"/api/v1/train/{task_id}/status")).status_code == 200
    assert kube_emulator.get(TRAININGJOBS, "team-a", task_id) is not None
    assert kube_emulator.get(TRAININGJOBS, NAMESPACE, task_id) is None


async def test_default_gpus_fills_an_unset_gpus_only(kube_emulator, tmp_path):
    settings = local_settings(tmp_path, backend="kubernetes", namespace=NAMESPACE, default_gpus=0)
    backend = KubernetesBackend(settings, api_client=kube_emulator.api_client())
    async with serve(create_app(settings, backend)) as client:
        unset = (await client.post("/api/v1/train", json={"tenant_id": "tenant1"})).json()["task_id"]
        explicit = (await client.post("/api/v1/train", json={"tenant_id": "tenant1", "gpus": 2})).json()["task_id"]
    assert kube_emulator.get(TRAININGJOBS, NAMESPACE, unset)["spec"]["gpus"] == 0
    assert kube_emulator.get(TRAININGJOBS, NAMESPACE, explicit)["spec"]["gpus"] == 2


# ---- the cache: what a POST reads, read-your-writes, replicas --------------------------------------


async def test_post_checks_read_the_cache_not_the_namespace(kapi, kube_emulator):
    for i in range(3):
        kube_emulator.create(TRAININGJOBS, trainingjob(f"old-{i}", "tenant1"), NAMESPACE)
    assert (await kapi.get("/api/v1/train/jobs")).status_code == 200  # the cache has synced
    before = len(trainingjob_lists(kube_emulator))
    for i in range(3):  # the run-name check and, with a key, the idempotency check
        response = await kapi.post("/api/v1/train", json={"tenant_id": "tenant1", "custom_name": f"run{i}"},
                                   headers={"Idempotency-Key": f"k{i}"})
        assert response.status_code == 200, response.text
    replay = await kapi.post("/api/v1/train", json={"tenant_id": "tenant1", "custom_name": "run0"},
                             headers={"Idempotency-Key": "k0"})
    assert replay.headers.get("Idempotent-Replayed") == "true"
    busy = await kapi.post("/api/v1/train", json={"tenant_id": "tenant1", "custom_name": "run1"})
    assert busy.status_code == 409 and busy.json()["details"]["error_type"] == "run_name_in_use"
    assert (await kapi.get("/api/v1/train/jobs", params={"limit": 2})).json()["total_jobs"] == 6
    assert len(trainingjob_lists(kube_emulator)) == before  # no TrainingJob list since the first one


async def test_own_writes_are_read_back_without_waiting_for_the_watch(kapi, kube_emulator):
    assert (await kapi.get("/api/v1/train/jobs")).status_code == 200
    await kapi.backend.cache.close()  # no watch from here on: only the writes' responses reach the cache
    posted = await kapi.post("/api/v1/train", json={"tenant_id": "tenant1"})
    assert posted.status_code == 200, posted.text
    task_id = posted.json()["task_id"]
    listed = (await kapi.get("/api/v1/train/jobs", params={"tenant_id": "tenant1"})).json()
    assert [j["task_id"] for j in listed["jobs"]] == [task_id]
    assert (await kapi.delete(f"/api/v1/train/{task_id}")).status_code == 200
    assert (await kapi.get(f"/api/v1/train/{task_id}")).json()["reason"] == "CancelRequested"


async def test_replicas_each_with_their_own_cache_agree(kube_emulator, tmp_path):
    settings = local_settings(tmp_path, backend="kubernetes", namespace=NAMESPACE)
    one = KubernetesBackend(settings, api_client=kube_emulator.api_client())
    two = KubernetesBackend(settings, api_client=kube_emulator.api_client())
    async with serve(create_app(settings, one)) as a, serve(create_app(settings, two)) as b:
        b.backend = two
        assert (await b.get("/api/v1/train/jobs")).status_code == 200
        task_id = (await a.post("/api/v1/train", json={"tenant_id": "tenant1"})).json()["task_id"]
        status = await b.get(f"/api/v1/train/{task_id}/status")  # not cached yet on b: one GET
        assert status.status_code == 200 and status.json()["status"] == "pending"
        assert (await a.delete(f"/api/v1/train/{task_id}")).status_code == 200
        await cached(b, kube_emulator.get(TRAININGJOBS, NAMESPACE, task_id))
        assert (await b.get(f"/api/v1/train/{task_id}")).json()["reason"] == "CancelRequested"
        assert [j["task_id"] for j in (await b.get("/api/v1/train/jobs")).json()["jobs"]] == [task_id]


async def test_health_reports_the_cache(kapi):
    details = (await kapi.get("/health")).json()["details"]
    assert details["cache"]["synced"] is True and details["cache"]["lists"] == 1


def api_requests(kube) -> list[str]:
    """The emulator's requests other than the cache's watches: "METHOD path"."""
    return kube.call(lambda: [f"{r._raw_request.method} {r._raw_request.path}" for r in kube.emulator._requests
                              if "watch=true" not in r._raw_request.path_qs])


async def test_a_post_makes_one_api_request_the_create(kapi, kube_emulator):
    assert (await kapi.get("/api/v1/train/jobs")).status_code == 200  # the cache has synced
    before = len(api_requests(kube_emulator))
    response = await kapi.post("/api/v1/train", json={"tenant_id": "tenant1", "custom_name": "one_trip"},
                               headers={"Idempotency-Key": "first-use"})
    assert response.status_code == 200, response.text
    assert api_requests(kube_emulator)[before:] == [f"POST /apis/training.laxai.io/v1alpha1/namespaces/{NAMESPACE}/trainingjobs"]
    status = await kapi.get(f"/api/v1/train/{response.json()['task_id']}/status")
    assert status.json()["status"] == "pending" and len(api_requests(kube_emulator)) == before + 1


async def test_a_key_used_through_another_replica_a_moment_ago_replays(kube_emulator, tmp_path):
    settings = local_settings(tmp_path, backend="kubernetes", namespace=NAMESPACE)
    one = KubernetesBackend(settings, api_client=kube_emulator.api_client())
    two = KubernetesBackend(settings, api_client=kube_emulator.api_client())
    async with serve(create_app(settings, one)) as a, serve(create_app(settings, two)) as b:
        assert (await b.get("/api/v1/train/jobs")).status_code == 200
        await two.cache.close()  # b's watch is behind: it has not seen a's create
        body, key = {"tenant_id": "tenant1", "custom_name": "twice"}, {"Idempotency-Key": "k"}
        first = await a.post("/api/v1/train", json=body, headers=key)
        again = await b.post("/api/v1/train", json=body, headers=key)  # the create's 409, then one GET
        assert again.status_code == 200 and again.headers["Idempotent-Replayed"] == "true"
        assert again.json()["task_id"] == first.json()["task_id"]
        other = await b.post("/api/v1/train", json={**body, "custom_name": "else"}, headers=key)
        assert other.status_code == 409 and other.json()["details"]["error_type"] == "idempotency_key_reused"


async def test_a_cached_page_is_the_json_the_models_give(kapi, kube_emulator):
    for i in range(3):
        kube_emulator.create(TRAININGJOBS, trainingjob(f"job-{i}", "tenant1", status={
            "phase": "running", "progress": {"status": "running", "current_epoch": i, "current_loss": 0.25,
                                             "message": "époque", "logs": ["a", "b"]}}), NAMESPACE)
    await cached(kapi, kube_emulator.get(TRAININGJOBS, NAMESPACE, "job-2"))
    page = await kapi.backend.list(ListQuery(limit=2))
    body = (await kapi.get("/api/v1/train/jobs", params={"limit": 2})).json()
    expected = JobList(total_jobs=3, jobs=[summary(job) for job in page.jobs], continue_=page.next_token)
    assert body == expected.model_dump(mode="json", by_alias=True) and body["continue"]
