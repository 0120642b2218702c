"""Errors and their handlers: every error response is the documented body
``{"error", "message", "details"}``, whatever raised it."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger(__name__)


class ApiError(Exception):
    """An error with its HTTP status and documented body."""

    status_code = 500
    error = "internal_error"

    def __init__(self, message: str, details: dict[str, Any] | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.message = message
        self.details = details or {}
        self.headers = headers


class Unauthorized(ApiError):
    status_code = 401
    error = "unauthorized"


class Forbidden(ApiError):
    status_code = 403
    error = "forbidden"


class NotFound(ApiError):
    status_code = 404
    error = "not_found"


class Conflict(ApiError):
    status_code = 409
    error = "conflict"


class InvalidRequest(ApiError):
    status_code = 422
    error = "validation_error"


class BackendUnavailable(ApiError):
    status_code = 503
    error = "backend_unavailable"


class JobNotFound(NotFound):
    def __init__(self, task_id: str):
        super().__init__(f"Training job '{task_id}' not found", {"task_id": task_id})


class JobExists(Conflict):
    """A job with this task id exists already (an idempotent retry, or a name collision)."""

    def __init__(self, task_id: str):
        super().__init__(f"Training job '{task_id}' already exists", {"task_id": task_id})


class RunNameInUse(Conflict):
    """Another pending/running job of the tenant writes to this run name."""

    def __init__(self, other: str, tenant_id: str, run_name: str):
        super().__init__(
            f"Job '{other}' of this tenant is already writing to run '{run_name}'; "
            "wait for it or choose another custom_name",
            {"task_id": other, "custom_name": run_name, "error_type": "run_name_in_use"},
        )


class RunAlreadyFinished(Conflict):
    """Continuing this finished run (resume_from_checkpoint) would train nothing."""

    def __init__(self, message: str, run_name: str, epochs_completed: int, num_epochs: int):
        super().__init__(message, {
            "custom_name": run_name, "epochs_completed": epochs_completed, "num_epochs": num_epochs,
            "error_type": "run_already_finished",
        })


class JobFinished(Conflict):
    error = "job_finished"

    def __init__(self, task_id: str, status: str):
        super().__init__(
            f"Training job '{task_id}' already {status}; only pending or running jobs can be cancelled",
            {"task_id": task_id, "status": status},
        )


def error_body(error: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"error": error, "message": message, "details": details or {}}


def _reason(err: dict[str, Any]) -> str:
    if err.get("type") == "extra_forbidden":
        loc = err.get("loc") or ()
        if not loc:
            return "unknown field"
        reason = f"unknown field '{loc[-1]}'"
        if loc[0] == "body":  # the only body is a training request
            from laxai_api.schemas import TrainRequest
            from laxai_trainer.field_names import did_you_mean

            if (close := did_you_mean(TrainRequest, loc[1:])) is not None:
                reason += f"; did you mean '{close}'?"
        return reason
    return str(err.get("msg", "invalid value"))


def validation_details(errors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry per invalid field: where it is, which field, and why (inputs are not echoed)."""
    out = []
    for err in errors:
        loc = [str(part) for part in err.get("loc", ())]
        if err.get("type") == "json_invalid":  # loc is ("body", <char position>)
            position = loc[1] if len(loc) > 1 else "?"
            reason = f"invalid JSON at position {position}: {err.get('ctx', {}).get('error', 'decode error')}"
            out.append({"location": ["body"], "field": "body", "reason": reason, "type": "json_invalid"})
            continue
        # "body", "query", "path" or "header" first, then the field path inside it.
        field = ".".join(loc[1:]) if len(loc) > 1 else (loc[0] if loc else "")
        out.append({"location": loc, "field": field, "reason": _reason(err), "type": err.get("type", "")})
    return out


async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
    return JSONResponse(error_body(exc.error, exc.message, exc.details), exc.status_code, headers=exc.headers)


async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
    errors = validation_details(list(exc.errors()))
    fields = ", ".join(e["field"] or e["location"][0] for e in errors if e["location"]) or "request"
    return JSONResponse(
        error_body("validation_error", f"Invalid request: {fields}", {"errors": errors}), 422
    )


_HTTP_ERRORS = {404: "not_found", 405: "method_not_allowed", 401: "unauthorized", 403: "forbidden"}


async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
    error = _HTTP_ERRORS.get(exc.status_code, "http_error")
    return JSONResponse(
        error_body(error, str(exc.detail)), exc.status_code, headers=getattr(exc, "headers", None)
    )


async def _unhandled(_: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error")
    return JSONResponse(
        error_body("internal_error", "Internal server error", {"type": type(exc).__name__}), 500
    )


def install(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unhandled)
