"""tests.support.rbac: the emulator authorizes as the RBAC authorizer of a real API server does."""

from __future__ import annotations

import json

import kubernetes
import pytest

from tests.support import authn
from tests.support.access import AccessControl
from tests.support.rbac import Attributes, rule_allows
from tests.support.threaded import TRAININGJOBS, ThreadedKubeEmulator

G, V, P = "training.laxai.io", "v1alpha1", "trainingjobs"


@pytest.fixture()
def secured():
    access = AccessControl()
    with ThreadedKubeEmulator(access=access) as emu:
        for ns in ("laxai", "other"):
            emu.create("v1/namespaces", {"metadata": {"name": ns}})
            for name in ("a", "b"):
                emu.create(TRAININGJOBS, {"metadata": {"name": name}, "spec": {"tenant_id": "t"}}, namespace=ns)
        yield emu, access


def api(emu, access, user):
    return kubernetes.client.CustomObjectsApi(emu.api_client(access.tokens.issue(user)))


def grant(emu, ns, name, rules, subject, cluster=False, role_kind=None):
    rbac = "rbac.authorization.k8s.io/v1"
    role_kind = role_kind or ("ClusterRole" if cluster else "Role")
    role = {"metadata": {"name": name}, "rules": rules}
    if role_kind == "ClusterRole":
        emu.create(f"{rbac}/clusterroles", role)
    else:
        emu.create(f"{rbac}/roles", role, namespace=ns)
    binding = {"metadata": {"name": name}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind,
                                                       "name": name}, "subjects": [subject]}
    if cluster:
        emu.create(f"{rbac}/clusterrolebindings", binding)
    else:
        emu.create(f"{rbac}/rolebindings", binding, namespace=ns)


SA = {"kind": "ServiceAccount", "name": "op", "namespace": "laxai"}
OP = authn.service_account("laxai", "op")


def message(exc) -> str:
    return json.loads(exc.value.body)["message"]


def test_an_unbound_user_gets_the_real_forbidden_message_at_cluster_scope(secured):
    emu, access = secured
    with pytest.raises(kubernetes.client.ApiException) as exc:
        api(emu, access, OP).list_cluster_custom_object(G, V, P)
    assert exc.value.status == 403
    assert ('trainingjobs.training.laxai.io is forbidden: User "system:serviceaccount:laxai:op" cannot list '
            'resource "trainingjobs" in API group "training.laxai.io" at the cluster scope') in message(exc)


def test_a_role_grants_in_its_namespace_only_and_never_across_namespaces(secured):
    emu, access = secured
    grant(emu, "laxai", "reader", [{"apiGroups": [G], "resources": [P], "verbs": ["list", "get"]}], SA)
    client = api(emu, access, OP)
    assert len(client.list_namespaced_custom_object(G, V, "laxai", P)["items"]) == 2
    assert client.get_namespaced_custom_object(G, V, "laxai", P, "a")["metadata"]["name"] == "a"
    for call in (lambda: client.list_namespaced_custom_object(G, V, "other", P),
                 lambda: client.list_cluster_custom_object(G, V, P),
                 lambda: client.patch_namespaced_custom_object(G, V, "laxai", P, "a", {"spec": {"cancel": True}})):
        with pytest.raises(kubernetes.client.ApiException) as exc:
            call()
        assert exc.value.status == 403
    assert 'cannot patch resource "trainingjobs" in API group "training.laxai.io" in the namespace "laxai"' in message(exc)


def test_a_clusterrole_through_a_rolebinding_is_namespaced_through_a_clusterrolebinding_cluster_wide(secured):
    emu, access = secured
    rules = [{"apiGroups": [G], "resources": [P], "verbs": ["list"]}]
    grant(emu, "laxai", "ns-reader", rules, SA, role_kind="ClusterRole")
    client = api(emu, access, OP)
    client.list_namespaced_custom_object(G, V, "laxai", P)
    with pytest.raises(kubernetes.client.ApiException):
        client.list_cluster_custom_object(G, V, P)
    grant(emu, None, "cluster-reader", rules, SA, cluster=True)
    assert len(client.list_cluster_custom_object(G, V, P)["items"]) == 4


