"""The chart installs the CRD from its crds/ folder: it must be the generated file, byte for byte."""

from __future__ import annotations

from tests.helm.tools import REPO_ROOT

GENERATED = REPO_ROOT / "crds" / "trainingjob.yaml"
CHART_COPY = REPO_ROOT / "helm" / "laxai-training" / "crds" / "trainingjob.yaml"


def test_chart_crd_is_a_byte_identical_copy():
    assert CHART_COPY.read_bytes() == GENERATED.read_bytes(), (
        "helm/laxai-training/crds/trainingjob.yaml differs from crds/trainingjob.yaml: run helm/sync-crd.sh"
    )


def test_rendered_chart_ships_the_crd(default):
    [crd] = default.of_kind("CustomResourceDefinition")
    assert crd["metadata"]["name"] == "trainingjobs.training.laxai.io"
    assert [v["name"] for v in crd["spec"]["versions"]] == ["v1alpha1"]
