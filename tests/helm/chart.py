"""Rendering the chart with the real helm binary, and reading what it rendered."""

from __future__ import annotations

import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.helm.tools import REPO_ROOT

CHART_DIR = REPO_ROOT / "helm" / "laxai-training"
RELEASE = "laxai"
NAMESPACE = "laxai-system"


class HelmError(RuntimeError):
    def __init__(self, cmd: list[str], stderr: str):
        super().__init__(f"{' '.join(cmd[:2])} failed: {stderr.strip()}")
        self.stderr = stderr


def run_helm(helm: Path, args: list[str], values: dict[str, Any] | None = None) -> str:
    """Runs helm with ``values`` written to a file (``-f``); returns stdout, raises HelmError."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [str(helm), *args]
        if values is not None:
            path = Path(tmp) / "values.yaml"
            path.write_text(yaml.safe_dump(values))
            cmd += ["-f", str(path)]
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=120,
                                env={"HOME": tmp, "PATH": "/usr/bin:/bin", "HELM_CACHE_HOME": tmp,
                                     "HELM_CONFIG_HOME": tmp, "HELM_DATA_HOME": tmp})
    if result.returncode != 0:
        raise HelmError(cmd, result.stderr)
    return result.stdout


def template(helm: Path, values: dict[str, Any] | None = None, *, namespace: str = NAMESPACE,
             include_crds: bool = True) -> str:
    args = ["template", RELEASE, str(CHART_DIR), "--namespace", namespace]
    if include_crds:
        args.append("--include-crds")
    return run_helm(helm, args, values)


def parse(text: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


@dataclass(frozen=True)
class Rendered:
    """One rendering of the chart: its text and its objects."""

    text: str
    docs: list[dict[str, Any]]

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [d for d in self.docs if d["kind"] == kind]

    def get(self, kind: str, name: str, namespace: str | None = None) -> dict[str, Any]:
        for doc in self.of_kind(kind):
            meta = doc["metadata"]
            if meta["name"] == name and (namespace is None or meta.get("namespace") == namespace):
                return doc
        raise KeyError(f"no {kind} {name} (namespace {namespace}) in the rendered chart")

    def has(self, kind: str, name: str) -> bool:
        return any(d["metadata"]["name"] == name for d in self.of_kind(kind))

    def container(self, deployment: str, name: str) -> dict[str, Any]:
        pod = self.get("Deployment", deployment)["spec"]["template"]["spec"]
        return next(c for c in pod["containers"] if c["name"] == name)

    def env(self, deployment: str, container: str) -> dict[str, Any]:
        """name -> value (a string), or the valueFrom dict for references."""
        out: dict[str, Any] = {}
        for var in self.container(deployment, container).get("env", []):
            out[var["name"]] = var["value"] if "value" in var else var["valueFrom"]
        return out


def render(helm: Path, values: dict[str, Any] | None = None, **kwargs: Any) -> Rendered:
    text = template(helm, values, **kwargs)
    return Rendered(text, parse(text))


def workloads(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job")]


def pod_containers(doc: dict[str, Any]) -> list[dict[str, Any]]:
    pod = doc["spec"]["template"]["spec"]
    return pod.get("initContainers", []) + pod["containers"]
