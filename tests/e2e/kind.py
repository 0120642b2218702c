"""Driving a throwaway kind cluster for the end-to-end suite: prerequisites, commands with
timeouts and logs, the manifests it applies, and waiting on conditions with diagnostics.

Environment:
  LAXAI_KIND            kind binary (default: `kind` on PATH)
  LAXAI_E2E_SKIP=1      skip the suite even where docker and kind are present
  LAXAI_E2E_KEEP=1      keep the cluster afterwards (debugging); delete it yourself with
                        `kind delete cluster --name <name>`
  LAXAI_E2E_NODE_IMAGE  kind node image (default: kind's own for its version)
  LAXAI_E2E_TRAINER_DOCKERFILE   trainer Dockerfile (default trainer_image/Dockerfile; context: repo root)
"""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from laxai_operator.job_builder import RUN_AS_USER as TRAINER_UID
from tests.helm.tools import REPO_ROOT

NAMESPACE = "laxai-e2e"
RELEASE = "laxai"
TENANT = "e2e"
#: tests/e2e/values-kind.yaml: storage.root (outside the trainer's work folder /var/lib/laxai).
STORAGE_ROOT = "/mnt/laxai-storage"
CONTROL_PLANE_IMAGE = "laxai-control-plane:e2e"
TRAINER_IMAGE = "laxai-trainer:e2e"
VALUES_FILE = REPO_ROOT / "tests" / "e2e" / "values-kind.yaml"
CONTROL_PLANE_DOCKERFILE = REPO_ROOT / "images" / "control-plane" / "Dockerfile"
#: Object names of release "laxai" (the chart's fullname is then "laxai-training").
API_SERVICE = "laxai-training-api"
API_KEYS_SECRET = "laxai-training-api-keys"
STORAGE_CLAIM = "laxai-training-storage"
TERMINAL = ("completed", "failed", "cancelled")
#: The order a job's status may move in; "running" may be skipped by a fast job or a fast poll.
PHASE_ORDER = {"pending": 0, "running": 1, "completed": 2, "failed": 2, "cancelled": 2}


# ------------------------------------------------------------------ prerequisites (pure)


def missing_prerequisites(env: dict[str, str], which: Callable[[str], str | None],
                          docker_ok: Callable[[], str | None]) -> list[str]:
    """Why the suite cannot run here (empty: it can). ``docker_ok`` returns an error or None."""
    if env.get("LAXAI_E2E_SKIP") == "1":
        return ["LAXAI_E2E_SKIP=1"]
    reasons = []
    if not which("docker"):
        reasons.append("docker CLI not on PATH")
    else:
        problem = docker_ok()
        if problem:
            reasons.append(f"docker daemon not usable: {problem}")
    kind = env.get("LAXAI_KIND") or which("kind")
    if not kind:
        reasons.append("kind not on PATH (set LAXAI_KIND; https://kind.sigs.k8s.io)")
    return reasons


