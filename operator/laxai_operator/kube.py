"""The few Kubernetes API calls the operator makes, as coroutines returning plain dicts.

The official (synchronous) ``kubernetes`` client runs in a bounded thread pool so it never
blocks kopf's event loop. Requests and answers are the wire dicts (camelCase) the pure
modules take, without the client's model classes (several times cheaper). 404 on a read or a
delete is ``None``.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import kubernetes
from kubernetes.client.exceptions import ApiException

from laxai_operator.resource import GROUP, PLURAL, VERSION

MERGE_PATCH = "application/merge-patch+json"
#: Seconds before an API call is abandoned (and retried by the caller): never hang a reconcile.
REQUEST_TIMEOUT = 30
#: Concurrent API calls: threads, and as many kept-alive connections (the client's default pool
#: is 5 per CPU, so on a 2-CPU node a burst opened and dropped a connection per call). A thread
#: waits out its request's round trip: at 5-20 ms per request, 16 threads capped a burst at
#: ~1,300 requests/s and added ~0.4 s to its p99 (bench.operator_latency); waiting threads are cheap.
WORKERS = 64
#: Threads kept for the calls of status updates (``Kube.urgent()``): a burst of creations fills
#: the main pool's queue, and a running job's status must not wait behind it.
URGENT_WORKERS = 4
_URGENT: contextvars.ContextVar[bool] = contextvars.ContextVar("laxai_kube_urgent", default=False)


def load_config(connections: int = WORKERS + URGENT_WORKERS) -> kubernetes.client.ApiClient:
    """In-cluster credentials when in a pod, else the kubeconfig (KUBECONFIG)."""
    try:
        kubernetes.config.load_incluster_config()
    except kubernetes.config.ConfigException:
        kubernetes.config.load_kube_config()
    configuration = kubernetes.client.Configuration.get_default_copy()
    configuration.connection_pool_maxsize = connections
    return kubernetes.client.ApiClient(configuration)


JOBS = "/apis/batch/v1/namespaces/{namespace}/jobs"
PODS = "/api/v1/namespaces/{namespace}/pods"
EVENTS = "/api/v1/namespaces/{namespace}/events"
TRAININGJOBS = f"/apis/{GROUP}/{VERSION}/namespaces/{{namespace}}/{PLURAL}"
#: Background: the object goes now, the garbage collector removes its dependents (pods get SIGTERM first).
BACKGROUND = {"propagationPolicy": "Background"}


class Kube:
    """The operator's API calls on one ApiClient."""

    def __init__(self, api: kubernetes.client.ApiClient, workers: int = WORKERS) -> None:
        self.api = api
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="laxai-kube")
        self.urgent_pool = ThreadPoolExecutor(max_workers=URGENT_WORKERS, thread_name_prefix="laxai-kube-urgent")

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.urgent_pool.shutdown(wait=False, cancel_futures=True)
        self.api.close()

    @staticmethod
    @contextlib.contextmanager
    def urgent() -> Iterator[None]:
        """The calls made inside (by this task) use the threads kept for status updates."""
        token = _URGENT.set(True)
        try:
            yield
        finally:
            _URGENT.reset(token)

    def _send(self, method: str, path: str, namespace: str, name: str = "", subresource: str = "", *,
              body: Any = None, query: dict[str, str] | None = None, content_type: str = "application/json") -> Any:
        """One request through the client's own layer below the generated API methods (its
        authentication, TLS, token refresh and connection pool): those validate every body into
        the client's model classes and back (~1 ms of CPU per Job manifest), for dicts that are
        already wire JSON. Non-2xx -> ApiException, as from the generated methods."""
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = content_type
        request = self.api.param_serialize(
            method, path + ("/{name}" if name else "") + (f"/{subresource}" if subresource else ""), path_params={"namespace": namespace, "name": name},
            query_params=list((query or {}).items()), header_params=headers, body=body,
            auth_settings=["BearerToken"])
        response = self.api.call_api(*request, _request_timeout=REQUEST_TIMEOUT)
        response.read()
        if not 200 <= response.status <= 299:
            raise ApiException.from_response(http_resp=response, body=None, data=None)
        return json.loads(response.data)

    async def _run(self, *args: Any, **kwargs: Any) -> Any:
        pool = self.urgent_pool if _URGENT.get() else self.pool
        return await asyncio.get_running_loop().run_in_executor(pool, functools.partial(self._send, *args, **kwargs))

    async def _missing_is_none(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return await self._run(*args, **kwargs)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    # TrainingJobs
    async def get_trainingjob(self, namespace: str, name: str) -> dict[str, Any] | None:
        return await self._missing_is_none("GET", TRAININGJOBS, namespace, name)

    async def list_trainingjobs(self, namespace: str) -> list[dict[str, Any]]:
        return (await self._run("GET", TRAININGJOBS, namespace)).get("items") or []

    async def patch_trainingjob_status(self, namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any] | None:
        """Merge-patch /status; a ``metadata.resourceVersion`` in the patch makes it conditional (409)."""
        return await self._missing_is_none("PATCH", TRAININGJOBS, namespace, name, "status", body=patch,
                                           content_type=MERGE_PATCH)

    async def label_trainingjob(self, namespace: str, name: str, label: str, value: str) -> dict[str, Any] | None:
        return await self._missing_is_none("PATCH", TRAININGJOBS, namespace, name, body={
            "metadata": {"labels": {label: value}}}, content_type=MERGE_PATCH)

    async def delete_trainingjob(self, namespace: str, name: str) -> Any:
        return await self._missing_is_none("DELETE", TRAININGJOBS, namespace, name, body=BACKGROUND)

    # Jobs
    async def get_job(self, namespace: str, name: str) -> dict[str, Any] | None:
        return await self._missing_is_none("GET", JOBS, namespace, name)

    async def list_jobs(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        return (await self._run("GET", JOBS, namespace, query={"labelSelector": selector})).get("items") or []

    async def create_job(self, namespace: str, manifest: dict[str, Any]) -> dict[str, Any]:
        """Create; 409 (it exists) -> ApiException with status 409 for the caller to adopt."""
        return await self._run("POST", JOBS, namespace, body=manifest)

    async def patch_job(self, namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any] | None:
        return await self._missing_is_none("PATCH", JOBS, namespace, name, body=patch, content_type=MERGE_PATCH)

    async def delete_job(self, namespace: str, name: str) -> Any:
        return await self._missing_is_none("DELETE", JOBS, namespace, name, body=BACKGROUND)

    # Pods
    async def list_pods(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        return (await self._run("GET", PODS, namespace, query={"labelSelector": selector})).get("items") or []

    # Events
    async def list_pod_creation_failures(self, namespace: str, job_uid: str) -> list[dict[str, Any]]:
        """The Job controller's FailedCreate Events on one Job (its only report of a refused pod)."""
        selector = f"involvedObject.uid={job_uid},reason=FailedCreate"
        return (await self._run("GET", EVENTS, namespace, query={"fieldSelector": selector})).get("items") or []
