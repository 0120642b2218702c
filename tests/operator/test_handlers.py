"""The real operator (laxai_operator.handlers under kopf.testing.KopfRunner) against the
Kubernetes API emulator (tests/support): TrainingJob -> Job, Job/Pod state -> status,
cancel, suspend, delete, TTL, restarts, startup timeout, trainer progress.

Nothing runs Jobs or pods in the emulator: the tests play the Job controller and kubelet
by creating pods and writing Job/Pod status, as those would.
"""

from __future__ import annotations

import time

import pytest

from laxai_operator.job_builder import build_job
from laxai_operator.resource import TrainingJobSpec
from laxai_operator.settings import OperatorSettings
from laxai_trainer.reporters.kubernetes import KubernetesStatusReporter
from laxai_trainer.status import Metrics, Phase, Progress, ProgressReport
from tests.operator.conftest import (
    JOBS,
    NS,
    PODS,
    TJS,
    events_for,
    make_tj,
    running_operator,
    start_trainer_pod,
    status_of,
    trainer_state,
    wait_phase,
)


def wait_job(emu, name="run-1", timeout=10):
    return emu.wait_for_object(JOBS, NS, f"tj-{name}", timeout=timeout)


def creations(emu, resource, name):
    """How many times an object of that name was created (history: None marks deletions)."""
    versions = emu.history(resource, NS, name)
    return sum(1 for prev, cur in zip([None, *versions], versions, strict=False) if prev is None and cur is not None)


def test_create_makes_exactly_the_specified_job(operator_env):
    emu = operator_env
    tj = make_tj(emu, "run-1", gpus=2, backoffLimit=5, resources={"cpu": "4", "memory": "16Gi"},
                 nodeSelector={"pool": "a100"}, queueName="team-q", custom_name="my_run")
    with running_operator():
        job = wait_job(emu)
        status = wait_phase(emu, "run-1", "pending", "Queued")["status"]
        emu.wait_for(lambda: ("Normal", "Queued") in events_for(emu, "run-1"), message="Queued event")
    expected = build_job("run-1", NS, tj["metadata"]["uid"], TrainingJobSpec.model_validate(tj["spec"]),
                         OperatorSettings())
    assert job["metadata"]["labels"] == expected["metadata"]["labels"]
    assert job["metadata"]["annotations"] == expected["metadata"]["annotations"]
    assert job["metadata"]["ownerReferences"] == expected["metadata"]["ownerReferences"]
    assert job["spec"] == expected["spec"]
    assert job["spec"]["template"]["spec"]["containers"][0]["image"] == "reg.example/trainer:test"
    assert status["jobName"] == "tj-run-1" and status["observedGeneration"] == 1
    assert [h["reason"] for h in status["history"]] == ["Queued"]  # a queued Job starts suspended
    final = emu.get(TJS, NS, "run-1")
    assert not final["metadata"].get("finalizers")  # deletion never waits for the operator


