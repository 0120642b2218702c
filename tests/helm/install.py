"""Install a rendered chart's access objects (ServiceAccounts, RBAC, admission policies) into the
Kubernetes API emulator, as ``helm install`` would create them on a cluster."""

from __future__ import annotations

from typing import Any

import pytest

from tests.helm.chart import Rendered

RESOURCES = {
    "ServiceAccount": "v1/serviceaccounts",
    "Role": "rbac.authorization.k8s.io/v1/roles",
    "RoleBinding": "rbac.authorization.k8s.io/v1/rolebindings",
    "ClusterRole": "rbac.authorization.k8s.io/v1/clusterroles",
    "ClusterRoleBinding": "rbac.authorization.k8s.io/v1/clusterrolebindings",
    "ValidatingAdmissionPolicy": "admissionregistration.k8s.io/v1/validatingadmissionpolicies",
    "ValidatingAdmissionPolicyBinding": "admissionregistration.k8s.io/v1/validatingadmissionpolicybindings",
}


def install_access(emu: Any, rendered: Rendered) -> list[dict[str, Any]]:
    """Create every access-control object of ``rendered`` in the emulator; returns them."""
    created = []
    for doc in rendered.docs:
        resource = RESOURCES.get(doc["kind"])
        if resource is not None:
            created.append(emu.create(resource, doc, namespace=doc["metadata"].get("namespace")))
    return created


def render_or_skip(values: dict[str, Any] | None, namespace: str) -> Rendered:
    """``helm template`` of the chart into ``namespace``; the test is skipped without a helm binary."""
    from tests.helm import tools
    from tests.helm.chart import render

    try:
        helm = tools.helm()
    except tools.ToolUnavailable as exc:
        pytest.skip(f"helm binary not available: {exc}")
    return render(helm, values, namespace=namespace)
