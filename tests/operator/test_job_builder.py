"""laxai_operator.job_builder: TrainingJob -> batch/v1 Job, table-driven."""

import json

import pytest

from laxai_operator.job_builder import build_job, job_spec_patch, pod_failure_policy, shm_size
from laxai_operator.resource import TrainingJobSpec
from laxai_operator.settings import OperatorSettings
from laxai_trainer.config import TrainingConfig
from tests.contract_cases import FULL_REQUEST

UID = "0b6ae3f0-1111-2222-3333-444455556666"


def settings(**kw):
    base = {"storage_root": "gs://laxai-bucket", "trainer_image": "reg.example/trainer:1"}
    return OperatorSettings.model_validate({**base, **kw})


def spec(**kw):
    return TrainingJobSpec.model_validate({"tenant_id": "tenant1", **kw})


def build(s=None, sp=None, name="run-1", namespace="team-a"):
    return build_job(name, namespace, UID, sp or spec(), s or settings())


def pod(job):
    return job["spec"]["template"]["spec"]


def container(job):
    (c,) = pod(job)["containers"]
    return c


def env(job):
    return {e["name"]: e for e in container(job)["env"]}


def test_full_manifest_exactly():
    """Every field of the default GPU manifest, spelled out: any change must be deliberate."""
    labels = {
        "app.kubernetes.io/name": "laxai-trainer",
        "app.kubernetes.io/instance": "run-1",
        "app.kubernetes.io/component": "trainer",
        "app.kubernetes.io/managed-by": "laxai-operator",
        "app.kubernetes.io/part-of": "laxai-training",
        "training.laxai.io/tenant": "tenant1",
        "training.laxai.io/trainingjob": "run-1",
    }
    config = TrainingConfig(tenant_id="tenant1").model_dump_json()
    expected = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": "tj-run-1",
            "namespace": "team-a",
            "labels": labels,
            "annotations": {"training.laxai.io/trainingjob-name": "run-1"},
            "ownerReferences": [{
                "apiVersion": "training.laxai.io/v1alpha1", "kind": "TrainingJob", "name": "run-1",
                "uid": UID, "controller": True, "blockOwnerDeletion": True,
            }],
        },
        "spec": {
            "completions": 1,
            "parallelism": 1,
            "backoffLimit": 3,
            "podFailurePolicy": {"rules": [
                {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
                {"action": "FailJob", "onExitCodes": {"containerName": "trainer", "operator": "In", "values": [3]}},
                {"action": "Count", "onExitCodes": {"containerName": "trainer", "operator": "In", "values": [1, 75]}},
            ]},
            "podReplacementPolicy": "Failed",
            "suspend": False,
            "template": {
                "metadata": {"labels": labels, "annotations": {"training.laxai.io/trainingjob-name": "run-1"}},
                "spec": {
                    "restartPolicy": "Never",
                    "serviceAccountName": "laxai-trainer",
                    "enableServiceLinks": False,
                    "securityContext": {
                        "runAsNonRoot": True, "runAsUser": 10001, "runAsGroup": 10001, "fsGroup": 10001,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "containers": [{
                        "name": "trainer",
                        "image": "reg.example/trainer:1",
                        "imagePullPolicy": "IfNotPresent",
                        "command": ["laxai-train", "run"],
                        "env": [
                            {"name": "LAXAI_TRAINING_CONFIG", "value": config},
                            {"name": "LAXAI_RUN_NAME", "value": "run-1"},
                            {"name": "LAXAI_STORAGE_ROOT", "value": "gs://laxai-bucket"},
                            {"name": "LAXAI_HOME", "value": "/var/lib/laxai"},
                            {"name": "LAXAI_TRAININGJOB_NAME", "value": "run-1"},
                            {"name": "LAXAI_TRAININGJOB_NAMESPACE", "value": "team-a"},
                            {"name": "LAXAI_JOB_ID", "value": UID},
                        ],
                        "resources": {"limits": {"nvidia.com/gpu": "1"}},
                        "volumeMounts": [
                            {"name": "dshm", "mountPath": "/dev/shm"},
                            {"name": "work", "mountPath": "/var/lib/laxai"},
                        ],
                        "terminationMessagePath": "/dev/termination-log",
                        "terminationMessagePolicy": "FallbackToLogsOnError",
                        "securityContext": {
                            "runAsNonRoot": True, "runAsUser": 10001, "allowPrivilegeEscalation": False,
                            "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"},
                        },
                    }],
                    "volumes": [
                        {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "2Gi"}},
                        {"name": "work", "emptyDir": {}},
                    ],
                    "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
                },
            },
        },
    }
    assert build() == expected


