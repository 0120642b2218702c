"""Least privilege: exactly the verbs each component needs, no wildcards, bound to its own account."""

from __future__ import annotations

import pytest

from tests.helm.chart import NAMESPACE, Rendered, render
from tests.helm.value_sets import value_sets

TJ = ("training.laxai.io", "trainingjobs")
TJ_STATUS = ("training.laxai.io", "trainingjobs/status")

OPERATOR_RULES = {
    TJ: {"get", "list", "watch", "patch", "delete"},  # delete: ttlSecondsAfterFinished; kopf only patches
    TJ_STATUS: {"patch"},
    ("batch", "jobs"): {"get", "list", "watch", "create", "delete", "patch"},
    ("", "pods"): {"list", "watch"},
    ("", "events"): {"create", "list", "watch"},  # kopf posts core/v1 Events; FailedCreate reports are read
}
#: Cluster-wide, kopf lists nothing cluster-scoped that it needs (it watches all namespaces at once).
OPERATOR_CLUSTER_RULES = OPERATOR_RULES
# tests/operator/test_rbac_calls.py (operator, trainer) and tests/api/backends/test_kubernetes_rbac.py
# (API) check these tables against the requests the code really sends.
LEASE_RULES = {("coordination.k8s.io", "leases"): {"get", "create", "update"}}
API_RULES = {
    TJ: {"get", "list", "watch", "create", "patch"},  # list + watch feed the read cache; cancel is a patch of spec.cancel
    ("", "pods"): {"list"},
    ("", "pods/log"): {"get"},
}
TRAINER_RULES = {TJ_STATUS: {"patch"}}


def permissions(role: dict) -> dict[tuple[str, str], set[str]]:
    """(apiGroup, resource) -> verbs, failing on anything a flat table cannot express."""
    out: dict[tuple[str, str], set[str]] = {}
    for rule in role["rules"]:
        assert set(rule) == {"apiGroups", "resources", "verbs"}, f"unexpected keys in {rule}"
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                out.setdefault((group, resource), set()).update(rule["verbs"])
    return out


def bound_roles(rendered: Rendered, account: str, account_ns: str) -> list[dict]:
    """Every Role/ClusterRole bound to ServiceAccount account_ns/account."""
    roles = []
    for binding in rendered.of_kind("RoleBinding") + rendered.of_kind("ClusterRoleBinding"):
        subject = {"kind": "ServiceAccount", "name": account, "namespace": account_ns}
        if subject in binding["subjects"]:
            ref = binding["roleRef"]
            ns = binding["metadata"].get("namespace") if ref["kind"] == "Role" else None
            roles.append(rendered.get(ref["kind"], ref["name"], namespace=ns))
    return roles


@pytest.mark.parametrize("set_name", list(value_sets()))
def test_no_wildcards_and_every_binding_resolves(rendered_sets, set_name):
    rendered = rendered_sets[set_name]
    for role in rendered.of_kind("Role") + rendered.of_kind("ClusterRole"):
        for rule in role["rules"]:
            for field in ("apiGroups", "resources", "verbs"):
                assert not any("*" in item for item in rule[field]), f"wildcard in {role['metadata']['name']}"
            assert "resourceNames" not in rule and "nonResourceURLs" not in rule
            assert not {"escalate", "bind", "impersonate"} & set(rule["verbs"])
            assert not {"secrets", "roles", "rolebindings", "clusterroles"} & set(rule["resources"])
    for binding in rendered.of_kind("RoleBinding") + rendered.of_kind("ClusterRoleBinding"):
        ref = binding["roleRef"]
        ns = binding["metadata"].get("namespace") if ref["kind"] == "Role" else None
        rendered.get(ref["kind"], ref["name"], namespace=ns)  # raises if the role is missing
        if binding["metadata"]["name"].endswith("-trainer"):  # every trainer account: shared and per tenant
            assert {s["name"] for s in binding["subjects"]} == trainer_accounts(value_sets()[set_name])
        else:
            assert len(binding["subjects"]) == 1


def trainer_accounts(values: dict | None) -> set[str]:
    """The trainer ServiceAccounts a values set asks for: the shared one and each tenant's."""
    values = values or {}
    names = {((values.get("trainer") or {}).get("serviceAccount") or {}).get("name", "laxai-trainer")}
    return names | {t["serviceAccount"]["name"] for t in (values.get("tenants") or {}).values()
                    if "serviceAccount" in t}


