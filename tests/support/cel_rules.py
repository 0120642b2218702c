"""CEL ``x-kubernetes-validations`` of a structural schema, evaluated with cel-python as the API
server evaluates them: ``self`` is the value at the rule's node, ``oldSelf`` the stored value
there on an update. Transition rules (those naming ``oldSelf``) run only on updates where the
old value exists. A value unchanged by an update is not re-checked (validation ratcheting,
on by default since Kubernetes 1.30), which also keeps status writes cheap.

Arrays: item rules run without ``oldSelf`` (the API server correlates items only in map lists,
which the TrainingJob CRD does not use).
"""

from __future__ import annotations

import functools
import re
from typing import Any

import celpy

from tests.support.crd_schema import Cause

#: No value (create, or a field absent from the stored object).
MISSING = object()


@functools.lru_cache(maxsize=512)
def _program(rule: str) -> celpy.Runner:
    env = celpy.Environment()
    return env.program(env.compile(rule))


def _failure(rule: dict[str, Any], new: Any, old: Any) -> str | None:
    """Why ``rule`` fails on ``new`` (None when it holds), worded as the API server's CEL validator
    words it (apiextensions-apiserver schema/cel/validation.go): the rule's message (or
    ``failed rule: <rule>``) when it is false, ``<error> evaluating rule: <message or rule>`` when
    evaluation fails, e.g. ``no such key: batch_size`` for a field the value lacks."""
    activation = {"self": celpy.json_to_cel(new)}
    if old is not MISSING:
        activation["oldSelf"] = celpy.json_to_cel(old)
    text = (rule.get("message") or "").strip() or rule["rule"].strip()
    try:
        result = _program(rule["rule"]).evaluate(activation)
    except celpy.CELEvalError as err:
        return f"{_cel_go_error(err)} evaluating rule: {text}"
    if isinstance(result, celpy.CELEvalError):
        return f"{_cel_go_error(result)} evaluating rule: {text}"
    if result is True or (isinstance(result, celpy.celtypes.BoolType) and bool(result)):
        return None
    return rule.get("message") or f"failed rule: {rule['rule'].strip()}"


def _cel_go_error(err: celpy.CELEvalError) -> str:
    """cel-python's error text in cel-go's words (the API server runs cel-go)."""
    detail = str(err.args[0]) if err.args else str(err)
    missing = re.match(r"no such member in mapping: '?([^']*)'?", detail)
    if missing:
        return f"no such key: {missing.group(1)}"
    return detail


def _type_name(schema: dict[str, Any], value: Any) -> str:
    """The 'value' the API server reports for a CEL failure: the schema type of the node."""
    return schema.get("type") or ("object" if isinstance(value, dict) else "array" if isinstance(value, list) else "")


def _join(path: str, key: str | int) -> str:
    return f"{path}[{key}]" if isinstance(key, int) else (f"{path}.{key}" if path else key)


def violations(schema: dict[str, Any], new: Any, old: Any = MISSING, path: str = "", *,
               ratchet: bool = True) -> list[Cause]:
    """Causes for every rule ``new`` breaks (``old``: the stored value, on an update).

    ``ratchet=False`` re-checks unchanged values too: the API server does so when it validates a
    CRD's defaults at CRD creation (with ``oldSelf`` = the default itself).
    """
    if ratchet and old is not MISSING and new == old:
        return []  # ratcheting: an unchanged value is not re-validated
    causes = []
    for rule in schema.get("x-kubernetes-validations") or []:
        transition = "oldSelf" in rule["rule"]
        if transition and old is MISSING:
            continue
        failure = _failure(rule, new, old if transition else MISSING)
        if failure is not None:
            causes.append(Cause(path, f'Invalid value: "{_type_name(schema, new)}": {failure}'))
    if isinstance(new, dict):
        for key, child in (schema.get("properties") or {}).items():
            if key in new:
                before = old.get(key, MISSING) if isinstance(old, dict) else MISSING
                causes += violations(child, new[key], before, _join(path, key), ratchet=ratchet)
        additional = schema.get("additionalProperties")
        if isinstance(additional, dict):
            for key in new.keys() - (schema.get("properties") or {}).keys():
                before = old.get(key, MISSING) if isinstance(old, dict) else MISSING
                causes += violations(additional, new[key], before, f"{path}[{key}]", ratchet=ratchet)
    elif isinstance(new, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(new):
            causes += violations(schema["items"], item, MISSING, _join(path, i), ratchet=ratchet)
    return causes

