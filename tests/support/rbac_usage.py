"""What a component's requests needed, and what a rendered chart grants it, as comparable sets.

A permission is ``(scope, apiGroup, resource[/subresource], verb)``. ``scope`` is the namespace a
RoleBinding grants in, or ``""`` for a ClusterRoleBinding (every namespace and the cluster scope).
A request in namespace N needs ``(N, …)``; a request without a namespace (a cluster-scoped
resource, or a list/watch across all namespaces) needs ``("", …)``, which only a ClusterRoleBinding
gives (tests.support.rbac). So "granted == used" fails on a missing verb, an unused verb, and a
ClusterRole where a namespaced Role would do.
"""

from __future__ import annotations

from typing import Any

from tests.support.kube_emulator import parse_resource_path
from tests.support.rbac import request_verb

Permission = tuple[str, str, str, str]  # (scope, apiGroup, resource[/subresource], verb)


def used(emu: Any, start: int = 0, token: str | None = None) -> set[Permission]:
    """Permissions the requests logged since index ``start`` needed (discovery excluded); with
    ``token``, only the requests that carried it as their bearer token."""
    def read() -> list[tuple[str, str, dict[str, str], str]]:
        return [(r._raw_request.method.upper(), r._raw_request.path, dict(r._raw_request.query),
                 r._raw_request.headers.get("Authorization", ""))
                for r in emu.emulator._requests[start:]]

    out: set[Permission] = set()
    for method, path, query, authorization in emu.call(read):
        if token is not None and authorization != f"Bearer {token}":
            continue
        parsed = parse_resource_path(path.rstrip("/"))
        if parsed is None or parsed.plural is None:
            continue  # /api, /apis, /version: discovery, allowed to every authenticated user
        resource = f"{parsed.plural}/{parsed.subresource}" if parsed.subresource else parsed.plural
        out.add((parsed.namespace or "", parsed.group, resource, request_verb(method, parsed.name, query)))
    return out


def unscoped(permissions: set[Permission]) -> set[tuple[str, str, str]]:
    return {p[1:] for p in permissions}


def rules_of(role: dict[str, Any]) -> set[tuple[str, str, str]]:
    """(apiGroup, resource, verb) of every rule of a Role or ClusterRole."""
    return {(g, r, v) for rule in role["rules"] for g in rule["apiGroups"] for r in rule["resources"]
            for v in rule["verbs"]}


def granted(docs: list[dict[str, Any]], namespace: str, account: str) -> set[Permission]:
    """Everything the (Cluster)RoleBindings among ``docs`` grant ServiceAccount namespace/account."""
    def role(kind: str, name: str, ns: str | None) -> dict[str, Any]:
        [found] = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name
                   and (ns is None or d["metadata"].get("namespace") == ns)]
        return found

    out: set[Permission] = set()
    for binding in docs:
        if binding["kind"] not in ("RoleBinding", "ClusterRoleBinding"):
            continue
        scope = binding["metadata"].get("namespace", "") if binding["kind"] == "RoleBinding" else ""
        for subject in binding.get("subjects") or []:
            if subject.get("kind") != "ServiceAccount" or subject.get("name") != account:
                continue
            if (subject.get("namespace") or scope) != namespace:
                continue
            ref = binding["roleRef"]
            rules = rules_of(role(ref["kind"], ref["name"], scope if ref["kind"] == "Role" else None))
            out |= {(scope, *rule) for rule in rules}
    return out