def test_namespaced_by_default(default):
    assert not default.of_kind("ClusterRole") and not default.of_kind("ClusterRoleBinding")
    [op] = bound_roles(default, "laxai-training-operator", NAMESPACE)
    assert op["kind"] == "Role" and op["metadata"]["namespace"] == NAMESPACE
    assert permissions(op) == OPERATOR_RULES
    [api] = bound_roles(default, "laxai-training-api", NAMESPACE)
    assert api["kind"] == "Role" and permissions(api) == API_RULES
    [trainer] = bound_roles(default, "laxai-trainer", NAMESPACE)
    assert trainer["kind"] == "Role" and permissions(trainer) == TRAINER_RULES


def test_namespaced_roles_in_each_watched_namespace(helm_bin):
    rendered = render(helm_bin, {"watch": {"clusterWide": False, "namespaces": ["team-a"]}})
    roles = bound_roles(rendered, "laxai-training-operator", NAMESPACE)
    assert sorted(r["metadata"]["namespace"] for r in roles) == sorted([NAMESPACE, "team-a"])
    assert all(permissions(r) == OPERATOR_RULES for r in roles)
    [trainer_a] = bound_roles(rendered, "laxai-trainer", "team-a")
    assert trainer_a["metadata"]["namespace"] == "team-a" and permissions(trainer_a) == TRAINER_RULES


def test_cluster_wide_uses_cluster_roles(full):
    op_roles = {r["kind"]: r for r in bound_roles(full, "laxai-training-operator", NAMESPACE)}
    assert permissions(op_roles["ClusterRole"]) == OPERATOR_CLUSTER_RULES
    # Leader election (on in FULL): leases only, only in the release namespace.
    assert op_roles["Role"]["metadata"]["namespace"] == NAMESPACE
    assert permissions(op_roles["Role"]) == LEASE_RULES
    # The API works in one namespace (api.namespace): a Role there, never a ClusterRole.
    [api] = bound_roles(full, "laxai-rest", NAMESPACE)
    assert api["kind"] == "Role" and permissions(api) == API_RULES
    assert not any(b["subjects"][0]["name"] == "laxai-rest" for b in full.of_kind("ClusterRoleBinding"))
    for ns in (NAMESPACE, "ml-jobs"):
        [trainer] = bound_roles(full, "reid-trainer", ns)
        assert trainer["kind"] == "Role" and permissions(trainer) == TRAINER_RULES


def test_no_lease_permission_without_leader_election(default):
    for role in default.of_kind("Role"):
        assert ("coordination.k8s.io", "leases") not in permissions(role)


@pytest.mark.parametrize("set_name", list(value_sets()))
def test_trainingjob_status_is_writable_only_by_patch_and_only_by_operator_and_trainers(rendered_sets, set_name):
    """The trainer-status admission policy needs exactly ``patch`` on trainingjobs/status: no get, no
    update (a PUT would carry a whole status), for the trainers and the operator, and nobody else."""
    rendered = rendered_sets[set_name]
    for role in rendered.of_kind("Role") + rendered.of_kind("ClusterRole"):
        verbs = permissions(role).get(TJ_STATUS)
        if verbs is not None:
            assert verbs == {"patch"}, role["metadata"]["name"]
            assert role["metadata"]["name"].endswith(("-trainer", "-operator")), role["metadata"]["name"]


def test_every_tenant_account_is_created_annotated_and_bound(full):
    for ns in (NAMESPACE, "ml-jobs"):
        sa = full.get("ServiceAccount", "reid-trainer-team-b", namespace=ns)
        assert sa["metadata"]["annotations"] == {"team": "b",
                                                 "iam.gke.io/gcp-service-account": "team-b@proj.iam.gserviceaccount.com"}
        assert [r["metadata"]["name"] for r in bound_roles(full, "reid-trainer-team-b", ns)] == ["laxai-training-trainer"]
        assert [r["metadata"]["name"] for r in bound_roles(full, "reid-trainer-team-c", ns)] == ["laxai-training-trainer"]
    assert not any(sa["metadata"]["name"] == "reid-trainer-team-c" for sa in full.of_kind("ServiceAccount"))
