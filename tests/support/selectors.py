"""Label and field selectors as the Kubernetes API server parses and applies them.

Pure functions: ``parse_label_selector`` / ``parse_field_selector`` turn the query
string into requirements (raising ``SelectorError`` with the offending text), and
``matches`` tests an object against them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any


class SelectorError(ValueError):
    """A selector the API server would reject (answered as 400 BadRequest)."""


@dataclass(frozen=True)
class Requirement:
    key: str
    op: str  # one of: =, !=, in, notin, exists, !exists
    values: tuple[str, ...] = ()

    def test(self, value: str | None) -> bool:
        if self.op == "exists":
            return value is not None
        if self.op == "!exists":
            return value is None
        if self.op in ("=", "in"):
            return value is not None and value in self.values
        # != and notin also match objects that lack the key, as in Kubernetes.
        return value is None or value not in self.values


# One requirement: "key", "!key", "key=v", "key==v", "key!=v", "key in (a,b)", "key notin (a,b)".
_SET_RE = re.compile(r"^\s*(?P<key>[^\s!=,()]+)\s+(?P<op>in|notin)\s*\((?P<values>[^()]*)\)\s*$")
_EQ_RE = re.compile(r"^\s*(?P<key>[^\s!=,()]+)\s*(?P<op>==|=|!=)\s*(?P<value>[^\s!=,()]*)\s*$")
_EXISTS_RE = re.compile(r"^\s*(?P<neg>!?)\s*(?P<key>[^\s!=,()]+)\s*$")


def _split_top_level(text: str) -> list[str]:
    """Split on commas that are not inside the parentheses of an in/notin set."""
    parts: list[str] = []
    depth = 0
    current = ""
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth < 0:
                raise SelectorError(f"unbalanced ')' in selector {text!r}")
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    if depth:
        raise SelectorError(f"unbalanced '(' in selector {text!r}")
    parts.append(current)
    return parts


def parse_label_selector(text: str | None) -> tuple[Requirement, ...]:
    if not text or not text.strip():
        return ()
    requirements: list[Requirement] = []
    for part in _split_top_level(text):
        if not part.strip():
            raise SelectorError(f"empty requirement in label selector {text!r}")
        if m := _SET_RE.match(part):
            values = tuple(v.strip() for v in m["values"].split(",") if v.strip())
            requirements.append(Requirement(m["key"], m["op"], values))
        elif m := _EQ_RE.match(part):
            op = "!=" if m["op"] == "!=" else "="
            requirements.append(Requirement(m["key"], op, (m["value"],)))
        elif m := _EXISTS_RE.match(part):
            requirements.append(Requirement(m["key"], "!exists" if m["neg"] else "exists"))
        else:
            raise SelectorError(f"unable to parse requirement {part.strip()!r} in label selector {text!r}")
    return tuple(requirements)


def parse_field_selector(text: str | None) -> tuple[Requirement, ...]:
    if not text or not text.strip():
        return ()
    requirements: list[Requirement] = []
    for part in text.split(","):
        m = _EQ_RE.match(part)
        if not m:
            raise SelectorError(f"invalid field selector requirement {part.strip()!r} in {text!r}")
        op = "!=" if m["op"] == "!=" else "="
        requirements.append(Requirement(m["key"], op, (m["value"],)))
    return tuple(requirements)


#: The fields each kind can be selected by, beyond metadata.name and metadata.namespace (every
#: kind); any other is refused with "field label not supported: X" (400). From the field-label
#: conversion functions of kube-apiserver: pkg/apis/core/v1/conversion.go (pods, events, secrets,
#: namespaces, nodes), pkg/apis/batch/v1/conversion.go (jobs); custom resources only metadata
#: (CRD ``selectableFields`` are not used by this project).
SELECTABLE_FIELDS: dict[tuple[str, str], frozenset[str]] = {
    ("", "pods"): frozenset({"spec.nodeName", "spec.restartPolicy", "spec.schedulerName", "spec.serviceAccountName",
                             "spec.hostNetwork", "status.phase", "status.podIP", "status.podIPs",
                             "status.nominatedNodeName"}),
    ("", "events"): frozenset({"involvedObject.kind", "involvedObject.namespace", "involvedObject.name",
                               "involvedObject.uid", "involvedObject.apiVersion", "involvedObject.resourceVersion",
                               "involvedObject.fieldPath", "reason", "reportingComponent", "source", "type"}),
    ("", "secrets"): frozenset({"type"}),
    ("", "namespaces"): frozenset({"status.phase"}),
    ("", "nodes"): frozenset({"spec.unschedulable"}),
    ("batch", "jobs"): frozenset({"status.successful"}),
}
ALWAYS_SELECTABLE = frozenset({"metadata.name", "metadata.namespace"})


def check_selectable(group: str, plural: str, fields: tuple[Requirement, ...]) -> None:
    allowed = ALWAYS_SELECTABLE | SELECTABLE_FIELDS.get((group, plural), frozenset())
    for req in fields:
        if req.key not in allowed:
            raise SelectorError(f"field label not supported: {req.key}")


def field_value(obj: dict[str, Any], path: str) -> str:
    """A field selector's view of a dotted path: absent fields read as the empty string."""
    node: Any = obj
    for key in path.split("."):
        if not isinstance(node, dict) or key not in node:
            return ""
        node = node[key]
    if isinstance(node, bool):
        return "true" if node else "false"
    return "" if node is None else str(node)


def matches(
    obj: dict[str, Any],
    labels: tuple[Requirement, ...] = (),
    fields: tuple[Requirement, ...] = (),
) -> bool:
    obj_labels = (obj.get("metadata") or {}).get("labels") or {}
    if not all(req.test(obj_labels.get(req.key)) for req in labels):
        return False
    return all(req.test(field_value(obj, req.key)) for req in fields)