def test_lifecycle_running_then_completed_with_metrics(operator_env, kube_api_client):
    import kubernetes

    emu = operator_env
    make_tj(emu, "run-1")
    reporter = KubernetesStatusReporter("run-1", NS, kubernetes.client.CustomObjectsApi(kube_api_client),
                                        min_interval=0.2)
    with running_operator():
        job = wait_job(emu)
        pod = emu.make_pod_for_job(job, phase="Pending", container_statuses=trainer_state(
            waiting={"reason": "ContainerCreating"}))
        wait_phase(emu, "run-1", "pending", "Starting")
        emu.set_pod_status(NS, pod["metadata"]["name"], {"phase": "Running", "startTime": "2026-01-01T00:00:00Z",
                                                         "containerStatuses": trainer_state(running={})})
        emu.set_job_status(NS, "tj-run-1", {"active": 1})
        st = wait_phase(emu, "run-1", "running", "Running")["status"]
        assert st["startTime"] == "2026-01-01T00:00:00Z" and st["attempts"] == 1
        # The trainer reports an epoch: it reaches the status; the operator's writes keep it.
        reporter.report(ProgressReport(progress=Progress(status=Phase.running, current_epoch=1, total_epochs=3,
                                                         current_loss=0.71, message="epoch 1/3")))
        emu.wait_for_object(TJS, NS, "run-1", lambda o: (o["status"].get("progress") or {}).get("current_epoch") == 1)
        reporter.report(ProgressReport(progress=Progress(status=Phase.completed, current_epoch=3, total_epochs=3,
                                                         current_loss=0.2), metrics=Metrics(mAP=0.81, rank1=0.9)))
        emu.set_pod_status(NS, pod["metadata"]["name"], {"phase": "Succeeded", "containerStatuses": trainer_state(
            terminated={"exitCode": 0, "reason": "Completed"})})
        emu.set_job_status(NS, "tj-run-1", {"active": 0, "succeeded": 1, "completionTime": "2026-01-01T01:00:00Z",
                                             "conditions": [{"type": "Complete", "status": "True",
                                                             "lastTransitionTime": "2026-01-01T01:00:00Z"}]})
        st = wait_phase(emu, "run-1", "completed", "Completed")["status"]
        # One Event on the TrainingJob per transition, in order (kubectl describe tj).
        want = [("Normal", r) for r in [h["reason"] for h in st["history"]]]
        emu.wait_for(lambda: events_for(emu, "run-1") == want, timeout=5,
                     message=f"events {want}, got {events_for(emu, 'run-1')}")
    assert [r for _, r in want][-3:] == ["Starting", "Running", "Completed"]
    assert st["completionTime"] == "2026-01-01T01:00:00Z"
    assert st["metrics"]["mAP"] == 0.81 and st["progress"]["current_epoch"] == 3
    assert st["progress"]["status"] == "completed" and st["progress"]["current_loss"] == 0.2
    conds = {c["type"]: c["status"] for c in st["conditions"]}
    assert conds == {"Pending": "False", "Running": "False", "Succeeded": "True"}
    phases = [h["phase"] for h in st["history"]]
    assert [p for i, p in enumerate(phases) if i == 0 or phases[i - 1] != p] == ["pending", "running", "completed"]
    assert [h["reason"] for h in st["history"]][-3:] == ["Starting", "Running", "Completed"]


def _fail(emu, job, terminated, job_reason, message=""):
    emu.make_pod_for_job(job, phase="Failed", container_statuses=trainer_state(terminated=terminated))
    emu.set_job_status(NS, job["metadata"]["name"], {"failed": 1, "conditions": [
        {"type": "Failed", "status": "True", "reason": job_reason, "message": message,
         "lastTransitionTime": "2026-01-01T00:10:00Z"}]})


FAILURES = [
    # name, spec, what happens, phase, reason, message fragment
    ("oom", {"resources": {"memory": "8Gi"}},
     lambda emu, job: _fail(emu, job, {"exitCode": 137, "reason": "OOMKilled"}, "BackoffLimitExceeded"),
     "failed", "OOMKilled", "memory limit 8Gi"),
    ("config", {},
     lambda emu, job: _fail(emu, job, {"exitCode": 3, "reason": "Error",
                                       "message": "config error: no datasets under gs://b/tenant1/datasets"},
                            "PodFailurePolicy", "Container trainer failed with exit code 3 matching FailJob rule"),
     "failed", "TrainerConfigError", "no datasets under gs://b/tenant1/datasets"),
    ("backoff", {"backoffLimit": 2},
     lambda emu, job: _fail(emu, job, {"exitCode": 1, "reason": "Error", "message": "RuntimeError: boom"},
                            "BackoffLimitExceeded"),
     "failed", "BackoffLimitExceeded", "RuntimeError: boom"),
    ("deadline", {"activeDeadlineSeconds": 120},
     lambda emu, job: emu.set_job_status(NS, job["metadata"]["name"], {"conditions": [
         {"type": "Failed", "status": "True", "reason": "DeadlineExceeded", "lastTransitionTime": "2026-01-01T00:10:00Z"}]}),
     "failed", "DeadlineExceeded", "activeDeadlineSeconds (120s"),
    ("unschedulable", {"gpus": 8},
     lambda emu, job: emu.make_pod_for_job(job, phase="Pending", status={"conditions": [
         {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
          "message": "0/4 nodes are available: 4 Insufficient nvidia.com/gpu."}]}),
     "pending", "Unschedulable", "Insufficient nvidia.com/gpu"),
    ("imagepull", {"image": "reg.example/missing:1"},
     lambda emu, job: emu.make_pod_for_job(job, phase="Pending", container_statuses=trainer_state(
         waiting={"reason": "ImagePullBackOff", "message": 'Back-off pulling image "reg.example/missing:1"'})),
     "pending", "ImagePullBackOff", "reg.example/missing:1"),
]


