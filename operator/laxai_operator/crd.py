"""Generate the TrainingJob CustomResourceDefinition from the pydantic models.

Pure functions: pydantic's JSON Schema (draft 2020-12) is rewritten into a
*structural* OpenAPI v3 schema as the API server demands — ``$ref`` inlined,
``anyOf [X, null]`` collapsed to X, ``uniqueItems`` turned into
``x-kubernetes-list-type: set``, numeric exclusive bounds in OpenAPI 3.0 form,
a description on every property — then wrapped in the CRD with printer
columns, the status subresource and CEL rules guarding immutable fields.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import yaml
from pydantic import BaseModel

from laxai_operator import resource as r
from laxai_trainer.config import TrainingKwargs

_DROP_KEYS = {"title", "examples"}


def _inline(node: Any, defs: dict[str, Any]) -> Any:
    """Resolve every local $ref against the $defs table, recursively."""
    if isinstance(node, list):
        return [_inline(item, defs) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target = copy.deepcopy(defs[node["$ref"].rsplit("/", 1)[-1]])
        merged = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
        return _inline(merged, defs)
    return {k: _inline(v, defs) for k, v in node.items() if k != "$defs"}


def _structural(node: dict[str, Any]) -> dict[str, Any]:
    """Rewrite one (inlined) JSON-schema node into a structural OpenAPI v3 node."""
    node = {k: v for k, v in node.items() if k not in _DROP_KEYS}
    variants = node.pop("anyOf", None)
    if variants is not None:
        non_null = [v for v in variants if v.get("type") != "null"]
        if len(non_null) != 1:
            raise ValueError(f"cannot express anyOf {variants!r} structurally")
        node = {k: v for k, v in {**non_null[0], **node}.items() if k not in _DROP_KEYS}
    if node.get("default", 0) is None:
        del node["default"]
    if "const" in node:
        node["enum"] = [node.pop("const")]
    if "enum" in node and "type" not in node:
        node["type"] = "string"
    for bound, plain in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if isinstance(node.get(bound), (int, float)) and not isinstance(node.get(bound), bool):
            node[plain] = node.pop(bound)
            node[bound] = True
    if node.pop("uniqueItems", False):
        node["x-kubernetes-list-type"] = "set"
    if "properties" in node:
        node["type"] = "object"
        node["properties"] = {k: _structural(v) for k, v in node["properties"].items()}
        node.pop("additionalProperties", None)  # structural: never beside properties
    elif isinstance(node.get("additionalProperties"), dict):
        node["additionalProperties"] = _structural(node["additionalProperties"])
    if "items" in node:
        node["items"] = _structural(node["items"])
    if node.get("type") == "object" and isinstance(node.get("default"), dict):
        node["default"] = {}  # nested defaults are applied by the API server field by field
    return _ordered(node)


def _ordered(node: dict[str, Any]) -> dict[str, Any]:
    """type and description first, so the YAML reads top-down."""
    head = {k: node[k] for k in ("type", "description") if k in node}
    return {**head, **{k: v for k, v in node.items() if k not in head}}


def _factory_defaults(model: type[BaseModel], schema: dict[str, Any]) -> None:
    """Add the defaults pydantic leaves out of JSON Schema (default_factory fields).

    A nested model defaults to ``{}`` so the API server fills its fields one by one.
    """
    for name, field in model.model_fields.items():
        prop = schema["properties"][field.alias or name]
        nested = field.annotation if isinstance(field.annotation, type) else None
        if nested is not None and issubclass(nested, BaseModel):
            _factory_defaults(nested, prop)
        if field.default_factory is not None and "default" not in prop:
            value = field.default_factory()
            prop["default"] = {} if isinstance(value, BaseModel) else value


def openapi_schema(model: type[BaseModel], description: str) -> dict[str, Any]:
    """Structural OpenAPI v3 schema of a pydantic model (wire names: aliases)."""
    raw = model.model_json_schema(by_alias=True, mode="validation")
    inlined = _inline(raw, raw.get("$defs", {}))
    schema = _structural(inlined)
    _factory_defaults(model, schema)
    schema["description"] = description
    return schema


def _immutability_rules(spec: dict[str, Any]) -> list[dict[str, str]]:
    """CEL rules on spec: presence of optional immutable fields must not change."""
    required = set(spec.get("required", []))
    rules = []
    for name, prop in spec["properties"].items():
        if name in r.MUTABLE_SPEC_FIELDS:
            continue
        prop.setdefault("x-kubernetes-validations", []).append(
            {"rule": "self == oldSelf", "message": f"{name} is immutable after creation"}
        )
        if name not in required and "default" not in prop:
            rules.append(
                {
                    "rule": f"has(self.{name}) == has(oldSelf.{name})",
                    "message": f"{name} is immutable after creation",
                }
            )
    rules.append(
        {
            "rule": "!has(oldSelf.cancel) || !oldSelf.cancel || (has(self.cancel) && self.cancel)",
            "message": "cancel cannot be undone: a cancelled TrainingJob stays cancelled",
        }
    )
    return rules


def _field_or_default(model: type[BaseModel], name: str) -> str:
    """CEL for a field that may be absent: its value, else the model's default.

    The API server evaluates every rule against every ``default`` in the schema as written when
    the CRD is created (``training_kwargs`` defaults to ``{}``): a bare ``self.batch_size`` there
    fails the CRD with ``no such key: batch_size``. On stored objects defaulting has filled the
    field, so the fallback only ever applies to the CRD's own defaults, where it is exact.
    """
    return f"(has(self.{name}) ? self.{name} : {json.dumps(model.model_fields[name].default)})"


def cross_field_rules() -> dict[str, list[dict[str, str]]]:
    """Rules the models enforce in validators, mirrored in CEL for kubectl users."""
    kwargs = TrainingKwargs
    return {
        "training_kwargs": [
            {
                "rule": f"{_field_or_default(kwargs, 'batch_size')} >= "
                        f"2 * {_field_or_default(kwargs, 'images_per_player')}",
                "message": "batch_size must be at least 2 x images_per_player: a batch needs two players",
            }
        ],
    }


#: A terminal phase is final for every writer (the operator's writes are also conditional on the
#: resourceVersion they decided from): a stale or buggy writer cannot put `running` over `completed`.
#: A transition rule, so it runs only on updates; has()-guarded, so it holds on an empty status.
TERMINAL_PHASE_RULE = {
    "rule": "!has(oldSelf.phase) || !(oldSelf.phase in ['completed', 'failed', 'cancelled']) "
            "|| (has(self.phase) && self.phase == oldSelf.phase)",
    "message": "a terminal phase (completed, failed, cancelled) is final",
}


PRINTER_COLUMNS = [
    {"name": "Tenant", "type": "string", "jsonPath": ".spec.tenant_id"},
    {"name": "Status", "type": "string", "jsonPath": ".status.phase"},
    {"name": "Epoch", "type": "integer", "jsonPath": ".status.progress.current_epoch"},
    {"name": "Total", "type": "integer", "jsonPath": ".status.progress.total_epochs", "priority": 1},
    {"name": "Loss", "type": "number", "jsonPath": ".status.progress.current_loss"},
    {"name": "mAP", "type": "number", "jsonPath": ".status.metrics.mAP", "priority": 1},
    {"name": "Reason", "type": "string", "jsonPath": ".status.reason", "priority": 1},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]


def build_crd() -> dict[str, Any]:
    """The whole CustomResourceDefinition as a dict."""
    spec = openapi_schema(
        r.TrainingJobSpec,
        "What to train (the seed API's training request) and how to run it.",
    )
    spec["x-kubernetes-validations"] = _immutability_rules(spec)
    for name, rules in cross_field_rules().items():
        spec["properties"][name].setdefault("x-kubernetes-validations", []).extend(rules)
    status = openapi_schema(
        r.TrainingJobStatus, "Observed state, written by the operator and the trainer."
    )
    status["x-kubernetes-validations"] = [TERMINAL_PHASE_RULE]
    root = {
        "type": "object",
        "description": "A LaxAI re-identification training run, reconciled into a batch/v1 Job.",
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string", "description": "API version of the object."},
            "kind": {"type": "string", "description": "Kind of the object."},
            # Only `type: object` (and name/generateName restrictions) is allowed here: the API
            # server refuses anything else, a description included (structural schema rules).
            "metadata": {"type": "object"},
            "spec": spec,
            "status": status,
        },
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{r.PLURAL}.{r.GROUP}",
            "labels": {"app.kubernetes.io/part-of": "laxai-training"},
        },
        "spec": {
            "group": r.GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": r.KIND,
                "listKind": f"{r.KIND}List",
                "plural": r.PLURAL,
                "singular": r.SINGULAR,
                "shortNames": r.SHORT_NAMES,
                "categories": r.CATEGORIES,
            },
            "versions": [
                {
                    "name": r.VERSION,
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": root},
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": PRINTER_COLUMNS,
                }
            ],
        },
    }


def render_crd() -> str:
    """The CRD as the YAML committed in crds/trainingjob.yaml."""
    header = "# Generated by `laxai-operator crd` from laxai_operator.resource; do not edit.\n"
    return header + yaml.safe_dump(build_crd(), sort_keys=False, width=100)
