"""The chart's RBAC matches what the code really calls: record every request the operator and
the trainer's reporter send to the API emulator through a whole lifecycle, turn each into an
RBAC (apiGroup, resource, verb), and compare with the Roles ``helm template`` renders.

Missing permission -> the component fails in a real cluster (403); an extra one -> not least
privilege. Either makes this test fail.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from laxai_trainer.reporters.kubernetes import KubernetesStatusReporter
from laxai_trainer.status import Metrics, Phase, Progress, ProgressReport
from tests.operator.conftest import (
    JOBS,
    NS,
    TJS,
    make_tj,
    running_operator,
    start_trainer_pod,
    wait_phase,
)
from tests.support.kube_emulator import parse_resource_path

Permission = tuple[str, str, str]  # (apiGroup, resource[/subresource], verb)

#: Granted though this lifecycle cannot show the call, each for a stated reason.
JUSTIFIED_EXTRAS: set[Permission] = set()
#: Cluster-scoped scans kopf makes in namespaced mode and tolerates when forbidden (it logs a warning
#: and keeps to the namespaces given on its command line and the resources found at start);
#: a namespaced Role cannot grant them anyway.
KOPF_TOLERATED_FORBIDDEN: set[Permission] = {
    ("", "namespaces", "list"), ("", "namespaces", "watch"),
    ("apiextensions.k8s.io", "customresourcedefinitions", "list"),
    ("apiextensions.k8s.io", "customresourcedefinitions", "watch"),
}


def verb_of(method: str, name: str | None, query: dict[str, str]) -> str:
    if method == "GET":
        if name is None:
            return "watch" if query.get("watch") in ("true", "1") else "list"
        return "get"
    return {"POST": "create", "PATCH": "patch", "PUT": "update"}.get(method) or (
        "delete" if name else "deletecollection")


def recorded(emu, start: int = 0) -> set[Permission]:
    """Permissions the requests logged since index ``start`` needed (discovery excluded)."""
    def read() -> list[tuple[str, str, dict[str, str]]]:
        return [(r._raw_request.method.upper(), r._raw_request.path, dict(r._raw_request.query))
                for r in emu.emulator._requests[start:]]

    out: set[Permission] = set()
    for method, path, query in emu.call(read):
        parsed = parse_resource_path(path.rstrip("/"))
        if parsed is None or parsed.plural is None:
            continue  # /api, /apis, /version: discovery, allowed to every authenticated user
        resource = f"{parsed.plural}/{parsed.subresource}" if parsed.subresource else parsed.plural
        out.add((parsed.group, resource, verb_of(method, parsed.name, query)))
    return out


def granted(role: dict[str, Any]) -> set[Permission]:
    return {(g, r, v) for rule in role["rules"] for g in rule["apiGroups"] for r in rule["resources"]
            for v in rule["verbs"]}


@pytest.fixture(scope="module")
def chart_roles() -> dict[str, dict[str, Any]]:
    """The default installation's Roles, by name."""
    from tests.helm import tools
    from tests.helm.chart import render

    try:
        helm = tools.helm()
    except tools.ToolUnavailable as exc:
        pytest.skip(f"helm binary not available: {exc}")
    return {r["metadata"]["name"]: r for r in render(helm).of_kind("Role")}


def test_operator_and_trainer_rbac_is_exactly_what_they_call(operator_env, kube_api_client, chart_roles):
    import kubernetes

    emu = operator_env
    emu.call(lambda: setattr(emu.emulator, "request_log_limit", 1_000_000))
    make_tj(emu, "run-1", ttlSecondsAfterFinished=0)
    make_tj(emu, "cancel-me")
    with running_operator():
        job = emu.wait_for_object(JOBS, NS, "tj-run-1")
        emu.wait_for_object(JOBS, NS, "tj-cancel-me")
        emu.patch(TJS, NS, "cancel-me", {"spec": {"suspend": True}})  # the operator patches the Job
        emu.wait_for_object(JOBS, NS, "tj-cancel-me", lambda j: j["spec"].get("suspend") is True)
        emu.patch(TJS, NS, "cancel-me", {"spec": {"cancel": True}})  # the operator deletes the Job
        wait_phase(emu, "cancel-me", "cancelled")
        start_trainer_pod(emu, job, "run-1")
        emu.set_job_status(NS, "tj-run-1", {"succeeded": 1, "conditions": [
            {"type": "Complete", "status": "True", "lastTransitionTime": "2026-01-01T00:10:00Z"}]})
        emu.wait_for(lambda: emu.get(TJS, NS, "run-1") is None, message="TTL deletion")
        emu.wait_for(lambda: any(ev.get("reason") == "Cancelled" for ev in emu.objects("v1/events", NS)),
                     message="events posted")
        time.sleep(0.3)
    operator_calls = recorded(emu) - KOPF_TOLERATED_FORBIDDEN

    make_tj(emu, "run-2")
    start = emu.call(lambda: len(emu.emulator._requests))
    reporter = KubernetesStatusReporter("run-2", NS, kubernetes.client.CustomObjectsApi(kube_api_client))
    reporter.report(ProgressReport(progress=Progress(status=Phase.completed, current_epoch=1),
                                   metrics=Metrics(mAP=0.5)))
    reporter.close()
    trainer_calls = recorded(emu, start)
    assert emu.get(TJS, NS, "run-2")["status"]["metrics"]["mAP"] == 0.5

    operator_role = granted(chart_roles["laxai-training-operator"])
    assert operator_calls - operator_role == set(), "the operator calls what its Role does not allow"
    assert operator_role - operator_calls - JUSTIFIED_EXTRAS == set(), "the operator's Role allows unused calls"
    trainer_role = granted(chart_roles["laxai-training-trainer"])
    assert trainer_calls == trainer_role == {("training.laxai.io", "trainingjobs/status", "patch")}
