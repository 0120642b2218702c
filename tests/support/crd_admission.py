"""What the API server checks before it accepts a CustomResourceDefinition.

Modelled on k8s.io/apiextensions-apiserver (v1.30-v1.34), in its order and words:

1. structural schema (pkg/apiserver/schema/validation.go ``validateStructuralInvariants``):
   a ``type`` everywhere, ``items`` on arrays, ``object`` at the root, no ``additionalProperties``
   at the root, ``kind``/``apiVersion`` strings, and the root ``metadata`` node holding nothing
   but ``type: object`` and restrictions of ``name``/``generateName`` (no description);
2. defaults (pkg/apiserver/schema/defaulting/validation.go ``ValidateDefaults``): none in
   top-level metadata, each one pruned (no unknown fields), valid against its node's schema and
   passing every ``x-kubernetes-validations`` rule at and below its node, evaluated on the
   default *as written* (nested defaults are not applied first) with ``oldSelf`` = the default
   and, as ratcheting is on (beta 1.30, GA 1.33), once more without ``oldSelf``;
3. the OpenAPI schema (pkg/apis/apiextensions/validation/validation.go
   ``ValidateCustomResourceDefinitionOpenAPISchema``): unsupported keywords, ``uniqueItems``,
   ``properties`` beside ``additionalProperties``, ``x-kubernetes-*`` placement (list types on
   arrays, ``set`` items atomic, ``map`` keys scalar and required or defaulted, map types on
   objects), the rules' messages, ``oldSelf`` only on correlatable nodes (not under the items of
   a non-map list nor inside an atomic map), and each rule's estimated cost (tests.support.cel_cost);
4. printer columns (``ValidateCustomResourceColumnDefinition``): type, format, a simple JSONPath.

Paths are the API server's: when every version has the same schema (our case) it reports them
under ``spec.validation.openAPIV3Schema`` (the internal form). Where this model is simpler it is
stricter: rules the cost bound cannot estimate are refused, ``anyOf``/``allOf``/``oneOf``/``not``
are refused outright.
"""

from __future__ import annotations

import json
import re
from typing import Any

import celpy

from tests.support import cel_cost, cel_rules
from tests.support.crd_schema import Cause, CrdSchema, prune

_DNS1035 = re.compile(r"[a-z]([-a-z0-9]{0,61}[a-z0-9])?")
_TYPES = {"string", "number", "integer", "boolean", "array", "object"}
_UNSUPPORTED = {"id": "id is not supported", "$ref": "$ref is not supported",
                "additionalItems": "additionalItems is not supported",
                "patternProperties": "patternProperties is not supported",
                "definitions": "definitions is not supported", "dependencies": "dependencies is not supported"}
_JUNCTORS = ("anyOf", "allOf", "oneOf", "not")
#: The fields of apiextensions.k8s.io/v1 JSONSchemaProps and ValidationRule: anything else is an
#: unknown field, refused by strict decoding (kubectl's default fieldValidation=Strict) and
#: silently dropped otherwise, so a keyword the generator invents would validate nothing.
_SCHEMA_FIELDS = {"id", "$schema", "$ref", "description", "type", "format", "title", "default", "maximum",
                  "exclusiveMaximum", "minimum", "exclusiveMinimum", "maxLength", "minLength", "pattern",
                  "maxItems", "minItems", "uniqueItems", "multipleOf", "enum", "maxProperties", "minProperties",
                  "required", "items", "allOf", "oneOf", "anyOf", "not", "properties", "additionalProperties",
                  "patternProperties", "dependencies", "additionalItems", "definitions", "externalDocs", "example",
                  "nullable", "x-kubernetes-preserve-unknown-fields", "x-kubernetes-embedded-resource",
                  "x-kubernetes-int-or-string", "x-kubernetes-list-map-keys", "x-kubernetes-list-type",
                  "x-kubernetes-map-type", "x-kubernetes-validations"}
