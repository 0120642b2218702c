"""Environment settings of ``laxai-train`` (prefix ``LAXAI_``), listed by ``--help``."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from laxai_trainer.settings import CommonSettings


class TrainerSettings(CommonSettings):
    training_config: str | None = Field(
        None, description="The training config as JSON text, when --config is not given (set by the operator)."
    )
    run_name: str | None = Field(
        None, description="Run name when the config has no custom_name and --run-name is not given."
    )
    job_id: str | None = Field(
        None,
        description=(
            "Identity of the job (TrainingJob uid; local task id): a run folder this job wrote is "
            "resumed on its retries whatever resume_from_checkpoint says. Unset: every start is a new job."
        ),
    )
    cache_dir: Path | None = Field(
        None, description="Local cache of synced datasets and temp files (default: LAXAI_HOME/cache)."
    )
    device: Literal["auto", "cuda", "cpu"] = Field(
        "auto", description="Where to train: cuda when available (auto), or forced."
    )
    pretrained_download: bool = Field(
        True,
        description="Download ImageNet weights when torchvision's cache ($TORCH_HOME) lacks them.",
    )
    termination_log: Path = Field(
        Path("/dev/termination-log"),
        description="Where the reason of a failed run is written, when that file exists and is writable.",
    )
    trainingjob_name: str | None = Field(
        None, description="TrainingJob whose status receives progress (set in the trainer pod)."
    )
    trainingjob_namespace: str | None = Field(None, description="Namespace of that TrainingJob.")

    def resolved_cache_dir(self) -> Path:
        return self.cache_dir if self.cache_dir is not None else self.home / "cache"
