"""'did you mean …?' for an unknown key: the closest field name at that place in a model."""

from __future__ import annotations

import difflib
import types
from collections.abc import Sequence
from typing import Any, Union, get_args, get_origin

from pydantic import BaseModel


def _model_of(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if get_origin(annotation) in (Union, types.UnionType):
        for arg in get_args(annotation):
            if (model := _model_of(arg)) is not None:
                return model
    return None


def field_names(model: type[BaseModel]) -> dict[str, Any]:
    """Every accepted key of ``model`` (names and aliases) -> its annotation."""
    names: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        for key in (name, info.alias, info.validation_alias if isinstance(info.validation_alias, str) else None):
            if key:
                names[key] = info.annotation
    return names


def did_you_mean(model: type[BaseModel], path: Sequence[str | int]) -> str | None:
    """The known key closest to ``path[-1]`` in the model reached by ``path[:-1]``, if any is close."""
    current: type[BaseModel] | None = model
    for part in path[:-1]:
        if current is None:
            return None
        current = _model_of(field_names(current).get(str(part)))
    if current is None or not path:
        return None
    close = difflib.get_close_matches(str(path[-1]), list(field_names(current)), n=1, cutoff=0.75)
    return close[0] if close else None
