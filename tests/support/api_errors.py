"""Kubernetes API errors: the ``Status`` bodies the API server answers with."""

from __future__ import annotations

from typing import Any

from tests.support.crd_schema import Cause
from tests.support.kinds import Kind

# The Status reason of each HTTP code (for injected failures).
REASONS = {400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound", 409: "Conflict",
           410: "Gone", 422: "Invalid", 429: "TooManyRequests", 500: "InternalError",
           503: "ServiceUnavailable", 504: "Timeout"}


class ApiError(Exception):
    """An API error, rendered as a Kubernetes ``Status`` body with its HTTP code."""

    def __init__(self, code: int, reason: str, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code, self.reason, self.message, self.details = code, reason, message, details

    def status(self) -> dict[str, Any]:
        body: dict[str, Any] = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                                "message": self.message, "reason": self.reason, "code": self.code}
        if self.details is not None:
            body["details"] = self.details
        return body


def details_for(kind: Kind | None, name: str | None) -> dict[str, Any]:
    details: dict[str, Any] = {}
    if name:
        details["name"] = name
    if kind is not None:
        details["group"] = kind.group
        details["kind"] = kind.plural
    return details


def not_found(kind: Kind, name: str) -> ApiError:
    return ApiError(404, "NotFound", f'{kind.qualified} "{name}" not found', details_for(kind, name))


def conflict(kind: Kind, name: str, why: str) -> ApiError:
    return ApiError(409, "Conflict", f'Operation cannot be fulfilled on {kind.qualified} "{name}": {why}',
                    details_for(kind, name))


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def invalid(kind: Kind, name: str, causes: list[Cause]) -> ApiError:
    texts = [f"{c.field}: {c.message}" if c.field else c.message for c in causes]
    summary = texts[0] if len(texts) == 1 else "[" + ", ".join(texts) + "]"
    group = f"{kind.kind}.{kind.group}" if kind.group else kind.kind
    details = details_for(kind, name) | {"kind": kind.kind, "causes": [
        {"reason": c.reason, "message": c.message, "field": c.field} for c in causes]}
    return ApiError(422, "Invalid", f'{group} "{name}" is invalid: {summary}', details)
