"""ObjectMeta validation (tests/support/metadata.py)."""

import pytest

from tests.support.kinds import Kind
from tests.support.metadata import validate_metadata

TJS = Kind("training.laxai.io", "v1alpha1", "trainingjobs", "TrainingJob", namespaced=True)
JOBS = Kind("batch", "v1", "jobs", "Job", namespaced=True)
ROLES = Kind("rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", namespaced=False)


def fields(kind: Kind, **meta) -> list[str]:
    return [c.field for c in validate_metadata(kind, {"metadata": meta})]


@pytest.mark.parametrize("name", ["a", "run-1", "a.b-c", "x" * 253])
def test_valid_names(name):
    assert fields(TJS, name=name) == []


@pytest.mark.parametrize("name", ["", "Upper", "under_score", "-lead", "trail-", "x" * 254, None])
def test_invalid_names(name):
    assert fields(TJS, name=name) == ["metadata.name"]


def test_job_names_must_fit_a_label_value_and_rbac_names_are_path_segments():
    assert fields(JOBS, name="j" * 64) == ["metadata.name"]
    assert fields(ROLES, name="system:controller:x") == []
    assert fields(ROLES, name="a/b") == ["metadata.name"]


def test_labels_annotations_owner_references_and_finalizers():
    assert fields(TJS, name="ok", labels={"app.kubernetes.io/name": "x", "empty": ""},
                  annotations={"free/form": "any text at all"}, finalizers=["a/b"]) == []
    assert fields(TJS, name="ok", labels={"k": "has space"}) == ["metadata.labels"]
    assert fields(TJS, name="ok", labels={"k": 1}) == ["metadata.labels"]
    assert fields(TJS, name="ok", annotations={"bad key!": "v"}) == ["metadata.annotations"]
    assert fields(TJS, name="ok", ownerReferences=[{"apiVersion": "v1", "kind": "X", "name": "n"}]) == [
        "metadata.ownerReferences[0].uid"]
    assert fields(TJS, name="ok", finalizers=[1]) == ["metadata.finalizers"]