def test_failure_reasons(operator_env):
    """Each failure mode, as the Job controller and kubelet report it, gets its actionable reason."""
    emu = operator_env
    for name, spec, _, *_rest in FAILURES:
        make_tj(emu, name, **spec)
    with running_operator():
        for name, _, happen, *_rest in FAILURES:
            happen(emu, wait_job(emu, name))
        for name, _, _, phase, reason, fragment in FAILURES:
            st = wait_phase(emu, name, phase, reason)["status"]
            assert fragment in st["message"], (name, st["message"])
            emu.wait_for(lambda n=name, r=reason: r in dict((rr, t) for t, rr in events_for(emu, n)), timeout=5)
            kinds = {r: t for t, r in events_for(emu, name)}
            assert kinds[reason] == "Warning"


def test_cancel_deletes_job_and_pods_and_keeps_the_trainingjob(operator_env):
    emu = operator_env
    make_tj(emu, "run-1")
    make_tj(emu, "done")
    with running_operator():
        job = wait_job(emu)
        start_trainer_pod(emu, job, "run-1")
        done_job = wait_job(emu, "done")
        emu.set_job_status(NS, done_job["metadata"]["name"], {"succeeded": 1, "conditions": [
            {"type": "Complete", "status": "True", "lastTransitionTime": "2026-01-01T00:10:00Z"}]})
        done_before = wait_phase(emu, "done", "completed")["status"]

        emu.patch(TJS, NS, "run-1", {"spec": {"cancel": True}})
        emu.patch(TJS, NS, "done", {"spec": {"cancel": True}})
        st = wait_phase(emu, "run-1", "cancelled", "Cancelled")["status"]
        emu.wait_for(lambda: emu.get(JOBS, NS, "tj-run-1") is None, message="Job deleted")
        emu.wait_for(lambda: not emu.objects(PODS, NS, label_selector="training.laxai.io/trainingjob=run-1"),
                     message="pods deleted")
        time.sleep(0.5)  # give the operator the chance to (wrongly) act on the finished one
        assert status_of(emu, "done") == done_before  # cancelling a finished job changes nothing
        assert emu.get(JOBS, NS, "tj-done") is not None
    assert st["completionTime"] and emu.get(TJS, NS, "run-1") is not None  # kept for inspection
    assert creations(emu, JOBS, "tj-run-1") == 1  # and never recreated


def test_delete_removes_job_and_pods(operator_env):
    emu = operator_env
    make_tj(emu, "run-1")
    with running_operator():
        job = wait_job(emu)
        start_trainer_pod(emu, job, "run-1")
        emu.delete(TJS, NS, "run-1", propagation="Background")
        emu.wait_for(lambda: emu.get(TJS, NS, "run-1") is None, message="TrainingJob gone")
        emu.wait_for(lambda: emu.get(JOBS, NS, "tj-run-1") is None, message="Job garbage-collected")
        emu.wait_for(lambda: not emu.objects(PODS, NS), message="pods garbage-collected")
        time.sleep(0.3)
    assert creations(emu, JOBS, "tj-run-1") == 1  # the operator did not resurrect it


