"""Builders of Job and Pod dicts in the shapes the Kubernetes API returns (for status tests)."""

from __future__ import annotations

from typing import Any

T0 = "2026-01-01T00:00:00Z"


def job(name: str = "tj-run-1", *, suspend: bool = False, conditions: list[dict] | None = None,
        created: str = T0, uid: str = "job-uid", **status: Any) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": name, "namespace": "ns", "uid": uid, "creationTimestamp": created},
        "spec": {"suspend": suspend},
        "status": {**status, **({"conditions": conditions} if conditions else {})},
    }


def cond(type_: str, reason: str = "", message: str = "", status: str = "True", at: str = T0) -> dict[str, Any]:
    return {"type": type_, "status": status, "reason": reason, "message": message, "lastTransitionTime": at}


def pod(name: str = "tj-run-1-abcde", phase: str = "Pending", *, created: str = T0, start: str | None = None,
        conditions: list[dict] | None = None, waiting: dict | None = None, terminated: dict | None = None,
        running: bool = False, uid: str | None = None) -> dict[str, Any]:
    state: dict[str, Any] = {}
    if waiting:
        state["waiting"] = waiting
    if terminated:
        state["terminated"] = terminated
    if running:
        state["running"] = {"startedAt": start or T0}
    status: dict[str, Any] = {"phase": phase, "conditions": conditions or []}
    if start:
        status["startTime"] = start
    if state:
        status["containerStatuses"] = [{"name": "trainer", "image": "reg/trainer:1", "state": state}]
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "ns", "uid": uid or f"uid-{name}", "creationTimestamp": created,
                     "labels": {"training.laxai.io/trainingjob": "run-1"}},
        "status": status,
    }


def unschedulable(message: str = "0/3 nodes are available: 3 Insufficient nvidia.com/gpu.") -> dict[str, Any]:
    return cond("PodScheduled", "Unschedulable", message, status="False")
