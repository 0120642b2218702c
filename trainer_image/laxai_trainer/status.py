"""Progress and metrics the trainer reports: the seed API's progress object.

Pydantic only (no torch): the operator's TrainingJob status and the API's
responses embed these same models, so what the trainer writes is what users read.
"""

from __future__ import annotations

import math
from enum import StrEnum
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field


class Phase(StrEnum):
    """Lifecycle of a training job; the values are the seed API's job statuses."""

    pending = "pending"
    running = "running"
    completed = "completed"
    failed = "failed"
    cancelled = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL_PHASES


TERMINAL_PHASES = frozenset({Phase.completed, Phase.failed, Phase.cancelled})

#: Log lines kept in Progress.logs.
LOG_TAIL = 20


#: Significant digits kept of a reported loss or metric.
REPORTED_DIGITS = 4


def significant(value: float | None, digits: int = REPORTED_DIGITS) -> float | None:
    """``value`` rounded to ``digits`` significant digits (0.5082808136940002 -> 0.5083).

    Losses and metrics are rounded where they are reported, so `kubectl get tj` (whose number
    columns print the stored float as is), the API and the CLI all read at a glance; full
    precision stays in the run's metrics.json ``epochs``.
    """
    if value is None or not math.isfinite(value) or value == 0:
        return value
    return round(value, digits - 1 - math.floor(math.log10(abs(value))))


#: A float rounded to REPORTED_DIGITS significant digits on validation.
Reported = Annotated[float, AfterValidator(significant)]
#: A reported fraction in [0, 1] (recall, mAP).
ReportedFraction = Annotated[float, Field(ge=0, le=1), AfterValidator(significant)]


class StatusModel(BaseModel):
    """Status is written by our own code; unknown keys are still rejected."""

    model_config = ConfigDict(extra="forbid", validate_by_name=True, serialize_by_alias=True)


class Progress(StatusModel):
    """The seed API's progress object, plus ETA and timing."""

    status: Phase = Field(Phase.pending, description="Same as status.phase.")
    current_epoch: int | None = Field(None, ge=0, description="Last finished epoch (1-based).")
    total_epochs: int | None = Field(None, ge=0, description="Epochs planned (num_epochs).")
    current_step: int | None = Field(None, ge=0, description="Training steps done in the current epoch.")
    total_steps: int | None = Field(None, ge=0, description="Training steps per epoch.")
    current_loss: Reported | None = Field(None, description="Training loss of the last epoch.")
    best_loss: Reported | None = Field(None, description="Lowest validation loss so far (not what picks the best epoch).")
    current_map: ReportedFraction | None = Field(None, description="Validation mAP of the last epoch.")
    best_map: ReportedFraction | None = Field(
        None, description="Best validation mAP so far: the best epoch (best.pt, the final model) is chosen by it."
    )
    message: str | None = Field(None, max_length=4096, description="What the trainer is doing.")
    datasets_found: int | None = Field(None, ge=0, description="Frame datasets found in storage.")
    datasets_processed: int | None = Field(
        None, ge=0, description="Frame datasets synced to the local cache so far."
    )
    logs: list[str] = Field(
        default_factory=list, max_length=50, description="Last log lines of the trainer."
    )
    eta_seconds: float | None = Field(
        None, ge=0, description="The trainer's estimate of the seconds left (as of updated_at)."
    )
    updated_at: str | None = Field(None, description="When the trainer last reported (RFC 3339).")


class Metrics(StatusModel):
    """Validation metrics of the best epoch (retrieval: query excluded from its gallery)."""

    rank1: ReportedFraction | None = Field(None, description="Recall@1 (rank-1 accuracy).")
    rank5: ReportedFraction | None = Field(None, description="Recall@5.")
    rank10: ReportedFraction | None = Field(None, description="Recall@10.")
    mAP: ReportedFraction | None = Field(None, description="Mean average precision.")
    same_kit_rank1: ReportedFraction | None = Field(
        None,
        description=(
            "Rank-1 over the val queries whose nearest wrong match wears the query's kit "
            "(a teammate); only when the datasets carry kit info (kits.json)."
        ),
    )
    same_kit_mAP: ReportedFraction | None = Field(
        None, description="mAP over the same queries as same_kit_rank1 (kit info only)."
    )
    train_loss: Reported | None = Field(None, description="Training loss of the last epoch.")
    val_loss: Reported | None = Field(None, description="Validation loss of the best epoch.")
    best_epoch: int | None = Field(None, ge=0, description="Epoch with the best validation mAP.")
    epochs_completed: int | None = Field(None, ge=0, description="Epochs trained.")
    model_uri: str | None = Field(None, description="Where the final model was written.")
    run_uri: str | None = Field(None, description="The run folder (checkpoints, metrics.json, logs).")


class ProgressReport(StatusModel):
    """What one report carries: the progress object and, at the end, the metrics."""

    progress: Progress = Field(default_factory=Progress)
    metrics: Metrics | None = None
