"""The few Kubernetes API calls the operator makes, as coroutines returning plain dicts.

The official (synchronous) ``kubernetes`` client runs in a bounded thread pool so it never
blocks kopf's event loop. Reads use ``_preload_content=False`` and decode the JSON
themselves: the wire dicts (camelCase) are what the pure modules take, and skipping the
client's model classes is several times cheaper. 404 on a read or a delete is ``None``.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import json
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import kubernetes
from kubernetes.client.exceptions import ApiException

from laxai_operator.resource import GROUP, PLURAL, VERSION

T = TypeVar("T")
MERGE_PATCH = "application/merge-patch+json"
#: Seconds before an API call is abandoned (and retried by the caller): never hang a reconcile.
REQUEST_TIMEOUT = 30
#: Concurrent API calls: threads, and as many kept-alive connections (the client's default pool
#: is 5 per CPU, so on a 2-CPU node a burst opened and dropped a connection per call; 64
#: threads measured no better than 16 — kopf's per-event CPU is the limit, not I/O).
WORKERS = 16
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


def _decode(response: Any) -> dict[str, Any]:
    return json.loads(response.data)


class Kube:
    """The operator's API calls on one ApiClient."""

    def __init__(self, api: kubernetes.client.ApiClient, workers: int = WORKERS) -> None:
        self.api = api
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="laxai-kube")
        self.urgent_pool = ThreadPoolExecutor(max_workers=URGENT_WORKERS, thread_name_prefix="laxai-kube-urgent")
        self.custom = kubernetes.client.CustomObjectsApi(api)
        self.batch = kubernetes.client.BatchV1Api(api)
        self.core = kubernetes.client.CoreV1Api(api)

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

    async def _run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        kwargs.setdefault("_request_timeout", REQUEST_TIMEOUT)
        call = functools.partial(fn, *args, **kwargs)
        pool = self.urgent_pool if _URGENT.get() else self.pool
        return await asyncio.get_running_loop().run_in_executor(pool, call)

    async def _missing_is_none(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        try:
            return await self._run(fn, *args, **kwargs)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    # TrainingJobs
    async def get_trainingjob(self, namespace: str, name: str) -> dict[str, Any] | None:
        return await self._missing_is_none(self.custom.get_namespaced_custom_object, GROUP, VERSION, namespace, PLURAL, name)

    async def list_trainingjobs(self, namespace: str) -> list[dict[str, Any]]:
        answer = await self._run(self.custom.list_namespaced_custom_object, GROUP, VERSION, namespace, PLURAL)
        return answer.get("items") or []

    async def patch_trainingjob_status(self, namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any] | None:
        """Merge-patch /status; a ``metadata.resourceVersion`` in the patch makes it conditional (409)."""
        return await self._missing_is_none(
            self.custom.patch_namespaced_custom_object_status, GROUP, VERSION, namespace, PLURAL, name, patch
        )

    async def delete_trainingjob(self, namespace: str, name: str) -> Any:
        return await self._missing_is_none(
            self.custom.delete_namespaced_custom_object, GROUP, VERSION, namespace, PLURAL, name,
            propagation_policy="Background",
        )

    # Jobs
    async def get_job(self, namespace: str, name: str) -> dict[str, Any] | None:
        raw = await self._missing_is_none(self.batch.read_namespaced_job, name, namespace, _preload_content=False)
        return None if raw is None else _decode(raw)

    async def list_jobs(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        raw = await self._run(self.batch.list_namespaced_job, namespace, label_selector=selector, _preload_content=False)
        return _decode(raw).get("items") or []

    async def create_job(self, namespace: str, manifest: dict[str, Any]) -> dict[str, Any]:
        """Create; 409 (it exists) -> ApiException with status 409 for the caller to adopt."""
        return _decode(await self._run(self.batch.create_namespaced_job, namespace, manifest, _preload_content=False))

    async def patch_job(self, namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any] | None:
        raw = await self._missing_is_none(
            self.batch.patch_namespaced_job, name, namespace, patch, _preload_content=False,
            _content_type=MERGE_PATCH,
        )
        return None if raw is None else _decode(raw)

    async def delete_job(self, namespace: str, name: str) -> Any:
        # Background: the Job goes now, the garbage collector removes its pods (SIGTERM first).
        return await self._missing_is_none(
            self.batch.delete_namespaced_job, name, namespace, propagation_policy="Background"
        )

    # Pods
    async def list_pods(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        raw = await self._run(self.core.list_namespaced_pod, namespace, label_selector=selector, _preload_content=False)
        return _decode(raw).get("items") or []

    # Events
    async def list_pod_creation_failures(self, namespace: str, job_uid: str) -> list[dict[str, Any]]:
        """The Job controller's FailedCreate Events on one Job (its only report of a refused pod)."""
        raw = await self._run(self.core.list_namespaced_event, namespace, _preload_content=False,
                              field_selector=f"involvedObject.uid={job_uid},reason=FailedCreate")
        return _decode(raw).get("items") or []
