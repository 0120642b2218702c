"""The emulator enforces the CRD's CEL rules over HTTP, as the API server does: 422 Invalid with
the rule's message on create (plain rules) and on update (transition rules, self/oldSelf)."""

from __future__ import annotations

import json
from typing import Any

import kubernetes
import pytest
from kubernetes.client.exceptions import ApiException

from laxai_operator.resource import GROUP, PLURAL, VERSION
from tests.support.cel_rules import MISSING, violations

ARGS = (GROUP, VERSION, "default", PLURAL)


@pytest.fixture()
def custom(kube_api_client: Any) -> kubernetes.client.CustomObjectsApi:
    return kubernetes.client.CustomObjectsApi(kube_api_client)


def tj(name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "TrainingJob", "metadata": {"name": name},
            "spec": {"tenant_id": "t1", **spec}}


def rejected(call, *args: Any) -> dict[str, Any]:
    with pytest.raises(ApiException) as err:
        call(*args)
    assert err.value.status == 422
    return json.loads(err.value.body)


@pytest.mark.parametrize(("patch", "field", "message"), [
    ({"gpus": 2}, "spec.gpus", "gpus is immutable after creation"),
    ({"tenant_id": "other"}, "spec.tenant_id", "tenant_id is immutable after creation"),
    ({"image": "reg/other:1"}, "spec", "image is immutable after creation"),  # presence rule on spec
    ({"training_kwargs": {"margin": 0.9}}, "spec.training_kwargs", "training_kwargs is immutable after creation"),
])
def test_immutable_spec_fields_are_refused_on_update(kube_emulator, custom, patch, field, message):
    custom.create_namespaced_custom_object(*ARGS, tj("run"))
    body = rejected(custom.patch_namespaced_custom_object, *ARGS, "run", {"spec": patch})
    assert body["reason"] == "Invalid" and message in body["message"]
    assert {"field": field, "reason": "FieldValueInvalid"}.items() <= body["details"]["causes"][0].items()
    assert message in body["details"]["causes"][0]["message"]
    assert kube_emulator.get("tj", "default", "run")["metadata"]["generation"] == 1  # nothing stored


def test_mutable_fields_change_and_cancel_cannot_be_undone(kube_emulator, custom):
    custom.create_namespaced_custom_object(*ARGS, tj("run"))
    custom.patch_namespaced_custom_object(*ARGS, "run", {"spec": {"suspend": True, "cancel": True,
                                                                  "ttlSecondsAfterFinished": 60}})
    body = rejected(custom.patch_namespaced_custom_object, *ARGS, "run", {"spec": {"cancel": False}})
    assert "cancel cannot be undone" in body["message"]
    assert kube_emulator.get("tj", "default", "run")["spec"]["cancel"] is True


def test_status_writes_are_not_held_back_by_spec_rules(kube_emulator, custom):
    custom.create_namespaced_custom_object(*ARGS, tj("run"))
    custom.patch_namespaced_custom_object_status(*ARGS, "run", {"status": {"phase": "running"}})
    assert kube_emulator.get("tj", "default", "run")["status"]["phase"] == "running"


def test_plain_rules_apply_on_create(kube_emulator, custom):
    body = rejected(custom.create_namespaced_custom_object, *ARGS,
                    tj("small", training_kwargs={"batch_size": 8, "images_per_player": 8}))
    assert "batch_size must be at least 2 x images_per_player" in body["message"]
    assert body["details"]["causes"][0]["field"] == "spec.training_kwargs"
    assert kube_emulator.get("tj", "default", "small") is None


def test_transition_rules_skip_creates_and_unchanged_values():
    schema = {"type": "object", "properties": {"a": {"type": "integer", "x-kubernetes-validations": [
        {"rule": "self == oldSelf", "message": "a is immutable"}, {"rule": "self > 0", "message": "a > 0"}]}}}
    assert violations(schema, {"a": 1}, MISSING) == []
    assert [c.message for c in violations(schema, {"a": 2}, {"a": 1})] == ['Invalid value: "integer": a is immutable']
    assert [c.message for c in violations(schema, {"a": 0}, MISSING)] == ['Invalid value: "integer": a > 0']
    assert violations(schema, {"a": 0}, {"a": 0}) == []  # ratcheting: unchanged is not re-checked
