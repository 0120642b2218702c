"""JSON patch and merge patch (tests/support/patching.py)."""

import pytest

from tests.support.patching import MalformedPatch, PatchError, json_patch, merge_patch

DOC = {"metadata": {"name": "x", "resourceVersion": "7", "finalizers": ["a", "b"], "labels": {"k": "v"}},
       "spec": {"n": 1}}


def test_merge_patch_merges_dicts_replaces_lists_and_deletes_nulls():
    patched = merge_patch(DOC, {"metadata": {"labels": {"k": None, "new": "1"}, "finalizers": ["c"]},
                                "spec": {"m": {"deep": True}}})
    assert patched["metadata"]["labels"] == {"new": "1"}
    assert patched["metadata"]["finalizers"] == ["c"]
    assert patched["spec"] == {"n": 1, "m": {"deep": True}}
    assert DOC["metadata"]["labels"] == {"k": "v"}  # inputs are never mutated


def test_merge_patch_replaces_a_scalar_with_a_dict_and_back():
    assert merge_patch({"a": 1}, {"a": {"b": 2}}) == {"a": {"b": 2}}
    assert merge_patch({"a": {"b": 2}}, {"a": 3}) == {"a": 3}


def test_json_patch_operations():
    patched = json_patch(DOC, [
        {"op": "test", "path": "/metadata/resourceVersion", "value": "7"},
        {"op": "add", "path": "/metadata/finalizers/-", "value": "c"},
        {"op": "remove", "path": "/metadata/finalizers/0"},
        {"op": "replace", "path": "/spec/n", "value": 2},
        {"op": "add", "path": "/metadata/annotations", "value": {"a~b/c": "1"}},
        {"op": "copy", "from": "/spec/n", "path": "/spec/copied"},
        {"op": "move", "from": "/metadata/labels/k", "path": "/metadata/labels/moved"},
        {"op": "test", "path": "/metadata/annotations/a~0b~1c", "value": "1"},
    ])
    assert patched["metadata"]["finalizers"] == ["b", "c"]
    assert patched["spec"] == {"n": 2, "copied": 2}
    assert patched["metadata"]["labels"] == {"moved": "v"}
    assert DOC["metadata"]["finalizers"] == ["a", "b"]


@pytest.mark.parametrize("ops", [
    [{"op": "test", "path": "/metadata/resourceVersion", "value": "6"}],
    [{"op": "remove", "path": "/metadata/missing"}],
    [{"op": "replace", "path": "/spec/missing", "value": 1}],
    [{"op": "add", "path": "/nope/deeper", "value": 1}],
    [{"op": "remove", "path": "/metadata/finalizers/5"}],
])
def test_json_patch_failures_are_patch_errors(ops):
    with pytest.raises(PatchError):
        json_patch(DOC, ops)


@pytest.mark.parametrize("ops", [
    {"spec": {}}, [{"path": "/a"}], [{"op": "add", "path": "/a"}], [{"op": "jump", "path": "/a"}],
    [{"op": "add", "path": "no-slash", "value": 1}], [{"op": "move", "path": "/a"}],
])
def test_malformed_json_patches_are_rejected(ops):
    with pytest.raises(MalformedPatch):
        json_patch(DOC, ops)
