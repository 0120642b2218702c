"""The TrainingJob custom resource: spec and status as pydantic models.

The spec is the trainer's :class:`TrainingConfig` (seed field names, snake_case)
plus how to run it (Kubernetes-style camelCase names, as in a Job or Pod spec).
The CRD in ``crds/trainingjob.yaml`` is generated from these models
(:mod:`laxai_operator.crd`); the operator and the API shim read and write
resources through them.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import ConfigDict, Field

from laxai_trainer.config import StrictModel, TrainingConfig
from laxai_trainer.status import TERMINAL_PHASES, Metrics, Phase, Progress, StatusModel

__all__ = ["TERMINAL_PHASES", "Metrics", "Phase", "Progress", "TrainingJobSpec", "TrainingJobStatus"]

GROUP = "training.laxai.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "TrainingJob"
PLURAL = "trainingjobs"
SINGULAR = "trainingjob"
SHORT_NAMES = ["tj"]
CATEGORIES = ["laxai", "ml"]

#: Kubernetes resource quantity (the API server's own pattern).
QUANTITY_PATTERN = r"^([+-]?[0-9.]+)([eEinumkKMGTPE]*[-+]?[0-9]*)$"
LABEL_KEY_PATTERN = r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"


#: A label value (at most 63 characters): also bounds the CEL cost of rules over nodeSelector.
LabelValue = Annotated[str, Field(max_length=63)]


class K8sModel(StrictModel):
    """Kubernetes-style models: camelCase on the wire, snake_case in Python."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, validate_by_name=True)


class Resources(K8sModel):
    cpu: str | None = Field(
        None, pattern=QUANTITY_PATTERN, max_length=32,
        description="CPU request and limit of the trainer container (e.g. '4', '3500m').",
    )
    memory: str | None = Field(
        None, pattern=QUANTITY_PATTERN, max_length=32,
        description="Memory request and limit of the trainer container (e.g. '16Gi').",
    )


class Toleration(K8sModel):
    key: str | None = Field(None, max_length=317, description="Taint key the toleration applies to.")
    operator: Literal["Exists", "Equal"] | None = Field(
        None, description="Exists or Equal (default Equal)."
    )
    value: str | None = Field(None, max_length=63, description="Taint value to match.")
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = Field(
        None, description="Taint effect to match (all when empty)."
    )
    toleration_seconds: int | None = Field(
        None, alias="tolerationSeconds", description="How long a NoExecute taint is tolerated."
    )


class RunSpec(K8sModel):
    """How to run the trainer: image, accelerators, scheduling, retries and lifetime."""

    image: str | None = Field(
        None, max_length=512,
        description="Trainer image; the operator's default (Helm value) when unset.",
    )
    gpus: int = Field(
        1, ge=0, le=16, description="GPUs for the trainer pod; 0 runs on CPU."
    )
    resources: Resources = Field(
        default_factory=Resources, description="CPU and memory of the trainer container."
    )
    shm_size: str | None = Field(
        None, alias="shmSize", pattern=QUANTITY_PATTERN, max_length=32,
        description=(
            "Size of the in-memory /dev/shm for DataLoader workers; default half the memory "
            "limit (or the operator's default when no memory is set)."
        ),
    )
    node_selector: dict[str, LabelValue] = Field(
        default_factory=dict, alias="nodeSelector", max_length=32,
        description="Node labels the trainer pod must match; merged over the operator's default.",
    )
    tolerations: list[Toleration] | None = Field(
        None, max_length=32,
        description="Tolerations of the trainer pod; the operator's default (GPU taint) when unset.",
    )
    priority_class_name: str | None = Field(
        None, alias="priorityClassName", max_length=253,
        description="PriorityClass of the trainer pod.",
    )
    queue_name: str | None = Field(
        None, alias="queueName", max_length=63,
        description="Kueue LocalQueue; passed to the Job as the kueue.x-k8s.io/queue-name label.",
    )
    backoff_limit: int = Field(
        3, alias="backoffLimit", ge=0, le=100,
        description="Retries of the trainer pod after a failure or preemption (resumes from checkpoint).",
    )
    active_deadline_seconds: int | None = Field(
        None, alias="activeDeadlineSeconds", ge=1,
        description="Wall-clock limit for the whole job, retries included.",
    )
    startup_timeout_seconds: int = Field(
        900, alias="startupTimeoutSeconds", ge=10, le=604800,
        description=(
            "Fail the job when its current attempt has no started trainer pod for this long "
            "(Pending, unschedulable, image pull error; a refused pod creation fails after at most "
            "120 s); independent of activeDeadlineSeconds."
        ),
    )
    ttl_seconds_after_finished: int | None = Field(
        None, alias="ttlSecondsAfterFinished", ge=0,
        description="Delete the TrainingJob (and its Job) this long after it finished; kept when unset.",
    )
    suspend: bool = Field(
        False, description="Suspend the Job (no pods run); Kueue admits by clearing it."
    )
    cancel: bool = Field(
        False,
        description="Cancel the job: its pods stop and the phase becomes cancelled. Cannot be undone.",
    )


