"""The FastAPI app: the seed's /api/v1/train endpoints over a job backend.

Routes are thin: authorise, call the backend, shape the response. Rules:
- task_id is the TrainingJob's name: a random UUID, or with an ``Idempotency-Key`` header
  a UUID derived from (tenant, key), so a retried POST finds the first job (any backend,
  any replica, after restarts) instead of starting a second one. A retry with a different
  body is 409 ``idempotency_key_reused``.
- ``custom_name`` names the run folder: a second pending/running job of the same tenant
  with the same custom_name is 409 ``run_name_in_use`` (two trainers would overwrite each
  other's checkpoints; the local store's unique index and the operator enforce it too).
  After the first finished, reusing it continues from its checkpoint
  (``resume_from_checkpoint``), or is 409 ``run_already_finished`` when nothing is left to
  train; ``resume_from_checkpoint: false`` starts over, the old outputs archived.
- With auth on, another tenant's job is 404 (its existence is not revealed); naming
  another tenant in a body or filter is 403.
"""

import asyncio
import uuid
from contextlib import asynccontextmanager
from importlib.metadata import PackageNotFoundError, version
from typing import Annotated, Any

from fastapi import Body, Depends, FastAPI, Header, Path, Query, Request, Response, Security
from fastapi.responses import PlainTextResponse
from fastapi.security import APIKeyHeader, HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from laxai_api import docs_pages, errors, tenant_policy
from laxai_api.auth import KeyStore, Principal, authenticate
from laxai_api.backends import make_backend
from laxai_api.backends.base import Backend, JobRecord, ListQuery, valid_task_id
from laxai_api.errors import ApiError, BackendUnavailable, Conflict, JobExists, JobNotFound, RunNameInUse
from laxai_api.job_views import detail, job_list_json, status_response, summary
from laxai_api.metrics import ApiMetrics, MetricsMiddleware
from laxai_api.run_check import finished_run, may_be_finished
from laxai_api.schemas import (
    SEED_EXAMPLE,
    ErrorBody,
    HealthResponse,
    JobDetail,
    JobList,
    LogsResponse,
    RootInfo,
    TrainRequest,
    TrainResponse,
)
from laxai_api.settings import ApiSettings
from laxai_operator.resource import TrainingJobSpec
from laxai_trainer.config import TENANT_PATTERN
from laxai_trainer.status import Phase

try:
    __version__ = version("laxai-training")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

API_PREFIX = "/api/v1/train"
#: Namespace of task ids derived from an Idempotency-Key.
IDEMPOTENCY_NAMESPACE = uuid.UUID("6f1c7c4e-2f7a-4c41-9d0e-6a1b8f6b2a57")
HEALTH_TIMEOUT_SECONDS = 5.0


def _err(*codes: int) -> dict[int | str, dict[str, Any]]:
    descriptions = {
        401: "No or invalid API key",
        403: "The API key may not act for this tenant, or set this run field (details.fields)",
        404: "Job not found", 409: "Conflict", 422: "Invalid request (each invalid field listed)",
        500: "Internal error", 503: "Backend unavailable",
    }
    return {code: {"model": ErrorBody, "description": descriptions[code]} for code in codes}


_api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="API key (or use Bearer).")
_bearer = HTTPBearer(auto_error=False, description="API key as a bearer token.")


async def keyed_principal(
    request: Request,
    _key: Annotated[str | None, Security(_api_key_header)] = None,
    _bearer_token: Annotated[Any, Security(_bearer)] = None,
) -> Principal:
    """With auth on: the security schemes appear in the OpenAPI document."""
    return authenticate(request.app.state.keys, request)


async def open_principal(request: Request) -> Principal:
    return authenticate(request.app.state.keys, request)


TaskId = Annotated[str, Path(description="The job's task id (TrainingJob name).", max_length=253)]


