"""The API server's settings (environment, prefix ``LAXAI_``).

The Helm chart sets these names; ``laxai-api --help`` lists them all.
"""

from __future__ import annotations

import shlex
from pathlib import Path

from pydantic import Field, SecretStr, field_validator

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

    @field_validator("trainer_command")
    @classmethod
    def _command_not_empty(cls, value: str) -> str:
        if not shlex.split(value):
            raise ValueError("trainer_command must not be empty")
        return value

    def trainer_argv(self) -> list[str]:
        return shlex.split(self.trainer_command)
