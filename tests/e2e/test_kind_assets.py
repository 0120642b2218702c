"""The parts of the kind suite that need no cluster: its skip logic, phase-order check, and that
the manifests and names it uses match the chart and the current contract models."""

from __future__ import annotations

import kubernetes_validate
import pytest

from tests.e2e import kind
from tests.helm import tools
from tests.helm.chart import render
from tests.helm.value_sets import e2e_values


def test_prerequisites_name_what_is_missing():
    reasons = kind.missing_prerequisites({}, lambda name: None, lambda: None)
    assert reasons == ["docker CLI not on PATH", "kind not on PATH (set LAXAI_KIND; https://kind.sigs.k8s.io)"]
    reasons = kind.missing_prerequisites({}, lambda name: f"/usr/bin/{name}", lambda: "permission denied")
    assert reasons == ["docker daemon not usable: permission denied"]
    assert kind.missing_prerequisites({"LAXAI_KIND": "/opt/kind"},
                                      lambda name: "/usr/bin/docker" if name == "docker" else None,
                                      lambda: None) == []
    assert kind.missing_prerequisites({"LAXAI_E2E_SKIP": "1"}, lambda name: "/x", lambda: None) == [
        "LAXAI_E2E_SKIP=1"]


@pytest.mark.parametrize(("seen", "ok"), [
    (["pending", "running", "completed"], True),
    (["pending", "completed"], True),
    (["running", "cancelled"], True),
    (["completed"], True),
    (["running", "pending"], False),
    (["completed", "running"], False),
    (["failed", "completed"], False),
])
def test_phases_in_order(seen, ok):
    assert kind.phases_in_order(seen) is ok


def test_trainingjob_is_valid_for_the_crd_models():
    resource = pytest.importorskip("laxai_operator.resource")
    manifest = kind.cpu_trainingjob("e2e-cpu", epochs=2)
    spec = resource.TrainingJobSpec.model_validate(manifest["spec"])
    assert spec.gpus == 0 and spec.tenant_id == kind.TENANT
    assert spec.training_kwargs.num_epochs == 2
    assert manifest["metadata"]["namespace"] == kind.NAMESPACE


def test_rest_body_is_valid_for_the_api():
    schemas = pytest.importorskip("laxai_api.schemas")
    body = {**kind.seed_request(epochs=500), "gpus": 0}
    request = schemas.TrainRequest.model_validate(body)
    assert request.gpus == 0 and request.tenant_id == kind.TENANT


def test_dataset_pod_is_a_valid_pod():
    kubernetes_validate.validate(kind.synth_pod("synth", kind.STORAGE_CLAIM), "1.30.0", strict=True)


def test_names_match_the_chart_rendered_with_the_kind_values():
    try:
        helm = tools.helm()
    except tools.ToolUnavailable as exc:
        pytest.skip(f"helm binary not available: {exc}")
    rendered = render(helm, e2e_values(), namespace=kind.NAMESPACE)
    assert rendered.has("Service", kind.API_SERVICE)
    assert rendered.has("Secret", kind.API_KEYS_SECRET)
    assert rendered.has("PersistentVolumeClaim", kind.STORAGE_CLAIM)
    env = rendered.env("laxai-training-operator", "operator")
    assert env["LAXAI_STORAGE_ROOT"] == kind.STORAGE_ROOT
    assert env["LAXAI_TRAINER_IMAGE"] == kind.TRAINER_IMAGE
    assert rendered.container("laxai-training-api", "api")["image"] == kind.CONTROL_PLANE_IMAGE
    assert rendered.get("Service", kind.API_SERVICE)["spec"]["ports"][0]["port"] == 8000
