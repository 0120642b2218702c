"""API discovery documents (/api, /apis, /api/v1, /apis/<group>[/<version>]) from the served kinds."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from tests.support.api_errors import ApiError
from tests.support.kinds import Kind

Obj = dict[str, Any]


def _version_priority(version: str) -> tuple[int, int, int]:
    """Kubernetes' version order: GA before beta before alpha, higher numbers first."""
    m = re.match(r"^v(\d+)(?:(alpha|beta)(\d+))?$", version)
    if not m:
        return (3, 0, 0)
    stability = {"alpha": 2, "beta": 1, None: 0}[m[2]]
    return (stability, -int(m[1]), -int(m[3] or 0))


def _group_doc(group: str, versions: Iterable[str]) -> Obj:
    ordered = sorted(versions, key=_version_priority)
    return {"name": group,
            "versions": [{"groupVersion": f"{group}/{v}", "version": v} for v in ordered],
            "preferredVersion": {"groupVersion": f"{group}/{ordered[0]}", "version": ordered[0]}}


def _groups(kinds: Iterable[Kind]) -> dict[str, set[str]]:
    groups: dict[str, set[str]] = {}
    for kind in kinds:
        if kind.group:
            groups.setdefault(kind.group, set()).add(kind.version)
    return groups


def root_document(path: str, kinds: Iterable[Kind]) -> Obj:
    """``/``, ``/version``, ``/api`` or ``/apis``."""
    if path == "/version":
        return {"major": "1", "minor": "33", "gitVersion": "v1.33.0-kube-emulator", "platform": "linux/amd64"}
    if path == "/api":
        return {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [
            {"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]}
    groups = _groups(kinds)
    if path == "/apis":
        return {"kind": "APIGroupList", "apiVersion": "v1",
                "groups": [_group_doc(group, versions) for group, versions in sorted(groups.items())]}
    paths = {"/api", "/api/v1", "/apis", "/version"}
    for group, versions in groups.items():
        paths.add(f"/apis/{group}")
        paths.update(f"/apis/{group}/{v}" for v in versions)
    return {"paths": sorted(paths)}


def group_document(group: str, version: str | None, kinds: Iterable[Kind]) -> Obj:
    """``/apis/<group>`` (APIGroup) or ``/api/v1``, ``/apis/<group>/<version>`` (APIResourceList)."""
    kinds = list(kinds)
    if version is None:
        versions = _groups(kinds).get(group)
        if not versions:
            raise ApiError(404, "NotFound", f"the server could not find the requested resource ({group})")
        return {"kind": "APIGroup", "apiVersion": "v1", **_group_doc(group, versions)}
    served = sorted((k for k in kinds if k.group == group and k.version == version), key=lambda k: k.plural)
    if not served:
        raise ApiError(404, "NotFound", f"the server could not find the requested resource ({group}/{version})")
    resources = []
    for kind in served:
        resources.append({"name": kind.plural, "singularName": kind.singular, "namespaced": kind.namespaced,
                          "kind": kind.kind, "verbs": list(kind.verbs), "shortNames": list(kind.short_names),
                          "categories": list(kind.categories)})
        for sub in sorted(kind.subresources):
            verbs = ["get"] if sub == "log" else ["get", "patch", "update"]
            resources.append({"name": f"{kind.plural}/{sub}", "singularName": "", "namespaced": kind.namespaced,
                              "kind": kind.kind, "verbs": verbs})
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": f"{group}/{version}" if group else version,
            "resources": resources}
