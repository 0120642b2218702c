"""Discovery documents (tests/support/discovery.py)."""

import pytest

from tests.support.api_errors import ApiError
from tests.support.discovery import group_document, root_document
from tests.support.kinds import Kind

KINDS = [Kind("", "v1", "pods", "Pod", True, subresources=frozenset({"log", "status"})),
         Kind("g.io", "v1beta1", "things", "Thing", True), Kind("g.io", "v1", "things", "Thing", True),
         Kind("g.io", "v2alpha1", "things", "Thing", True)]


def test_groups_prefer_the_most_stable_version():
    (group,) = root_document("/apis", KINDS)["groups"]
    assert [v["version"] for v in group["versions"]] == ["v1", "v1beta1", "v2alpha1"]
    assert group["preferredVersion"]["version"] == "v1"
    assert group_document("g.io", None, KINDS)["preferredVersion"]["version"] == "v1"


def test_resource_lists_name_subresources():
    names = {r["name"]: r for r in group_document("", "v1", KINDS)["resources"]}
    assert set(names) == {"pods", "pods/log", "pods/status"}
    assert names["pods/log"]["verbs"] == ["get"] and names["pods"]["namespaced"]
    assert group_document("g.io", "v1beta1", KINDS)["groupVersion"] == "g.io/v1beta1"


def test_unknown_groups_and_versions_are_404():
    for group, version in [("nope.io", None), ("g.io", "v9")]:
        with pytest.raises(ApiError) as e:
            group_document(group, version, KINDS)
        assert e.value.code == 404