_RULE_FIELDS = {"rule", "message", "messageExpression", "reason", "fieldPath", "optionalOldSelf"}
_COLUMN_TYPES = ("boolean", "date", "integer", "number", "string")
_COLUMN_FORMATS = ("byte", "date", "date-time", "double", "float", "int32", "int64", "password")
_RULE_REASONS = ("FieldValueDuplicate", "FieldValueForbidden", "FieldValueInvalid", "FieldValueRequired")
_ROOT_WITH_STATUS = {"type", "description", "format", "title", "maximum", "exclusiveMaximum", "minimum",
                     "exclusiveMinimum", "maxLength", "minLength", "pattern", "maxItems", "minItems",
                     "uniqueItems", "multipleOf", "required", "items", "properties", "externalDocs", "example",
                     "x-kubernetes-preserve-unknown-fields", "x-kubernetes-validations"}


def forbidden(path: str, detail: str) -> Cause:
    return Cause(path, f"Forbidden: {detail}", "FieldValueForbidden")


def required(path: str, detail: str) -> Cause:
    return Cause(path, f"Required value: {detail}", "FieldValueRequired")


def invalid(path: str, value: Any, detail: str) -> Cause:
    return Cause(path, f"Invalid value: {_go_value(value)}: {detail}")


def unknown_field(path: str) -> Cause:
    return Cause(path, f'unknown field "{path}" (strict decoding error)', "FieldValueNotSupported")


def _go_value(value: Any) -> str:
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"))[:200]
    return json.dumps(value)


def _key(path: str, key: str) -> str:
    return f"{path}.properties[{key}]"


def _children(node: dict[str, Any], path: str) -> list[tuple[str, dict[str, Any], str]]:
    """(kind, child, child path) for properties, items and additionalProperties."""
    out = [("property", child, _key(path, name)) for name, child in (node.get("properties") or {}).items()]
    if isinstance(node.get("items"), dict):
        out.append(("items", node["items"], f"{path}.items"))
    if isinstance(node.get("additionalProperties"), dict):
        out.append(("additionalProperties", node["additionalProperties"], f"{path}.additionalProperties"))
    return out


# ---------------------------------------------------------------- 1. structural schema


def structural(node: dict[str, Any], path: str, level: str = "root") -> list[Cause]:
    causes: list[Cause] = []
    kind = node.get("type")
    escape = node.get("x-kubernetes-preserve-unknown-fields") or node.get("x-kubernetes-int-or-string")
    if not kind and not escape:
        where = {"root": "at the root", "items": "for specified array items", "property": "for specified object fields",
                 "additionalProperties": "for specified object fields"}[level]
        causes.append(required(f"{path}.type", f"must not be empty {where}"))
    if kind == "array" and not isinstance(node.get("items"), dict):
        causes.append(required(f"{path}.items", "must be specified"))
    if level == "root":
        if kind and kind != "object":
            causes.append(invalid(f"{path}.type", kind, "must be object at the root"))
        if "additionalProperties" in node:
            causes.append(forbidden(f"{path}.additionalProperties", "must not be used at the root"))
        for name in ("kind", "apiVersion"):
            prop = (node.get("properties") or {}).get(name)
            if prop is not None and prop.get("type") != "string":
                causes.append(invalid(f"{_key(path, name)}.type", prop.get("type", ""), "must be string"))
        metadata = (node.get("properties") or {}).get("metadata")
        if metadata is not None:
            causes += _root_metadata(metadata, _key(path, "metadata"))
    if node.get("x-kubernetes-embedded-resource") and kind != "object":
        causes.append(invalid(f"{path}.type", kind or "", "must be object if x-kubernetes-embedded-resource is true"))
    for junctor in _JUNCTORS:
        if junctor in node:  # stricter: the emulator does not model value validations under junctors
            causes.append(forbidden(f"{path}.{junctor}", "not supported by the test emulator (stricter than the "
                                                         "API server, which allows it with restrictions)"))
    for child_level, child, child_path in _children(node, path):
        causes += structural(child, child_path, child_level)
    return causes


def _root_metadata(metadata: dict[str, Any], path: str) -> list[Cause]:
    """The root metadata node may restrict name and generateName only (and must be an object)."""
    causes = []
    if metadata.get("type") != "object":
        causes.append(invalid(f"{path}.type", metadata.get("type", ""), "must be object"))
    rest = {k: v for k, v in metadata.items() if k not in ("type", "default")}
    if set(rest.get("properties") or {}) <= {"name", "generateName"}:
        rest.pop("properties", None)
    if rest:
        causes.append(forbidden(path, "must not specify anything other than name and generateName, "
                                      "but metadata is implicitly specified"))
    return causes


