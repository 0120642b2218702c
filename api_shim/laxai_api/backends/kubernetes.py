"""The kubernetes backend: jobs are TrainingJob custom resources; the operator runs them.

- submit creates a TrainingJob named with the task id, labelled with its tenant (lists
  filter by tenant server-side, with a labelSelector) and annotated with a microsecond
  creation time (creationTimestamp has one-second resolution; newest-first needs more).
- status, progress, metrics and conditions are the CR's status (the operator and trainer
  write them); cancel merge-patches ``spec.cancel: true`` and the operator stops the pods.
- reads (status, detail, list, filters, pages, and so the POST's idempotency and run-name
  checks) are served from a watch-backed cache (:mod:`laxai_api.backends.job_cache`), not
  by listing the namespace; this replica's own creates and cancels are applied to it from
  the write's response (read-your-writes). A task id the cache does not hold yet (created
  through another replica a moment ago) is read with one GET. A POST makes one API request,
  the create (two when its Idempotency-Key was used through another replica a moment ago:
  the create's 409, then a GET of that job).
- logs: the newest trainer pod's log while one exists, else the run's saved
  ``{tenant}/runs/{run}/logs/trainer.log`` from LAXAI_STORAGE_ROOT (logs outlive pods).
- TrainingJobs created with kubectl are served too (task id = their name); their tenant
  is ``spec.tenant_id``, which is also what authorisation checks and lists filter on
  (labels can be forged; the operator sets the tenant label from it for kubectl's views).

The official client is synchronous: every call runs in a worker thread.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import kubernetes
from kubernetes.client.exceptions import ApiException
from pydantic import ValidationError

from laxai_api.backends.base import (
    Backend,
    JobPage,
    JobRecord,
    ListQuery,
    LogTail,
    decode_token,
    encode_token,
    invalid_token,
    now_rfc3339,
    tail_text,
)
from laxai_api.backends.job_cache import CachedJob, JobCache, JobIndex, resource_version
from laxai_api.errors import BackendUnavailable, InvalidRequest, JobExists, JobFinished, JobNotFound
from laxai_api.settings import ApiSettings
from laxai_operator import naming
from laxai_operator.resource import (
    API_VERSION,
    GROUP,
    KIND,
    PLURAL,
    VERSION,
    TrainingJobSpec,
    TrainingJobStatus,
)
from laxai_trainer.status import Phase

log = logging.getLogger(__name__)

CREATED_BY_LABEL = f"{GROUP}/created-by"
CREATED_AT_ANNOTATION = f"{GROUP}/created-at"
#: Seconds a list waits for the cache's first list before answering 503.
SYNC_TIMEOUT = 10.0


class _Missing(Exception):
    pass


class _Exists(Exception):
    pass


def _status_body(exc: ApiException) -> dict[str, Any]:
    try:
        body = json.loads(exc.body or "{}")
    except (TypeError, ValueError):
        return {}
    return body if isinstance(body, dict) else {}


def load_api_client() -> kubernetes.client.ApiClient:
    """In a pod: its service account; elsewhere: KUBECONFIG / ~/.kube/config."""
    configuration = kubernetes.client.Configuration()
    try:
        kubernetes.config.load_incluster_config(client_configuration=configuration)
    except kubernetes.config.ConfigException:
        kubernetes.config.load_kube_config(client_configuration=configuration)
    return kubernetes.client.ApiClient(configuration)


def parse_spec(doc: Any) -> TrainingJobSpec | None:
    """The spec of a stored TrainingJob; None when even its tenant is unusable."""
    if not isinstance(doc, dict):
        return None
    try:
        return TrainingJobSpec.model_validate(doc)
    except ValidationError:
        try:  # stored by another version or written around the CRD schema: keep what is readable
            return TrainingJobSpec.model_validate({"tenant_id": doc.get("tenant_id")})
        except ValidationError:
            return None


def parse_status(doc: Any) -> TrainingJobStatus:
    try:
        return TrainingJobStatus.model_validate(doc or {})
    except ValidationError:
        phase = doc.get("phase") if isinstance(doc, dict) else None
        return TrainingJobStatus(phase=phase if phase in Phase.__members__ else Phase.pending)


def record_from_object(obj: dict[str, Any]) -> JobRecord | None:
    meta = obj.get("metadata", {})
    spec = parse_spec(obj.get("spec"))
    if spec is None:
        return None
    status = parse_status(obj.get("status"))
    progress = status.progress
    if progress.total_epochs is None or progress.message is None:  # nothing reported yet
        progress = progress.model_copy(update={
            "total_epochs": progress.total_epochs or spec.training_kwargs.num_epochs,
            "message": progress.message or ("Training job queued" if status.phase == Phase.pending else None),
        })
    reason, message = status.reason, status.message
    if spec.cancel and not status.phase.terminal:
        reason, message = "CancelRequested", "Cancelling: the trainer is writing its checkpoint and stopping"
        progress = progress.model_copy(update={"message": message})
    return JobRecord(
        task_id=meta["name"],
        tenant_id=spec.tenant_id,
        spec=spec,
        phase=status.phase,
        progress=progress,
        metrics=status.metrics,
        reason=reason,
        message=message,
        conditions=[c.model_dump(by_alias=True, exclude_none=True) for c in status.conditions],
        history=[h.model_dump() for h in status.history],
        created_at=(meta.get("annotations") or {}).get(CREATED_AT_ANNOTATION) or meta.get("creationTimestamp"),
        started_at=status.start_time,
        completed_at=status.completion_time,
        attempts=status.attempts,
    )


class ParsedOnRead(Sequence[JobRecord]):
    """A page's records, parsed from the cache only when read (a list response uses the items)."""

    def __init__(self, entries: list[CachedJob], parse: Callable[[CachedJob], JobRecord]) -> None:
        self._entries, self._parse = entries, parse

    def __len__(self) -> int:
        return len(self._entries)

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return [self._parse(e) for e in self._entries[i]]
        return self._parse(self._entries[i])