class TrainingJobSpec(RunSpec, TrainingConfig):
    """spec of a TrainingJob: what to train (seed fields) and how to run it."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, validate_by_name=True)

    def training_config(self) -> TrainingConfig:
        """The trainer's part of the spec."""
        return TrainingConfig.model_validate(
            {name: getattr(self, name) for name in TrainingConfig.model_fields}
        )


#: Spec fields that may change after creation; every other field is immutable (CEL).
MUTABLE_SPEC_FIELDS = frozenset({"suspend", "cancel", "ttlSecondsAfterFinished", "activeDeadlineSeconds"})


# ---- status -------------------------------------------------------------------------


class Condition(StatusModel):
    """A condition per Kubernetes API conventions."""

    type: str = Field(..., max_length=316, description="Condition type, e.g. Running, Succeeded, Failed.")
    status: Literal["True", "False", "Unknown"] = Field(..., description="True, False or Unknown.")
    reason: str = Field(..., max_length=1024, description="CamelCase reason for the last transition.")
    message: str = Field("", max_length=32768, description="Human-readable details.")
    last_transition_time: str = Field(
        ..., alias="lastTransitionTime", description="When the status last changed (RFC 3339)."
    )
    observed_generation: int | None = Field(
        None, alias="observedGeneration", ge=0, description="Spec generation the condition is about."
    )


class HistoryEntry(StatusModel):
    phase: Phase = Field(..., description="Phase entered.")
    time: str = Field(..., description="When (RFC 3339).")
    reason: str = Field("", max_length=1024, description="CamelCase reason.")
    message: str = Field("", max_length=4096, description="Details.")


HISTORY_LIMIT = 20


class TrainingJobStatus(StatusModel):
    """status of a TrainingJob: the seed's progress plus Kubernetes conventions."""

    phase: Phase = Field(Phase.pending, description="pending, running, completed, failed or cancelled.")
    reason: str | None = Field(None, max_length=1024, description="CamelCase reason of the phase.")
    message: str | None = Field(None, max_length=4096, description="Why the job is in this phase.")
    progress: Progress = Field(default_factory=Progress, description="Training progress.")
    metrics: Metrics | None = Field(None, description="Final (best-epoch) validation metrics.")
    conditions: list[Condition] = Field(
        default_factory=list, max_length=16, description="Conditions per Kubernetes API conventions."
    )
    history: list[HistoryEntry] = Field(
        default_factory=list, max_length=HISTORY_LIMIT, description="Last phase transitions, oldest first."
    )
    observed_generation: int | None = Field(
        None, alias="observedGeneration", ge=0, description="Spec generation last acted on."
    )
    start_time: str | None = Field(None, alias="startTime", description="When a trainer pod first ran.")
    completion_time: str | None = Field(
        None, alias="completionTime", description="When the job reached a terminal phase."
    )
    job_name: str | None = Field(None, alias="jobName", max_length=63, description="The batch/v1 Job.")
    attempts: int | None = Field(None, ge=0, description="Trainer pods started (retries + 1).")
