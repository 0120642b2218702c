"""Kubernetes resource quantities ("16Gi", "3500m", "1e3"): parse and format. Pure.

Exact decimal arithmetic, as the API server does, so "1.5Gi" halves to exactly "768Mi".
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {"n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"), "": Decimal(1),
            "k": Decimal("1e3"), "M": Decimal("1e6"), "G": Decimal("1e9"), "T": Decimal("1e12"),
            "P": Decimal("1e15"), "E": Decimal("1e18")}
_QUANTITY = re.compile(r"^([+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))(?:([KMGTPE]i|[numkMGTPE])|[eE]([+-]?[0-9]+))?$")


class QuantityError(ValueError):
    """A string that is not a Kubernetes quantity."""


def parse_quantity(text: str) -> Decimal:
    """The value of a quantity in base units (bytes, cores): '16Gi' -> 17179869184."""
    match = _QUANTITY.match(str(text).strip())
    if not match:
        raise QuantityError(f"{text!r} is not a Kubernetes quantity (e.g. '16Gi', '500m', '2')")
    number, suffix, exponent = match.groups()
    try:
        value = Decimal(number)
    except InvalidOperation as exc:  # pragma: no cover - the regex admits only decimals
        raise QuantityError(f"{text!r} is not a Kubernetes quantity") from exc
    if exponent is not None:
        return value.scaleb(int(exponent))
    if suffix in _BINARY:
        return value * _BINARY[suffix]
    return value * _DECIMAL[suffix or ""]


def format_bytes(value: Decimal | int) -> str:
    """A byte count as a quantity with the largest binary suffix that divides it exactly."""
    whole = int(Decimal(value).to_integral_value(rounding="ROUND_FLOOR"))
    if whole <= 0:
        raise QuantityError(f"a size must be positive, got {value}")
    for suffix, factor in sorted(_BINARY.items(), key=lambda item: -item[1]):
        if whole % factor == 0:
            return f"{whole // factor}{suffix}"
    return str(whole)
