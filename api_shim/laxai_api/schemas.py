"""Request and response bodies of the REST API (the seed API, served to the letter).

The request is the TrainingJob spec: the seed's Training Request (``TrainingConfig``)
plus the optional run fields a ``kubectl apply`` user writes (gpus, resources, …),
so one body works for every way in. Nothing here copies a contract field. Which run
fields a tenant API key may set is :mod:`laxai_api.tenant_policy`'s decision, not the schema's.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from laxai_operator.resource import Condition, HistoryEntry, TrainingJobSpec
from laxai_trainer.config import ModelKwargs, TrainingKwargs
from laxai_trainer.status import Metrics, Phase, Progress

#: The seed's curl example (SEED_API.md), the request's first OpenAPI example.
SEED_EXAMPLE: dict[str, Any] = {
    "tenant_id": "tenant1",
    "custom_name": "api_test_run",
    "verbose": True,
    "training_kwargs": {"num_epochs": 10, "batch_size": 32, "learning_rate": 0.001, "margin": 0.4},
    "model_kwargs": {"embedding_dim": 256, "use_cbam": True},
}

#: Names the earlier LaxAI server used -> the documented names.
REQUEST_ALIASES = {"training_params": "training_kwargs", "model_params": "model_kwargs"}


class TrainRequest(TrainingJobSpec):
    """A training request: the seed's Training Request, optionally with TrainingJob run fields."""

    model_config = ConfigDict(
        extra="forbid",
        validate_assignment=True,
        validate_by_name=True,
        json_schema_extra={"examples": [SEED_EXAMPLE]},
    )

    # Declared for the OpenAPI document only: the validator below renames them before
    # validation, so they are never set and never serialised.
    training_params: TrainingKwargs | None = Field(
        None, exclude=True, description="Deprecated alias of training_kwargs (earlier LaxAI server)."
    )
    model_params: ModelKwargs | None = Field(
        None, exclude=True, description="Deprecated alias of model_kwargs (earlier LaxAI server)."
    )

    @model_validator(mode="before")
    @classmethod
    def _rename_aliases(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        renamed = dict(data)
        for old, new in REQUEST_ALIASES.items():
            if old in renamed:
                if new in renamed:
                    raise ValueError(f"give {new} or its alias {old}, not both")
                renamed[new] = renamed.pop(old)
        return renamed

    @model_validator(mode="after")
    def _not_cancelled(self) -> TrainRequest:
        if self.cancel:
            raise ValueError("cancel must be false when submitting (cancel a job with DELETE)")
        return self

    def spec(self, default_gpus: int | None = None) -> TrainingJobSpec:
        """The TrainingJob spec this request creates; default_gpus (LAXAI_DEFAULT_GPUS) fills an unset gpus."""
        data = self.model_dump(exclude_unset=True)
        if default_gpus is not None:
            data.setdefault("gpus", default_gpus)
        return TrainingJobSpec.model_validate(data)

    def spec_document(self) -> dict[str, Any]:
        """The spec as it goes on the wire: set fields only (the CRD and the operator default the rest)."""
        return self.spec().model_dump(by_alias=True, exclude_unset=True, mode="json")


class ResponseModel(BaseModel):
    model_config = ConfigDict(serialize_by_alias=True, validate_by_name=True)


class TrainResponse(ResponseModel):
    """The seed's response: ``accepted`` on submit, else the job's status."""

    status: Literal["accepted"] | Phase = Field(
        ..., description="accepted (just submitted), else pending, running, completed, failed or cancelled."
    )
    task_id: str = Field(..., description="The job's id: the TrainingJob's name (a UUID for API-created jobs).")
    message: str = Field(..., description="What happened or what the job is doing.")
    progress: Progress = Field(..., description="Training progress (the seed's progress object).")

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "status": "accepted",
                    "task_id": "0b7e7f9e-3c43-4d39-a9a3-2a4a8f1c6d10",
                    "message": "Training job queued",
                    "progress": {
                        "status": "pending", "current_epoch": None, "total_epochs": 10,
                        "current_loss": None, "best_loss": None, "message": "Training job queued",
                        "datasets_found": None, "datasets_processed": None, "logs": [],
                    },
                }
            ]
        }
    )


class JobSummary(TrainResponse):
    """One job in a list: the status response plus who and when."""

    tenant_id: str = Field(..., description="Tenant whose crops the job trains on.")
    run_name: str = Field(..., description="Run folder: {root}/{tenant_id}/runs/{run_name}/.")
    created_at: str | None = Field(None, description="When the job was submitted (RFC 3339).")


class JobDetail(JobSummary):
    """Everything about one job."""

    reason: str | None = Field(None, description="CamelCase reason of the current status.")
    spec: dict[str, Any] = Field(..., description="The TrainingJob spec (the request, with run fields).")
    conditions: list[Condition] = Field(default_factory=list, description="Kubernetes-style conditions.")
    history: list[HistoryEntry] = Field(default_factory=list, description="Status transitions, oldest first.")
    started_at: str | None = Field(None, description="When the trainer started (RFC 3339).")
    completed_at: str | None = Field(None, description="When the job finished (RFC 3339).")
    metrics: Metrics | None = Field(None, description="Validation metrics of the best epoch, when finished.")
    attempts: int | None = Field(None, description="Trainer processes/pods started.")


class JobList(ResponseModel):
    """A page of jobs, newest first."""

    total_jobs: int = Field(..., description="Jobs matching the filters (all pages).")
    jobs: list[JobSummary] = Field(..., description="This page, newest first.")
    continue_: str | None = Field(
        None, alias="continue", description="Pass as ?continue= to get the next page; null on the last page."
    )


class LogsResponse(ResponseModel):
    task_id: str
    source: Literal["file", "pod", "storage", "none"] = Field(
        ..., description="file (local backend), pod (the running pod), storage (the run's saved log), none."
    )
    lines: list[str] = Field(..., description="The last log lines, oldest first.")


class ErrorBody(ResponseModel):
    """The documented error body, used by every error response."""

    error: str = Field(..., description="Error type, e.g. not_found, validation_error.")
    message: str = Field(..., description="Human readable error message.")
    details: dict[str, Any] = Field(default_factory=dict, description="Additional error context.")

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"error": "not_found", "message": "Training job 'abc' not found", "details": {"task_id": "abc"}}
            ]
        }
    )


class RootInfo(ResponseModel):
    name: str
    version: str
    backend: str
    links: dict[str, str]


class HealthResponse(ResponseModel):
    status: Literal["ok", "unavailable"]
    backend: str
    details: dict[str, Any] = Field(default_factory=dict)
