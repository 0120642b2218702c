"""What a tenant's API key may put in a TrainingJob spec. Pure functions.

An allow-list: the seed's fields (what to train) are free; a few run fields may be set up
to a cap the service operator chooses (``LAXAI_TENANT_MAX_*``, chart ``api.tenantLimits``);
every other run field (image, nodeSelector, tolerations, priorityClassName, queueName,
suspend, and any field added to RunSpec later) is admin-only. A field set to its default
is the same spec as leaving it out, so it is not refused.

A cap also bounds what an omitted field defaults to, so leaving a field out never escapes it.
Admin keys, and every caller when auth is off (the single-user local mode), skip this.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from laxai_api.errors import Forbidden, InvalidRequest
from laxai_operator.quantity import QuantityError, parse_quantity
from laxai_operator.resource import RunSpec, TrainingJobSpec

#: Integer run fields a tenant may set up to a cap (the TenantLimits attribute of the same name).
INT_CAPS = ("gpus", "backoff_limit", "active_deadline_seconds", "startup_timeout_seconds",
            "ttl_seconds_after_finished")
#: Quantity run fields a tenant may set up to a cap; unset, the operator's default applies.
QUANTITY_CAPS = {("resources", "cpu"): "cpu", ("resources", "memory"): "memory", ("shm_size",): "shm_size"}
CAPPED_TOP_LEVEL = set(INT_CAPS) | {path[0] for path in QUANTITY_CAPS}


@dataclass(frozen=True)
class TenantLimits:
    """The most a tenant key may ask for; None: no cap (any value the CRD accepts)."""

    gpus: int = 1
    cpu: str | None = None
    memory: str | None = None
    shm_size: str | None = None
    backoff_limit: int | None = None
    active_deadline_seconds: int | None = None
    startup_timeout_seconds: int | None = None
    ttl_seconds_after_finished: int | None = None


@dataclass(frozen=True)
class Violation:
    field: str
    reason: str
    limit: Any = None

    def as_detail(self) -> dict[str, Any]:
        detail = {"field": self.field, "reason": self.reason}
        if self.limit is not None:
            detail["limit"] = self.limit
        return detail


def wire_name(name: str) -> str:
    """The field's documented (camelCase) name, as in the CRD and the error bodies."""
    return RunSpec.model_fields[name].alias or name


def violations(spec: TrainingJobSpec, limits: TenantLimits) -> list[Violation]:
    """Each run field the tenant set that it may not set, or set above its cap."""
    found: list[Violation] = []
    for name in sorted(spec.model_fields_set & set(RunSpec.model_fields)):
        value, default = getattr(spec, name), RunSpec.model_fields[name].get_default(call_default_factory=True)
        if name in INT_CAPS:
            cap = getattr(limits, name)
            if cap is not None and value is not None and value > cap:
                found.append(Violation(wire_name(name), f"at most {cap} for a tenant API key", cap))
        elif name not in CAPPED_TOP_LEVEL and value != default:
            found.append(Violation(wire_name(name), "only an admin API key may set this field"))
    for path, attr in QUANTITY_CAPS.items():
        value, cap = _get(spec, path), getattr(limits, attr)
        if value is not None and cap is not None and _quantity(value, path) > parse_quantity(cap):
            found.append(Violation(_dotted(path), f"at most {cap} for a tenant API key", cap))
    for name in sorted(spec.resources.model_fields_set - {path[1] for path in QUANTITY_CAPS if len(path) == 2}):
        if getattr(spec.resources, name) is not None:  # a resource added later: closed until capped here
            found.append(Violation(f"resources.{name}", "only an admin API key may set this field"))
    return found


def _dotted(path: tuple[str, ...]) -> str:
    return ".".join(wire_name(p) if p in RunSpec.model_fields else p for p in path)


def _quantity(value: str, path: tuple[str, ...]) -> Decimal:
    # The CRD's pattern admits strings such as "1.2.3" that are no quantity: a 422, not a 500.
    try:
        return parse_quantity(value)
    except QuantityError as exc:
        field = _dotted(path)
        raise InvalidRequest(f"Invalid request: {field}", {"errors": [
            {"location": ["body", *field.split(".")], "field": field, "reason": str(exc), "type": "quantity"}]}) from None


def _get(spec: TrainingJobSpec, path: tuple[str, ...]) -> Any:
    value: Any = spec
    for part in path:
        value = getattr(value, part)
    return value


def capped_defaults(spec: TrainingJobSpec, limits: TenantLimits, default_gpus: int | None) -> dict[str, Any]:
    """Values for the capped integer fields the tenant left out: the default, at most the cap."""
    filled: dict[str, Any] = {}
    for name in INT_CAPS:
        if getattr(spec, name) is not None and name in spec.model_fields_set:
            continue  # set (and checked against the cap); an explicit null is as good as unset
        default = RunSpec.model_fields[name].get_default()
        if name == "gpus" and default_gpus is not None:
            default = default_gpus
        cap = getattr(limits, name)
        if cap is not None:
            filled[name] = cap if default is None else min(default, cap)
    return filled


def admit(spec: TrainingJobSpec, limits: TenantLimits, default_gpus: int | None = None) -> TrainingJobSpec:
    """The spec a tenant key's request creates; 403 naming every field it may not set."""
    refused = violations(spec, limits)
    if refused:
        listed = ", ".join(f"{v.field} ({v.reason})" for v in refused)
        raise Forbidden(
            f"This API key may not set: {listed}",
            {"error_type": "run_field_not_allowed", "fields": [v.field for v in refused],
             "errors": [v.as_detail() for v in refused]},
        )
    data = spec.model_dump(exclude_unset=True)
    data.update(capped_defaults(spec, limits, default_gpus))
    return TrainingJobSpec.model_validate(data)


def quantity_cap(value: str | None) -> str | None:
    """Settings check: a cap must be a positive quantity."""
    if value is not None and parse_quantity(value) <= Decimal(0):
        raise ValueError(f"{value!r} must be a positive quantity")
    return value