def task_id_for(tenant_id: str, idempotency_key: str | None) -> str:
    if idempotency_key is None:
        return str(uuid.uuid4())
    return str(uuid.uuid5(IDEMPOTENCY_NAMESPACE, f"{tenant_id}\x00{idempotency_key}"))


def spec_fingerprint(spec: TrainingJobSpec) -> dict[str, Any]:
    return TrainingJobSpec.model_validate(spec.model_dump()).model_dump(mode="json")


def create_app(settings: ApiSettings | None = None, backend: Backend | None = None) -> FastAPI:
    settings = settings or ApiSettings()
    backend = backend or make_backend(settings)
    keys = KeyStore(settings)
    metrics = ApiMetrics()

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        await backend.start()
        try:
            yield
        finally:
            await backend.close()

    app = FastAPI(
        title="LaxAI Training API",
        version=__version__,
        description=(
            "Start, follow and cancel LaxAI training jobs (TrainingJobs).\n\n"
            "- Job status values: pending, running, completed, failed, cancelled.\n"
            '- Every error response is `{"error", "message", "details"}`; a 422 lists each invalid '
            "field with its location and reason (unknown keys included).\n"
            "- `Idempotency-Key` header on POST: a retry with the same key (same tenant) returns the "
            "first job; with a different body it is 409.\n"
            "- `custom_name` names the run folder: while a job of the tenant with that name is pending "
            "or running, another is 409 `run_name_in_use`. Afterwards a new job with the name continues "
            "from its checkpoint (`resume_from_checkpoint`, default true; changed learning-rate and "
            "scheduler settings apply), or is 409 `run_already_finished` when nothing is left to train "
            "(raise `num_epochs`, choose another name, or send `resume_from_checkpoint: false` to start "
            "over: the old outputs move to `runs/{name}/archive/<started_at>/`). A job's own retries "
            "always resume.\n"
            "- With API keys on: send `X-API-Key` or `Authorization: Bearer`; a key bound to a tenant "
            "sees only that tenant's jobs (others are 404) and may not name another tenant (403).\n"
            "- The body may also carry TrainingJob run fields (gpus, resources, nodeSelector, "
            "tolerations, backoffLimit, activeDeadlineSeconds, …): the kubernetes backend puts them in "
            "the TrainingJob spec; the local backend records them and runs the trainer on its own machine.\n"
            "- A tenant API key may set gpus, resources, shmSize, backoffLimit and the deadlines up to "
            "the service's caps (LAXAI_TENANT_MAX_*), and no other run field: 403 `forbidden` with "
            "`details.fields` naming each one. Admin keys (and no-auth local mode) set any field."
        ),
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    docs_pages.install(app)
    app.state.settings, app.state.backend, app.state.keys, app.state.metrics = settings, backend, keys, metrics
    errors.install(app)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    # Evaluated here (this module has no `from __future__ import annotations`): the OpenAPI
    # document declares the key schemes only when keys are required.
    Caller = Annotated[Principal, Depends(keyed_principal if keys.enabled else open_principal)]  # noqa: N806

    async def load_job(task_id: str, caller: Principal) -> JobRecord:
        if not valid_task_id(task_id):
            raise JobNotFound(task_id)
        job = await backend.get(task_id)
        if not caller.can_access(job.tenant_id):
            raise JobNotFound(task_id)
        return job

    tenant_limits = settings.tenant_limits()

    def spec_for(request: TrainRequest, caller: Principal) -> TrainingJobSpec:
        """Admins get the full spec; a tenant key only what tenant_policy allows (else 403)."""
        if caller.admin:
            return request.spec(settings.default_gpus)
        return tenant_policy.admit(request.spec(), tenant_limits, settings.default_gpus)

    def replay(job: JobRecord, spec: TrainingJobSpec, response: Response) -> TrainResponse:
        if spec_fingerprint(job.spec) != spec_fingerprint(spec):
            raise Conflict(
                "This Idempotency-Key was used with a different request body",
                {"task_id": job.task_id, "error_type": "idempotency_key_reused"},
            )
        response.headers["Idempotent-Replayed"] = "true"
        return status_response(job, "accepted", "Training job already submitted with this Idempotency-Key")

    @app.post(
        API_PREFIX, response_model=TrainResponse, tags=["training"], summary="Start a new training job",
        responses=_err(401, 403, 409, 422, 503),
    )
    async def start_training(
        caller: Caller,
        response: Response,
        request: Annotated[
            TrainRequest,
            Body(
                openapi_examples={
                    "seed": {"summary": "The documented example (curl)", "value": SEED_EXAMPLE},
                    "aliases": {
                        "summary": "The earlier server's names",
                        "value": {"tenant_id": "tenant1", "training_params": {"num_epochs": 5},
                                  "model_params": {"embedding_dim": 128}},
                    },
                    "run_fields": {
                        "summary": "With TrainingJob run fields (kubernetes backend)",
                        "value": {"tenant_id": "tenant1", "training_kwargs": {"num_epochs": 2},
                                  "gpus": 0, "resources": {"cpu": "2", "memory": "4Gi"}},
                    },
                }
            ),
        ],
        idempotency_key: Annotated[
            str | None,
            Header(alias="Idempotency-Key", min_length=1, max_length=255,
                   description="Retrying a POST with the same key returns the first job."),
        ] = None,
    ) -> TrainResponse:
        caller.require_tenant(request.tenant_id)
        spec = spec_for(request, caller)
        task_id = task_id_for(request.tenant_id, idempotency_key)
        # The checks read what this replica knows (the kubernetes backend: its cache, no API request).
        if idempotency_key is not None and (job := await backend.known(task_id)) is not None:
            return replay(job, spec, response)
        # Best effort here (a check-then-act); the local store and the operator enforce it.
        if spec.custom_name and (other := await backend.active_run(spec.tenant_id, spec.custom_name)):
            raise RunNameInUse(other, spec.tenant_id, spec.custom_name)
        if may_be_finished(spec) and (
                finished := await asyncio.to_thread(finished_run, settings.storage_root, spec)) is not None:
            raise finished
        try:
            job = await backend.submit(task_id, spec)
        except JobExists as exists:
            if idempotency_key is None:
                raise
            try:  # the same key, through another replica or a concurrent retry, a moment ago
                job = await backend.get(task_id)
            except JobNotFound:
                raise exists from None
            return replay(job, spec, response)
        metrics.jobs_submitted.labels(backend.name).inc()
        return status_response(
            job, "accepted", f"Training job started; follow it at {API_PREFIX}/{job.task_id}/status"
        )

    @app.get(
        f"{API_PREFIX}/jobs", response_model=JobList, tags=["training"], summary="List training jobs",
        responses=_err(401, 403, 422, 503),
    )
    async def list_training_jobs(
        caller: Caller,
        status: Annotated[Phase | None, Query(description="Only jobs in this status.")] = None,
        tenant_id: Annotated[
            str | None, Query(pattern=TENANT_PATTERN, max_length=63, description="Only this tenant's jobs.")
        ] = None,
        limit: Annotated[int, Query(ge=1, le=1000, description="Jobs per page.")] = 100,
        continue_token: Annotated[
            str | None,
            Query(alias="continue", max_length=4096, description="Token from the previous page's `continue`."),
        ] = None,
    ) -> JobList | Response:
        if not caller.admin:
            if tenant_id is not None:
                caller.require_tenant(tenant_id)
            tenant_id = caller.tenant
        page = await backend.list(ListQuery(status, tenant_id, limit, continue_token))
        if page.items is not None:  # ready-made items (the kubernetes cache): no models to build
            return Response(job_list_json(page.total, page.items, page.next_token), media_type="application/json")
        return JobList(total_jobs=page.total, jobs=[summary(j) for j in page.jobs], continue_=page.next_token)

    @app.get(
        f"{API_PREFIX}/{{task_id}}/status", response_model=TrainResponse, tags=["training"],
        summary="Get training job status", responses=_err(401, 404, 422, 503),
    )
    async def get_training_status(task_id: TaskId, caller: Caller) -> TrainResponse:
        return status_response(await load_job(task_id, caller))

    @app.get(
        f"{API_PREFIX}/{{task_id}}", response_model=JobDetail, tags=["training"],
        summary="Get a training job: status, spec, conditions, timestamps, metrics",
        responses=_err(401, 404, 422, 503),
    )
    async def get_training_job(task_id: TaskId, caller: Caller) -> JobDetail:
        return detail(await load_job(task_id, caller))

    @app.delete(
        f"{API_PREFIX}/{{task_id}}", response_model=TrainResponse, tags=["training"],
        summary="Cancel a training job (the trainer stops; the record stays), or purge a finished one",
        description=(
            "Cancel answers at once: the job stays running with progress.message 'Cancelling: …' until "
            "the trainer has checkpointed and exited, then it is cancelled. With `purge=true` (local "
            "backend) a finished job is removed instead: its record and its run folder (checkpoints, "
            "model, logs); 409 while it or another job writing to that run is pending or running."
        ),
        responses=_err(401, 404, 409, 422, 503),
    )
    async def cancel_training_job(
        task_id: TaskId,
        caller: Caller,
        purge: Annotated[bool, Query(description="Remove a finished job and its run folder (local backend).")] = False,
    ) -> TrainResponse:
        job = await load_job(task_id, caller)
        if purge:
            job = await backend.purge(job.task_id)
            return status_response(job, message=f"Job and run folder '{job.run_name}' removed")
        job = await backend.cancel(job.task_id)
        metrics.jobs_cancelled.labels(backend.name).inc()
        message = "Training job cancelled" if job.phase == Phase.cancelled else "Cancellation requested"
        return status_response(job, message=message)

    @app.get(
        f"{API_PREFIX}/{{task_id}}/logs", response_model=LogsResponse, tags=["training"],
        summary="The trainer's last log lines", responses=_err(401, 404, 422, 503),
    )
    async def get_training_logs(
        task_id: TaskId,
        caller: Caller,
        tail: Annotated[int, Query(ge=0, le=10000, description="Number of lines from the end.")] = 100,
    ) -> LogsResponse:
        job = await load_job(task_id, caller)
        logs = await backend.logs(job.task_id, tail)
        return LogsResponse(task_id=job.task_id, source=logs.source, lines=logs.lines)

    @app.get("/", response_model=RootInfo, tags=["system"], summary="API information")
    async def root() -> RootInfo:
        return RootInfo(
            name="LaxAI Training API", version=__version__, backend=backend.name,
            links={"docs": "/docs", "redoc": "/redoc", "openapi": "/openapi.json", "health": "/health",
                   "metrics": "/metrics", "train": API_PREFIX, "jobs": f"{API_PREFIX}/jobs"},
        )

    @app.get(
        "/health", response_model=HealthResponse, tags=["system"], summary="Health check",
        responses=_err(503),
    )
    async def health() -> HealthResponse:
        try:
            ok, details = await asyncio.wait_for(backend.health(), HEALTH_TIMEOUT_SECONDS)
        except TimeoutError:
            ok, details = False, {"error": f"backend did not answer within {HEALTH_TIMEOUT_SECONDS:g} s"}
        except ApiError as exc:
            ok, details = False, {"error": exc.message, **exc.details}
        except Exception as exc:  # noqa: BLE001 - any failure means unhealthy, with why
            ok, details = False, {"error": f"{type(exc).__name__}: {exc}"}
        if not ok:
            raise BackendUnavailable(
                f"The {backend.name} backend is not available", {"backend": backend.name, **details}
            )
        return HealthResponse(status="ok", backend=backend.name, details=details)

    @app.get("/metrics", tags=["system"], summary="Prometheus metrics", response_class=PlainTextResponse)
    async def prometheus_metrics() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)
    return app
