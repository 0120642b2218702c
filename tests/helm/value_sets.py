"""The values the chart is rendered with in the tests: defaults, every option turned on, and
the kind end-to-end values (tests/e2e/values-kind.yaml)."""

from __future__ import annotations

from typing import Any

import yaml

from tests.helm.tools import REPO_ROOT

E2E_VALUES_FILE = REPO_ROOT / "tests" / "e2e" / "values-kind.yaml"

#: Every optional feature on, every default changed.
FULL: dict[str, Any] = {
    "image": {"repository": "registry.example.com/laxai/control-plane", "tag": "1.2.3",
              "digest": "sha256:" + "cd" * 32, "pullPolicy": "Always"},
    "imagePullSecrets": ["regcred"],
    "watch": {"clusterWide": True, "namespaces": ["ml-jobs"]},
    "storage": {"root": "gs://tenant-crops/prod"},
    "gcs": {"credentialsSecret": "gcs-key"},
    "wandb": {"secret": "wandb-key"},
    "trainer": {
        "image": {"repository": "registry.example.com/laxai/trainer", "tag": "", "pullPolicy": "Always",
                  "digest": "sha256:" + "ab" * 32},
        "imagePullSecrets": ["trainer-regcred", "mirror-regcred"],
        "serviceAccount": {"create": True, "name": "reid-trainer",
                           "gcpServiceAccount": "trainer@proj.iam.gserviceaccount.com",
                           "annotations": {"team": "vision"}},
        "defaultShmSize": "8Gi",
    },
    "tenants": {
        "team-b": {"serviceAccount": {"name": "reid-trainer-team-b",
                                      "gcpServiceAccount": "team-b@proj.iam.gserviceaccount.com",
                                      "annotations": {"team": "b"}},
                   "gcsCredentialsSecret": "gcs-team-b",
                   "wandb": {"secret": "wandb-team-b", "project": "reid-team-b", "entity": "team-b"}},
        "team-c": {"serviceAccount": {"name": "reid-trainer-team-c", "create": False}},
    },
    "gpu": {
        "resourceName": "amd.com/gpu",
        "defaultCount": 2,
        "nodeSelector": {"cloud.google.com/gke-accelerator": "nvidia-l4"},
        "tolerations": [{"key": "amd.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
        "runtimeClassName": "nvidia",
    },
    "operator": {
        "replicas": 2,
        "leaderElection": {"enabled": True},
        "metricsPort": 9090,
        "healthPort": 9091,
        "resources": {"requests": {"cpu": "200m", "memory": "300Mi"}, "limits": {"cpu": "2", "memory": "1Gi"}},
        "livenessProbe": {"initialDelaySeconds": 30, "periodSeconds": 15, "timeoutSeconds": 3,
                          "failureThreshold": 4},
        "extraEnv": [{"name": "LAXAI_LOG_LEVEL", "value": "DEBUG"}],
        "podAnnotations": {"example.com/owner": "ml-platform"},
        "nodeSelector": {"pool": "system"},
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "system", "effect": "NoSchedule"}],
        "priorityClassName": "system-cluster-critical",
    },
    "api": {
        "replicas": 3,
        "namespace": "ml-jobs",
        "serviceAccount": {"create": True, "name": "laxai-rest",
                           "gcpServiceAccount": "api@proj.iam.gserviceaccount.com"},
        "service": {"type": "ClusterIP", "port": 8080},
        "auth": {"enabled": True, "existingSecret": "laxai-keys"},
        "tenantLimits": {"gpus": 2, "cpu": "16", "memory": "128Gi", "shmSize": "64Gi", "backoffLimit": 5,
                         "activeDeadlineSeconds": 2000000, "startupTimeoutSeconds": 1800,
                         "ttlSecondsAfterFinished": 86400},
        "ingress": {"enabled": True, "className": "nginx",
                    "annotations": {"cert-manager.io/cluster-issuer": "letsencrypt"},
                    "hosts": [{"host": "train.example.com", "paths": [{"path": "/", "pathType": "Prefix"}]}],
                    "tls": [{"secretName": "train-tls", "hosts": ["train.example.com"]}]},
        "readinessProbe": {"initialDelaySeconds": 2, "periodSeconds": 5, "timeoutSeconds": 2,
                           "failureThreshold": 6},
    },
    "metrics": {"service": {"enabled": True},
                "serviceMonitor": {"enabled": True, "interval": "15s", "scrapeTimeout": "5s",
                                   "labels": {"release": "prometheus"}}},
}


def e2e_values() -> dict[str, Any]:
    return yaml.safe_load(E2E_VALUES_FILE.read_text())


def value_sets() -> dict[str, dict[str, Any] | None]:
    return {"default": None, "full": FULL, "kind-e2e": e2e_values()}
