"""A boolean is never a number in the contract models.

Pydantic's lax mode reads ``true`` as 1 for an ``int`` or ``float`` field, so
``"num_epochs": true`` ran one epoch. JSON and YAML booleans are rejected wherever a
number is expected (the CRD's ``type: integer``/``number`` already rejects them in the
cluster). Numeric strings stay accepted (``"3"`` for 3, as the seed's server did): a
value from a shell, an env file or a YAML quoted by mistake means what it says.
"""

from __future__ import annotations

import types
from typing import Any, Union, get_args, get_origin


def expects_number(annotation: Any) -> bool:
    """Whether a field's type admits int or float but not bool (``int | None`` counts)."""
    if annotation in (int, float):
        return True
    if get_origin(annotation) in (Union, types.UnionType):
        args = get_args(annotation)
        return bool not in args and any(expects_number(a) for a in args)
    return False


def reject_bool(value: Any, annotation: Any) -> Any:
    if isinstance(value, bool) and expects_number(annotation):
        raise ValueError(f"expected a number, got the boolean {str(value).lower()}")
    return value