# ---------------------------------------------------------------- 2. defaults


def defaults(node: dict[str, Any], path: str, *, root: bool = True) -> list[Cause]:
    causes: list[Cause] = []
    if "default" in node and not root:
        causes += _default(node, path)
    for name, child in (node.get("properties") or {}).items():
        if root and name in ("metadata", "kind", "apiVersion"):
            if "default" in child:
                causes.append(forbidden(f"{_key(path, name)}.default", f"must not be set in top-level {name}"))
            continue
        causes += defaults(child, _key(path, name), root=False)
    if isinstance(node.get("items"), dict):
        causes += defaults(node["items"], f"{path}.items", root=False)
    # additionalProperties are not followed: the API server does not either.
    return causes


def _default(node: dict[str, Any], path: str) -> list[Cause]:
    value, where = node["default"], f"{path}.default"
    if value is None and not node.get("nullable"):
        return [invalid(where, value, "must not be null")]
    causes = []
    if prune(value, node) != value:
        causes.append(invalid(where, value, "must not have unknown fields"))
    schema_errors = CrdSchema(node).validate(value)
    if schema_errors:
        return causes + [Cause(_under(where, c.field), c.message, c.reason) for c in schema_errors]
    for old in (value, cel_rules.MISSING):  # oldSelf = the default, then (ratcheting) no oldSelf
        for cause in cel_rules.violations(node, value, old, ratchet=False):
            cause = Cause(_under(where, cause.field), cause.message, cause.reason)
            if cause not in causes:
                causes.append(cause)
    return causes


def _under(where: str, field: str) -> str:
    if not field:
        return where
    return f"{where}{field}" if field.startswith("[") else f"{where}.{field}"


# ---------------------------------------------------------------- 3. OpenAPI schema and rules


class _Costs:
    def __init__(self) -> None:
        self.total = 0
        self.by_path: list[tuple[int, str]] = []


def openapi(node: dict[str, Any], path: str, costs: _Costs, *, cardinality: int = 1,
            uncorrelatable: str | None = None, root: bool = False) -> list[Cause]:
    causes: list[Cause] = [unknown_field(f"{path}.{key}") for key in node if key not in _SCHEMA_FIELDS]
    kind = node.get("type")
    if kind and kind not in _TYPES:
        causes.append(Cause(f"{path}.type", f'Unsupported value: "{kind}": supported values: '
                            + ", ".join(f'"{t}"' for t in sorted(_TYPES)), "FieldValueNotSupported"))
    for key, detail in _UNSUPPORTED.items():
        if key in node:
            causes.append(forbidden(f"{path}.{key}", detail))
    if kind == "null":
        causes.append(forbidden(f"{path}.type", "type cannot be set to null, use nullable as an alternative"))
    if isinstance(node.get("items"), list):
        causes.append(forbidden(f"{path}.items", "items must be a schema object and not an array"))
    if node.get("uniqueItems"):
        causes.append(forbidden(f"{path}.uniqueItems",
                                "uniqueItems cannot be set to true since the runtime complexity becomes quadratic"))
    if "additionalProperties" in node and node.get("properties") and node["additionalProperties"] is not True:
        causes.append(forbidden(f"{path}.additionalProperties", "additionalProperties and properties are mutual exclusive"))
    if node.get("x-kubernetes-preserve-unknown-fields") is False:
        causes.append(invalid(f"{path}.x-kubernetes-preserve-unknown-fields", False, "must be true or undefined"))
    if root and node.get("nullable"):
        causes.append(forbidden(f"{path}.nullable", "nullable cannot be true at the root"))
    if "pattern" in node:
        causes += _pattern(node["pattern"], f"{path}.pattern")
    causes += _extensions(node, path)
    causes += _rules(node, path, costs, cardinality, uncorrelatable)
    for child_kind, child, child_path in _children(node, path):
        if child_kind == "items":
            child_cardinality = cardinality * cel_cost.count_bound(node)
            child_uncorrelatable = uncorrelatable or (None if node.get("x-kubernetes-list-type") == "map" else path)
        elif child_kind == "additionalProperties":
            child_cardinality = cardinality * cel_cost.count_bound(node)
            child_uncorrelatable = uncorrelatable
        else:
            child_cardinality = cardinality
            atomic = node.get("x-kubernetes-map-type") == "atomic"
            child_uncorrelatable = uncorrelatable or (path if atomic else None)
        causes += openapi(child, child_path, costs, cardinality=child_cardinality, uncorrelatable=child_uncorrelatable)
    return causes


