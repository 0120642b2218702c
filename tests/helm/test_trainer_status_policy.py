"""The chart's trainer-status ValidatingAdmissionPolicy (templates/trainer-status-policy.yaml),
enforced by the API emulator as a real API server would (tests.support.admission, RBAC from the
chart's Roles): a trainer pod's own token may patch its own TrainingJob's status.progress and
status.metrics, and nothing else."""

from __future__ import annotations

import json
import re

import kubernetes
import pytest

from laxai_operator.resource import TrainingJobStatus
from laxai_trainer.reporters.kubernetes import InClusterStatusApi, KubernetesStatusReporter
from laxai_trainer.status import Metrics, Phase, Progress, ProgressReport
from tests.helm.chart import NAMESPACE, render
from tests.helm.install import install_access
from tests.support import authn
from tests.support.access import AccessControl
from tests.support.threaded import TRAININGJOBS, ThreadedKubeEmulator

G, V, P = "training.laxai.io", "v1alpha1", "trainingjobs"
TENANTS = {"team-b": {"serviceAccount": {"name": "trainer-team-b"}}}
POLICY = f"{NAMESPACE}-laxai-training-trainer-status"


@pytest.fixture(scope="module")
def rendered(helm_bin):
    return render(helm_bin, {"tenants": TENANTS})


@pytest.fixture()
def emu(rendered):
    with ThreadedKubeEmulator(access=AccessControl()) as emu:
        install_access(emu, rendered)
        for name in ("own", "victim", "own-extra", "fresh"):
            status = {} if name == "fresh" else {"phase": "running", "reason": "Running", "jobName": f"tj-{name}",
                                                 "progress": {"status": "running", "current_epoch": 1}}
            emu.create(TRAININGJOBS, {"metadata": {"name": name}, "spec": {"tenant_id": "tenant1"},
                                      "status": status}, namespace=NAMESPACE)
        yield emu


def api(emu, user):
    return kubernetes.client.CustomObjectsApi(emu.api_client(emu.access.tokens.issue(user)))


def trainer(pod="tj-own-x7k2p", account="laxai-trainer", namespace=NAMESPACE, bound=True):
    return authn.service_account(namespace, account, pod_name=pod if bound else None)


def patch(emu, user, name, status):
    return api(emu, user).patch_namespaced_custom_object_status(G, V, NAMESPACE, P, name, {"status": status})


def refusal(emu, user, name, status):
    with pytest.raises(kubernetes.client.ApiException) as exc:
        patch(emu, user, name, status)
    return exc.value.status, json.loads(exc.value.body)["message"]


def test_a_trainer_patches_its_own_progress_and_metrics(emu):
    out = patch(emu, trainer(), "own", {"progress": {"current_epoch": 2}, "metrics": {"mAP": 0.4}})
    assert (out["status"]["progress"]["status"], out["status"]["progress"]["current_epoch"]) == ("running", 2)
    assert out["status"]["metrics"]["mAP"] == 0.4


@pytest.mark.parametrize(("user", "name", "status", "why"), [
    (trainer(), "victim", {"progress": {"current_epoch": 2}}, "only the status of the TrainingJob its own pod"),
    (trainer(), "victim", {"phase": "failed", "reason": "Hijacked"}, "only the status of the TrainingJob"),
    (trainer(pod="tj-own-extra-x7k2p"), "own", {"metrics": {"mAP": 0.9}}, "its own pod"),  # prefix, not its pod
    (trainer(pod="tj-own"), "own", {"metrics": {"mAP": 0.9}}, "its own pod"),
    (trainer(bound=False), "own", {"metrics": {"mAP": 0.9}}, "pod-bound token"),  # no pod-name extra
    (trainer(pod="tj-fresh-x7k2p"), "fresh", {"metrics": {"mAP": 0.9}}, "its own pod"),  # no status.jobName yet
    (trainer(), "own", {"phase": "completed"}, "only status.progress"),
    (trainer(), "own", {"reason": "Whatever"}, "only status.progress"),
    (trainer(), "own", {"jobName": "tj-victim"}, "only status.progress"),
    (trainer(), "own", {"progress": {"status": "completed"}}, "not progress.status"),
    (trainer(), "own", {"history": [{"phase": "completed", "reason": "Completed", "time": "2026-01-01T00:00:00Z"}]},
     "only status.progress"),
    (trainer(account="trainer-team-b", pod="tj-victim-x7k2p", namespace=NAMESPACE), "own",
     {"metrics": {"mAP": 0.9}}, "its own pod"),  # a tenant's account is held to the same rule
])
def test_everything_else_is_refused_by_the_policy(emu, user, name, status, why):
    before = emu.get(TRAININGJOBS, NAMESPACE, name)
    code, message = refusal(emu, user, name, status)
    assert code == 403
    assert f"ValidatingAdmissionPolicy '{POLICY}' with binding '{POLICY}' denied request: " in message
    assert why in message
    assert emu.get(TRAININGJOBS, NAMESPACE, name) == before