def test_manifest_is_deterministic():
    assert build(sp=spec(**FULL_REQUEST)) == build(sp=spec(**FULL_REQUEST))


def test_training_config_reaches_the_trainer_unchanged():
    sp = spec(**{**FULL_REQUEST, "gpus": 2, "backoffLimit": 1, "nodeSelector": {"a": "b"}})
    handed = json.loads(env(build(sp=sp))["LAXAI_TRAINING_CONFIG"]["value"])
    assert TrainingConfig.model_validate(handed) == TrainingConfig.model_validate(FULL_REQUEST)
    assert "gpus" not in handed and "nodeSelector" not in handed  # run fields stay with the operator


@pytest.mark.parametrize(
    ("custom_name", "run_name"), [(None, "run-1"), ("my_run", "my_run")]
)
def test_run_name(custom_name, run_name):
    assert env(build(sp=spec(custom_name=custom_name)))["LAXAI_RUN_NAME"]["value"] == run_name


@pytest.mark.parametrize(
    ("run", "limits", "requests"),
    [
        ({}, {"nvidia.com/gpu": "1"}, None),
        ({"gpus": 0}, None, None),
        ({"gpus": 4}, {"nvidia.com/gpu": "4"}, None),
        ({"gpus": 0, "resources": {"cpu": "2", "memory": "4Gi"}}, {"cpu": "2", "memory": "4Gi"},
         {"cpu": "2", "memory": "4Gi"}),
        ({"gpus": 2, "resources": {"memory": "32Gi"}}, {"memory": "32Gi", "nvidia.com/gpu": "2"},
         {"memory": "32Gi"}),
    ],
)
def test_resources(run, limits, requests):
    res = container(build(sp=spec(**run)))["resources"]
    assert res.get("limits") == limits and res.get("requests") == requests


def test_gpu_resource_name_is_configurable():
    res = container(build(s=settings(gpu_resource_name="amd.com/gpu"), sp=spec(gpus=2)))["resources"]
    assert res["limits"] == {"amd.com/gpu": "2"}