#: Perl/Python syntax Go's RE2 (the API server's regexp) does not have: lookaround, backreferences.
_NOT_RE2 = re.compile(r"\(\?<?[=!]|\\[1-9]|\(\?P=")


def _pattern(pattern: str, path: str) -> list[Cause]:
    """A pattern must compile as Go's regexp (RE2) compiles it (schema/validation.go)."""
    try:
        re.compile(pattern)
    except re.error as err:
        return [invalid(path, pattern, f"must be a valid regular expression, but isn't: {err}")]
    if _NOT_RE2.search(pattern):
        return [invalid(path, pattern, "must be a valid regular expression, but isn't: RE2 has no lookaround "
                                       "or backreferences")]
    return []


def _extensions(node: dict[str, Any], path: str) -> list[Cause]:
    causes = []
    kind = node.get("type")
    list_type = node.get("x-kubernetes-list-type")
    map_type = node.get("x-kubernetes-map-type")
    keys = node.get("x-kubernetes-list-map-keys") or []
    if map_type is not None and kind != "object":
        causes.append(invalid(f"{path}.type", kind or "", "must be object if x-kubernetes-map-type is specified"))
    if map_type is not None and map_type not in ("atomic", "granular"):
        causes.append(Cause(f"{path}.x-kubernetes-map-type", f'Unsupported value: "{map_type}": supported values: '
                            '"atomic", "granular"', "FieldValueNotSupported"))
    if list_type is not None and kind != "array":
        causes.append(invalid(f"{path}.type", kind or "", "must be array if x-kubernetes-list-type is specified"))
    elif list_type == "set" and isinstance(node.get("items"), dict):
        items = node["items"]
        if items.get("type") == "object" and items.get("x-kubernetes-map-type") != "atomic":
            causes.append(invalid(f"{path}.items.x-kubernetes-map-type", items.get("x-kubernetes-map-type", ""),
                                  "must be atomic as item of a list with x-kubernetes-list-type=set"))
        if items.get("type") == "array" and items.get("x-kubernetes-list-type", "atomic") != "atomic":
            causes.append(invalid(f"{path}.items.x-kubernetes-list-type", items["x-kubernetes-list-type"],
                                  "must be atomic as item of a list with x-kubernetes-list-type=set"))
    if list_type is not None and list_type not in ("atomic", "set", "map"):
        causes.append(Cause(f"{path}.x-kubernetes-list-type", f'Unsupported value: "{list_type}": supported values: '
                            '"atomic", "set", "map"', "FieldValueNotSupported"))
    if keys and list_type != "map":
        causes.append(required(f"{path}.x-kubernetes-list-type", "must be map if x-kubernetes-list-map-keys is non-empty"))
    if list_type == "map":
        items = node.get("items") if isinstance(node.get("items"), dict) else {}
        if not keys:
            causes.append(required(f"{path}.x-kubernetes-list-map-keys", "must not be empty if x-kubernetes-list-type is map"))
        if items.get("type") != "object":
            causes.append(invalid(f"{path}.items.type", items.get("type", ""),
                                  "must be object if parent array's x-kubernetes-list-type is map"))
        for key in keys:
            prop = (items.get("properties") or {}).get(key)
            if prop is None:
                causes.append(invalid(f"{path}.x-kubernetes-list-map-keys", keys,
                                      "entries must all be names of item properties"))
                continue
            if prop.get("type") in ("array", "object"):
                causes.append(invalid(f"{_key(path + '.items', key)}.type", prop["type"],
                                      "must be a scalar type if parent array's x-kubernetes-list-type is map"))
            if key not in (items.get("required") or []) and "default" not in prop:
                causes.append(required(f"{_key(path + '.items', key)}.default", "this property is in "
                                       "x-kubernetes-list-map-keys, so it must have a default or be a required property"))
    return causes


