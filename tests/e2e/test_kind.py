"""Cluster end to end on kind: build both images, install the chart, train a CPU-only TrainingJob
on generated data to completed (followed through kubectl and the REST API), cancel another
through the REST API, check that a trainer pod's bound token may write only its own
TrainingJob's progress (the chart's admission policy), uninstall.

Needs docker (a working daemon) and kind; helm and kubectl come from tests.helm.tools. Without
them the whole module skips with the reason. Takes 15-30 minutes, most of it building the
trainer image. See tests/e2e/kind.py for the environment variables that steer it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.kind import (
    API_SERVICE,
    NAMESPACE,
    STORAGE_CLAIM,
    TENANT,
    TERMINAL,
    Cluster,
    PortForward,
    cpu_trainingjob,
    docker_problem,
    log,
    missing_prerequisites,
    phases_in_order,
    seed_request,
    synth_pod,
)
from tests.helm import tools
from tests.helm.tools import REPO_ROOT

httpx = pytest.importorskip("httpx", reason="httpx (the [api] extra) is needed to call the REST API")

pytestmark = [pytest.mark.slow, pytest.mark.timeout(5400)]

JOB_LABEL = "training.laxai.io/trainingjob"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> Iterator[Cluster]:
    reasons = missing_prerequisites(dict(os.environ), shutil.which, docker_problem)
    if reasons:
        pytest.skip("cluster e2e needs docker and kind: " + "; ".join(reasons))
    try:
        helm, kubectl = tools.helm(), tools.kubectl()
    except tools.ToolUnavailable as exc:
        pytest.skip(f"cluster e2e needs helm and kubectl: {exc}")
    trainer_dockerfile = Path(os.environ.get("LAXAI_E2E_TRAINER_DOCKERFILE")
                              or REPO_ROOT / "trainer_image" / "Dockerfile")
    if not trainer_dockerfile.is_file():
        pytest.fail(f"trainer Dockerfile not found: {trainer_dockerfile}")

    kind = os.environ.get("LAXAI_KIND") or shutil.which("kind") or "kind"
    c = Cluster(name=f"laxai-e2e-{os.getpid()}", workdir=tmp_path_factory.mktemp("kind"), kind=kind,
                helm=str(helm), kubectl=str(kubectl))
    # Images first: the slow part, and it needs no cluster.
    c.build(trainer_dockerfile)
    created = False
    try:
        c.create(os.environ.get("LAXAI_E2E_NODE_IMAGE"))
        created = True
        c.load()
        c.install()
        _generate_dataset(c)
        yield c
    finally:
        if created and os.environ.get("LAXAI_E2E_KEEP") != "1":
            c.delete()
        elif created:
            log(f"kept cluster {c.name} (kubeconfig {c.kubeconfig})")


def _generate_dataset(c: Cluster) -> None:
    """Writes the synthetic crops for TENANT onto the storage claim the chart created."""
    c.apply(synth_pod("synth-dataset", STORAGE_CLAIM))

    def done() -> bool:
        phase = c.get_json("pod", "synth-dataset", "-n", NAMESPACE).get("status", {}).get("phase")
        if phase == "Failed":
            logs = c.kc("logs", "-n", NAMESPACE, "synth-dataset", check=False).stdout
            raise AssertionError(f"dataset generation failed:\n{logs[-3000:]}")
        return phase == "Succeeded"

    c.wait_for("the synthetic dataset", done, timeout=600)
    c.kc("delete", "pod", "synth-dataset", "-n", NAMESPACE, "--wait=true")


@pytest.fixture(scope="module")
def api(cluster: Cluster) -> Iterator[httpx.Client]:
    """An HTTP client on the API Service (port-forward), with the generated admin key."""
    forward = PortForward(cluster, API_SERVICE, 8000)
    client = httpx.Client(base_url=forward.url, headers={"X-API-Key": cluster.admin_key()}, timeout=30)
    try:
        cluster.wait_for("the API through port-forward",
                         lambda: _get_ok(client, "/health"), timeout=120, interval=2)
        yield client
    finally:
        client.close()
        forward.close()


def _get_ok(client: httpx.Client, path: str) -> bool:
    try:
        return client.get(path).status_code == 200
    except httpx.HTTPError:
        return False


def _rest_status(client: httpx.Client, task_id: str) -> str:
    response = client.get(f"/api/v1/train/{task_id}/status")
    assert response.status_code == 200, response.text
    return response.json()["status"]


def _follow(cluster: Cluster, client: httpx.Client, name: str, until: tuple[str, ...],
            timeout: float) -> tuple[list[str], list[str]]:
    """Polls the phase through kubectl and the REST API until both reach one of ``until``."""
    by_kubectl: list[str] = []
    by_rest: list[str] = []

    def probe() -> bool:
        for seen, value in ((by_kubectl, cluster.phase(name)), (by_rest, _rest_status(client, name))):
            if value and (not seen or seen[-1] != value):
                seen.append(value)
                log(f"{name}: {'kubectl' if seen is by_kubectl else 'REST'} -> {value}")
        return bool(by_kubectl and by_rest and by_kubectl[-1] in until and by_rest[-1] in until)

    cluster.wait_for(f"{name} to reach {until}", probe, timeout=timeout, interval=2)
    return by_kubectl, by_rest


def test_cpu_job_completes_seen_through_kubectl_and_rest(cluster: Cluster, api: httpx.Client):
    name = "e2e-cpu"
    cluster.apply(cpu_trainingjob(name, epochs=2))
    by_kubectl, by_rest = _follow(cluster, api, name, TERMINAL, timeout=1500)
    assert by_kubectl[-1] == "completed" and by_rest[-1] == "completed", cluster.diagnostics()
    assert phases_in_order(by_kubectl) and phases_in_order(by_rest), (by_kubectl, by_rest)

    tj = cluster.get_json("trainingjob", name, "-n", NAMESPACE)
    status = tj["status"]
    assert status["progress"]["current_epoch"] == status["progress"]["total_epochs"] == 2
    assert status["metrics"]["rank1"] is not None and status["metrics"]["mAP"] is not None
    assert status["completionTime"] and status["startTime"]
    assert status["observedGeneration"] == tj["metadata"]["generation"]
    job = cluster.get_json("job", status["jobName"], "-n", NAMESPACE)
    assert job["metadata"]["ownerReferences"][0]["uid"] == tj["metadata"]["uid"]
    assert job["metadata"]["labels"][JOB_LABEL] == name
    # kubectl's printer columns show the outcome.
    assert "completed" in cluster.kc("get", "tj", name, "-n", NAMESPACE).stdout

    detail = api.get(f"/api/v1/train/{name}")
    assert detail.status_code == 200 and detail.json()["metrics"]["rank1"] is not None
    listed = api.get("/api/v1/train/jobs", params={"tenant_id": TENANT}).json()
    assert name in [job["task_id"] for job in listed["jobs"]]
    logs = api.get(f"/api/v1/train/{name}/logs", params={"tail": 20})
    assert logs.status_code == 200 and logs.json()["lines"], logs.text
    # Auth is on: no key, no answer.
    assert httpx.get(f"{api.base_url}/api/v1/train/jobs", timeout=30).status_code == 401


def test_rest_cancel_stops_the_trainer(cluster: Cluster, api: httpx.Client):
    body = {**seed_request(epochs=500), "gpus": 0}  # kind has no GPUs
    created = api.post("/api/v1/train", json=body)
    assert created.status_code in (200, 201, 202), created.text
    assert created.json()["status"] == "accepted"
    task_id = created.json()["task_id"]

    _follow(cluster, api, task_id, ("running", *TERMINAL), timeout=600)
    assert cluster.phase(task_id) == "running", cluster.diagnostics()
    pods = cluster.get_json("pods", "-n", NAMESPACE, "-l", f"{JOB_LABEL}={task_id}")["items"]
    assert pods, "a running job without a trainer pod"

    cancelled = api.delete(f"/api/v1/train/{task_id}")
    assert cancelled.status_code == 200, cancelled.text
    by_kubectl, by_rest = _follow(cluster, api, task_id, TERMINAL, timeout=300)
    assert by_kubectl[-1] == by_rest[-1] == "cancelled"

    def trainer_gone() -> bool:
        selector = f"{JOB_LABEL}={task_id}"
        return not cluster.get_json("jobs", "-n", NAMESPACE, "-l", selector)["items"] and \
            not cluster.get_json("pods", "-n", NAMESPACE, "-l", selector)["items"]

    cluster.wait_for("the cancelled job's Job and pods to go", trainer_gone, timeout=180)
    # The record stays for inspection, and cancelling it again is a conflict.
    assert cluster.phase(task_id) == "cancelled"
    again = api.delete(f"/api/v1/train/{task_id}")
    assert again.status_code == 409 and set(again.json()) >= {"error", "message", "details"}


def _trainer_kubeconfig(cluster: Cluster, token: str, path: Path) -> Path:
    """A kubeconfig for the same API server with only ``token`` (no admin client certificate)."""
    import yaml

    admin = yaml.safe_load(cluster.kc("config", "view", "--raw", "--minify", quiet=True).stdout)
    config = {"apiVersion": "v1", "kind": "Config", "current-context": "trainer",
              "clusters": [{"name": "kind", "cluster": admin["clusters"][0]["cluster"]}],
              "users": [{"name": "trainer", "user": {"token": token}}],
              "contexts": [{"name": "trainer", "context": {"cluster": "kind", "user": "trainer",
                                                           "namespace": NAMESPACE}}]}
    path.write_text(yaml.safe_dump(config))
    return path


def test_a_trainer_pod_token_writes_only_its_own_progress(cluster: Cluster, tmp_path: Path):
    """The chart's ValidatingAdmissionPolicy with a real pod-bound token (TokenRequest bound to the pod)."""
    own, victim = "e2e-own", "e2e-victim"
    cluster.apply(cpu_trainingjob(own, epochs=500))
    suspended = cpu_trainingjob(victim, epochs=1)
    suspended["spec"]["suspend"] = True  # its Job exists (status.jobName) but runs no pod
    cluster.apply(suspended)
    cluster.wait_for(f"{own} to run", lambda: cluster.phase(own) == "running", timeout=600)
    cluster.wait_for(f"{victim} to get its Job", lambda: (cluster.get_json("trainingjob", victim, "-n", NAMESPACE)
                                                          .get("status") or {}).get("jobName"), timeout=120)
    [pod] = cluster.get_json("pods", "-n", NAMESPACE, "-l", f"{JOB_LABEL}={own}")["items"]
    token = cluster.kc("create", "token", "laxai-trainer", "-n", NAMESPACE, "--duration", "10m",
                       "--bound-object-kind", "Pod", "--bound-object-name", pod["metadata"]["name"],
                       "--bound-object-uid", pod["metadata"]["uid"], quiet=True).stdout.strip()
    kubeconfig = _trainer_kubeconfig(cluster, token, tmp_path / "trainer-kubeconfig")

    def patch(name: str, status: dict) -> subprocess.CompletedProcess[str]:
        return cluster.kc("--kubeconfig", str(kubeconfig), "patch", "trainingjob", name, "-n", NAMESPACE,
                          "--subresource=status", "--type=merge", "-p", json.dumps({"status": status}), check=False)

    assert patch(own, {"metrics": {"mAP": 0.01}}).returncode == 0
    for name, status in ((victim, {"phase": "failed", "reason": "Hijacked"}), (victim, {"metrics": {"mAP": 1.0}}),
                         (own, {"phase": "failed"})):
        refused = patch(name, status)
        assert refused.returncode != 0 and "denied request" in refused.stderr, (name, status, refused.stderr)
    assert cluster.phase(victim) != "failed" and cluster.phase(own) == "running"
    cluster.kc("delete", "trainingjob", own, victim, "-n", NAMESPACE, "--wait=true", timeout=300)


