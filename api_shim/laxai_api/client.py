"""Python clients of the API: ``LaxAIClient`` (async, as the seed documents) and ``LaxAIClientSync``.

Methods return the JSON bodies as dicts. Every error response raises :class:`LaxAIError`
with the HTTP status and the documented error body.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

TERMINAL = frozenset({"completed", "failed", "cancelled"})
DEFAULT_URL = "http://localhost:8000"
ProgressCallback = Callable[[dict[str, Any]], Any]


class LaxAIError(Exception):
    """An error answer of the API (or a transport failure: status_code 0)."""

    def __init__(self, status_code: int, body: dict[str, Any]):
        self.status_code = status_code
        self.body = body
        self.error = str(body.get("error", "error"))
        self.message = str(body.get("message", ""))
        self.details = body.get("details") or {}
        super().__init__(f"{status_code} {self.error}: {self.message}")


def transport_error(base_url: str, exc: httpx.HTTPError) -> LaxAIError:
    """No answer from the API: say which URL, and how to start one or point elsewhere."""
    hint = ""
    if isinstance(exc, httpx.ConnectError):
        hint = (f"; nothing answers at {base_url}: start the API (`laxai-api --backend local --port 8000`) "
                "or point to it with --url / LAXAI_API_URL")
    return LaxAIError(0, {"error": "connection_error",
                          "message": f"{base_url}: {str(exc) or type(exc).__name__}{hint}",
                          "details": {"url": base_url}})


def _headers(api_key: str | None) -> dict[str, str]:
    return {"X-API-Key": api_key} if api_key else {}


def _result(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.is_success and isinstance(body, dict):
        return body
    if not isinstance(body, dict):
        body = {"error": "http_error", "message": response.text[:500], "details": {}}
    raise LaxAIError(response.status_code, body)


def _list_params(status: str | None, tenant_id: str | None, limit: int | None, continue_token: str | None) -> dict:
    params = {"status": status, "tenant_id": tenant_id, "limit": limit, "continue": continue_token}
    return {k: v for k, v in params.items() if v is not None}


def _submit_headers(idempotency_key: str | None) -> dict[str, str]:
    return {"Idempotency-Key": idempotency_key} if idempotency_key else {}


class LaxAIClient:
    """Async client: ``client = LaxAIClient("http://localhost:8000"); await client.start_training({...})``."""

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        timeout: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ):
        self.base_url = (base_url or os.environ.get("LAXAI_API_URL") or DEFAULT_URL).rstrip("/")
        api_key = api_key if api_key is not None else os.environ.get("LAXAI_API_KEY")
        self._http = httpx.AsyncClient(
            base_url=self.base_url, headers=_headers(api_key), timeout=timeout, transport=transport
        )

    async def _call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        try:
            response = await self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise transport_error(self.base_url, exc) from exc
        return _result(response)

    async def start_training(self, request: dict[str, Any], idempotency_key: str | None = None) -> dict[str, Any]:
        return await self._call("POST", "/api/v1/train", json=request, headers=_submit_headers(idempotency_key))

    async def get_training_status(self, task_id: str) -> dict[str, Any]:
        return await self._call("GET", f"/api/v1/train/{task_id}/status")

    async def get_training_job(self, task_id: str) -> dict[str, Any]:
        return await self._call("GET", f"/api/v1/train/{task_id}")

    async def list_training_jobs(
        self, status: str | None = None, tenant_id: str | None = None, limit: int | None = None,
        continue_token: str | None = None,
    ) -> dict[str, Any]:
        return await self._call(
            "GET", "/api/v1/train/jobs", params=_list_params(status, tenant_id, limit, continue_token)
        )

    async def cancel_training_job(self, task_id: str) -> dict[str, Any]:
        return await self._call("DELETE", f"/api/v1/train/{task_id}")

    async def purge_training_job(self, task_id: str) -> dict[str, Any]:
        return await self._call("DELETE", f"/api/v1/train/{task_id}", params={"purge": "true"})

    async def get_logs(self, task_id: str, tail: int = 100) -> dict[str, Any]:
        return await self._call("GET", f"/api/v1/train/{task_id}/logs", params={"tail": tail})

    async def health(self) -> dict[str, Any]:
        return await self._call("GET", "/health")

    async def wait_for_completion(
        self,
        task_id: str,
        on_progress: Callable[[dict[str, Any]], Awaitable[Any] | Any] | None = None,
        poll_interval: float = 2.0,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        """Poll the status until the job is completed, failed or cancelled; returns the last status.

        ``on_progress`` (sync or async) is called with each status response.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            status = await self.get_training_status(task_id)
            if on_progress is not None:
                result = on_progress(status)
                if asyncio.iscoroutine(result):
                    await result
            if status["status"] in TERMINAL:
                return status
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"job {task_id} still {status['status']} after {timeout} s")
            await asyncio.sleep(poll_interval)

    async def close(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> LaxAIClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class LaxAIClientSync:
    """The same methods, blocking (for scripts and the ``laxai`` CLI)."""

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ):
        self.base_url = (base_url or os.environ.get("LAXAI_API_URL") or DEFAULT_URL).rstrip("/")
        api_key = api_key if api_key is not None else os.environ.get("LAXAI_API_KEY")
        self._http = httpx.Client(base_url=self.base_url, headers=_headers(api_key), timeout=timeout, transport=transport)

    def _call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise transport_error(self.base_url, exc) from exc
        return _result(response)

    def start_training(self, request: dict[str, Any], idempotency_key: str | None = None) -> dict[str, Any]:
        return self._call("POST", "/api/v1/train", json=request, headers=_submit_headers(idempotency_key))

    def get_training_status(self, task_id: str) -> dict[str, Any]:
        return self._call("GET", f"/api/v1/train/{task_id}/status")

    def get_training_job(self, task_id: str) -> dict[str, Any]:
        return self._call("GET", f"/api/v1/train/{task_id}")

    def list_training_jobs(
        self, status: str | None = None, tenant_id: str | None = None, limit: int | None = None,
        continue_token: str | None = None,
    ) -> dict[str, Any]:
        return self._call("GET", "/api/v1/train/jobs", params=_list_params(status, tenant_id, limit, continue_token))

    def cancel_training_job(self, task_id: str) -> dict[str, Any]:
        return self._call("DELETE", f"/api/v1/train/{task_id}")

    def purge_training_job(self, task_id: str) -> dict[str, Any]:
        return self._call("DELETE", f"/api/v1/train/{task_id}", params={"purge": "true"})

    def get_logs(self, task_id: str, tail: int = 100) -> dict[str, Any]:
        return self._call("GET", f"/api/v1/train/{task_id}/logs", params={"tail": tail})

    def health(self) -> dict[str, Any]:
        return self._call("GET", "/health")

    def wait_for_completion(
        self,
        task_id: str,
        on_progress: ProgressCallback | None = None,
        poll_interval: float = 2.0,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            status = self.get_training_status(task_id)
            if on_progress is not None:
                on_progress(status)
            if status["status"] in TERMINAL:
                return status
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"job {task_id} still {status['status']} after {timeout} s")
            time.sleep(poll_interval)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> LaxAIClientSync:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