def _rules(node: dict[str, Any], path: str, costs: _Costs, cardinality: int, uncorrelatable: str | None) -> list[Cause]:
    causes = []
    for i, rule in enumerate(node.get("x-kubernetes-validations") or []):
        where = f"{path}.x-kubernetes-validations[{i}]"
        causes += [unknown_field(f"{where}.{key}") for key in rule if key not in _RULE_FIELDS]
        text, message = str(rule.get("rule", "")).strip(), rule.get("message")
        if not text:
            causes.append(required(f"{where}.rule", "rule is not specified"))
            continue
        if message is not None and not str(message).strip():
            causes.append(invalid(f"{where}.message", message, "message must be non-empty if specified"))
        elif message is not None and ("\n" in message.strip() or "\r" in message.strip()):
            causes.append(invalid(f"{where}.message", message, "message must not contain line breaks"))
        elif ("\n" in text or "\r" in text) and not message:
            causes.append(required(f"{where}.message", "message must be specified if rule contains line breaks"))
        if "reason" in rule and rule["reason"] not in _RULE_REASONS:
            causes.append(Cause(f"{where}.reason", f'Unsupported value: "{rule["reason"]}": supported values: '
                                + ", ".join(f'"{r}"' for r in _RULE_REASONS), "FieldValueNotSupported"))
        try:
            cost = cel_cost.rule_cost(text, node) * cardinality
        except celpy.CELParseError as err:
            causes.append(invalid(f"{where}.rule", rule, f"compilation failed: ERROR: <input>: {err.args[0]}"))
            continue
        except cel_cost.RuleError as err:
            causes.append(invalid(f"{where}.rule", rule, f"compilation failed: ERROR: <input>: {err}"))
            continue
        costs.total += cost
        costs.by_path.append((cost, f"{where}.rule"))
        if cost > cel_cost.STATIC_ESTIMATED_COST_LIMIT:
            factor = cel_cost.cost_factor(cost, cel_cost.STATIC_ESTIMATED_COST_LIMIT)
            causes.append(forbidden(f"{where}.rule", f"estimated rule cost exceeds budget by factor of {factor} (try "
                                    "simplifying the rule, or adding maxItems, maxProperties, and maxLength where "
                                    "arrays, maps, and strings are declared)"))
        if rule.get("messageExpression"):  # compiled and costed like the rule (its own budget)
            try:
                message_cost = cel_cost.rule_cost(str(rule["messageExpression"]), node) * cardinality
            except (celpy.CELParseError, cel_cost.RuleError) as err:
                causes.append(invalid(f"{where}.messageExpression", rule, f"compilation failed: ERROR: <input>: {err}"))
            else:
                costs.total += message_cost
                if message_cost > cel_cost.STATIC_ESTIMATED_COST_LIMIT:
                    factor = cel_cost.cost_factor(message_cost, cel_cost.STATIC_ESTIMATED_COST_LIMIT)
                    causes.append(forbidden(f"{where}.messageExpression", "estimated messageExpression cost exceeds "
                                            f"budget by factor of {factor} (try simplifying the rule, or adding "
                                            "maxItems, maxProperties, and maxLength where arrays, maps, and strings "
                                            "are declared)"))
        if "oldSelf" in text and uncorrelatable is not None:
            causes.append(invalid(f"{where}.rule", text, "oldSelf cannot be used on the uncorrelatable portion of "
                                  f"the schema within {uncorrelatable}"))
    return causes


def _total_cost(costs: _Costs, path: str) -> list[Cause]:
    if costs.total <= cel_cost.STATIC_ESTIMATED_CRD_COST_LIMIT:
        return []
    worst = sorted(costs.by_path, reverse=True)[:4]
    factor = cel_cost.cost_factor(costs.total, cel_cost.STATIC_ESTIMATED_CRD_COST_LIMIT)
    return [forbidden(p, "contributed to estimated rule cost total exceeding cost limit for entire OpenAPIv3 schema")
            for _, p in worst] + [forbidden(path, "x-kubernetes-validations estimated rule cost total for entire "
                                            f"OpenAPIv3 schema exceeds budget by factor of {factor} (try simplifying "
                                            "the rule, or adding maxItems, maxProperties, and maxLength where arrays, "
                                            "maps, and strings are declared)")]


# ---------------------------------------------------------------- 4. printer columns


