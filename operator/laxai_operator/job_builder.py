"""TrainingJob -> batch/v1 Job manifest. Pure: the same inputs always give the same dict.

Choices worth knowing:
- The trainer reads its config from ``LAXAI_TRAINING_CONFIG`` (the spec's TrainingConfig as
  JSON; architecture.md), so no ConfigMap has to be created, owned and garbage-collected.
- ``podFailurePolicy`` encodes the trainer's exit-code contract (``laxai_trainer.exit_codes``):
  a disruption (preemption, eviction, node drain: the pod gets the DisruptionTarget condition)
  is ignored, i.e. retried without using up ``backoffLimit``; exit 3 (config error) fails the
  Job at once; exits 1 and 75 are counted retries. Every retry uses the same run name and
  ``LAXAI_JOB_ID`` (the TrainingJob's uid), so it resumes from the job's own last checkpoint
  whatever ``resume_from_checkpoint`` says (``laxai_trainer.run_claim``; the trainer counts the
  attempts in run.json).
  ``podReplacementPolicy: Failed`` (the only value allowed with a podFailurePolicy) starts the
  replacement only after the old pod has fully stopped — and written its checkpoint.
- /dev/shm is an in-memory emptyDir: spec.shmSize, else half the memory limit, else the
  operator default. A memory-backed volume counts against the memory limit, hence "half".
- Credentials are the job's tenant's (``settings.credentials_for(spec.tenant_id)``): a tenant
  listed in LAXAI_TENANT_CREDENTIALS gets its own ServiceAccount and Secrets and never the shared
  ones; every other tenant gets the shared ones.
- No ``ttlSecondsAfterFinished`` on the Job: the TTL controller deletes a finished Job (and its
  pods) whether or not anyone has read its result — with the operator down, a success would be
  lost as "JobDeleted". ``spec.ttlSecondsAfterFinished`` applies to the TrainingJob instead
  (the operator deletes it after recording the result; the Job goes with it by ownerReference).
- Node selector and tolerations defaults from the settings are for GPU nodes, so they apply to
  GPU jobs only: a CPU job (gpus = 0) must not occupy a GPU node.
"""

from __future__ import annotations

from typing import Any

from laxai_operator import naming as n
from laxai_operator.quantity import format_bytes, parse_quantity
from laxai_operator.resource import API_VERSION, KIND, TrainingJobSpec
from laxai_operator.settings import OperatorSettings
from laxai_trainer import exit_codes

SHM_MOUNT = "/dev/shm"
WORK_DIR = "/var/lib/laxai"
GCS_MOUNT = "/var/secrets/google"
GCS_KEY_FILE = "key.json"
WANDB_KEY = "WANDB_API_KEY"
TRAINER_COMMAND = ["laxai-train", "run"]
#: The trainer image's non-root user (trainer_image/Dockerfile: USER 10001:10001): the pod runs as
#: that user so its home (caches, wandb files) is writable.
RUN_AS_USER = 10001


def shm_size(spec: TrainingJobSpec, settings: OperatorSettings) -> str:
    """spec.shmSize, else half the memory limit, else the operator's default."""
    if spec.shm_size:
        return spec.shm_size
    if spec.resources.memory:
        return format_bytes(parse_quantity(spec.resources.memory) / 2)
    return settings.default_shm_size


def labels(name: str, spec: TrainingJobSpec) -> dict[str, str]:
    return {
        n.LABEL_NAME: n.APP_NAME,
        n.LABEL_INSTANCE: n.label_value(name),
        n.LABEL_COMPONENT: n.COMPONENT,
        n.LABEL_MANAGED_BY: n.MANAGED_BY,
        n.LABEL_PART_OF: n.PART_OF,
        n.LABEL_TENANT: spec.tenant_id,
        n.LABEL_TRAININGJOB: n.label_value(name),
    }


