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
import json
from typing import Any

import celpy

from tests.support.crd_schema import Cause

#: No value (create, or a field absent from the stored object).
MISSING = object()


@functools.lru_cache(maxsize=512)
def _program(rule: str) -> celpy.Runner:
    env = celpy.Environment()
    return env.program(env.compile(rule))


def _holds(rule: str, new: Any, old: Any) -> bool:
    activation = {"self": celpy.json_to_cel(new)}
    if old is not MISSING:
        activation["oldSelf"] = celpy.json_to_cel(old)
    try:
        result = _program(rule).evaluate(activation)
    except celpy.CELEvalError:
        return False
    return result is True or (isinstance(result, celpy.celtypes.BoolType) and bool(result))


def _describe(value: Any) -> str:
    return '"object"' if isinstance(value, dict) else '"array"' if isinstance(value, list) else json.dumps(value)


def _join(path: str, key: str | int) -> str:
    return f"{path}[{key}]" if isinstance(key, int) else (f"{path}.{key}" if path else key)


def violations(schema: dict[str, Any], new: Any, old: Any = MISSING, path: str = "") -> list[Cause]:
    """Causes for every rule ``new`` breaks (``old``: the stored value, on an update)."""
    if old is not MISSING and new == old:
        return []  # ratcheting: an unchanged value is not re-validated
    causes = []
    for rule in schema.get("x-kubernetes-validations") or []:
        transition = "oldSelf" in rule["rule"]
        if transition and old is MISSING:
            continue
        if not _holds(rule["rule"], new, old if transition else MISSING):
            message = rule.get("message") or f"failed rule: {rule['rule']}"
            causes.append(Cause(path, f"Invalid value: {_describe(new)}: {message}"))
    if isinstance(new, dict):
        for key, child in (schema.get("properties") or {}).items():
            if key in new:
                before = old.get(key, MISSING) if isinstance(old, dict) else MISSING
                causes += violations(child, new[key], before, _join(path, key))
    elif isinstance(new, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(new):
            causes += violations(schema["items"], item, MISSING, _join(path, i))
    return causes

