"""The chart's RBAC, enforced: the emulator authenticates every request and authorizes it from
the Roles ``helm template`` renders (tests.support.rbac, as a real API server's RBAC does), and
the operator and the trainer's reporter run under their own ServiceAccounts' tokens.

- Enough: a whole lifecycle (create, suspend, cancel, run, complete, TTL deletion, events) gets
  no 403, and a TrainingJob gets its Job within seconds of the operator's start, for a
  namespaced and a cluster-wide install (kopf's cluster scans would otherwise be forbidden and
  retried for ~54 s on a real server: ../shared/REAL_K8S_FACTS.md, Auth).
- Not more: every permission a Role grants was used by some call of the lifecycle.
"""

from __future__ import annotations

import time

import pytest

from laxai_trainer.reporters.kubernetes import KubernetesStatusReporter
from laxai_trainer.status import Metrics, Phase, Progress, ProgressReport
from tests.helm.install import install_access, render_or_skip
from tests.operator.conftest import JOBS, NS, TJS, make_tj, running_operator, start_trainer_pod, wait_phase
from tests.support import authn
from tests.support.fixtures import authenticate_as
from tests.support.rbac_usage import rules_of, unscoped, used

pytestmark = pytest.mark.parametrize("kube_emulator", ["secured"], indirect=True)

Permission = tuple[str, str, str]  # (apiGroup, resource[/subresource], verb)
OPERATOR_SA = "laxai-training-operator"
TRAINER_SA = "laxai-trainer"

#: Granted though this lifecycle cannot show the call, each for a stated reason.
JUSTIFIED_EXTRAS: set[Permission] = set()


def recorded(emu, start: int = 0) -> set[Permission]:
    """Permissions the requests logged since index ``start`` needed (discovery excluded)."""
    return unscoped(used(emu, start))


def render_chart(values: dict | None = None):
    return render_or_skip(values, NS)


def as_operator(emu, monkeypatch, tmp_path) -> None:
    token = emu.access.tokens.issue(authn.service_account(NS, OPERATOR_SA))
    authenticate_as(emu, monkeypatch, token, tmp_path / "operator-kubeconfig")


@pytest.mark.parametrize(("values", "scope"), [({}, NS), ({"watch": {"clusterWide": True}}, None)],
                         ids=["namespaced", "cluster-wide"])
def test_operator_reconciles_at_once_under_the_charts_rbac(operator_env, monkeypatch, tmp_path, values, scope):
    emu = operator_env
    install_access(emu, render_chart(values))
    as_operator(emu, monkeypatch, tmp_path)
    with running_operator(scope):
        make_tj(emu, "quick")
        # Seconds, not kopf's ~54 s of forbidden retries: nothing here waits for a retry.
        emu.wait_for_object(JOBS, NS, "tj-quick", timeout=5)
        wait_phase(emu, "quick", "pending", timeout=5)
    assert emu.access.denials == []


def test_operator_and_trainer_rbac_is_exactly_what_they_call(operator_env, monkeypatch, tmp_path):
    import kubernetes

    emu = operator_env
    rendered = render_chart()
    roles = {r["metadata"]["name"]: r for r in rendered.of_kind("Role")}
    install_access(emu, rendered)
    as_operator(emu, monkeypatch, tmp_path)
    emu.call(lambda: setattr(emu.emulator, "request_log_limit", 1_000_000))
    make_tj(emu, "run-1", ttlSecondsAfterFinished=0)
    make_tj(emu, "cancel-me")
    make_tj(emu, "run-2")
    with running_operator():
        job = emu.wait_for_object(JOBS, NS, "tj-run-1")
        emu.wait_for_object(JOBS, NS, "tj-cancel-me")
        job2 = emu.wait_for_object(JOBS, NS, "tj-run-2")
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
        pod2, _ = start_trainer_pod(emu, job2, "run-2")
        time.sleep(0.3)
    operator_calls = recorded(emu)

    # The trainer, with its pod's own token (pod-bound: the admission policy checks the pod).
    start = emu.call(lambda: len(emu.emulator._requests))
    token = emu.access.tokens.issue(authn.service_account(NS, TRAINER_SA, pod_name=pod2["metadata"]["name"]))
    with emu.api_client(token) as client:
        reporter = KubernetesStatusReporter("run-2", NS, kubernetes.client.CustomObjectsApi(client))
        reporter.report(ProgressReport(progress=Progress(status=Phase.running, current_epoch=1),
                                       metrics=Metrics(mAP=0.5)))
        reporter.close()
    trainer_calls = recorded(emu, start)
    assert reporter.sent == 1
    assert emu.get(TJS, NS, "run-2")["status"]["metrics"]["mAP"] == 0.5
    assert emu.access.denials == [], "a call the chart's RBAC or admission policy refused"

    operator_role = rules_of(roles["laxai-training-operator"])
    assert operator_calls <= operator_role  # enforced above too: a refused call is a denial
    assert operator_role - operator_calls - JUSTIFIED_EXTRAS == set(), "the operator's Role allows unused calls"
    assert trainer_calls == rules_of(roles["laxai-training-trainer"]) == {
        ("training.laxai.io", "trainingjobs/status", "patch")}


def test_a_role_missing_a_permission_is_refused(operator_env, monkeypatch, tmp_path):
    """The enforcement can fail: without ``create jobs`` the operator is refused, and it shows."""
    emu = operator_env
    rendered = render_chart()
    role = rendered.get("Role", "laxai-training-operator")
    for rule in role["rules"]:
        if "jobs" in rule["resources"]:
            rule["verbs"] = [v for v in rule["verbs"] if v != "create"]
    install_access(emu, rendered)
    as_operator(emu, monkeypatch, tmp_path)
    with running_operator():
        make_tj(emu, "refused")
        emu.wait_for(lambda: emu.access.denials, message="a 403")
    assert 'cannot create resource "jobs" in API group "batch" in the namespace "default"' in (
        emu.access.denials[0][1])
    assert emu.get(JOBS, NS, "tj-refused") is None