def test_a_tenant_account_writes_its_own_job_and_the_operator_is_not_matched(emu):
    patch(emu, trainer(account="trainer-team-b"), "own", {"metrics": {"mAP": 0.7}})
    operator = authn.service_account(NAMESPACE, "laxai-training-operator")
    assert patch(emu, operator, "victim", {"phase": "completed"})["status"]["phase"] == "completed"


@pytest.mark.parametrize("client", ["in-cluster", "kubernetes"])
def test_the_reporter_keeps_working_and_cannot_report_for_another_job(emu, client):
    """Both of the reporter's clients: the pod's own HTTPS call (InClusterStatusApi) and the library."""
    for name, sent in (("own", 1), ("victim", 0)):
        token = emu.access.tokens.issue(trainer())
        api_client = emu.api_client(token)
        status_api = (InClusterStatusApi(emu.url, token=token) if client == "in-cluster"
                      else kubernetes.client.CustomObjectsApi(api_client))
        reporter = KubernetesStatusReporter(name, NAMESPACE, status_api)
        reporter.report(ProgressReport(progress=Progress(status=Phase.running, current_epoch=3),
                                       metrics=Metrics(mAP=0.6)))
        reporter.close()
        api_client.close()
        assert reporter.sent == sent
    assert emu.get(TRAININGJOBS, NAMESPACE, "own")["status"]["metrics"]["mAP"] == 0.6
    assert "metrics" not in emu.get(TRAININGJOBS, NAMESPACE, "victim")["status"]


def test_the_policy_guards_every_operator_status_field(rendered):
    """Every status field but progress and metrics must be compared, or a new field would be writable."""
    [policy] = rendered.of_kind("ValidatingAdmissionPolicy")
    expression = policy["spec"]["validations"][1]["expression"]
    guarded = set(re.findall(r"object\.status\.(\w+) == oldObject", expression))
    fields = {f.alias or n for n, f in TrainingJobStatus.model_fields.items()}
    assert guarded == fields - {"progress", "metrics"}
    [binding] = rendered.of_kind("ValidatingAdmissionPolicyBinding")
    assert binding["spec"] == {"policyName": POLICY, "validationActions": ["Deny"]}


@pytest.mark.parametrize("client", ["in-cluster", "kubernetes"])
def test_the_reporter_learns_of_a_cancel_with_its_own_permission(emu, client):
    """spec.cancel reaches the trainer through its status PATCH answers (a no-op PATCH when asked):
    no new permission, the policy lets the no-op through, and another job's answer is refused."""
    token = emu.access.tokens.issue(trainer())
    api_client = emu.api_client(token)
    status_api = (InClusterStatusApi(emu.url, token=token) if client == "in-cluster"
                  else kubernetes.client.CustomObjectsApi(api_client))
    own, victim = (KubernetesStatusReporter(n, NAMESPACE, status_api) for n in ("own", "victim"))
    assert not own.cancel_requested()
    before = emu.get(TRAININGJOBS, NAMESPACE, "own")
    emu.patch(TRAININGJOBS, NAMESPACE, "own", {"spec": {"cancel": True}})
    emu.patch(TRAININGJOBS, NAMESPACE, "victim", {"spec": {"cancel": True}})
    assert own.cancel_requested()
    assert emu.get(TRAININGJOBS, NAMESPACE, "own")["status"] == before["status"]  # the probe wrote nothing
    assert not victim.cancel_requested()  # refused (not its pod): no cancel learnt from it
    api_client.close()
