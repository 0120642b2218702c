"""The API server's settings (environment, prefix ``LAXAI_``).

The Helm chart sets these names; ``laxai-api --help`` lists them all.
"""

from __future__ import annotations

import shlex
from pathlib import Path

from pydantic import Field, SecretStr, field_validator

from laxai_api.tenant_policy import TenantLimits, quantity_cap
from laxai_operator.resource import QUANTITY_PATTERN
from laxai_trainer.settings import CommonSettings

#: Where Kubernetes mounts the pod's namespace.
SERVICEACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


def pod_namespace(path: Path = SERVICEACCOUNT_NAMESPACE) -> str:
    """The namespace this pod runs in, else ``default`` (outside a cluster)."""
    try:
        return path.read_text().strip() or "default"
    except OSError:
        return "default"


class ApiSettings(CommonSettings):
    namespace: str = Field(
        default_factory=pod_namespace,
        description="kubernetes backend: namespace of the TrainingJobs (default: the pod's own, else 'default').",
    )
    auth_enabled: bool = Field(
        False, description="Require an API key (X-API-Key or Authorization: Bearer) on /api/v1 routes."
    )
    api_keys_file: Path | None = Field(
        None,
        description='JSON file {"<key>": "<tenant_id>" or "*"} ("*" = admin); re-read when it changes.',
    )
    # SecretStr: never shown in a repr, a log line or a validation error.
    api_keys: SecretStr | None = Field(
        None, description="The same JSON object as LAXAI_API_KEYS_FILE, in an environment variable."
    )
    default_gpus: int | None = Field(
        None, ge=0, le=16,
        description="GPUs of submitted jobs whose body sets no gpus (unset: the CRD default, 1).",
    )
    # What a tenant API key may ask for (laxai_api.tenant_policy); admin keys are not capped.
    # For the optional caps an empty value (the chart's null) means no cap.
    tenant_max_gpus: int = Field(1, ge=0, le=16, description="Most GPUs a tenant API key's job may request.")
    tenant_max_cpu: str | None = Field(
        "8", pattern=QUANTITY_PATTERN, description="Most resources.cpu a tenant key may set (empty: no cap)."
    )
    tenant_max_memory: str | None = Field(
        "64Gi", pattern=QUANTITY_PATTERN, description="Most resources.memory a tenant key may set (empty: no cap)."
    )
    tenant_max_shm_size: str | None = Field(
        "32Gi", pattern=QUANTITY_PATTERN, description="Most shmSize a tenant key may set (empty: no cap)."
    )
    tenant_max_backoff_limit: int | None = Field(
        3, ge=0, description="Most backoffLimit of a tenant key's job, also its default's cap (empty: no cap)."
    )
    tenant_max_active_deadline_seconds: int | None = Field(
        604800, ge=1, description="Most activeDeadlineSeconds of a tenant key's job; unset, it gets this (empty: no cap).",
    )
    tenant_max_startup_timeout_seconds: int | None = Field(
        3600, ge=10, description="Most startupTimeoutSeconds a tenant key may set (empty: no cap).",
    )
    tenant_max_ttl_seconds_after_finished: int | None = Field(
        None, ge=0, description="Most ttlSecondsAfterFinished of a tenant key's job; unset, it gets this (empty: no cap).",
    )
    max_concurrent_jobs: int = Field(
        1, ge=0, le=256,
        description="local backend: trainers run at once; later jobs wait in a FIFO queue (0: queue only).",
    )
    cancel_grace_seconds: float = Field(
        20.0, ge=0, le=3600,
        description="local backend: seconds between SIGTERM and SIGKILL when a job is cancelled.",
    )
    trainer_command: str = Field(
        "laxai-train", description="local backend: the trainer command (split like a shell word list)."
    )

    @field_validator(
        "tenant_max_cpu", "tenant_max_memory", "tenant_max_shm_size", "tenant_max_backoff_limit",
        "tenant_max_active_deadline_seconds", "tenant_max_startup_timeout_seconds",
        "tenant_max_ttl_seconds_after_finished", mode="before",
    )
    @classmethod
    def _empty_is_no_cap(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("tenant_max_cpu", "tenant_max_memory", "tenant_max_shm_size")
    @classmethod
    def _positive_quantity(cls, value: str | None) -> str | None:
        return quantity_cap(value)

    def tenant_limits(self) -> TenantLimits:
        return TenantLimits(
            gpus=self.tenant_max_gpus, cpu=self.tenant_max_cpu, memory=self.tenant_max_memory,
            shm_size=self.tenant_max_shm_size, backoff_limit=self.tenant_max_backoff_limit,
            active_deadline_seconds=self.tenant_max_active_deadline_seconds,
            startup_timeout_seconds=self.tenant_max_startup_timeout_seconds,
            ttl_seconds_after_finished=self.tenant_max_ttl_seconds_after_finished,
        )

    @field_validator("trainer_command")
    @classmethod
    def _command_not_empty(cls, value: str) -> str:
        if not shlex.split(value):
            raise ValueError("trainer_command must not be empty")
        return value

    def trainer_argv(self) -> list[str]:
        return shlex.split(self.trainer_command)
