"""Pytest fixtures for the Kubernetes API emulator (``tests/support/kube_emulator.py``).

Registered for the whole suite by ``pytest_plugins = ["tests.support.fixtures"]`` in
tests/conftest.py. Usage::

    import kubernetes

    def test_job_gets_created(kube_emulator, kube_env):   # kube_env: KUBECONFIG → emulator
        api = kubernetes.client.CustomObjectsApi(kube_emulator.api_client())
        api.create_namespaced_custom_object(
            "training.laxai.io", "v1alpha1", "default", "trainingjobs",
            {"metadata": {"name": "tj1"}, "spec": {"tenant_id": "t1"}})
        ...  # run the operator, e.g. kopf.testing.KopfRunner([...]) — it reads KUBECONFIG
        job = kube_emulator.wait_for_object("batch/v1/jobs", "default", "tj1-trainer")
        pod = kube_emulator.make_pod_for_job(job, phase="Running")   # no controllers run
        kube_emulator.set_pod_log("default", pod["metadata"]["name"], "epoch 1 loss 0.5\\n")
        kube_emulator.set_job_status("default", "tj1-trainer", {"active": 1})
        kube_emulator.wait_for_object("tj", "default", "tj1",
                                      lambda tj: tj.get("status", {}).get("phase") == "running")

Helpers (no HTTP, thread-safe): ``get``, ``objects``, ``history``, ``create``, ``patch``,
``patch_status``, ``delete``, ``set_pod_log``, ``make_pod_for_job``, ``set_job_status``,
``set_pod_status``, ``wait_for``, ``wait_for_object``, ``inject_failure`` (e.g.
``inject_failure("PATCH", r"/trainingjobs/tj1/status$", 500, times=2)``), ``clear_failures``;
``url``, ``kubeconfig_path``,
``api_client()``; ``emulator`` is the kmock-based server (``emulator.objects``,
``emulator.requests``, kmock reactions for fault injection via ``call``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.threaded import ThreadedKubeEmulator


@pytest.fixture()
def kube_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThreadedKubeEmulator]:
    """A fresh emulator per test with the TrainingJob CRD; fails the test on emulator bugs (500s)."""
    with ThreadedKubeEmulator(workdir=tmp_path_factory.mktemp("kube-emulator")) as emulator:
        yield emulator
        errors = emulator.internal_errors
    if errors:
        pytest.fail(f"the Kubernetes emulator failed internally (answered 500): {errors!r}")


@pytest.fixture()
def kube_env(kube_emulator: ThreadedKubeEmulator, monkeypatch: pytest.MonkeyPatch) -> ThreadedKubeEmulator:
    """``KUBECONFIG`` points at the emulator (for kopf, ``kubernetes.config.load_kube_config()``).

    The kubernetes client reads ``KUBECONFIG`` once, at import, so its default location is
    patched too; its process-wide default Configuration (which ``load_kube_config()`` sets)
    is restored afterwards.
    """
    import kubernetes

    path = str(kube_emulator.kubeconfig_path)
    monkeypatch.setenv("KUBECONFIG", path)
    monkeypatch.setattr(kubernetes.config.kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", path)
    monkeypatch.setattr(kubernetes.config, "KUBE_CONFIG_DEFAULT_LOCATION", path)
    monkeypatch.setattr(kubernetes.client.Configuration, "_default", kubernetes.client.Configuration._default)
    return kube_emulator


@pytest.fixture()
def kube_api_client(kube_emulator: ThreadedKubeEmulator) -> Iterator[Any]:
    """A ``kubernetes.client.ApiClient`` configured for the emulator."""
    client = kube_emulator.api_client()
    try:
        yield client
    finally:
        client.close()
