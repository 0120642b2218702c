"""RBAC authorization for the emulator, evaluated from the Role/ClusterRole/RoleBinding/
ClusterRoleBinding objects stored in it, as the API server's RBAC authorizer does
(https://kubernetes.io/docs/reference/access-authn-authz/rbac/):

- rules only add permissions (there are no deny rules); a request is allowed when any rule
  reachable from a binding whose subject matches the user allows it;
- a RoleBinding grants its Role's (or a ClusterRole's) rules in the binding's namespace only; a
  ClusterRoleBinding grants a ClusterRole's rules in every namespace and at cluster scope, so a
  list/watch across namespaces (``/apis/g/v/plural``) or of a cluster-scoped resource needs one;
- a rule matches on ``apiGroups``, ``resources`` (``plural``, ``plural/subresource``, ``*``,
  ``*/subresource``), ``verbs`` and, when set, ``resourceNames`` — which never match a request
  without a name (list, watch without a ``metadata.name`` field selector, create, deletecollection);
- the request's verb comes from the HTTP method (get/list/watch/create/update/patch/delete/
  deletecollection); a list or watch with a ``metadata.name=`` field selector carries that name;
- subjects: ``User`` (username), ``Group`` (any of the user's groups), ``ServiceAccount``
  (namespace + name → ``system:serviceaccount:ns:name``);
- ``system:masters`` is allowed everything (the API server's privileged-group authorizer, in
  front of RBAC); discovery (``/api``, ``/apis``, ``/version``, …) is open to every user, as the
  bootstrap ClusterRoles ``system:discovery`` and ``system:public-info-viewer`` grant.

A denial is the API server's 403 (k8s.io/apiserver endpoints/handlers/responsewriters
``forbiddenMessage``): ``<resource>.<group> "<name>" is forbidden: User "<user>" cannot <verb>
resource "<resource>[/<sub>]" in API group "<group>" in the namespace "<ns>"`` (or ``at the
cluster scope``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from tests.support.api_errors import ApiError
from tests.support.authn import UserInfo

RBAC = "rbac.authorization.k8s.io/v1"
PRIVILEGED_GROUP = "system:masters"


@dataclass(frozen=True)
class Attributes:
    """What the authorizer sees of one request (k8s.io/apiserver authorizer.Attributes)."""

    user: UserInfo
    verb: str
    api_group: str = ""
    resource: str = ""
    subresource: str = ""
    namespace: str = ""
    name: str = ""
    path: str = ""
    resource_request: bool = True


def request_verb(method: str, name: str | None, params: dict[str, str]) -> str:
    """The RBAC verb of an HTTP request (k8s.io/apiserver endpoints/request RequestInfoFactory)."""
    if method == "GET":
        if params.get("watch") in ("true", "1"):
            return "watch"
        return "get" if name else "list"
    if method == "DELETE":
        return "delete" if name else "deletecollection"
    return {"POST": "create", "PUT": "update", "PATCH": "patch"}.get(method, method.lower())


def name_from_field_selector(params: dict[str, str]) -> str:
    """``metadata.name=X`` (or ``==``) of a list/watch field selector: RBAC then authorizes that name."""
    for part in (params.get("fieldSelector") or "").split(","):
        key, sep, value = part.partition("=")
        if sep and key.strip() == "metadata.name":
            return value.removeprefix("=").strip()
    return ""


def _subject_matches(subject: dict[str, Any], user: UserInfo, binding_namespace: str) -> bool:
    kind, name = subject.get("kind"), subject.get("name")
    if kind == "User":
        return name == user.username
    if kind == "Group":
        return name in user.groups
    if kind == "ServiceAccount":
        namespace = subject.get("namespace") or binding_namespace
        return user.username == f"system:serviceaccount:{namespace}:{name}"
    return False


def _resource_matches(rule_resources: Iterable[str], resource: str, subresource: str) -> bool:
    combined = f"{resource}/{subresource}" if subresource else resource
    for allowed in rule_resources:
        if allowed in ("*", combined):
            return True
        if subresource and allowed == f"*/{subresource}":
            return True
    return False


def rule_allows(rule: dict[str, Any], attrs: Attributes) -> bool:
    """One PolicyRule against one request (k8s.io/kubernetes pkg/apis/rbac/v1 evaluation_helpers)."""
    verbs = rule.get("verbs") or []
    if "*" not in verbs and attrs.verb not in verbs:
        return False
    if not attrs.resource_request:
        urls = rule.get("nonResourceURLs") or []
        return any(u == attrs.path or u == "*" or (u.endswith("*") and attrs.path.startswith(u[:-1])) for u in urls)
    groups = rule.get("apiGroups")
    if groups is None or ("*" not in groups and attrs.api_group not in groups):
        return False
    if not _resource_matches(rule.get("resources") or [], attrs.resource, attrs.subresource):
        return False
    names = rule.get("resourceNames") or []
    return not names or attrs.name in names


def _is_discovery(path: str) -> bool:
    parts = [p for p in path.split("/") if p]
    return (not parts or parts[0] in ("version", "healthz", "livez", "readyz", "openapi")
            or (parts[0] == "api" and len(parts) <= 2) or (parts[0] == "apis" and len(parts) <= 3))


class RbacAuthorizer:
    """Authorizes requests from the RBAC objects of a ``tests.support.object_store.ObjectStore``."""

    def __init__(self, store: Any) -> None:
        self.store = store

    def _objects(self, plural: str, namespace: str | None = None) -> list[dict[str, Any]]:
        return self.store.live(self.store.kind(f"{RBAC}/{plural}"), namespace)

    def _role_rules(self, ref: dict[str, Any], namespace: str | None) -> list[dict[str, Any]]:
        kind = self.store.kind(f"{RBAC}/{'clusterroles' if ref.get('kind') == 'ClusterRole' else 'roles'}")
        role = self.store.current(kind, None if ref.get("kind") == "ClusterRole" else namespace, ref.get("name"))
        return (role or {}).get("rules") or []

    def rules_for(self, user: UserInfo, namespace: str) -> list[dict[str, Any]]:
        """Every rule granted to ``user`` in ``namespace`` ("" = at cluster scope only)."""
        rules: list[dict[str, Any]] = []
        for binding in self._objects("clusterrolebindings"):
            if any(_subject_matches(s, user, "") for s in binding.get("subjects") or []):
                rules += self._role_rules(binding.get("roleRef") or {}, None)
        if namespace:
            for binding in self._objects("rolebindings", namespace):
                if any(_subject_matches(s, user, namespace) for s in binding.get("subjects") or []):
                    rules += self._role_rules(binding.get("roleRef") or {}, namespace)
        return rules

    def allowed(self, attrs: Attributes) -> bool:
        if PRIVILEGED_GROUP in attrs.user.groups:
            return True
        if not attrs.resource_request and attrs.verb == "get" and _is_discovery(attrs.path):
            return True
        return any(rule_allows(rule, attrs) for rule in self.rules_for(attrs.user, attrs.namespace))

    def authorize(self, attrs: Attributes) -> None:
        """Raise the API server's 403 Forbidden unless allowed."""
        if not self.allowed(attrs):
            raise forbidden(attrs)


def forbidden(attrs: Attributes) -> ApiError:
    user = attrs.user.username
    if not attrs.resource_request:
        return ApiError(403, "Forbidden", f'forbidden: User "{user}" cannot {attrs.verb} path "{attrs.path}"',
                        {})
    resource = f"{attrs.resource}/{attrs.subresource}" if attrs.subresource else attrs.resource
    where = f'in the namespace "{attrs.namespace}"' if attrs.namespace else "at the cluster scope"
    why = f'User "{user}" cannot {attrs.verb} resource "{resource}" in API group "{attrs.api_group}" {where}'
    qualified = f"{attrs.resource}.{attrs.api_group}" if attrs.api_group else attrs.resource
    subject = f'{qualified} "{attrs.name}"' if attrs.name else qualified
    details: dict[str, Any] = {"group": attrs.api_group, "kind": attrs.resource}
    if attrs.name:
        details["name"] = attrs.name
    return ApiError(403, "Forbidden", f"{subject} is forbidden: {why}", details)