def sortable_time(timestamp: str | None) -> str:
    """RFC 3339 as a fixed-width UTC string, so second- and microsecond-resolution times compare."""
    if not timestamp:
        return ""
    try:
        parsed = datetime.fromisoformat(timestamp.replace("Z", "+00:00")).astimezone(UTC)
    except ValueError:
        return timestamp
    return parsed.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def sort_key(job: JobRecord) -> tuple[str, str]:
    return sortable_time(job.created_at), job.task_id


class KubernetesBackend(Backend):
    name = "kubernetes"

    def __init__(self, settings: ApiSettings, api_client: kubernetes.client.ApiClient | None = None, *,
                 watch_timeout: int = 300, sync_timeout: float = SYNC_TIMEOUT):
        self.namespace = settings.namespace
        self.storage_root = settings.storage_root
        self._api_client = api_client
        self._owns_client = api_client is None
        self.custom: kubernetes.client.CustomObjectsApi | None = None
        self.core: kubernetes.client.CoreV1Api | None = None
        self.index = JobIndex(record_from_object, sort_key, annotations=(CREATED_AT_ANNOTATION,))
        self.cache: JobCache | None = None
        self.watch_timeout = watch_timeout
        self.sync_timeout = sync_timeout

    async def start(self) -> None:
        if self._api_client is None:
            self._api_client = await asyncio.to_thread(load_api_client)
        self.custom = kubernetes.client.CustomObjectsApi(self._api_client)
        self.core = kubernetes.client.CoreV1Api(self._api_client)
        self.cache = JobCache(self.custom, self.namespace, self.index, watch_timeout=self.watch_timeout)
        await self.cache.start()

    async def close(self) -> None:
        if self.cache is not None:
            await self.cache.close()
            self.cache = None
        if self._owns_client and self._api_client is not None:
            await asyncio.to_thread(self._api_client.close)
            self._api_client = None

    async def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return await asyncio.to_thread(fn, *args, **kwargs)
        except ApiException as exc:
            if exc.status == 404:
                raise _Missing() from exc
            if exc.status == 409:
                raise _Exists() from exc
            if exc.status == 422:
                body = _status_body(exc)
                causes = (body.get("details") or {}).get("causes") or []
                errors = [{"location": ["body", *str(c.get("field", "")).split(".")[1:]],
                           "field": str(c.get("field", "")).removeprefix("spec."),
                           "reason": c.get("message", ""), "type": c.get("reason", "")} for c in causes]
                raise InvalidRequest(body.get("message") or "Rejected by the Kubernetes API",
                                     {"errors": errors}) from exc
            raise BackendUnavailable(
                f"Kubernetes API error {exc.status} {exc.reason}",
                {"status": exc.status, "kubernetes_message": _status_body(exc).get("message", "")},
            ) from exc
        except (OSError, kubernetes.client.exceptions.OpenApiException) as exc:
            raise BackendUnavailable(f"Kubernetes API unreachable: {type(exc).__name__}") from exc
        except Exception as exc:
            # urllib3 errors (MaxRetryError, ProtocolError…) do not all derive from OSError.
            if type(exc).__module__.startswith("urllib3"):
                raise BackendUnavailable(f"Kubernetes API unreachable: {type(exc).__name__}") from exc
            raise

    async def _object(self, task_id: str) -> dict[str, Any]:
        try:
            obj = await self._call(
                self.custom.get_namespaced_custom_object, GROUP, VERSION, self.namespace, PLURAL, task_id
            )
        except _Missing:
            raise JobNotFound(task_id) from None
        self.index.upsert(obj)
        return obj

    async def _synced(self) -> None:
        if self.cache is None or not await self.cache.wait_synced(self.sync_timeout):
            error = self.cache.last_error if self.cache is not None else "not started"
            raise BackendUnavailable("The TrainingJob cache has not synced with the Kubernetes API",
                                     {"kubernetes_message": error or ""})

    # ---- the interface --------------------------------------------------------------

    async def submit(self, task_id: str, spec: TrainingJobSpec) -> JobRecord:
        body = {
            "apiVersion": API_VERSION,
            "kind": KIND,
            "metadata": {
                "name": task_id,
                "namespace": self.namespace,
                "labels": {naming.LABEL_TENANT: spec.tenant_id, CREATED_BY_LABEL: "laxai-api"},
                "annotations": {CREATED_AT_ANNOTATION: now_rfc3339()},
            },
            "spec": spec.model_dump(by_alias=True, exclude_unset=True, mode="json"),
        }
        try:
            created = await self._call(
                self.custom.create_namespaced_custom_object, GROUP, VERSION, self.namespace, PLURAL, body
            )
        except _Exists:
            raise JobExists(task_id) from None
        return self._wrote(created)

    def _wrote(self, obj: dict[str, Any]) -> JobRecord:
        """Apply a write's response to the cache (read-your-writes); the job as the cache now has it."""
        self.index.upsert(obj)  # parsed once: the record is kept for the next read
        entry = self.index.get(obj["metadata"]["name"])
        if entry is None or entry.rv < resource_version(obj):  # not servable, or deleted meanwhile
            record = record_from_object(obj)
            if record is None:
                raise JobNotFound(obj["metadata"]["name"])
            return record
        return self.index.record(entry)  # this write, or a newer version the watch brought first

    async def known(self, task_id: str) -> JobRecord | None:
        await self._synced()
        entry = self.index.get(task_id)
        return self.index.record(entry) if entry is not None else None

    async def active_run(self, tenant_id: str, run_name: str) -> str | None:
        await self._synced()
        return self.index.active_run(tenant_id, run_name)

    async def get(self, task_id: str) -> JobRecord:
        entry = self.index.get(task_id)
        if entry is not None:
            return self.index.record(entry)
        record = record_from_object(await self._object(task_id))
        if record is None:
            raise JobNotFound(task_id)
        return record

    async def list(self, query: ListQuery) -> JobPage:
        await self._synced()
        cursor = None
        if query.continue_token:
            decoded = decode_token(query.continue_token)
            if len(decoded) != 2 or not all(isinstance(c, str) for c in decoded):
                raise invalid_token()
            cursor = (decoded[0], decoded[1])
        total, shown, after = self.index.page(query.tenant_id, query.status, query.limit, cursor)
        return JobPage(total=total, jobs=ParsedOnRead(shown, self.index.record),
                       next_token=encode_token(list(after)) if after else None, items=[e.item for e in shown])

    async def cancel(self, task_id: str) -> JobRecord:
        job = await self.get(task_id)
        if job.phase.terminal:
            raise JobFinished(task_id, job.phase.value)
        try:
            patched = await self._call(
                self.custom.patch_namespaced_custom_object, GROUP, VERSION, self.namespace, PLURAL, task_id,
                {"spec": {"cancel": True}}, _content_type="application/merge-patch+json",
            )
        except _Missing:
            raise JobNotFound(task_id) from None
        return self._wrote(patched)

    async def logs(self, task_id: str, tail: int) -> LogTail:
        job = await self.get(task_id)
        if tail == 0:
            return LogTail("none", [])
        pods = await self._call(
            self.core.list_namespaced_pod, self.namespace,
            label_selector=f"{naming.LABEL_TRAININGJOB}={naming.label_value(task_id)}",
        )
        for pod in sorted(pods.items, key=lambda p: p.metadata.creation_timestamp or 0, reverse=True):
            try:
                text = await self._call(
                    self.core.read_namespaced_pod_log, pod.metadata.name, self.namespace,
                    container=naming.CONTAINER_NAME, tail_lines=tail,
                )
            except (_Missing, BackendUnavailable):
                continue  # gone, or its container has not started: try the next, then storage
            return LogTail("pod", tail_text(text or "", tail))
        saved = await asyncio.to_thread(self._saved_log, job)
        if saved is not None:
            return LogTail("storage", tail_text(saved, tail))
        return LogTail("none", [])

    def _saved_log(self, job: JobRecord) -> str | None:
        """The log the trainer uploaded to the run folder, if any."""
        path = f"{job.tenant_id}/runs/{job.run_name}/logs/trainer.log"
        try:
            from laxai_trainer.storage import open_storage  # GCS client loaded only for gs:// roots

            storage = open_storage(self.storage_root)
            if not storage.exists(path):
                return None
            return storage.read_bytes(path).decode("utf-8", errors="replace")
        except Exception as exc:  # noqa: BLE001 - storage trouble means "no saved log", said in the log
            log.warning("reading %s from storage failed: %s", path, type(exc).__name__)
            return None

    async def health(self) -> tuple[bool, dict[str, Any]]:
        details: dict[str, Any] = {"namespace": self.namespace}
        try:
            await self._call(
                self.custom.list_namespaced_custom_object, GROUP, VERSION, self.namespace, PLURAL, limit=1
            )
        except (BackendUnavailable, _Missing) as exc:
            details["error"] = str(exc) or "TrainingJob resources not found (is the CRD installed?)"
            return False, details
        cache = self.cache
        if cache is not None:
            await cache.wait_synced(min(self.sync_timeout, 3.0))  # a fresh replica: its first list
        details["cache"] = {"synced": cache is not None and cache.synced, "jobs": len(self.index.jobs),
                            "resource_version": str(self.index.resource_version),
                            "lists": cache.lists if cache else 0}
        if cache is None or not cache.synced:
            details["error"] = f"the TrainingJob cache has not synced: {cache.last_error if cache else 'not started'}"
            return False, details
        return True, details