def test_subresources_and_resource_names_are_enforced(secured):
    emu, access = secured
    grant(emu, "laxai", "status-a", [{"apiGroups": [G], "resources": [f"{P}/status"], "verbs": ["patch"],
                                      "resourceNames": ["a"]}], SA)
    client = api(emu, access, OP)
    client.patch_namespaced_custom_object_status(G, V, "laxai", P, "a", {"status": {"message": "x"}})
    with pytest.raises(kubernetes.client.ApiException) as exc:
        client.patch_namespaced_custom_object_status(G, V, "laxai", P, "b", {"status": {"message": "x"}})
    assert exc.value.status == 403 and 'trainingjobs.training.laxai.io "b" is forbidden' in message(exc)
    assert 'cannot patch resource "trainingjobs/status"' in message(exc)
    with pytest.raises(kubernetes.client.ApiException):  # the object itself is another resource
        client.patch_namespaced_custom_object(G, V, "laxai", P, "a", {"spec": {"cancel": True}})


def test_tokens_groups_discovery_and_privileged_users(secured):
    emu, access = secured
    bad = kubernetes.client.CustomObjectsApi(emu.api_client("not-a-token"))
    with pytest.raises(kubernetes.client.ApiException) as exc:
        bad.list_namespaced_custom_object(G, V, "laxai", P)
    assert exc.value.status == 401
    anonymous = kubernetes.client.ApiClient(emu.configuration())
    assert kubernetes.client.CoreApi(anonymous).get_api_versions().versions == ["v1"]  # discovery is open
    with pytest.raises(kubernetes.client.ApiException) as exc:
        kubernetes.client.CoreV1Api(anonymous).list_namespace()
    assert 'User "system:anonymous" cannot list resource "namespaces"' in message(exc)
    grant(emu, None, "all-sa", [{"apiGroups": [""], "resources": ["namespaces"], "verbs": ["list"]}],
          {"kind": "Group", "name": "system:serviceaccounts"}, cluster=True)
    kubernetes.client.CoreV1Api(emu.api_client(access.tokens.issue(OP))).list_namespace()
    assert len(api(emu, access, authn.admin()).list_cluster_custom_object(G, V, P)["items"]) == 4


@pytest.mark.parametrize(("resources", "resource", "sub", "allowed"), [
    (["*"], "trainingjobs", "", True),
    (["*"], "trainingjobs", "status", True),  # RBAC's "*" matches subresources too (ResourceMatches)
    (["*/status"], "trainingjobs", "status", True),
    (["trainingjobs"], "trainingjobs", "status", False),
    (["trainingjobs/status"], "trainingjobs", "", False),
])
def test_rule_resources(resources, resource, sub, allowed):
    rule = {"apiGroups": [G], "resources": resources, "verbs": ["get"]}
    assert rule_allows(rule, Attributes(OP, "get", G, resource, sub, "ns", "x")) is allowed


def test_a_watch_of_one_named_object_is_authorized_by_its_name(secured):
    emu, access = secured
    grant(emu, "laxai", "watch-a", [{"apiGroups": [G], "resources": [P], "verbs": ["list", "watch"],
                                     "resourceNames": ["a"]}], SA)
    client = api(emu, access, OP)
    listed = client.list_namespaced_custom_object(G, V, "laxai", P, field_selector="metadata.name=a")
    assert [o["metadata"]["name"] for o in listed["items"]] == ["a"]
    with pytest.raises(kubernetes.client.ApiException) as exc:
        client.list_namespaced_custom_object(G, V, "laxai", P)  # no name: resourceNames never match
    assert exc.value.status == 403
