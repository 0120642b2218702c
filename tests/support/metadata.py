"""ObjectMeta validation as the API server does it: names, labels, annotations, owners, finalizers."""

from __future__ import annotations

import json
import re
from typing import Any

from tests.support.crd_schema import Cause
from tests.support.kinds import Kind

_NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL_NAME_RE = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_LABEL_VALUE_RE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
# Names that end up in a label value (Job → its pods' job-name label) or a DNS label.
_SHORT_NAMES = {("batch", "v1", "jobs"), ("", "v1", "namespaces")}


def _name_causes(kind: Kind, name: Any) -> list[Cause]:
    if kind.group == "rbac.authorization.k8s.io":  # RBAC names are path segments (e.g. system:x)
        if isinstance(name, str) and name not in (".", "..") and not re.search(r"[/%]", name):
            return []
        return [Cause("metadata.name", f"Invalid value: {json.dumps(name)}: may not contain '/' or '%'")]
    max_len = 63 if kind.key in _SHORT_NAMES else 253
    if isinstance(name, str) and _NAME_RE.match(name) and len(name) <= max_len:
        return []
    return [Cause("metadata.name", f"Invalid value: {json.dumps(name)}: a lowercase RFC 1123 subdomain of at "
                  f"most {max_len} characters must consist of lower case alphanumeric characters, '-' or '.', "
                  "and must start and end with an alphanumeric character")]


def _key_ok(key: Any) -> bool:
    if not isinstance(key, str):
        return False
    prefix, _, short = key.rpartition("/")
    if not _LABEL_NAME_RE.match(short) or len(short) > 63:
        return False
    return not prefix or (bool(_NAME_RE.match(prefix)) and len(prefix) <= 253)


def _map_causes(what: str, mapping: Any) -> list[Cause]:
    where = f"metadata.{what}"
    if not isinstance(mapping, dict):
        return [Cause(where, "Invalid value: must be a map of strings")]
    causes = []
    for key, value in mapping.items():
        if not _key_ok(key):
            causes.append(Cause(where, f"Invalid value: {json.dumps(key)}: name part must be 63 characters "
                                "or less, alphanumeric, '-', '_' or '.', with an optional DNS subdomain "
                                "prefix and '/'"))
        if not isinstance(value, str):
            causes.append(Cause(where, f"Invalid value: {json.dumps(value)}: the value of {key!r} must be a "
                                "string"))
        elif what == "labels" and (len(value) > 63 or not _LABEL_VALUE_RE.match(value)):
            causes.append(Cause(where, f"Invalid value: {json.dumps(value)}: a valid label must be an empty "
                                "string or consist of at most 63 alphanumeric characters, '-', '_' or '.', "
                                "starting and ending with an alphanumeric character"))
    return causes


def validate_metadata(kind: Kind, obj: dict[str, Any]) -> list[Cause]:
    """Every invalid metadata field of ``obj`` (empty when valid)."""
    meta = obj["metadata"]
    causes = _name_causes(kind, meta.get("name"))
    for what in ("labels", "annotations"):
        causes += _map_causes(what, meta.get(what) or {})
    for i, ref in enumerate(meta.get("ownerReferences") or []):
        for required in ("apiVersion", "kind", "name", "uid"):
            if not isinstance(ref, dict) or not ref.get(required):
                causes.append(Cause(f"metadata.ownerReferences[{i}].{required}", "Required value",
                                    "FieldValueRequired"))
    finalizers = meta.get("finalizers") or []
    if not isinstance(finalizers, list) or not all(isinstance(f, str) for f in finalizers):
        causes.append(Cause("metadata.finalizers", "Invalid value: must be a list of strings"))
    return causes
