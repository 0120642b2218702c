"""What `helm template` renders: each value reaches the object or setting it documents."""

from __future__ import annotations

import base64
import json
import re

import pytest

from tests.helm.chart import (
    CHART_DIR,
    NAMESPACE,
    RELEASE,
    HelmError,
    Rendered,
    pod_containers,
    render,
    run_helm,
    workloads,
)
from tests.helm.value_sets import FULL, value_sets

OPERATOR = "laxai-training-operator"
API = "laxai-training-api"
STANDARD_LABELS = ("helm.sh/chart", "app.kubernetes.io/name", "app.kubernetes.io/instance",
                   "app.kubernetes.io/version", "app.kubernetes.io/managed-by", "app.kubernetes.io/component")


@pytest.mark.parametrize("name", list(value_sets()))
def test_helm_lint_strict_passes(helm_bin, name):
    values = value_sets()[name]
    out = run_helm(helm_bin, ["lint", "--strict", "--namespace", NAMESPACE, str(CHART_DIR)], values)
    assert "0 chart(s) failed" in out


# ---------------------------------------------------------------- every object


def test_every_object_has_standard_labels_and_namespace(rendered_sets):
    cluster_scoped = {"ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition", "ValidatingAdmissionPolicy",
                      "ValidatingAdmissionPolicyBinding"}
    for name, rendered in rendered_sets.items():
        for doc in rendered.docs:
            meta = doc["metadata"]
            where = f"{name}: {doc['kind']}/{meta['name']}"
            if doc["kind"] == "CustomResourceDefinition":
                continue  # installed verbatim from crds/
            for label in STANDARD_LABELS:
                assert label in meta.get("labels", {}), f"{where} lacks label {label}"
            assert meta["labels"]["app.kubernetes.io/part-of"] == "laxai-training"
            if doc["kind"] in cluster_scoped:
                assert "namespace" not in meta, where
            else:
                assert meta.get("namespace"), f"{where} has no namespace"


def test_default_objects(default):
    kinds = sorted({(d["kind"], d["metadata"]["name"]) for d in default.docs})
    assert ("CustomResourceDefinition", "trainingjobs.training.laxai.io") in kinds
    assert ("Deployment", OPERATOR) in kinds and ("Deployment", API) in kinds
    assert ("Service", API) in kinds and ("Service", f"{OPERATOR}-metrics") in kinds
    assert ("Secret", "laxai-training-api-keys") in kinds
    for absent in ("Ingress", "ServiceMonitor", "ClusterRole", "ClusterRoleBinding", "PersistentVolumeClaim"):
        assert not default.of_kind(absent), f"{absent} rendered by default"
    sa_names = {d["metadata"]["name"] for d in default.of_kind("ServiceAccount")}
    assert sa_names == {OPERATOR, API, "laxai-trainer"}


# ---------------------------------------------------------------- security


