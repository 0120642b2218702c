"""Operator settings, read from the environment (prefix ``LAXAI_``); the Helm chart sets them.

Every default the operator applies to a trainer pod (image, GPU resource name, node
selector, tolerations, secrets, storage root) comes from here, so a platform team
configures the cluster side once and TrainingJob authors never repeat it.
JSON-valued variables (``LAXAI_NODE_SELECTOR``, ``LAXAI_TOLERATIONS``,
``LAXAI_IMAGE_PULL_SECRETS``) are parsed and validated at startup: a bad value stops
the operator with an error naming the variable instead of producing broken pods.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import NoDecode

from laxai_operator.quantity import parse_quantity
from laxai_operator.resource import LABEL_KEY_PATTERN, K8sModel, Toleration
from laxai_trainer.settings import CommonSettings

#: RFC 1123 label: namespace names, Secret/ServiceAccount/RuntimeClass names.
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
#: RFC 1123 subdomain: Secret names may contain dots.
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")

DEFAULT_TOLERATIONS = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]


def _check_name(value: str | None, pattern: re.Pattern[str], what: str) -> str | None:
    if value is not None and not pattern.match(value):
        raise ValueError(f"{value!r} is not a valid {what}")
    return value


class TenantCredentials(K8sModel):
    """One tenant's own credentials (LAXAI_TENANT_CREDENTIALS): its jobs get these and nothing shared."""

    service_account: str | None = Field(
        None, alias="serviceAccount",
        description="ServiceAccount of the tenant's trainer pods (its own Workload Identity); unset: the shared one.",
    )
    gcs_credentials_secret: str | None = Field(
        None, alias="gcsCredentialsSecret", description="Secret with the tenant's GCS key.json; unset: none."
    )
    wandb_secret: str | None = Field(
        None, alias="wandbSecret", description="Secret with the tenant's WANDB_API_KEY; unset: wandb offline."
    )
    wandb_project: str | None = Field(None, alias="wandbProject", min_length=1, description="WANDB_PROJECT.")
    wandb_entity: str | None = Field(None, alias="wandbEntity", min_length=1, description="WANDB_ENTITY.")

    @field_validator("service_account", "gcs_credentials_secret", "wandb_secret")
    @classmethod
    def _valid_object_name(cls, value: str | None) -> str | None:
        return _check_name(value or None, DNS_SUBDOMAIN, "object name")