def printer_column(column: dict[str, Any], path: str) -> list[Cause]:
    causes = []
    if not column.get("name"):
        causes.append(required(f"{path}.name", ""))
    kind = column.get("type")
    if kind not in _COLUMN_TYPES:
        causes.append(invalid(f"{path}.type", kind or "", "must be one of " + ",".join(_COLUMN_TYPES)))
    if column.get("format") and column["format"] not in _COLUMN_FORMATS:
        causes.append(invalid(f"{path}.format", column["format"], "must be one of " + ",".join(_COLUMN_FORMATS)))
    json_path = column.get("jsonPath", "")
    if not json_path:
        causes.append(required(f"{path}.JSONPath", ""))
    elif not json_path.startswith("."):
        causes.append(invalid(f"{path}.JSONPath", json_path, "must be a simple json path starting with ."))
    return causes


# ---------------------------------------------------------------- the whole CRD


def check_schema(schema: dict[str, Any], path: str, *, status_subresource: bool = False) -> list[Cause]:
    """Every cause the API server would report for one openAPIV3Schema."""
    causes: list[Cause] = []
    if status_subresource:
        extra = sorted(set(schema) - _ROOT_WITH_STATUS)
        if extra:
            causes.append(invalid(path, extra, "only the fields " + ", ".join(sorted(_ROOT_WITH_STATUS)) +
                                  " are allowed at the root of the schema if the status subresource is enabled"))
    shape = structural(schema, path)
    causes += shape
    if not shape:  # the API server validates defaults of structural schemas only
        causes += defaults(schema, path)
    costs = _Costs()
    causes += openapi(schema, path, costs, root=True)
    return causes + _total_cost(costs, path)


def names(crd: dict[str, Any]) -> list[Cause]:
    """metadata.name is <plural>.<group>; short names and categories are DNS-1035 labels."""
    spec, causes = crd.get("spec", {}), []
    plural, group = spec.get("names", {}).get("plural", ""), spec.get("group", "")
    if crd.get("metadata", {}).get("name") != f"{plural}.{group}":
        causes.append(invalid("metadata.name", crd.get("metadata", {}).get("name", ""),
                              'must be spec.names.plural+"."+spec.group'))
    for key in ("shortNames", "categories"):
        for i, label in enumerate(spec.get("names", {}).get(key) or []):
            if not _DNS1035.fullmatch(label):
                causes.append(invalid(f"spec.names.{key}[{i}]", label, "a DNS-1035 label must consist of lower case "
                                      "alphanumeric characters or '-', start with an alphabetic character, and end "
                                      "with an alphanumeric character"))
    return causes


def check(crd: dict[str, Any]) -> list[Cause]:
    """Every cause the API server would report for this CustomResourceDefinition ([] = accepted)."""
    versions = crd.get("spec", {}).get("versions") or []
    schemas = [((v.get("schema") or {}).get("openAPIV3Schema")) for v in versions]
    columns = [v.get("additionalPrinterColumns") or [] for v in versions]
    shared_schema = len(versions) > 0 and all(s == schemas[0] for s in schemas)
    shared_columns = len(versions) > 0 and all(c == columns[0] for c in columns)
    causes: list[Cause] = names(crd)
    for i, version in enumerate(versions):
        schema = schemas[i]
        status = "status" in (version.get("subresources") or {})
        base = "spec.validation.openAPIV3Schema" if shared_schema else f"spec.versions[{i}].schema.openAPIV3Schema"
        if schema is None:
            causes.append(required(base, "schemas are required"))
        elif i == 0 or not shared_schema:
            causes += check_schema(schema, base, status_subresource=status)
        column_base = "spec.additionalPrinterColumns" if shared_columns else f"spec.versions[{i}].additionalPrinterColumns"
        if i == 0 or not shared_columns:
            for j, column in enumerate(columns[i]):
                causes += printer_column(column, f"{column_base}[{j}]")
    return causes


def refusal(crd: dict[str, Any]) -> str | None:
    """The API server's message for a refused CRD (None when accepted), as kubectl shows it."""
    causes = check(crd)
    if not causes:
        return None
    texts = [f"{c.field}: {c.message}" for c in causes]
    summary = texts[0] if len(texts) == 1 else "[" + ", ".join(texts) + "]"
    return f'CustomResourceDefinition.apiextensions.k8s.io "{crd["metadata"]["name"]}" is invalid: {summary}'