@pytest.mark.parametrize("set_name", list(value_sets()))
def test_pods_are_locked_down(rendered_sets, set_name):
    for doc in workloads(rendered_sets[set_name].docs):
        pod = doc["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] >= 10000
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        volumes = {v["name"]: v for v in pod["volumes"]}
        for container in pod_containers(doc):
            sc = container["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False
            assert sc["readOnlyRootFilesystem"] is True
            assert sc["capabilities"] == {"drop": ["ALL"]}
            assert "privileged" not in sc
            # A writable /tmp on the read-only root filesystem.
            tmp = next(m for m in container["volumeMounts"] if m["mountPath"] == "/tmp")
            assert "emptyDir" in volumes[tmp["name"]]
            for probe in ("livenessProbe", "readinessProbe"):
                assert container[probe]["httpGet"]["port"] in {p["name"] for p in container["ports"]}
            assert container["resources"]["limits"]["memory"] and container["resources"]["requests"]["cpu"]


def test_probes(default, full):
    for rendered in (default, full):
        api = rendered.container(API, "api")
        assert api["livenessProbe"]["httpGet"] == {"path": "/health", "port": "http"}
        assert api["readinessProbe"]["httpGet"] == {"path": "/health", "port": "http"}
        op = rendered.container(OPERATOR, "operator")
        assert op["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert full.container(OPERATOR, "operator")["livenessProbe"]["initialDelaySeconds"] == 30
    assert full.container(OPERATOR, "operator")["livenessProbe"]["failureThreshold"] == 4
    assert full.container(API, "api")["readinessProbe"]["periodSeconds"] == 5
    assert default.container(API, "api")["readinessProbe"]["periodSeconds"] == 10


def _secret_looking_env(rendered: Rendered) -> list[str]:
    bad = []
    for doc in workloads(rendered.docs):
        for container in pod_containers(doc):
            for var in container.get("env", []):
                if "value" in var and re.search(r"KEY|TOKEN|PASSWORD|CREDENTIAL", var["name"]) \
                        and not var["name"].endswith(("_SECRET", "_FILE", "_CREDENTIALS")):
                    bad.append(f"{doc['metadata']['name']}: {var['name']}={var['value']}")
    return bad


@pytest.mark.parametrize("set_name", list(value_sets()))
def test_no_secret_value_in_plain_text(rendered_sets, set_name):
    rendered = rendered_sets[set_name]
    assert _secret_looking_env(rendered) == []
    for secret in rendered.of_kind("Secret"):
        assert "stringData" not in secret
        key = base64.b64decode(secret["data"]["admin-key"]).decode()
        # The key appears only inside its Secret, never in a workload (env, args, annotations).
        for doc in rendered.docs:
            if doc is not secret:
                assert key not in json.dumps(doc), f"API key leaked into {doc['kind']}/{doc['metadata']['name']}"


def test_generated_api_key_secret_and_how_the_api_reads_it(default):
    secret = default.get("Secret", "laxai-training-api-keys")
    key = base64.b64decode(secret["data"]["admin-key"]).decode()
    assert re.fullmatch(r"[A-Za-z0-9]{40}", key)
    assert json.loads(base64.b64decode(secret["data"]["keys.json"])) == {key: "*"}
    env = default.env(API, "api")
    assert env["LAXAI_AUTH_ENABLED"] == "true"
    pod = default.get("Deployment", API)["spec"]["template"]["spec"]
    volume = next(v for v in pod["volumes"] if v["name"] == "api-keys")
    assert volume["secret"]["secretName"] == "laxai-training-api-keys"
    mount = next(m for m in default.container(API, "api")["volumeMounts"] if m["name"] == "api-keys")
    assert mount["readOnly"] is True
    assert env["LAXAI_API_KEYS_FILE"] == f"{mount['mountPath']}/keys.json"


def test_random_key_differs_per_install(helm_bin, default):
    again = render(helm_bin)
    first = default.get("Secret", "laxai-training-api-keys")["data"]["admin-key"]
    assert again.get("Secret", "laxai-training-api-keys")["data"]["admin-key"] != first


def test_existing_api_keys_secret_is_used_not_created(full):
    assert not full.of_kind("Secret")
    pod = full.get("Deployment", API)["spec"]["template"]["spec"]
    assert next(v for v in pod["volumes"] if v["name"] == "api-keys")["secret"]["secretName"] == "laxai-keys"


def test_auth_can_be_turned_off(helm_bin):
    rendered = render(helm_bin, {"api": {"auth": {"enabled": False}}})
    env = rendered.env(API, "api")
    assert env["LAXAI_AUTH_ENABLED"] == "false" and "LAXAI_API_KEYS_FILE" not in env
    assert not rendered.of_kind("Secret")


# ---------------------------------------------------------------- operator


def test_operator_deployment_defaults(default):
    dep = default.get("Deployment", OPERATOR)
    assert dep["spec"]["replicas"] == 1
    assert dep["spec"]["strategy"] == {"type": "Recreate"}
    pod = dep["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == OPERATOR
    container = default.container(OPERATOR, "operator")
    assert container["command"] == ["laxai-operator", "run"]
    assert container["image"] == "laxai/laxai-control-plane:0.1.0"
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {"metrics": 8080, "health": 8081}
    env = default.env(OPERATOR, "operator")
    assert env == {
        "LAXAI_WATCH_NAMESPACES": NAMESPACE,
        "LAXAI_STORAGE_ROOT": "gs://laxai-training",
        "LAXAI_TRAINER_IMAGE": "laxai/laxai-trainer:0.1.0",
        "LAXAI_TRAINER_IMAGE_PULL_POLICY": "IfNotPresent",
        "LAXAI_IMAGE_PULL_SECRETS": "[]",
        "LAXAI_TRAINER_SERVICE_ACCOUNT": "laxai-trainer",
        "LAXAI_GPU_RESOURCE_NAME": "nvidia.com/gpu",
        "LAXAI_NODE_SELECTOR": "{}",
        "LAXAI_TOLERATIONS": json.dumps([{"effect": "NoSchedule", "key": "nvidia.com/gpu",
                                          "operator": "Exists"}], separators=(",", ":")),
        "LAXAI_RUNTIME_CLASS_NAME": "",
        "LAXAI_GCS_CREDENTIALS_SECRET": "",
        "LAXAI_WANDB_SECRET": "",
        "LAXAI_TENANT_CREDENTIALS": "{}",
        "LAXAI_METRICS_PORT": "8080",
        "LAXAI_HEALTH_PORT": "8081",
        "LAXAI_HOME": "/tmp/laxai",
    }


def test_operator_settings_from_full_values(full):
    env = full.env(OPERATOR, "operator")
    assert env["LAXAI_WATCH_NAMESPACES"] == ""  # cluster-wide: every namespace
    assert env["LAXAI_STORAGE_ROOT"] == "gs://tenant-crops/prod"
    assert env["LAXAI_TRAINER_IMAGE"] == "registry.example.com/laxai/trainer@sha256:" + "ab" * 32
    assert env["LAXAI_TRAINER_IMAGE_PULL_POLICY"] == "Always"
    assert json.loads(env["LAXAI_IMAGE_PULL_SECRETS"]) == ["trainer-regcred", "mirror-regcred"]
    assert env["LAXAI_TRAINER_SERVICE_ACCOUNT"] == "reid-trainer"
    assert env["LAXAI_GPU_RESOURCE_NAME"] == "amd.com/gpu"
    assert json.loads(env["LAXAI_NODE_SELECTOR"]) == {"cloud.google.com/gke-accelerator": "nvidia-l4"}
    assert json.loads(env["LAXAI_TOLERATIONS"]) == FULL["gpu"]["tolerations"]
    assert env["LAXAI_RUNTIME_CLASS_NAME"] == "nvidia"
    assert env["LAXAI_DEFAULT_SHM_SIZE"] == "8Gi"
    assert env["LAXAI_GCS_CREDENTIALS_SECRET"] == "gcs-key"
    assert env["LAXAI_WANDB_SECRET"] == "wandb-key"
    assert json.loads(env["LAXAI_TENANT_CREDENTIALS"]) == {
        "team-b": {"serviceAccount": "reid-trainer-team-b", "gcsCredentialsSecret": "gcs-team-b",
                   "wandbSecret": "wandb-team-b", "wandbProject": "reid-team-b", "wandbEntity": "team-b"},
        "team-c": {"serviceAccount": "reid-trainer-team-c"}}
    assert env["LAXAI_METRICS_PORT"] == "9090" and env["LAXAI_HEALTH_PORT"] == "9091"
    assert env["LAXAI_LEADER_ELECTION"] == "true"
    assert env["LAXAI_LOG_LEVEL"] == "DEBUG"  # extraEnv
    container = full.container(OPERATOR, "operator")
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {"metrics": 9090, "health": 9091}
    assert container["image"] == "registry.example.com/laxai/control-plane@sha256:" + "cd" * 32
    assert container["imagePullPolicy"] == "Always"
    assert container["resources"]["limits"] == {"cpu": "2", "memory": "1Gi"}
    dep = full.get("Deployment", OPERATOR)
    assert dep["spec"]["replicas"] == 2 and dep["spec"]["strategy"] == {"type": "RollingUpdate"}
    pod = dep["spec"]["template"]["spec"]
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]
    assert pod["nodeSelector"] == {"pool": "system"}
    assert pod["tolerations"] == FULL["operator"]["tolerations"]
    assert pod["priorityClassName"] == "system-cluster-critical"
    assert dep["spec"]["template"]["metadata"]["annotations"] == {"example.com/owner": "ml-platform"}


def test_operator_watches_listed_namespaces_when_namespaced(helm_bin):
    rendered = render(helm_bin, {"watch": {"clusterWide": False, "namespaces": ["team-a", "team-b"]},
                                 "api": {"namespace": "team-a"}})
    assert rendered.env(OPERATOR, "operator")["LAXAI_WATCH_NAMESPACES"] == f"{NAMESPACE},team-a,team-b"
    trainers = {(d["metadata"]["namespace"]) for d in rendered.of_kind("ServiceAccount")
                if d["metadata"]["name"] == "laxai-trainer"}
    assert trainers == {NAMESPACE, "team-a", "team-b"}
    assert rendered.env(API, "api")["LAXAI_NAMESPACE"] == "team-a"


def test_operator_empty_shm_size_is_left_to_the_operator(default, full):
    assert "LAXAI_DEFAULT_SHM_SIZE" not in default.env(OPERATOR, "operator")


# ---------------------------------------------------------------- API


def test_api_deployment_defaults(default):
    container = default.container(API, "api")
    assert container["command"] == ["laxai-api", "--host", "0.0.0.0", "--port", "8000"]
    env = default.env(API, "api")
    assert env["LAXAI_BACKEND"] == "kubernetes"
    assert env["LAXAI_NAMESPACE"] == NAMESPACE
    assert env["LAXAI_STORAGE_ROOT"] == "gs://laxai-training"
    assert env["LAXAI_DEFAULT_GPUS"] == "1"
    assert "GOOGLE_APPLICATION_CREDENTIALS" not in env
    svc = default.get("Service", API)
    assert svc["spec"]["type"] == "ClusterIP"
    assert svc["spec"]["ports"] == [{"name": "http", "port": 8000, "targetPort": "http", "protocol": "TCP"}]
    assert default.get("Deployment", API)["spec"]["template"]["spec"]["serviceAccountName"] == API


def test_api_from_full_values(full):
    env = full.env(API, "api")
    assert env["LAXAI_NAMESPACE"] == "ml-jobs"
    assert env["LAXAI_DEFAULT_GPUS"] == "2"
    pod = full.get("Deployment", API)["spec"]["template"]["spec"]
    gcs = next(v for v in pod["volumes"] if v["name"] == "gcs-credentials")
    assert gcs["secret"]["secretName"] == "gcs-key"
    mount = next(m for m in full.container(API, "api")["volumeMounts"] if m["name"] == "gcs-credentials")
    assert env["GOOGLE_APPLICATION_CREDENTIALS"] == f"{mount['mountPath']}/key.json"
    assert full.get("Deployment", API)["spec"]["replicas"] == 3
    assert pod["serviceAccountName"] == "laxai-rest"
    sa = full.get("ServiceAccount", "laxai-rest")
    assert sa["metadata"]["annotations"] == {"iam.gke.io/gcp-service-account": "api@proj.iam.gserviceaccount.com"}
    assert full.get("Service", API)["spec"]["ports"][0]["port"] == 8080


TENANT_ENV = ("LAXAI_TENANT_MAX_GPUS", "LAXAI_TENANT_MAX_CPU", "LAXAI_TENANT_MAX_MEMORY", "LAXAI_TENANT_MAX_SHM_SIZE",
              "LAXAI_TENANT_MAX_BACKOFF_LIMIT", "LAXAI_TENANT_MAX_ACTIVE_DEADLINE_SECONDS",
              "LAXAI_TENANT_MAX_STARTUP_TIMEOUT_SECONDS", "LAXAI_TENANT_MAX_TTL_SECONDS_AFTER_FINISHED")


def test_api_tenant_limits(default, full, helm_bin, monkeypatch):
    tenant_env = [default.env(API, "api")[name] for name in TENANT_ENV]
    assert tenant_env == ["1", "8", "64Gi", "32Gi", "3", "604800", "3600", ""]
    # big numbers stay integers (not 2e+06), every value reaches its variable
    assert [full.env(API, "api")[name] for name in TENANT_ENV] == [
        "2", "16", "128Gi", "64Gi", "5", "2000000", "1800", "86400"]
    uncapped = render(helm_bin, {"api": {"tenantLimits": {
        "gpus": 0, "cpu": None, "memory": None, "shmSize": None, "backoffLimit": None,
        "activeDeadlineSeconds": None, "startupTimeoutSeconds": None, "ttlSecondsAfterFinished": None}}})
    env = uncapped.env(API, "api")
    assert [env[name] for name in TENANT_ENV] == ["0"] + [""] * 7
    settings = pytest.importorskip("laxai_api.settings")
    for name in TENANT_ENV:
        monkeypatch.setenv(name, env[name])
    limits = settings.ApiSettings().tenant_limits()
    assert limits.gpus == 0 and {v for k, v in vars(limits).items() if k != "gpus"} == {None}


def test_ingress(full):
    ingress = full.get("Ingress", API)
    assert ingress["spec"]["ingressClassName"] == "nginx"
    assert ingress["spec"]["tls"] == [{"secretName": "train-tls", "hosts": ["train.example.com"]}]
    rule = ingress["spec"]["rules"][0]
    assert rule["host"] == "train.example.com"
    assert rule["http"]["paths"][0]["backend"] == {"service": {"name": API, "port": {"name": "http"}}}
    assert ingress["metadata"]["annotations"] == {"cert-manager.io/cluster-issuer": "letsencrypt"}


# ---------------------------------------------------------------- trainer, storage, metrics


def test_trainer_service_account_workload_identity(default, full):
    assert "annotations" not in default.get("ServiceAccount", "laxai-trainer")["metadata"]
    for ns in (NAMESPACE, "ml-jobs"):
        sa = full.get("ServiceAccount", "reid-trainer", namespace=ns)
        assert sa["metadata"]["annotations"] == {"team": "vision",
                                                 "iam.gke.io/gcp-service-account": "trainer@proj.iam.gserviceaccount.com"}


def test_trainer_service_account_not_created_when_told(helm_bin):
    rendered = render(helm_bin, {"trainer": {"serviceAccount": {"create": False, "name": "mine"}}})
    assert not rendered.has("ServiceAccount", "mine")
    assert rendered.env(OPERATOR, "operator")["LAXAI_TRAINER_SERVICE_ACCOUNT"] == "mine"
    binding = rendered.get("RoleBinding", "laxai-training-trainer")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "mine", "namespace": NAMESPACE}]


def test_storage_volume_for_kind(kind_e2e):
    pvc = kind_e2e.get("PersistentVolumeClaim", "laxai-training-storage")
    assert pvc["spec"]["resources"]["requests"]["storage"] == "2Gi"
    assert pvc["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert "storageClassName" not in pvc["spec"]  # the cluster's default class
    op_env = kind_e2e.env(OPERATOR, "operator")
    assert op_env["LAXAI_STORAGE_ROOT"] == "/mnt/laxai-storage"
    assert op_env["LAXAI_STORAGE_PVC"] == "laxai-training-storage"
    api = kind_e2e.container(API, "api")
    mount = next(m for m in api["volumeMounts"] if m["name"] == "storage")
    assert mount["mountPath"] == "/mnt/laxai-storage"
    pod = kind_e2e.get("Deployment", API)["spec"]["template"]["spec"]
    assert next(v for v in pod["volumes"] if v["name"] == "storage")["persistentVolumeClaim"] == {
        "claimName": "laxai-training-storage"}
    assert api["image"] == "laxai-control-plane:e2e" and api["imagePullPolicy"] == "Never"
    assert op_env["LAXAI_TRAINER_IMAGE"] == "laxai-trainer:e2e"


def test_existing_storage_claim(helm_bin):
    rendered = render(helm_bin, {"storage": {"root": "/data", "persistentVolumeClaim": {
        "enabled": True, "existingClaim": "nfs-crops", "storageClassName": "nfs"}}})
    assert not rendered.of_kind("PersistentVolumeClaim")
    assert rendered.env(OPERATOR, "operator")["LAXAI_STORAGE_PVC"] == "nfs-crops"


def test_metrics_service_and_service_monitors(default, full):
    svc = default.get("Service", f"{OPERATOR}-metrics")
    assert svc["spec"]["ports"][0]["port"] == 8080 and svc["spec"]["ports"][0]["targetPort"] == "metrics"
    monitors = {d["metadata"]["name"]: d for d in full.of_kind("ServiceMonitor")}
    assert set(monitors) == {"laxai-training-operator", "laxai-training-api"}
    for name, monitor in monitors.items():
        component = name.rsplit("-", 1)[1]
        assert monitor["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"] == component
        assert monitor["metadata"]["labels"]["release"] == "prometheus"
        endpoint = monitor["spec"]["endpoints"][0]
        assert endpoint["port"] == ("metrics" if component == "operator" else "http")
        assert endpoint["path"] == "/metrics" and endpoint["interval"] == "15s"
        assert endpoint["scrapeTimeout"] == "5s"


def test_network_policies_admit_only_the_served_ports(default, helm_bin):
    api = default.get("NetworkPolicy", API)
    assert api["spec"]["ingress"] == [{"ports": [{"port": "http", "protocol": "TCP"}]}]
    op = default.get("NetworkPolicy", OPERATOR)
    assert {p["port"] for p in op["spec"]["ingress"][0]["ports"]} == {"metrics", "health"}
    assert not render(helm_bin, {"networkPolicy": {"enabled": False}}).of_kind("NetworkPolicy")


# ---------------------------------------------------------------- inconsistent values fail with a reason


@pytest.mark.parametrize(("values", "message"), [
    ({"operator": {"replicas": 2}}, "operator.replicas > 1 needs operator.leaderElection.enabled"),
    ({"storage": {"root": "/data"}}, "set storage.persistentVolumeClaim.enabled=true"),
    ({"storage": {"root": "gs://bucket", "persistentVolumeClaim": {"enabled": True}}},
     "needs storage.root to be an absolute path"),
    ({"storage": {"root": "/data", "persistentVolumeClaim": {"enabled": True}},
      "watch": {"clusterWide": False, "namespaces": ["other"]}}, "cannot be mounted across namespaces"),
    ({"metrics": {"service": {"enabled": False}, "serviceMonitor": {"enabled": True}}},
     "needs metrics.service.enabled"),
])
def test_inconsistent_values_fail(helm_bin, values, message):
    with pytest.raises(HelmError) as err:
        render(helm_bin, values)
    assert message in err.value.stderr


def test_notes_say_how_to_read_the_key(helm_bin):
    out = run_helm(helm_bin, ["install", RELEASE, str(CHART_DIR), "--dry-run=client", "--namespace", NAMESPACE])
    notes = out.split("NOTES:", 1)[1]
    assert ("kubectl --namespace laxai-system get secret laxai-training-api-keys "
            "-o jsonpath='{.data.admin-key}' | base64 -d") in notes
    assert "port-forward service/laxai-training-api 8000:8000" in notes
    assert "placeholder bucket" in notes
