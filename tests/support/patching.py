"""JSON patch (RFC 6902) and JSON merge patch (RFC 7386), as the API server applies them.

Pure functions on plain JSON values; they never mutate their inputs.
Strategic merge patch is served as a merge patch: enough for metadata, labels,
annotations, finalizers and status patches, not for keyed list merging.
"""

from __future__ import annotations

import copy
from typing import Any


class PatchError(ValueError):
    """The patch cannot be applied (answered as 422, as kopf's resourceVersion test expects)."""


class MalformedPatch(ValueError):
    """The patch body itself is not a patch of its declared type (answered as 400)."""


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: dicts merge key by key, ``null`` deletes, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _unescape(token: str) -> str:
    return token.replace("~1", "/").replace("~0", "~")


def _parse_pointer(pointer: Any) -> list[str]:
    if not isinstance(pointer, str) or (pointer and not pointer.startswith("/")):
        raise MalformedPatch(f"invalid JSON pointer {pointer!r}: must be empty or start with '/'")
    return [_unescape(token) for token in pointer.split("/")[1:]] if pointer else []


def _index(container: list[Any], token: str, pointer: str, *, for_insert: bool) -> int:
    if for_insert and token == "-":
        return len(container)
    if not token.isdigit() or (token != "0" and token.startswith("0")):
        raise PatchError(f"invalid array index {token!r} in path {pointer!r}")
    index = int(token)
    limit = len(container) if for_insert else len(container) - 1
    if index > limit:
        raise PatchError(f"array index {index} out of range in path {pointer!r}")
    return index


def _parent(doc: Any, tokens: list[str], pointer: str) -> Any:
    node = doc
    for token in tokens[:-1]:
        if isinstance(node, dict):
            if token not in node:
                raise PatchError(f"path {pointer!r} does not exist: missing {token!r}")
            node = node[token]
        elif isinstance(node, list):
            node = node[_index(node, token, pointer, for_insert=False)]
        else:
            raise PatchError(f"path {pointer!r} does not exist: {token!r} is inside a scalar")
    return node


def _get(doc: Any, pointer: str) -> Any:
    tokens = _parse_pointer(pointer)
    if not tokens:
        return doc
    parent = _parent(doc, tokens, pointer)
    last = tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise PatchError(f"path {pointer!r} does not exist")
        return parent[last]
    if isinstance(parent, list):
        return parent[_index(parent, last, pointer, for_insert=False)]
    raise PatchError(f"path {pointer!r} does not exist")


def _add(doc: Any, pointer: str, value: Any) -> Any:
    tokens = _parse_pointer(pointer)
    if not tokens:
        return value
    parent = _parent(doc, tokens, pointer)
    last = tokens[-1]
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list):
        parent.insert(_index(parent, last, pointer, for_insert=True), value)
    else:
        raise PatchError(f"cannot add at {pointer!r}: the parent is a scalar")
    return doc


def _remove(doc: Any, pointer: str) -> Any:
    tokens = _parse_pointer(pointer)
    if not tokens:
        raise PatchError("cannot remove the whole document")
    parent = _parent(doc, tokens, pointer)
    last = tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise PatchError(f"cannot remove {pointer!r}: it does not exist")
        del parent[last]
    elif isinstance(parent, list):
        del parent[_index(parent, last, pointer, for_insert=False)]
    else:
        raise PatchError(f"cannot remove {pointer!r}: the parent is a scalar")
    return doc


def json_patch(doc: Any, operations: Any) -> Any:
    """RFC 6902: apply all operations atomically; a failed ``test`` raises ``PatchError``."""
    if not isinstance(operations, list):
        raise MalformedPatch(
            "an application/json-patch+json body must be a JSON list of operations, "
            f"got {type(operations).__name__}; send a dict as application/merge-patch+json"
        )
    result = copy.deepcopy(doc)
    for number, op in enumerate(operations):
        if not isinstance(op, dict) or "op" not in op or "path" not in op:
            raise MalformedPatch(f"operation #{number} must be an object with 'op' and 'path': {op!r}")
        kind, path = op["op"], op["path"]
        if kind in ("add", "replace", "test") and "value" not in op:
            raise MalformedPatch(f"operation #{number} ({kind}) needs a 'value'")
        if kind in ("move", "copy") and "from" not in op:
            raise MalformedPatch(f"operation #{number} ({kind}) needs a 'from'")
        if kind == "add":
            result = _add(result, path, copy.deepcopy(op["value"]))
        elif kind == "remove":
            result = _remove(result, path)
        elif kind == "replace":
            _get(result, path)  # must exist
            if _parse_pointer(path):
                result = _remove(result, path)
            result = _add(result, path, copy.deepcopy(op["value"]))
        elif kind == "move":
            value = _get(result, op["from"])
            result = _remove(result, op["from"])
            result = _add(result, path, value)
        elif kind == "copy":
            result = _add(result, path, copy.deepcopy(_get(result, op["from"])))
        elif kind == "test":
            actual = _get(result, path)
            if actual != op["value"]:
                raise PatchError(f"testing value {path} failed: {actual!r} != {op['value']!r}")
        else:
            raise MalformedPatch(f"operation #{number} has an unknown op {kind!r}")
    return result
