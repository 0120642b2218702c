"""Operator test fixtures: the Kubernetes API emulator (tests/support) and a running operator."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest

from tests.support.fixtures import kube_api_client, kube_emulator, kube_env  # noqa: F401


@pytest.fixture()
def operator_env(kube_env, monkeypatch):  # noqa: F811  (the imported fixture)
    """Operator settings for tests: no fixed ports (several operators run in one process)."""
    monkeypatch.setenv("LAXAI_METRICS_PORT", "0")
    monkeypatch.setenv("LAXAI_HEALTH_PORT", "0")
    monkeypatch.setenv("LAXAI_TRAINER_IMAGE", "reg.example/trainer:test")
    monkeypatch.setenv("LAXAI_STORAGE_ROOT", "gs://test-bucket")
    return kube_env


@contextlib.contextmanager
def running_operator(namespace: str | None = "default") -> Iterator[object]:
    """The real operator (laxai_operator.handlers) under kopf.testing.KopfRunner."""
    from kopf.testing import KopfRunner

    scope = ["--namespace", namespace] if namespace else ["--all-namespaces"]
    args = ["run", "--standalone", "--verbose", "-m", "laxai_operator.handlers", *scope]
    with KopfRunner(args, timeout=30) as runner:
        yield runner
    if runner.exception is not None:
        raise runner.exception


NS = "default"
TJS = "training.laxai.io/v1alpha1/trainingjobs"
JOBS = "batch/v1/jobs"
PODS = "v1/pods"


def make_tj(emu, name: str, namespace: str = NS, **spec) -> dict:
    body = {
        "apiVersion": "training.laxai.io/v1alpha1",
        "kind": "TrainingJob",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"tenant_id": "tenant1", **spec},
    }
    return emu.create(TJS, body, namespace=namespace)


def status_of(emu, name: str, namespace: str = NS) -> dict:
    obj = emu.get(TJS, namespace, name)
    return (obj or {}).get("status") or {}


def wait_phase(emu, name: str, phase: str, reason: str | None = None, namespace: str = NS, timeout: float = 10):
    def ok(obj):
        st = obj.get("status") or {}
        return st.get("phase") == phase and (reason is None or st.get("reason") == reason)

    try:
        return emu.wait_for_object(TJS, namespace, name, ok, timeout=timeout)
    except TimeoutError as exc:
        raise AssertionError(f"{name}: wanted {phase}/{reason}, status is {status_of(emu, name, namespace)}") from exc


def trainer_state(**state) -> list[dict]:
    return [{"name": "trainer", "image": "reg.example/trainer:test", "state": state}]


def start_trainer_pod(emu, job: dict, name: str) -> tuple[dict, dict]:
    """Play the Job controller: a running trainer pod for job; returns (pod, TrainingJob once running)."""
    pod = emu.make_pod_for_job(job, phase="Running", container_statuses=trainer_state(running={}))
    return pod, wait_phase(emu, name, "running")


def events_for(emu, name: str, namespace: str = NS) -> list[tuple[str, str]]:
    """(type, reason) of the Events on an object, oldest first."""
    evs = [ev for ev in emu.objects("v1/events", namespace) if (ev.get("involvedObject") or {}).get("name") == name]
    evs.sort(key=lambda ev: (ev.get("eventTime") or "", int(ev["metadata"].get("resourceVersion") or 0)))
    return [(ev.get("type"), ev.get("reason")) for ev in evs]