def docker_problem() -> str | None:
    try:
        result = subprocess.run(["docker", "info", "--format", "{{.ServerVersion}}"], capture_output=True,
                                text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return str(exc)
    return None if result.returncode == 0 else (result.stderr.strip().splitlines() or ["error"])[-1]


def phases_in_order(seen: Iterable[str]) -> bool:
    """True when observed phases never go backwards (pending -> running -> one terminal phase)."""
    seen = list(seen)
    ranks = [PHASE_ORDER[p] for p in seen]
    if any(a > b for a, b in zip(ranks, ranks[1:], strict=False)):
        return False
    return len({p for p in seen if p in TERMINAL}) <= 1


# ------------------------------------------------------------------ manifests (pure)


def synth_pod(name: str, claim: str) -> dict[str, Any]:
    """A one-off pod that writes the synthetic dataset for TENANT onto the storage claim."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": NAMESPACE, "labels": {"app.kubernetes.io/part-of": "laxai-e2e"}},
        "spec": {
            "restartPolicy": "Never",
            # The trainer's user: it writes run outputs next to these files, and kind's local-path
            # volumes ignore fsGroup, so the dataset folders must belong to that user.
            "securityContext": {"runAsNonRoot": True, "runAsUser": TRAINER_UID, "runAsGroup": TRAINER_UID,
                                 "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{
                "name": "synth",
                "image": TRAINER_IMAGE,
                "imagePullPolicy": "Never",
                "command": ["laxai-train", "synth", "--out", STORAGE_ROOT, "--tenant", TENANT],
                "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
                "resources": {"requests": {"cpu": "100m", "memory": "256Mi"},
                              "limits": {"cpu": "1", "memory": "1Gi"}},
                "volumeMounts": [{"name": "storage", "mountPath": STORAGE_ROOT}],
            }],
            "volumes": [{"name": "storage", "persistentVolumeClaim": {"claimName": claim}}],
        },
    }


def cpu_trainingjob(name: str, epochs: int) -> dict[str, Any]:
    """A small CPU-only TrainingJob on the generated data (based on examples/trainingjob-cpu.yaml)."""
    example = yaml.safe_load((REPO_ROOT / "examples" / "trainingjob-cpu.yaml").read_text())
    spec = example["spec"]
    spec.update({"tenant_id": TENANT, "custom_name": name.replace("-", "_"), "gpus": 0,
                 "resources": {"cpu": "1", "memory": "2Gi"}, "startupTimeoutSeconds": 300,
                 "backoffLimit": 0})
    spec.pop("ttlSecondsAfterFinished", None)
    spec["training_kwargs"] = {**spec.get("training_kwargs", {}), "num_epochs": epochs, "num_workers": 0}
    return {"apiVersion": "training.laxai.io/v1alpha1", "kind": "TrainingJob",
            "metadata": {"name": name, "namespace": NAMESPACE}, "spec": spec}


def seed_request(epochs: int) -> dict[str, Any]:
    """The seed API's request body (examples/seed_request.json) for TENANT, with ``epochs``."""
    body = json.loads((REPO_ROOT / "examples" / "seed_request.json").read_text())
    body["tenant_id"] = TENANT
    body.pop("custom_name", None)
    # The small synthetic dataset needs the CPU example's batch shape (examples/trainingjob-cpu.yaml).
    cpu = yaml.safe_load((REPO_ROOT / "examples" / "trainingjob-cpu.yaml").read_text())["spec"]["training_kwargs"]
    body.setdefault("training_kwargs", {}).update(
        {"num_epochs": epochs, "num_workers": 0, "batch_size": cpu["batch_size"]})
    return body


# ------------------------------------------------------------------ the cluster


def log(message: str) -> None:
    print(f"[e2e {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


class CommandFailed(AssertionError):
    pass


@dataclass
class Cluster:
    """A kind cluster and the tools pointed at it through its own kubeconfig file."""

    name: str
    workdir: Path
    kind: str
    helm: str
    kubectl: str
    env: dict[str, str] = field(default_factory=dict)

    @property
    def kubeconfig(self) -> Path:
        return self.workdir / "kubeconfig"

    def run(self, cmd: list[str], *, timeout: float = 300, check: bool = True, input: str | None = None,
            quiet: bool = False) -> subprocess.CompletedProcess[str]:
        if not quiet:
            log("$ " + " ".join(cmd))
        env = {**os.environ, "DOCKER_BUILDKIT": "1", **self.env, "KUBECONFIG": str(self.kubeconfig)}
        try:
            result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, input=input,
                                    env=env, cwd=REPO_ROOT)
        except subprocess.TimeoutExpired as exc:
            raise CommandFailed(f"timed out after {timeout:.0f}s: {' '.join(cmd)}") from exc
        if check and result.returncode != 0:
            raise CommandFailed(f"exit {result.returncode}: {' '.join(cmd)}\n{result.stdout[-3000:]}"
                                f"\n{result.stderr[-3000:]}")
        return result

    def kc(self, *args: str, timeout: float = 120, check: bool = True, input: str | None = None,
           quiet: bool = False) -> subprocess.CompletedProcess[str]:
        return self.run([self.kubectl, *args], timeout=timeout, check=check, input=input, quiet=quiet)

    def get_json(self, *args: str) -> dict[str, Any]:
        return json.loads(self.kc("get", *args, "-o", "json", quiet=True).stdout)

    def apply(self, manifest: dict[str, Any]) -> None:
        self.kc("apply", "--server-side", "--field-manager=laxai-e2e", "-f", "-", input=yaml.safe_dump(manifest))

    # -- lifecycle

    def create(self, node_image: str | None) -> None:
        cmd = [self.kind, "create", "cluster", "--name", self.name, "--kubeconfig", str(self.kubeconfig),
               "--wait", "180s"]
        if node_image:
            cmd += ["--image", node_image]
        self.run(cmd, timeout=600)

    def delete(self) -> None:
        self.run([self.kind, "delete", "cluster", "--name", self.name, "--kubeconfig", str(self.kubeconfig)],
                 timeout=300, check=False)

    def build(self, trainer_dockerfile: Path) -> None:
        """Both images, from the repository root as build context (BuildKit for <Dockerfile>.dockerignore)."""
        for tag, dockerfile in ((CONTROL_PLANE_IMAGE, CONTROL_PLANE_DOCKERFILE), (TRAINER_IMAGE, trainer_dockerfile)):
            self.run(["docker", "build", "--file", str(dockerfile), "--tag", tag, str(REPO_ROOT)], timeout=3600)

    def load(self) -> None:
        """Copies the images into the kind node (the chart's pullPolicy is Never)."""
        self.run([self.kind, "load", "docker-image", CONTROL_PLANE_IMAGE, TRAINER_IMAGE, "--name", self.name],
                 timeout=1200)

    def install(self) -> None:
        self.run([self.helm, "install", RELEASE, str(REPO_ROOT / "helm" / "laxai-training"),
                  "--namespace", NAMESPACE, "--create-namespace", "--values", str(VALUES_FILE),
                  "--wait", "--timeout", "5m", "--kubeconfig", str(self.kubeconfig)], timeout=420)

    # -- waiting

    def wait_for(self, what: str, probe: Callable[[], Any], timeout: float, interval: float = 3.0) -> Any:
        """Calls ``probe`` until it returns something truthy; fails with diagnostics after ``timeout``."""
        deadline = time.monotonic() + timeout
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            try:
                result = probe()
                if result:
                    return result
                last_error = None
            except (CommandFailed, OSError, ValueError, KeyError) as exc:
                last_error = exc
            time.sleep(interval)
        raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}"
                             f"{f' (last error: {last_error})' if last_error else ''}\n{self.diagnostics()}")

    def diagnostics(self) -> str:
        """What a person would look at first when the suite fails."""
        parts = []
        for args in (["get", "trainingjobs,jobs,pods,pvc", "-n", NAMESPACE, "-o", "wide"],
                     ["describe", "trainingjobs", "-n", NAMESPACE],
                     ["get", "events", "-n", NAMESPACE, "--sort-by=.lastTimestamp"],
                     ["logs", "-n", NAMESPACE, "-l", "app.kubernetes.io/component=operator", "--tail=80"],
                     ["logs", "-n", NAMESPACE, "-l", "app.kubernetes.io/component=api", "--tail=40"],
                     ["logs", "-n", NAMESPACE, "-l", "training.laxai.io/trainingjob", "--tail=40",
                      "--prefix"]):
            result = self.kc(*args, check=False, quiet=True, timeout=60)
            parts.append(f"--- kubectl {' '.join(args)}\n{result.stdout}{result.stderr}")
        return "\n".join(parts)[-20000:]

    def phase(self, name: str) -> str | None:
        return self.get_json("trainingjob", name, "-n", NAMESPACE).get("status", {}).get("phase")

    def admin_key(self) -> str:
        data = self.get_json("secret", API_KEYS_SECRET, "-n", NAMESPACE)["data"]
        return base64.b64decode(data["admin-key"]).decode()


# ------------------------------------------------------------------ REST through a port-forward


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PortForward:
    """``kubectl port-forward`` to the API Service on a free loopback port, for the test's lifetime."""

    def __init__(self, cluster: Cluster, service: str, port: int):
        self.local_port = free_port()
        self.cluster = cluster
        self.proc = subprocess.Popen(
            [cluster.kubectl, "port-forward", "--address", "127.0.0.1", "-n", NAMESPACE, f"service/{service}",
             f"{self.local_port}:{port}"],
            env={**os.environ, "KUBECONFIG": str(cluster.kubeconfig)},
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.local_port}"

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