def test_suspend_and_deadline_pass_through(operator_env):
    emu = operator_env
    make_tj(emu, "run-1")
    with running_operator():
        wait_job(emu)
        emu.patch(TJS, NS, "run-1", {"spec": {"suspend": True, "activeDeadlineSeconds": 600}})
        emu.wait_for_object(JOBS, NS, "tj-run-1", lambda j: j["spec"].get("suspend") is True
                            and j["spec"].get("activeDeadlineSeconds") == 600)
        wait_phase(emu, "run-1", "pending", "Suspended")
        emu.patch(TJS, NS, "run-1", {"spec": {"suspend": False}})
        emu.wait_for_object(JOBS, NS, "tj-run-1", lambda j: j["spec"].get("suspend") is False)
        wait_phase(emu, "run-1", "pending", "JobCreated")


def test_restart_loses_nothing_and_duplicates_nothing(operator_env):
    emu = operator_env
    make_tj(emu, "live")
    make_tj(emu, "finished")
    with running_operator():
        live_job = wait_job(emu, "live")
        finished_job = wait_job(emu, "finished")
        wait_phase(emu, "live", "pending", "JobCreated")
    # Operator down: the trainer starts, the other Job completes and its Job is removed.
    emu.make_pod_for_job(live_job, phase="Running", container_statuses=trainer_state(running={}))
    emu.set_job_status(NS, "tj-finished", {"succeeded": 1, "conditions": [
        {"type": "Complete", "status": "True", "lastTransitionTime": "2026-01-01T00:10:00Z"}]})
    with running_operator():
        wait_phase(emu, "live", "running")
        finished = wait_phase(emu, "finished", "completed")["status"]
    emu.delete(JOBS, NS, "tj-finished", propagation="Background")
    with running_operator():  # a terminal job whose Job is gone: nothing is recreated
        time.sleep(1.0)
        assert emu.get(JOBS, NS, "tj-finished") is None
        assert status_of(emu, "finished")["history"] == finished["history"]
    assert creations(emu, JOBS, "tj-live") == 1 and creations(emu, JOBS, "tj-finished") == 1
    assert [j["metadata"]["uid"] for j in emu.objects(JOBS, NS)] == [live_job["metadata"]["uid"]]
    assert finished_job["metadata"]["uid"] != live_job["metadata"]["uid"]


def test_restart_between_job_creation_and_status_adopts_the_job(operator_env):
    """The previous operator died after creating the Job, before writing status: adopt, don't duplicate."""
    emu = operator_env
    tj = make_tj(emu, "run-1")
    manifest = build_job("run-1", NS, tj["metadata"]["uid"], TrainingJobSpec.model_validate(tj["spec"]),
                         OperatorSettings())
    emu.create(JOBS, manifest, namespace=NS)
    with running_operator():
        st = wait_phase(emu, "run-1", "pending", "JobCreated")["status"]
    assert st["jobName"] == "tj-run-1" and creations(emu, JOBS, "tj-run-1") == 1


def test_job_deleted_behind_the_operators_back_fails_instead_of_restarting(operator_env):
    emu = operator_env
    make_tj(emu, "run-1")
    with running_operator():
        wait_job(emu)
        wait_phase(emu, "run-1", "pending")
        emu.delete(JOBS, NS, "tj-run-1", propagation="Background")
        st = wait_phase(emu, "run-1", "failed", "JobDeleted")["status"]
        time.sleep(0.3)
    assert "tj-run-1" in st["message"] and creations(emu, JOBS, "tj-run-1") == 1