@pytest.mark.parametrize(
    ("run", "default", "size"),
    [
        ({"shmSize": "12Gi", "resources": {"memory": "64Gi"}}, "2Gi", "12Gi"),
        ({"resources": {"memory": "32Gi"}}, "2Gi", "16Gi"),
        ({"resources": {"memory": "1.5Gi"}}, "2Gi", "768Mi"),
        ({"resources": {"memory": "3G"}}, "2Gi", "1500000000"),
        ({}, "2Gi", "2Gi"),
        ({}, "6Gi", "6Gi"),
    ],
)
def test_shm_size(run, default, size):
    s = settings(default_shm_size=default)
    assert shm_size(spec(**run), s) == size
    vol = pod(build(s=s, sp=spec(**run)))["volumes"][0]
    assert vol == {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": size}}


@pytest.mark.parametrize(
    ("run", "s", "selector", "tolerations"),
    [
        ({}, {}, None, [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]),
        ({}, {"node_selector": {"cloud.google.com/gke-accelerator": "nvidia-l4"}},
         {"cloud.google.com/gke-accelerator": "nvidia-l4"},
         [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]),
        ({"nodeSelector": {"cloud.google.com/gke-accelerator": "nvidia-h100", "pool": "a"}},
         {"node_selector": {"cloud.google.com/gke-accelerator": "nvidia-l4", "zone": "z"}},
         {"cloud.google.com/gke-accelerator": "nvidia-h100", "pool": "a", "zone": "z"},
         [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]),
        ({"tolerations": [{"key": "spot", "operator": "Equal", "value": "true", "effect": "NoSchedule",
                           "tolerationSeconds": None}]}, {}, None,
         [{"key": "spot", "operator": "Equal", "value": "true", "effect": "NoSchedule"}]),
        ({"tolerations": []}, {}, None, None),
        ({}, {"tolerations": [{"key": "gpu-pool", "operator": "Exists"}]}, None,
         [{"key": "gpu-pool", "operator": "Exists"}]),
        # CPU jobs never get the GPU-node defaults, only what they ask for.
        ({"gpus": 0}, {"node_selector": {"gpu": "yes"}}, None, None),
        ({"gpus": 0, "nodeSelector": {"pool": "cpu"}}, {"node_selector": {"gpu": "yes"}}, {"pool": "cpu"}, None),
    ],
)
def test_scheduling(run, s, selector, tolerations):
    p = pod(build(s=settings(**s), sp=spec(**run)))
    assert p.get("nodeSelector") == selector
    assert p.get("tolerations") == tolerations


@pytest.mark.parametrize(
    ("s", "run", "key", "value"),
    [
        ({"runtime_class_name": "nvidia"}, {}, "runtimeClassName", "nvidia"),
        ({}, {}, "runtimeClassName", None),
        ({}, {"priorityClassName": "high"}, "priorityClassName", "high"),
        ({"trainer_service_account": "sa-x"}, {}, "serviceAccountName", "sa-x"),
        ({"image_pull_secrets": ["regcred", "b"]}, {}, "imagePullSecrets", [{"name": "regcred"}, {"name": "b"}]),
        ({}, {}, "imagePullSecrets", None),
    ],
)
def test_pod_fields_from_settings_and_spec(s, run, key, value):
    assert pod(build(s=settings(**s), sp=spec(**run))).get(key) == value


@pytest.mark.parametrize(
    ("run", "key", "value"),
    [
        ({"backoffLimit": 7}, "backoffLimit", 7),
        ({"activeDeadlineSeconds": 3600}, "activeDeadlineSeconds", 3600),
        ({}, "activeDeadlineSeconds", None),
        # The TTL is the TrainingJob's (the operator applies it after reading the result), never the
        # Job's: the TTL controller would delete a finished Job before a stopped operator read it.
        ({"ttlSecondsAfterFinished": 600}, "ttlSecondsAfterFinished", None),
        ({}, "ttlSecondsAfterFinished", None),
        ({"suspend": True}, "suspend", True),
        ({"queueName": "team-a-queue"}, "suspend", True),  # Kueue admits by unsuspending
    ],
)
def test_job_spec_fields(run, key, value):
    assert build(sp=spec(**run))["spec"].get(key) == value


def test_image_override_and_default():
    assert container(build(sp=spec(image="other/img:2")))["image"] == "other/img:2"
    assert container(build(s=settings(trainer_image="x/y:3")))["image"] == "x/y:3"


def test_queue_name_label_passes_through():
    job = build(sp=spec(queueName="team-a-queue"))
    assert job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "team-a-queue"
    assert "kueue.x-k8s.io/queue-name" not in build()["metadata"]["labels"]


def test_gcs_secret_mount_and_credentials_env():
    job = build(s=settings(gcs_credentials_secret="gcs-key"))
    assert {"name": "gcs-credentials", "secret": {"secretName": "gcs-key"}} in pod(job)["volumes"]
    assert {"name": "gcs-credentials", "mountPath": "/var/secrets/google", "readOnly": True} in container(job)[
        "volumeMounts"
    ]
    assert env(job)["GOOGLE_APPLICATION_CREDENTIALS"]["value"] == "/var/secrets/google/key.json"
    plain = build()
    assert "GOOGLE_APPLICATION_CREDENTIALS" not in env(plain)  # Workload Identity
    assert all(v["name"] != "gcs-credentials" for v in pod(plain)["volumes"])


def test_wandb_key_by_reference():
    job = build(s=settings(wandb_secret="wandb"))
    assert env(job)["WANDB_API_KEY"] == {
        "name": "WANDB_API_KEY",
        "valueFrom": {"secretKeyRef": {"name": "wandb", "key": "WANDB_API_KEY", "optional": True}},
    }
    assert "WANDB_API_KEY" not in env(build())


def test_storage_root_and_identity_env():
    e = env(build(s=settings(storage_root="/data/root"), name="x", namespace="ns-1"))
    assert e["LAXAI_STORAGE_ROOT"]["value"] == "/data/root"
    assert (e["LAXAI_TRAININGJOB_NAME"]["value"], e["LAXAI_TRAININGJOB_NAMESPACE"]["value"]) == ("x", "ns-1")
    # Every pod of the Job (each retry) carries the TrainingJob's uid: its retries resume its checkpoint.
    assert e["LAXAI_JOB_ID"]["value"] == UID


def test_long_trainingjob_name():
    name = "a-very-long-trainingjob-name-" * 5
    job = build(name=name)
    assert len(job["metadata"]["name"]) <= 63
    for value in job["metadata"]["labels"].values():
        assert len(value) <= 63
    assert job["metadata"]["annotations"]["training.laxai.io/trainingjob-name"] == name
    assert env(job)["LAXAI_TRAININGJOB_NAME"]["value"] == name


def test_failure_policy_follows_exit_codes():
    from laxai_trainer import exit_codes

    rules = pod_failure_policy()["rules"]
    fail = next(r for r in rules if r["action"] == "FailJob")
    count = next(r for r in rules if r["action"] == "Count")
    assert fail["onExitCodes"]["values"] == [exit_codes.CONFIG_ERROR]
    assert count["onExitCodes"]["values"] == sorted([exit_codes.FAILURE, exit_codes.RETRY])
    assert rules[0]["action"] == "Ignore"  # disruptions first: a preempted pod never fails the Job


def test_manifest_validates_against_kubernetes_schema():
    kv = pytest.importorskip("kubernetes_validate", reason="kubernetes-validate not installed")
    s = settings(gcs_credentials_secret="gcs", wandb_secret="wandb", image_pull_secrets=["r"],
                 runtime_class_name="nvidia", node_selector={"a": "b"})
    job = build(s=s, sp=spec(**{**FULL_REQUEST, "queueName": "q", "activeDeadlineSeconds": 60,
                               "ttlSecondsAfterFinished": 5, "resources": {"cpu": "2", "memory": "8Gi"}}))
    kv.validate(job, kv.latest_version(), strict=True)  # raises on any unknown or mistyped field


@pytest.mark.parametrize(
    ("run", "live", "patch"),
    [
        ({}, {"suspend": False}, {}),
        ({"suspend": True}, {"suspend": False}, {"spec": {"suspend": True}}),
        ({"suspend": False}, {"suspend": True}, {"spec": {"suspend": False}}),
        # Kueue owns resuming a queued Job; suspending it still works.
        ({"suspend": False, "queueName": "q"}, {"suspend": True}, {}),
        ({"suspend": True, "queueName": "q"}, {"suspend": False}, {"spec": {"suspend": True}}),
        ({"activeDeadlineSeconds": 100}, {"suspend": False}, {"spec": {"activeDeadlineSeconds": 100}}),
        ({}, {"suspend": False, "activeDeadlineSeconds": 100}, {"spec": {"activeDeadlineSeconds": None}}),
        ({"ttlSecondsAfterFinished": 9}, {"suspend": False}, {}),
        # A Job an older operator made with the TTL copied onto it: the TTL is taken off.
        ({"ttlSecondsAfterFinished": 9}, {"suspend": False, "ttlSecondsAfterFinished": 9},
         {"spec": {"ttlSecondsAfterFinished": None}}),
    ],
)
def test_job_spec_patch(run, live, patch):
    assert job_spec_patch(spec(**run), {"spec": live}) == patch


def test_trainer_image_pull_policy():
    assert container(build())["imagePullPolicy"] == "IfNotPresent"
    assert container(build(s=settings(trainer_image_pull_policy="Always")))["imagePullPolicy"] == "Always"


def test_storage_pvc_is_mounted_at_the_storage_root():
    job = build(s=settings(storage_root="/data/laxai", storage_pvc="laxai-data"))
    assert {"name": "storage", "persistentVolumeClaim": {"claimName": "laxai-data"}} in pod(job)["volumes"]
    assert {"name": "storage", "mountPath": "/data/laxai"} in container(job)["volumeMounts"]
    assert env(job)["LAXAI_STORAGE_ROOT"]["value"] == "/data/laxai"
    assert all(v["name"] != "storage" for v in pod(build())["volumes"])


def test_pod_runs_as_the_trainer_images_user():
    """The uid must be the image's USER, else the trainer's home (caches, wandb) is not writable."""
    import re
    from pathlib import Path

    dockerfile = Path(__file__).resolve().parents[2] / "trainer_image" / "Dockerfile"
    if not dockerfile.exists():
        pytest.skip("trainer_image/Dockerfile not present")
    users = re.findall(r"^USER\s+(\d+)(?::(\d+))?", dockerfile.read_text(), re.M)
    assert users, "the trainer image must set a numeric USER"
    uid, gid = users[-1]
    ctx = pod(build())["securityContext"]
    assert ctx["runAsUser"] == int(uid) == container(build())["securityContext"]["runAsUser"]
    assert ctx["runAsGroup"] == int(gid or uid)


TENANTS = {
    "tenant1": {"serviceAccount": "trainer-t1", "gcsCredentialsSecret": "gcs-t1", "wandbSecret": "wandb-t1",
                "wandbProject": "reid-t1", "wandbEntity": "team-t1"},
    "tenant2": {"serviceAccount": "trainer-t2", "wandbSecret": "wandb-t2"},
    "tenant3": {"wandbProject": "reid-t3"},
}


def secret_names(job) -> set[str]:
    """Every Secret a Job's pod can read: mounted volumes and env references."""
    names = {v["secret"]["secretName"] for v in pod(job)["volumes"] if "secret" in v}
    names |= {e["valueFrom"]["secretKeyRef"]["name"] for e in container(job)["env"] if "valueFrom" in e}
    return names


def tenant_job(tenant, **kw):
    s = settings(tenant_credentials=TENANTS, trainer_service_account="shared-sa",
                 gcs_credentials_secret="gcs-shared", wandb_secret="wandb-shared", **kw)
    return build(s=s, sp=spec(tenant_id=tenant))


@pytest.mark.parametrize(("tenant", "account", "secrets", "wandb_env"), [
    ("tenant1", "trainer-t1", {"gcs-t1", "wandb-t1"}, {"WANDB_PROJECT": "reid-t1", "WANDB_ENTITY": "team-t1"}),
    ("tenant2", "trainer-t2", {"wandb-t2"}, {}),
    # listed without its own account: the shared ServiceAccount, but no shared Secret
    ("tenant3", "shared-sa", set(), {"WANDB_PROJECT": "reid-t3"}),
    # not listed: the shared account and Secrets
    ("tenant9", "shared-sa", {"gcs-shared", "wandb-shared"}, {}),
])
def test_each_tenant_gets_its_own_credentials_and_never_another_tenants(tenant, account, secrets, wandb_env):
    job = tenant_job(tenant)
    assert pod(job)["serviceAccountName"] == account
    assert secret_names(job) == secrets
    others = {s for t, c in TENANTS.items() if t != tenant for k, s in c.items() if k.endswith("Secret")}
    assert not secret_names(job) & others
    assert {k: v["value"] for k, v in env(job).items() if k in ("WANDB_PROJECT", "WANDB_ENTITY")} == wandb_env
    assert ("GOOGLE_APPLICATION_CREDENTIALS" in env(job)) == any(s.startswith("gcs") for s in secrets)


@pytest.mark.parametrize("bad", [
    {"tenant1": {"serviceAccount": "Not_Valid"}},
    {"tenant1": {"wandbSecret": "ok", "unknown": 1}},
    {"tenant1": {"wandbProject": ""}},
])
def test_bad_tenant_credentials_are_refused_naming_the_field(bad):
    with pytest.raises(ValueError, match="tenant_credentials"):
        settings(tenant_credentials=bad)
