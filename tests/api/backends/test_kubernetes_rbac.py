"""The API's RBAC, enforced: the chart's rendered ServiceAccounts, Roles and bindings are installed
into the emulator with authentication and RBAC on (tests.support.access), and the app, with its
kubernetes backend, runs under the API ServiceAccount's token, as its pod does.

- Enough: every endpoint through a whole lifecycle (submit, idempotent replay, the 409s, status,
  detail, filtered and paged lists, logs from the pod and, once it is gone, from storage, cancel,
  /health, /metrics) gets no 403. The backend turns some refusals into fallbacks (a refused
  pod-log read becomes "storage"), so the emulator's denial log is what is asserted.
- Not more: the permissions the chart grants the API ServiceAccount, with the namespace each
  binding grants them in, equal the permissions its requests needed (tests.support.rbac_usage):
  a missing or an unused verb fails, and so does a ClusterRole where the API works in one namespace.

The required set is derived from the recorded requests, never listed here: when the backend's calls
change (a watch-backed cache, say), this test says which grant to add or drop.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from laxai_api.app import create_app
from laxai_operator import naming
from tests.api.conftest import local_settings, serve, wait_status
from tests.helm.chart import RELEASE, Rendered
from tests.helm.install import install_access, render_or_skip
from tests.support import authn
from tests.support.fixtures import authenticate_as
from tests.support.rbac_usage import granted, used
from tests.support.threaded import PODS, TRAININGJOBS

pytestmark = pytest.mark.parametrize("kube_emulator", ["secured"], indirect=True)

RELEASE_NS = "laxai"
API = "/api/v1/train"
INSTALLS = {
    "namespaced": {},
    "other-namespace": {"api": {"namespace": "ml-jobs"}},
    "cluster-wide": {"watch": {"clusterWide": True}},
}


def render_chart(values: dict[str, Any]) -> Rendered:
    return render_or_skip(values, RELEASE_NS)


def api_pod(rendered: Rendered) -> tuple[str, str]:
    """(ServiceAccount, LAXAI_NAMESPACE) of the chart's API Deployment."""
    name = f"{RELEASE}-training-api"
    account = rendered.get("Deployment", name)["spec"]["template"]["spec"]["serviceAccountName"]
    return account, rendered.env(name, "api")["LAXAI_NAMESPACE"]


def trainer_pod(emu, namespace: str, task_id: str) -> dict:
    """The pod the Job controller would start for the TrainingJob (only the fields the API reads)."""
    return emu.create(PODS, {
        "metadata": {"generateName": "tj-", "labels": {naming.LABEL_TRAININGJOB: naming.label_value(task_id)}},
        "spec": {"containers": [{"name": naming.CONTAINER_NAME, "image": "reg.example/trainer:test"}],
                 "restartPolicy": "Never"},
        "status": {"phase": "Running"},
    }, namespace)


def error_type(response) -> str:
    body = response.json()
    return body["details"].get("error_type") or body["error"]