def test_startup_timeout_fails_a_stuck_pod_on_time(operator_env):
    """No event arrives after the pod got stuck: the operator's own timer fails it at the timeout."""
    emu = operator_env
    make_tj(emu, "stuck", gpus=4, startupTimeoutSeconds=10)
    make_tj(emu, "healthy", startupTimeoutSeconds=10)
    with running_operator():
        stuck = wait_job(emu, "stuck")
        healthy = wait_job(emu, "healthy")
        emu.make_pod_for_job(stuck, phase="Pending", status={"conditions": [
            {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
             "message": "0/2 nodes are available: 2 Insufficient nvidia.com/gpu."}]})
        emu.make_pod_for_job(healthy, phase="Running", container_statuses=trainer_state(running={}))
        started = time.monotonic()
        wait_phase(emu, "stuck", "pending", "Unschedulable")
        st = wait_phase(emu, "stuck", "failed", "Unschedulable", timeout=20)["status"]
        waited = time.monotonic() - started
        emu.wait_for(lambda: emu.get(JOBS, NS, "tj-stuck") is None, message="stuck Job deleted")
        assert status_of(emu, "healthy")["phase"] == "running"  # a running job is never timed out
    assert "startup timeout" in st["message"] and "Insufficient nvidia.com/gpu" in st["message"]
    assert waited < 15


def test_ttl_deletes_the_finished_trainingjob(operator_env):
    emu = operator_env
    make_tj(emu, "run-1", ttlSecondsAfterFinished=1)
    make_tj(emu, "keep")
    with running_operator():
        for name in ("run-1", "keep"):
            job = wait_job(emu, name)
            emu.set_job_status(NS, job["metadata"]["name"], {"succeeded": 1, "conditions": [
                {"type": "Complete", "status": "True", "lastTransitionTime": "2000-01-01T00:00:00Z"}]})
        wait_phase(emu, "keep", "completed")
        emu.wait_for(lambda: emu.get(TJS, NS, "run-1") is None, timeout=10, message="TTL deletion")
        emu.wait_for(lambda: emu.get(JOBS, NS, "tj-run-1") is None, message="its Job garbage-collected")
    assert emu.get(TJS, NS, "keep") is not None  # no TTL: kept


@pytest.mark.parametrize("phase", ["completed", "failed"])
def test_reporter_cannot_change_the_phase(operator_env, kube_api_client, phase):
    """The trainer's patch carries progress and metrics only; the phase stays the operator's."""
    import kubernetes

    emu = operator_env
    make_tj(emu, "run-1")
    with running_operator():
        job = wait_job(emu)
        start_trainer_pod(emu, job, "run-1")
        api = kubernetes.client.CustomObjectsApi(kube_api_client)
        KubernetesStatusReporter("run-1", NS, api).report(
            ProgressReport(progress=Progress(status=Phase(phase), current_epoch=2, message="done")))
        obj = emu.wait_for_object(TJS, NS, "run-1", lambda o: o["status"]["progress"].get("current_epoch") == 2)
    assert obj["status"]["phase"] == "running" and obj["status"]["progress"]["status"] == "running"


def test_preempted_attempt_is_retried_and_counted(operator_env):
    """Preemption: the pod ends with DisruptionTarget and exit 75 (checkpoint written); the Job makes a
    new pod (podFailurePolicy: Ignore); the TrainingJob shows Retrying, then running with attempts 2."""
    emu = operator_env
    make_tj(emu, "run-1")
    with running_operator():
        job = wait_job(emu)
        first, _ = start_trainer_pod(emu, job, "run-1")
        emu.set_pod_status(NS, first["metadata"]["name"], {
            "phase": "Failed",
            "conditions": [{"type": "DisruptionTarget", "status": "True", "reason": "PreemptionByScheduler"}],
            "containerStatuses": trainer_state(terminated={"exitCode": 75, "reason": "Error",
                                                           "message": "preempted: checkpoint at epoch 4"})})
        st = wait_phase(emu, "run-1", "pending", "Retrying")["status"]
        assert "exit code 75" in st["message"]
        st = start_trainer_pod(emu, job, "run-1")[1]["status"]
    assert st["attempts"] == 2
    assert [h["reason"] for h in st["history"]][-3:] == ["Running", "Retrying", "Running"]
