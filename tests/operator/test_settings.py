"""laxai_operator.settings: the operator's environment."""

import pytest
from pydantic import ValidationError

from laxai_operator.settings import OperatorSettings, TenantCredentials

ENV_KEYS = [
    "LAXAI_TRAINER_IMAGE", "LAXAI_GPU_RESOURCE_NAME", "LAXAI_NODE_SELECTOR", "LAXAI_TOLERATIONS",
    "LAXAI_RUNTIME_CLASS_NAME", "LAXAI_WATCH_NAMESPACES", "LAXAI_TRAINER_SERVICE_ACCOUNT",
    "LAXAI_GCS_CREDENTIALS_SECRET", "LAXAI_WANDB_SECRET", "LAXAI_IMAGE_PULL_SECRETS",
    "LAXAI_DEFAULT_SHM_SIZE", "LAXAI_METRICS_PORT", "LAXAI_HEALTH_PORT", "LAXAI_STORAGE_ROOT",
    "LAXAI_TRAINER_IMAGE_PULL_POLICY", "LAXAI_STORAGE_PVC", "LAXAI_LEADER_ELECTION", "LAXAI_LEADER_ELECTION_NAMESPACE",
]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for key in ENV_KEYS:
        monkeypatch.delenv(key, raising=False)


def test_defaults():
    s = OperatorSettings()
    assert s.gpu_resource_name == "nvidia.com/gpu"
    assert s.tolerations == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert s.node_selector == {} and s.watch_namespaces == [] and s.image_pull_secrets == []
    assert s.trainer_service_account == "laxai-trainer"
    assert s.gcs_credentials_secret is None and s.wandb_secret is None and s.runtime_class_name is None
    assert (s.metrics_port, s.health_port) == (8080, 8081)
    assert s.default_shm_size == "2Gi"


@pytest.mark.parametrize(
    ("env", "attr", "value"),
    [
        ("LAXAI_TRAINER_IMAGE", "trainer_image", "reg.example/trainer:1.2"),
        ("LAXAI_GPU_RESOURCE_NAME", "gpu_resource_name", "amd.com/gpu"),
        ("LAXAI_NODE_SELECTOR", "node_selector", {"cloud.google.com/gke-accelerator": "nvidia-l4"}),
        ("LAXAI_TOLERATIONS", "tolerations", [{"key": "spot", "operator": "Exists"}]),
        ("LAXAI_RUNTIME_CLASS_NAME", "runtime_class_name", "nvidia"),
        ("LAXAI_WATCH_NAMESPACES", "watch_namespaces", ["team-a", "team-b"]),
        ("LAXAI_TRAINER_SERVICE_ACCOUNT", "trainer_service_account", "trainer-sa"),
        ("LAXAI_GCS_CREDENTIALS_SECRET", "gcs_credentials_secret", "gcs-key"),
        ("LAXAI_WANDB_SECRET", "wandb_secret", "wandb"),
        ("LAXAI_IMAGE_PULL_SECRETS", "image_pull_secrets", ["regcred", "other"]),
        ("LAXAI_DEFAULT_SHM_SIZE", "default_shm_size", "8Gi"),
        ("LAXAI_METRICS_PORT", "metrics_port", 9090),
        ("LAXAI_HEALTH_PORT", "health_port", 0),
        ("LAXAI_STORAGE_ROOT", "storage_root", "gs://bucket/prefix"),
        ("LAXAI_TRAINER_IMAGE_PULL_POLICY", "trainer_image_pull_policy", "Always"),
        ("LAXAI_LEADER_ELECTION", "leader_election", True),
        ("LAXAI_LEADER_ELECTION_NAMESPACE", "leader_election_namespace", "laxai-system"),
        ("LAXAI_TENANT_CREDENTIALS", "tenant_credentials", {"t1": TenantCredentials(serviceAccount="sa-t1")}),
    ],
)
def test_each_variable_takes_effect(monkeypatch, env, attr, value):
    raw = {
        "LAXAI_NODE_SELECTOR": '{"cloud.google.com/gke-accelerator": "nvidia-l4"}',
        "LAXAI_TOLERATIONS": '[{"key": "spot", "operator": "Exists"}]',
        "LAXAI_WATCH_NAMESPACES": " team-a, team-b ,",
        "LAXAI_IMAGE_PULL_SECRETS": '["regcred", "other"]',
        "LAXAI_LEADER_ELECTION": "true",
        "LAXAI_TENANT_CREDENTIALS": '{"t1": {"serviceAccount": "sa-t1"}}',
    }.get(env, str(value))
    monkeypatch.setenv(env, raw)
    assert getattr(OperatorSettings(), attr) == value


@pytest.mark.parametrize(
    ("env", "raw", "field"),
    [
        ("LAXAI_NODE_SELECTOR", "not json", "node_selector"),
        ("LAXAI_NODE_SELECTOR", '["a"]', "node_selector"),
        ("LAXAI_TOLERATIONS", '[{"key": "x", "operator": "Sometimes"}]', "operator"),
        ("LAXAI_TOLERATIONS", '[{"keyy": "x"}]', "keyy"),
        ("LAXAI_WATCH_NAMESPACES", "Team_A", "watch_namespaces"),
        ("LAXAI_GCS_CREDENTIALS_SECRET", "Bad Name", "gcs_credentials_secret"),
        ("LAXAI_IMAGE_PULL_SECRETS", '["UPPER"]', "image_pull_secrets"),
        ("LAXAI_DEFAULT_SHM_SIZE", "lots", "default_shm_size"),
        ("LAXAI_GPU_RESOURCE_NAME", "nvidia.com/gpu/x", "gpu_resource_name"),
        ("LAXAI_METRICS_PORT", "70000", "metrics_port"),
        ("LAXAI_TRAINER_IMAGE_PULL_POLICY", "Sometimes", "trainer_image_pull_policy"),
        ("LAXAI_STORAGE_PVC", "data", "storage_root"),  # the default root is relative: nowhere to mount
        ("LAXAI_LEADER_ELECTION_NAMESPACE", "Bad_NS", "leader_election_namespace"),
        ("LAXAI_TENANT_CREDENTIALS", '{"t1": {"wandbSecret": "Bad Name"}}', "wandbSecret"),
        ("LAXAI_TENANT_CREDENTIALS", '{"t1": {"serviceaccount": "x"}}', "serviceaccount"),
    ],
)
def test_bad_values_name_the_field(monkeypatch, env, raw, field):
    monkeypatch.setenv(env, raw)
    with pytest.raises((ValidationError, ValueError)) as err:
        OperatorSettings()
    assert field in str(err.value)


def test_empty_runtime_class_means_none(monkeypatch):
    monkeypatch.setenv("LAXAI_RUNTIME_CLASS_NAME", "")
    assert OperatorSettings().runtime_class_name is None


@pytest.mark.parametrize(
    ("root", "mount"), [("/data/laxai", "/data/laxai"), ("file:///data/laxai", "/data/laxai"), ("gs://b", None)]
)
def test_storage_pvc_mounts_at_the_local_root(monkeypatch, root, mount):
    monkeypatch.setenv("LAXAI_STORAGE_ROOT", root)
    assert OperatorSettings().storage_mount_path() == mount
    monkeypatch.setenv("LAXAI_STORAGE_PVC", "laxai-data")
    if mount is None:
        with pytest.raises(ValidationError, match="storage_root"):
            OperatorSettings()
    else:
        assert OperatorSettings().storage_pvc == "laxai-data"