async def lifecycle(client, emu, namespace: str, storage: Path) -> None:
    """Every endpoint, every cluster call path of the kubernetes backend."""
    assert (await client.get("/health")).status_code == 200
    assert (await client.get("/")).json()["backend"] == "kubernetes"

    body = {"tenant_id": "tenant1", "custom_name": "run-a", "training_kwargs": {"num_epochs": 50}}
    key = {"Idempotency-Key": "k-1"}
    first = await client.post(API, json=body, headers=key)
    assert first.status_code == 200, first.text
    task_id = first.json()["task_id"]
    replay = await client.post(API, json=body, headers=key)
    assert replay.status_code == 200 and replay.headers["Idempotent-Replayed"] == "true"
    assert replay.json()["task_id"] == task_id
    reused = await client.post(API, json={**body, "training_kwargs": {"num_epochs": 51}}, headers=key)
    assert reused.status_code == 409 and error_type(reused) == "idempotency_key_reused"
    in_use = await client.post(API, json=body)
    assert in_use.status_code == 409 and error_type(in_use) == "run_name_in_use"
    other = (await client.post(API, json={"tenant_id": "tenant2"})).json()["task_id"]

    assert (await client.get(f"{API}/{task_id}/status")).json()["status"] == "pending"
    assert (await client.get(f"{API}/{task_id}")).json()["spec"]["custom_name"] == "run-a"
    assert (await client.get(f"{API}/no-such-job/status")).status_code == 404
    listed = (await client.get(f"{API}/jobs", params={"tenant_id": "tenant1", "status": "pending"})).json()
    assert [j["task_id"] for j in listed["jobs"]] == [task_id]
    page1 = (await client.get(f"{API}/jobs", params={"limit": 1})).json()
    page2 = (await client.get(f"{API}/jobs", params={"limit": 1, "continue": page1["continue"]})).json()
    assert {j["task_id"] for j in page1["jobs"] + page2["jobs"]} == {task_id, other}

    assert (await client.get(f"{API}/{task_id}/logs")).json()["source"] == "none"
    pod = trainer_pod(emu, namespace, task_id)
    emu.set_pod_log(namespace, pod["metadata"]["name"], "epoch 1/50 loss=0.9\n")
    emu.patch_status(TRAININGJOBS, namespace, task_id, {"phase": "running"})
    await wait_status(client, task_id, {"running"})
    logs = (await client.get(f"{API}/{task_id}/logs", params={"tail": 5})).json()
    assert logs == {"task_id": task_id, "source": "pod", "lines": ["epoch 1/50 loss=0.9"]}

    cancelled = await client.delete(f"{API}/{task_id}")
    assert cancelled.status_code == 200 and cancelled.json()["message"] == "Cancellation requested"
    emu.delete(PODS, namespace, pod["metadata"]["name"])  # the operator stopped the trainer
    emu.patch_status(TRAININGJOBS, namespace, task_id, {"phase": "cancelled"})
    await wait_status(client, task_id, {"cancelled"})
    saved = storage / "tenant1" / "runs" / "run-a" / "logs" / "trainer.log"
    saved.parent.mkdir(parents=True)
    saved.write_text("epoch 1/50 loss=0.9\ncancelled\n")
    logs = (await client.get(f"{API}/{task_id}/logs", params={"tail": 1})).json()
    assert logs["source"] == "storage" and logs["lines"] == ["cancelled"]
    again = await client.delete(f"{API}/{task_id}")
    assert again.status_code == 409 and again.json()["error"] == "job_finished"

    metrics = (await client.get("/metrics")).text
    assert 'laxai_api_jobs_submitted_total{backend="kubernetes"} 2.0' in metrics


@pytest.mark.parametrize("values", list(INSTALLS.values()), ids=list(INSTALLS))
async def test_the_api_is_granted_exactly_what_it_calls(kube_emulator, monkeypatch, tmp_path, values):
    emu = kube_emulator
    rendered = render_chart(values)
    account, namespace = api_pod(rendered)
    install_access(emu, rendered)
    token = emu.access.tokens.issue(authn.service_account(RELEASE_NS, account))
    authenticate_as(emu, monkeypatch, token, tmp_path / "api-kubeconfig")  # the backend loads it itself
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)  # not in-cluster: use the kubeconfig
    emu.call(lambda: setattr(emu.emulator, "request_log_limit", 1_000_000))
    start = emu.call(lambda: len(emu.emulator._requests))

    settings = local_settings(tmp_path, backend="kubernetes", namespace=namespace)
    async with serve(create_app(settings)) as client:
        await lifecycle(client, emu, namespace, Path(settings.storage_root))

    assert emu.access.denials == [], "a call the chart's RBAC refused"
    calls = used(emu, start, token)
    assert calls, "no request carried the API's token"
    grants = granted(rendered.docs, RELEASE_NS, account)
    assert grants - calls == set(), "the chart grants the API more than it calls"
    assert calls - grants == set(), "the API calls what the chart does not grant"


async def test_a_missing_grant_is_refused_and_shows(kube_emulator, monkeypatch, tmp_path):
    """The enforcement can fail: without ``get pods/log`` the backend falls back to storage, but the
    refusal is recorded."""
    emu = kube_emulator
    rendered = render_chart({})
    account, namespace = api_pod(rendered)
    role = rendered.get("Role", f"{RELEASE}-training-api")
    role["rules"] = [r for r in role["rules"] if r["resources"] != ["pods/log"]]
    install_access(emu, rendered)
    token = emu.access.tokens.issue(authn.service_account(RELEASE_NS, account))
    authenticate_as(emu, monkeypatch, token, tmp_path / "api-kubeconfig")
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    settings = local_settings(tmp_path, backend="kubernetes", namespace=namespace)
    async with serve(create_app(settings)) as client:
        task_id = (await client.post(API, json={"tenant_id": "tenant1"})).json()["task_id"]
        trainer_pod(emu, namespace, task_id)
        assert (await client.get(f"{API}/{task_id}/logs")).json()["source"] == "none"
    [(user, message)] = emu.access.denials
    assert user == f"system:serviceaccount:{RELEASE_NS}:{account}"
    assert f'cannot get resource "pods/log" in API group "" in the namespace "{namespace}"' in message
