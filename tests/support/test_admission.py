"""tests.support.admission: ValidatingAdmissionPolicies evaluated as the API server does."""

from __future__ import annotations

import json

import kubernetes
import pytest

from tests.support import authn
from tests.support.access import AccessControl
from tests.support.threaded import TRAININGJOBS, ThreadedKubeEmulator

G, V, P = "training.laxai.io", "v1alpha1", "trainingjobs"
VAP = "admissionregistration.k8s.io/v1/validatingadmissionpolicies"
VAPB = "admissionregistration.k8s.io/v1/validatingadmissionpolicybindings"


@pytest.fixture()
def emu():
    with ThreadedKubeEmulator(access=AccessControl()) as emu:
        emu.create(TRAININGJOBS, {"metadata": {"name": "a"}, "spec": {"tenant_id": "t"},
                                  "status": {"phase": "pending"}}, namespace="ns")
        yield emu


def policy(emu, validations, *, name="p", operations=("UPDATE",), resources=("trainingjobs/status",),
           actions=("Deny",), **spec):
    rules = [{"apiGroups": [G], "apiVersions": ["*"], "operations": list(operations), "resources": list(resources)}]
    emu.create(VAP, {"metadata": {"name": name}, "spec": {"matchConstraints": {"resourceRules": rules},
                                                          "validations": validations, **spec}})
    emu.create(VAPB, {"metadata": {"name": f"{name}-binding"},
                      "spec": {"policyName": name, "validationActions": list(actions)}})


def client(emu, user=None):
    token = emu.access.tokens.issue(user or authn.admin())
    return kubernetes.client.CustomObjectsApi(emu.api_client(token))


def patch_status(emu, status, user=None):
    return client(emu, user).patch_namespaced_custom_object_status(G, V, "ns", P, "a", {"status": status})


def refused(emu, status, user=None):
    with pytest.raises(kubernetes.client.ApiException) as exc:
        patch_status(emu, status, user)
    return exc.value.status, json.loads(exc.value.body)


def test_a_false_validation_denies_with_the_real_message_and_default_reason_invalid(emu):
    policy(emu, [{"expression": "object.status.phase != 'failed'"}])
    code, body = refused(emu, {"phase": "failed"})
    text = "ValidatingAdmissionPolicy 'p' with binding 'p-binding' denied request: failed expression: " \
           "object.status.phase != 'failed'"
    assert (code, body["reason"]) == (422, "Invalid")
    assert body["message"] == f'trainingjobs.training.laxai.io "a" is forbidden: {text}'
    assert body["details"]["causes"] == [{"message": text}]
    assert patch_status(emu, {"phase": "running"})["status"]["phase"] == "running"


def test_message_reason_variables_and_old_object(emu):
    policy(emu, [{"expression": "variables.before == 'pending' || object.status.phase == variables.before",
                  "message": "no change after pending", "reason": "Forbidden"}],
           variables=[{"name": "before", "expression": "oldObject.status.phase"}])
    patch_status(emu, {"phase": "running"})  # old: pending
    code, body = refused(emu, {"phase": "completed"})  # old: running
    assert (code, body["reason"]) == (403, "Forbidden") and body["message"].endswith("no change after pending")


def test_match_conditions_skip_and_userinfo_is_visible(emu):
    sa = authn.service_account("ns", "trainer", pod_name="pod-1")
    rbac = "rbac.authorization.k8s.io/v1"
    emu.create(f"{rbac}/roles", {"metadata": {"name": "w"}, "rules": [
        {"apiGroups": [G], "resources": [f"{P}/status"], "verbs": ["patch"]}]}, namespace="ns")
    emu.create(f"{rbac}/rolebindings", {"metadata": {"name": "w"}, "roleRef": {
        "apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "w"}, "subjects": [
        {"kind": "ServiceAccount", "name": "trainer", "namespace": "ns"}]}, namespace="ns")
    policy(emu, [{"expression": "request.userInfo.extra['authentication.kubernetes.io/pod-name'][0] == 'pod-2'"}],
           matchConditions=[{"name": "sa", "expression": "request.userInfo.username.startsWith('system:serviceaccount:')"}])
    patch_status(emu, {"message": "admin"})  # not a ServiceAccount: skipped
    assert refused(emu, {"message": "sa"}, sa)[0] == 422


def test_errors_follow_the_failure_policy(emu):
    # Only name and generateName of metadata are visible: reading labels is an error, so Fail denies.
    policy(emu, [{"expression": "object.metadata.labels.size() >= 0"}])
    code, body = refused(emu, {"message": "x"})
    assert code == 422 and "resulted in error" in body["message"]
    policy(emu, [{"expression": "object.nope == 1"}], name="q", failurePolicy="Ignore")  # errors ignored


def test_warn_action_and_unmatched_operations(emu):
    policy(emu, [{"expression": "false", "message": "just saying"}], actions=("Warn",))
    policy(emu, [{"expression": "false"}], name="creates", operations=("CREATE",), resources=("trainingjobs",))
    patch_status(emu, {"message": "x"})  # warned, not denied; the CREATE policy does not match an UPDATE
    with pytest.raises(kubernetes.client.ApiException) as exc:
        client(emu).create_namespaced_custom_object(G, V, "ns", P, {
            "apiVersion": f"{G}/{V}", "kind": "TrainingJob", "metadata": {"name": "b"}, "spec": {"tenant_id": "t"}})
    assert exc.value.status == 422 and "ValidatingAdmissionPolicy 'creates'" in exc.value.body


def test_a_subresource_rule_does_not_match_the_main_resource(emu):
    policy(emu, [{"expression": "false"}])  # trainingjobs/status only
    client(emu).patch_namespaced_custom_object(G, V, "ns", P, "a", {"spec": {"cancel": True}})
