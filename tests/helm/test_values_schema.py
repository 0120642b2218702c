"""values.schema.json: helm rejects bad values before rendering anything, naming the field."""

from __future__ import annotations

import json

import pytest

from tests.helm.chart import CHART_DIR, HelmError, render

SCHEMA = json.loads((CHART_DIR / "values.schema.json").read_text())


@pytest.mark.parametrize(("values", "where"), [
    ({"gpu": {"defaultCount": -1}}, "/gpu/defaultCount"),
    ({"gpu": {"defaultCount": 17}}, "/gpu/defaultCount"),
    ({"gpu": {"defaultCount": "two"}}, "/gpu/defaultCount"),
    ({"replicas": 2}, "additional properties 'replicas'"),
    ({"operator": {"replica": 1}}, "additional properties 'replica'"),
    ({"api": {"auth": {"enabeld": True}}}, "additional properties 'enabeld'"),
    ({"image": {"pullPolicy": "Sometimes"}}, "/image/pullPolicy"),
    ({"image": {"tag": 3}}, "/image/tag"),
    ({"storage": {"root": "s3://bucket"}}, "/storage/root"),
    ({"operator": {"metricsPort": 70000}}, "/operator/metricsPort"),
    ({"operator": {"resources": {"limits": {"memory": "lots"}}}}, "/operator/resources/limits/memory"),
    ({"gpu": {"tolerations": [{"key": "x", "effect": "Sometimes"}]}}, "/gpu/tolerations/0/effect"),
    ({"trainer": {"serviceAccount": {"gcpServiceAccount": "not-an-email"}}},
     "/trainer/serviceAccount/gcpServiceAccount"),
    ({"watch": {"clusterWide": "yes"}}, "/watch/clusterWide"),
    ({"trainer": {"defaultShmSize": "big"}}, "/trainer/defaultShmSize"),
    ({"gpu": {"resourceName": "nvidia gpu"}}, "/gpu/resourceName"),
    ({"api": {"tenantLimits": {"gpus": 17}}}, "/api/tenantLimits/gpus"),
    ({"api": {"tenantLimits": {"gpus": None}}}, "missing property 'gpus'"),  # null deletes the key
    ({"api": {"tenantLimits": {"memory": "lots"}}}, "/api/tenantLimits/memory"),
    ({"api": {"tenantLimits": {"activeDeadlineSeconds": 0}}}, "/api/tenantLimits/activeDeadlineSeconds"),
    ({"api": {"tenantLimits": {"backoffLimit": "3"}}}, "/api/tenantLimits/backoffLimit"),
    ({"api": {"tenantLimits": {"image": "x"}}}, "additional properties 'image'"),
])
def test_bad_values_are_rejected(helm_bin, values, where):
    with pytest.raises(HelmError) as err:
        render(helm_bin, values)
    assert where in err.value.stderr


def _walk(node: dict, path: str = ""):
    yield path, node
    for key, child in node.get("properties", {}).items():
        yield from _walk(child, f"{path}/{key}")
    items = node.get("items")
    if isinstance(items, dict):
        yield from _walk(items, f"{path}[]")


def test_every_object_level_is_closed():
    """An unknown key is an error at every level, except free-form maps (labels, annotations, …)."""
    for path, node in _walk(SCHEMA):
        if node.get("type") == "object" and "properties" in node:
            assert node.get("additionalProperties") is False, f"{path or '/'} accepts unknown keys"

