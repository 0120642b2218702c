"""What the API server does with a CRD's structural openAPIV3Schema on every write.

In the API server's order: prune unknown fields and nulls, apply ``default``s,
then validate (jsonschema Draft 4: the schema is OpenAPI 3.0, whose
``exclusiveMinimum``/``exclusiveMaximum`` are booleans). Pure functions on
plain dicts; ``CrdSchema`` just caches the compiled validator.

CEL ``x-kubernetes-validations`` are evaluated after these (``tests.support.cel_rules``).
Not done (only a real API server does them): ``format`` checks, list-type (set/map)
uniqueness, ratcheting of OpenAPI errors.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from typing import Any

import jsonschema

# Top-level keys that never go through pruning: metadata has its own strategy.
_ROOT_KEEP = {"apiVersion", "kind", "metadata"}


@dataclass(frozen=True)
class Cause:
    """One invalid field, as in a Status' ``details.causes``."""

    field: str
    message: str
    reason: str = "FieldValueInvalid"


def _join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def prune(value: Any, schema: dict[str, Any], path: str = "", removed: list[str] | None = None) -> Any:
    """Drop fields the schema does not declare, and nulls where not ``nullable``.

    Returns the pruned copy; the paths of removed unknown fields go to ``removed``
    (the API server reports them as warnings, or rejects them with fieldValidation=Strict).
    """
    removed = [] if removed is None else removed
    if isinstance(value, dict):
        if schema.get("x-kubernetes-preserve-unknown-fields"):
            return copy.deepcopy(value)
        properties = schema.get("properties")
        additional = schema.get("additionalProperties")
        result: dict[str, Any] = {}
        for key, item in value.items():
            child_path = _join(path, key)
            if not path and key in _ROOT_KEEP:
                result[key] = copy.deepcopy(item)
                continue
            if properties is not None and key in properties:
                child = properties[key]
            elif isinstance(additional, dict):
                child = additional
            elif additional is True:
                result[key] = copy.deepcopy(item)
                continue
            else:
                removed.append(child_path)
                continue
            if item is None and not child.get("nullable"):
                continue  # nulls are pruned before defaulting, as the API server does
            result[key] = prune(item, child, child_path, removed)
        return result
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [prune(item, schema["items"], _join(path, i), removed) for i, item in enumerate(value)]
    return copy.deepcopy(value)


def apply_defaults(value: Any, schema: dict[str, Any]) -> Any:
    """Fill missing fields with their schema ``default``, recursing into what is present."""
    if isinstance(value, dict):
        result = dict(value)
        for key, child in (schema.get("properties") or {}).items():
            if key not in result and "default" in child:
                result[key] = copy.deepcopy(child["default"])
            if key in result:
                result[key] = apply_defaults(result[key], child)
        additional = schema.get("additionalProperties")
        if isinstance(additional, dict):
            for key in result.keys() - (schema.get("properties") or {}).keys():
                result[key] = apply_defaults(result[key], additional)
        return result
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [apply_defaults(item, schema["items"]) for item in value]
    return value


def _field_of(error: jsonschema.ValidationError) -> str:
    path = ""
    for key in error.absolute_path:
        path = _join(path, key)
    return path


def _causes(error: jsonschema.ValidationError) -> list[Cause]:
    where = _field_of(error)
    if error.validator == "required" and isinstance(error.instance, dict):
        missing = [name for name in error.validator_value if name not in error.instance]
        return [Cause(_join(where, name), "Required value", "FieldValueRequired") for name in missing]
    if error.validator == "enum":
        allowed = ", ".join(json.dumps(v) for v in error.validator_value)
        return [Cause(where, f"Unsupported value: {json.dumps(error.instance)}: supported values: {allowed}",
                      "FieldValueNotSupported")]
    if error.validator == "type":
        return [Cause(where, f"Invalid value: {json.dumps(error.instance)[:200]}: "
                             f"{where} in body must be of type {error.validator_value}",
                      "FieldValueTypeInvalid")]
    return [Cause(where, f"Invalid value: {json.dumps(error.instance)[:200]}: {error.message}")]


@dataclass
class CrdSchema:
    """A CRD version's openAPIV3Schema, compiled once."""

    schema: dict[str, Any]
    _validator: jsonschema.Draft4Validator = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._validator = jsonschema.Draft4Validator(self.schema)

    def prune(self, obj: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
        removed: list[str] = []
        return prune(obj, self.schema, "", removed), removed

    def default(self, obj: dict[str, Any]) -> dict[str, Any]:
        return apply_defaults(obj, self.schema)

    def validate(self, obj: dict[str, Any]) -> list[Cause]:
        causes: list[Cause] = []
        for error in sorted(self._validator.iter_errors(obj), key=lambda e: list(map(str, e.absolute_path))):
            causes.extend(_causes(error))
        return causes