def test_uninstall_removes_the_release(cluster: Cluster):
    # TrainingJobs first, while the operator runs: it removes their Jobs and its finalizers
    # (with the operator gone, deleting a TrainingJob would hang on them).
    cluster.kc("delete", "trainingjobs", "--all", "-n", NAMESPACE, "--wait=true", timeout=300)
    cluster.wait_for("the trainers' Jobs to go",
                     lambda: not cluster.get_json("jobs", "-n", NAMESPACE, "-l", JOB_LABEL)["items"], timeout=180)
    cluster.run([cluster.helm, "uninstall", "laxai", "--namespace", NAMESPACE, "--wait", "--timeout", "3m",
                 "--kubeconfig", str(cluster.kubeconfig)], timeout=240)

    def release_gone() -> bool:
        selector = "app.kubernetes.io/instance=laxai"
        left = cluster.get_json("deployments,services,serviceaccounts,roles,rolebindings", "-n", NAMESPACE,
                                "-l", selector)["items"]
        return not left and not cluster.get_json("pods", "-n", NAMESPACE, "-l", selector)["items"]

    cluster.wait_for("the release's objects to go", release_gone, timeout=180)
    # Helm never deletes CRDs (that would delete every TrainingJob) nor the data claim (resource-policy keep).
    cluster.get_json("crd", "trainingjobs.training.laxai.io")
    cluster.get_json("pvc", STORAGE_CLAIM, "-n", NAMESPACE)
    cluster.kc("delete", "pvc", STORAGE_CLAIM, "-n", NAMESPACE, "--wait=true", timeout=180)