def pod_failure_policy() -> dict[str, Any]:
    on_codes = {"containerName": n.CONTAINER_NAME, "operator": "In"}
    return {
        "rules": [
            {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
            {"action": "FailJob", "onExitCodes": {**on_codes, "values": [exit_codes.CONFIG_ERROR]}},
            {
                "action": "Count",
                "onExitCodes": {**on_codes, "values": sorted([exit_codes.FAILURE, exit_codes.RETRY])},
            },
        ]
    }


def _env(name: str, namespace: str, uid: str, spec: TrainingJobSpec, settings: OperatorSettings) -> list[dict]:
    config = spec.training_config()
    creds = settings.credentials_for(spec.tenant_id)
    env: list[dict[str, Any]] = [
        {"name": "LAXAI_TRAINING_CONFIG", "value": config.model_dump_json()},
        {"name": "LAXAI_RUN_NAME", "value": config.run_name(name)},
        {"name": "LAXAI_STORAGE_ROOT", "value": settings.storage_root},
        {"name": "LAXAI_HOME", "value": WORK_DIR},
        {"name": "LAXAI_TRAININGJOB_NAME", "value": name},
        {"name": "LAXAI_TRAININGJOB_NAMESPACE", "value": namespace},
        {"name": "LAXAI_JOB_ID", "value": uid},
    ]
    if creds.gcs_credentials_secret:
        env.append({"name": "GOOGLE_APPLICATION_CREDENTIALS", "value": f"{GCS_MOUNT}/{GCS_KEY_FILE}"})
    if creds.wandb_secret:
        env.append({
            "name": WANDB_KEY,
            "valueFrom": {"secretKeyRef": {"name": creds.wandb_secret, "key": WANDB_KEY, "optional": True}},
        })
    for var, value in (("WANDB_PROJECT", creds.wandb_project), ("WANDB_ENTITY", creds.wandb_entity)):
        if value:
            env.append({"name": var, "value": value})
    return env


def _resources(spec: TrainingJobSpec, settings: OperatorSettings) -> dict[str, Any]:
    amounts = {k: v for k, v in (("cpu", spec.resources.cpu), ("memory", spec.resources.memory)) if v}
    limits: dict[str, str] = dict(amounts)
    if spec.gpus > 0:
        limits[settings.gpu_resource_name] = str(spec.gpus)
    out: dict[str, Any] = {}
    if amounts:
        out["requests"] = dict(amounts)  # requests = limits: Guaranteed QoS, never evicted first
    if limits:
        out["limits"] = limits
    return out


def _volumes(spec: TrainingJobSpec, settings: OperatorSettings) -> tuple[list[dict], list[dict]]:
    volumes: list[dict[str, Any]] = [
        {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": shm_size(spec, settings)}},
        {"name": "work", "emptyDir": {}},
    ]
    mounts: list[dict[str, Any]] = [
        {"name": "dshm", "mountPath": SHM_MOUNT},
        {"name": "work", "mountPath": WORK_DIR},
    ]
    if settings.storage_pvc:
        volumes.append({"name": "storage", "persistentVolumeClaim": {"claimName": settings.storage_pvc}})
        mounts.append({"name": "storage", "mountPath": settings.storage_mount_path()})
    gcs_secret = settings.credentials_for(spec.tenant_id).gcs_credentials_secret
    if gcs_secret:
        volumes.append({"name": "gcs-credentials", "secret": {"secretName": gcs_secret}})
        mounts.append({"name": "gcs-credentials", "mountPath": GCS_MOUNT, "readOnly": True})
    return volumes, mounts


def _scheduling(spec: TrainingJobSpec, settings: OperatorSettings) -> dict[str, Any]:
    gpu_job = spec.gpus > 0
    selector = {**(settings.node_selector if gpu_job else {}), **spec.node_selector}
    if spec.tolerations is not None:
        tolerations = [t.model_dump(by_alias=True, exclude_none=True) for t in spec.tolerations]
    else:
        tolerations = [dict(t) for t in settings.tolerations] if gpu_job else []
    out: dict[str, Any] = {}
    if selector:
        out["nodeSelector"] = selector
    if tolerations:
        out["tolerations"] = tolerations
    if settings.runtime_class_name:
        out["runtimeClassName"] = settings.runtime_class_name
    if spec.priority_class_name:
        out["priorityClassName"] = spec.priority_class_name
    return out


def owner_reference(body_meta: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "name": body_meta["name"],
        "uid": body_meta["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def build_job(
    name: str, namespace: str, uid: str, spec: TrainingJobSpec, settings: OperatorSettings
) -> dict[str, Any]:
    """The batch/v1 Job that runs one TrainingJob's trainer."""
    job_labels = labels(name, spec)
    if spec.queue_name:
        job_labels[n.LABEL_QUEUE] = spec.queue_name
    annotations = {n.ANNOTATION_TRAININGJOB: name}
    volumes, mounts = _volumes(spec, settings)
    container: dict[str, Any] = {
        "name": n.CONTAINER_NAME,
        "image": spec.image or settings.trainer_image,
        "imagePullPolicy": settings.trainer_image_pull_policy,
        "command": list(TRAINER_COMMAND),
        "env": _env(name, namespace, uid, spec, settings),
        "resources": _resources(spec, settings),
        "volumeMounts": mounts,
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": RUN_AS_USER,
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
    }
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "serviceAccountName": settings.credentials_for(spec.tenant_id).service_account,
        "enableServiceLinks": False,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": RUN_AS_USER,
            "runAsGroup": RUN_AS_USER,
            "fsGroup": RUN_AS_USER,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [container],
        "volumes": volumes,
        **_scheduling(spec, settings),
    }
    if settings.image_pull_secrets:
        pod_spec["imagePullSecrets"] = [{"name": s} for s in settings.image_pull_secrets]
    job_spec: dict[str, Any] = {
        "completions": 1,
        "parallelism": 1,
        "backoffLimit": spec.backoff_limit,
        "podFailurePolicy": pod_failure_policy(),
        "podReplacementPolicy": "Failed",
        # Kueue admits a queued Job by clearing suspend, so a queued Job starts suspended.
        "suspend": bool(spec.suspend or spec.queue_name),
        "template": {
            "metadata": {"labels": labels(name, spec), "annotations": dict(annotations)},
            "spec": pod_spec,
        },
    }
    if spec.active_deadline_seconds is not None:
        job_spec["activeDeadlineSeconds"] = spec.active_deadline_seconds
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": n.job_name(name),
            "namespace": namespace,
            "labels": job_labels,
            "annotations": annotations,
            "ownerReferences": [owner_reference({"name": name, "uid": uid})],
        },
        "spec": job_spec,
    }


def job_spec_patch(spec: TrainingJobSpec, job: dict[str, Any]) -> dict[str, Any]:
    """The merge patch that brings a live Job's mutable fields in line with the spec ({} if none).

    suspend: a queued Job (queueName) is resumed by Kueue, never by the operator.
    ttlSecondsAfterFinished is removed from Jobs an older operator made: see the module docstring.
    """
    current = job.get("spec", {})
    patch: dict[str, Any] = {}
    want_suspend = spec.suspend
    if current.get("suspend", False) != want_suspend and (want_suspend or not spec.queue_name):
        patch["suspend"] = want_suspend
    for key, value in (
        ("activeDeadlineSeconds", spec.active_deadline_seconds),
        ("ttlSecondsAfterFinished", None),
    ):
        if current.get(key) != value:
            patch[key] = value
    return {"spec": patch} if patch else {}

