"""Every rendered object is valid against the Kubernetes OpenAPI schemas (kubernetes-validate),
strictly (unknown fields are errors), for the oldest supported Kubernetes and the newest known."""

from __future__ import annotations

import kubernetes_validate
import pytest
from kubernetes_validate.utils import latest_version

from tests.helm.value_sets import value_sets

#: The chart's kubeVersion floor (Chart.yaml) and the newest schemas kubernetes-validate ships.
VERSIONS = ["1.30.0", latest_version()]
#: Kinds from other projects' CRDs, whose schemas kubernetes-validate cannot know; their
#: content is checked field by field in test_render.
FOREIGN_KINDS = {"ServiceMonitor"}


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("set_name", list(value_sets()))
def test_rendered_objects_are_valid(rendered_sets, set_name, version):
    rendered = rendered_sets[set_name]
    checked = 0
    for doc in rendered.docs:
        if doc["kind"] in FOREIGN_KINDS:
            continue
        where = f"{doc['kind']}/{doc['metadata']['name']}"
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{set_name}: {where} invalid for Kubernetes {version}: "
                        f"{'.'.join(map(str, exc.path))}: {exc.message}")
        checked += 1
    assert checked >= 15


def test_a_broken_object_is_caught():
    """The validator really rejects what the API server would (so the test above means something)."""
    bad = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"},
           "spec": {"replicas": "one", "selector": {}, "template": {"spec": {"containers": []}}}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, VERSIONS[0], strict=True)


#: The Kubernetes versions the project supports (README: "Supported Kubernetes versions").
SUPPORTED = ["1.30.0", "1.31.0", "1.32.0", "1.33.0", "1.34.0"]


@pytest.mark.parametrize("version", [*SUPPORTED, latest_version()])
def test_the_crd_is_a_valid_customresourcedefinition(version):
    """The CRD object itself, strictly (an unknown schema keyword is an error), for each supported
    version; what the API server checks beyond the OpenAPI schema is tests/support/test_crd_admission."""
    from tests.support.kinds import TRAININGJOB_CRD, load_crds

    (crd,) = load_crds([TRAININGJOB_CRD])
    kubernetes_validate.validate(crd, version, strict=True)
    broken = load_crds([TRAININGJOB_CRD])[0]
    status = broken["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]
    status["properties"]["metrics"]["properties"]["mAP"]["ge"] = 0  # what pydantic leaked once
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, version, strict=True)