class OperatorSettings(CommonSettings):
    trainer_image: str = Field(
        "ghcr.io/laxai/laxai-trainer:latest",
        min_length=1,
        description="Trainer image used when a TrainingJob sets no spec.image.",
    )
    gpu_resource_name: str = Field(
        "nvidia.com/gpu",
        pattern=LABEL_KEY_PATTERN,
        description="Extended resource the trainer's GPUs are requested under.",
    )
    node_selector: dict[str, str] = Field(
        default_factory=dict,
        description=(
            "JSON object: node labels for GPU trainer pods (e.g. "
            '{"cloud.google.com/gke-accelerator": "nvidia-l4"}); spec.nodeSelector is merged over it.'
        ),
    )
    tolerations: list[dict[str, Any]] = Field(
        default_factory=lambda: [dict(t) for t in DEFAULT_TOLERATIONS],
        description="JSON list: tolerations of GPU trainer pods when spec.tolerations is unset.",
    )
    trainer_image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = Field(
        "IfNotPresent", description="imagePullPolicy of the trainer container."
    )
    storage_pvc: str | None = Field(
        None,
        description=(
            "PersistentVolumeClaim mounted in trainer pods at LAXAI_STORAGE_ROOT (a local folder); "
            "unset for gs:// storage."
        ),
    )
    runtime_class_name: str | None = Field(
        None, description="RuntimeClass of trainer pods (e.g. nvidia); none when unset."
    )
    watch_namespaces: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated namespaces to watch; empty watches all namespaces.",
    )
    trainer_service_account: str = Field(
        "laxai-trainer", description="ServiceAccount of trainer pods (may patch TrainingJob status)."
    )
    gcs_credentials_secret: str | None = Field(
        None,
        description="Secret holding key.json for GCS; unset uses Workload Identity.",
    )
    wandb_secret: str | None = Field(
        None, description="Secret holding WANDB_API_KEY (optional in the pod)."
    )
    tenant_credentials: dict[str, TenantCredentials] = Field(
        default_factory=dict,
        description=(
            'JSON object: tenant_id -> {"serviceAccount", "gcsCredentialsSecret", "wandbSecret", "wandbProject", '
            '"wandbEntity"}; a listed tenant\'s jobs get only its own credentials, other tenants the shared ones.'
        ),
    )
    image_pull_secrets: list[str] = Field(
        default_factory=list, description="JSON list of image pull Secret names for trainer pods."
    )
    default_shm_size: str = Field(
        "2Gi",
        description="/dev/shm size when a TrainingJob sets neither shmSize nor a memory limit.",
    )
    metrics_port: int = Field(8080, ge=0, le=65535, description="Prometheus metrics port (0: off).")
    health_port: int = Field(8081, ge=0, le=65535, description="Liveness endpoint port (0: off).")
    leader_election: bool = Field(
        False,
        description=(
            "Lease-based leader gate, for more than one replica; off: one replica, Recreate strategy."
        ),
    )
    leader_election_namespace: str | None = Field(
        None, description="Namespace of the leader Lease (default: the operator pod's own)."
    )

    @field_validator("watch_namespaces", mode="before")
    @classmethod
    def _split_namespaces(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("watch_namespaces")
    @classmethod
    def _valid_namespaces(cls, value: list[str]) -> list[str]:
        for name in value:
            _check_name(name, DNS_LABEL, "namespace name")
        return value

    @field_validator("leader_election_namespace")
    @classmethod
    def _valid_lease_namespace(cls, value: str | None) -> str | None:
        return _check_name(value or None, DNS_LABEL, "namespace name")

    @model_validator(mode="after")
    def _pvc_needs_a_local_root(self) -> OperatorSettings:
        if self.storage_pvc and not self.storage_mount_path():
            raise ValueError(
                f"storage_pvc ({self.storage_pvc}) needs storage_root to be an absolute local path, "
                f"got {self.storage_root!r}"
            )
        return self

    def credentials_for(self, tenant_id: str) -> TenantCredentials:
        """The tenant's own credentials, else the shared ones (trainer ServiceAccount, GCS and W&B Secrets)."""
        own = self.tenant_credentials.get(tenant_id)
        if own is not None:
            return own.model_copy(update={"service_account": own.service_account or self.trainer_service_account})
        return TenantCredentials(serviceAccount=self.trainer_service_account,
                                 gcsCredentialsSecret=self.gcs_credentials_secret, wandbSecret=self.wandb_secret)

    def storage_mount_path(self) -> str | None:
        """Where a storage PVC is mounted: the local storage root (file:// stripped), or None."""
        root = self.storage_root.removeprefix("file://")
        return root if root.startswith("/") else None

    @field_validator(
        "trainer_service_account", "gcs_credentials_secret", "wandb_secret", "runtime_class_name", "storage_pvc"
    )
    @classmethod
    def _valid_object_name(cls, value: str | None) -> str | None:
        return _check_name(value or None, DNS_SUBDOMAIN, "object name")

    @field_validator("image_pull_secrets")
    @classmethod
    def _valid_secret_names(cls, value: list[str]) -> list[str]:
        for name in value:
            _check_name(name, DNS_SUBDOMAIN, "Secret name")
        return value

    @field_validator("tolerations")
    @classmethod
    def _valid_tolerations(cls, value: list[dict[str, Any]]) -> list[dict[str, Any]]:
        # Same model as spec.tolerations: unknown keys and bad enums are errors here too.
        return [Toleration.model_validate(t).model_dump(by_alias=True, exclude_none=True) for t in value]

    @field_validator("default_shm_size")
    @classmethod
    def _valid_quantity(cls, value: str) -> str:
        parse_quantity(value)
        return value
