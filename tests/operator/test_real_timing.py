"""The real operator (KopfRunner) under real Job-controller timing: the simulated Job and TTL
controllers of tests/support/job_controller.py create the pods and walk the in-between states
(pod Succeeded before the Job counts it, SuccessCriteriaMet before Complete, FailedCreate
Events, TTL deletion); the tests only play the kubelet (the trainer's phase and exit code).

Each test reproduces a behaviour a real API server showed (issue 10, REAL_K8S_FACTS.md).
"""

from __future__ import annotations

import datetime
import time

import pytest

from tests.operator.conftest import (
    JOBS,
    NS,
    PODS,
    TJS,
    events_for,
    make_tj,
    running_operator,
    status_of,
    wait_phase,
)
from tests.support.job_controller import JobController

JOB = "tj-run-1"


@pytest.fixture()
def controller(operator_env):
    """Job controller lag 0.3 s per step: the operator sees every in-between state."""
    with JobController(operator_env, lag=0.3, retry_lag=0.5) as c:
        yield c


def trainer_account(emu, name="laxai-trainer"):
    emu.create("v1/serviceaccounts", {"metadata": {"name": name, "namespace": NS}})


def phases(status):
    """The phases of the history with repeats folded: the path the job took."""
    out = []
    for entry in status["history"]:
        if not out or out[-1] != entry["phase"]:
            out.append(entry["phase"])
    return out


def run_to_running(emu, controller):
    controller.trainer_pod(NS, JOB)
    controller.run_trainer(NS, JOB)
    wait_phase(emu, "run-1", "running")


def test_a_run_longer_than_its_startup_timeout_completes(operator_env, controller):
    """Item 2: the Job's startTime is hours old when the pod turns Succeeded before the Job is
    Complete; the startup timeout must not count that, the run completes."""
    emu = operator_env
    trainer_account(emu)
    make_tj(emu, "run-1", startupTimeoutSeconds=10)
    with running_operator():
        run_to_running(emu, controller)
        controller.elapse(NS, JOB, datetime.timedelta(hours=2))
        time.sleep(0.5)
        controller.finish_trainer(NS, JOB, 0)
        st = wait_phase(emu, "run-1", "completed", "Completed")["status"]
        emu.wait_for_object(JOBS, NS, JOB, lambda j: any(c["type"] == "Complete" for c in j["status"].get(
            "conditions") or []), timeout=5)
    assert phases(st) == ["pending", "running", "completed"]
    assert emu.get(JOBS, NS, JOB) is not None  # the Job was not deleted as timed out


def test_a_successful_run_does_not_flap_back_to_pending(operator_env, controller):
    """Item 6: running -> completed, with no pending/JobCreated (nor its Event) in between."""
    emu = operator_env
    trainer_account(emu)
    make_tj(emu, "run-1")
    with running_operator():
        run_to_running(emu, controller)
        controller.finish_trainer(NS, JOB, 0)
        st = wait_phase(emu, "run-1", "completed")["status"]
        emu.wait_for_object(JOBS, NS, JOB, lambda j: any(c["type"] == "Complete" for c in j["status"].get(
            "conditions") or []), timeout=5)
        time.sleep(0.5)  # the Job's last updates have been seen
        emu.wait_for(lambda: ("Normal", "Completed") in events_for(emu, "run-1"), timeout=5, message="events")
        evs = events_for(emu, "run-1")
    reasons = [h["reason"] for h in status_of(emu, "run-1")["history"]]
    assert phases(st) == ["pending", "running", "completed"]
    assert "JobCreated" not in reasons[reasons.index("Running"):]
    after_running = [r for _, r in evs[evs.index(("Normal", "Running")):]]
    assert after_running == ["Running", "Completed"]


def test_a_cancel_after_the_trainer_exited_0_keeps_the_result(operator_env, controller):
    """Item 5: cancel set just after exit 0 (before the Job's Complete): completed, Job kept."""
    emu = operator_env
    trainer_account(emu)
    make_tj(emu, "run-1")
    with running_operator():
        run_to_running(emu, controller)
        controller.finish_trainer(NS, JOB, 0)
        emu.patch(TJS, NS, "run-1", {"spec": {"cancel": True}})
        st = emu.wait_for_object(TJS, NS, "run-1", lambda o: (o.get("status") or {}).get("phase") in (
            "completed", "cancelled"))["status"]
        time.sleep(1.0)  # the Job controller finishes the Job; nothing may delete it
        job = emu.get(JOBS, NS, JOB)
    assert (st["phase"], st["reason"]) == ("completed", "Completed")
    assert status_of(emu, "run-1")["phase"] == "completed"
    assert job is not None and any(c["type"] == "Complete" for c in job["status"]["conditions"])


def test_a_missing_service_account_shows_at_once_and_fails_in_bounded_time(operator_env, controller):
    """Item 4: the Job controller's FailedCreate Event is the only trace; the status shows its
    message within seconds and the job fails (at the startup timeout, here 10 s; never more than
    POD_CREATION_TIMEOUT) as PodCreationFailed, not as 'waiting for its pod'."""
    emu = operator_env
    make_tj(emu, "run-1", startupTimeoutSeconds=10)
    with running_operator():
        emu.wait_for(lambda: [e for e in emu.objects("v1/events", NS) if e["reason"] == "FailedCreate"],
                     timeout=10, message="the Job controller's FailedCreate Event")
        # Shown within seconds of the Event (the Job itself does not change: only the Event says it).
        st = wait_phase(emu, "run-1", "pending", "PodCreationFailed", timeout=4)["status"]
        assert 'error looking up service account default/laxai-trainer: serviceaccount "laxai-trainer" not ' \
               'found' in st["message"]
        st = wait_phase(emu, "run-1", "failed", "PodCreationFailed", timeout=15)["status"]
        emu.wait_for(lambda: emu.get(JOBS, NS, JOB) is None, timeout=5, message="Job deleted")
        emu.wait_for(lambda: ("Warning", "PodCreationFailed") in events_for(emu, "run-1"), timeout=5,
                     message="Warning event")
    assert "no trainer pod could be created within 10s" in st["message"] and "laxai-trainer" in st["message"]


def test_a_quota_refusal_shows_its_message(operator_env, controller):
    emu = operator_env
    trainer_account(emu)
    controller.refuse_pods('pods "tj-run-1-" is forbidden: exceeded quota: gpus, requested: nvidia.com/gpu=1, '
                           'used: nvidia.com/gpu=8, limited: nvidia.com/gpu=8')
    make_tj(emu, "run-1")
    with running_operator():
        st = wait_phase(emu, "run-1", "pending", "PodCreationFailed", timeout=5)["status"]
        assert "exceeded quota: gpus" in st["message"]
        controller.refuse_pods(None)  # quota freed: the Job controller's next retry gets its pod
        controller.trainer_pod(NS, JOB, timeout=10)
        st = wait_phase(emu, "run-1", "pending", "Starting", timeout=5)["status"]


def test_a_success_while_the_operator_is_down_is_recorded_before_the_ttl(operator_env, controller):
    """Item 7: the trainer exits 0 while the operator is stopped; spec.ttlSecondsAfterFinished=0.
    The TTL belongs to the TrainingJob: the result is recorded first, then the TrainingJob goes."""
    emu = operator_env
    trainer_account(emu)
    make_tj(emu, "run-1", ttlSecondsAfterFinished=0)
    with running_operator():
        run_to_running(emu, controller)
    controller.finish_trainer(NS, JOB, 0)

    def finished_or_gone():
        job = emu.get(JOBS, NS, JOB)
        return job is None or any(c["type"] == "Complete" for c in (job.get("status") or {}).get("conditions") or [])

    emu.wait_for(finished_or_gone, timeout=5, message="the Job controller finishing the Job")
    time.sleep(1.0)  # time for a TTL controller to act on a Job TTL
    assert emu.get(JOBS, NS, JOB) is not None, "the TTL controller deleted the Job before its result was read"
    with running_operator():
        emu.wait_for(lambda: emu.get(TJS, NS, "run-1") is None, timeout=10, message="TrainingJob TTL deletion")
    versions = [v for v in emu.history(TJS, NS, "run-1") if v is not None]
    recorded = [(v.get("status") or {}).get("phase") for v in versions]
    assert recorded[-1] == "completed" and "failed" not in recorded


def test_a_cancel_is_cancelled_only_when_the_trainer_has_checkpointed_and_exited(operator_env, controller):
    """Issue 13 item 4: deleting the Job leaves the trainer pod terminating (SIGTERM, checkpoint);
    the TrainingJob stays running with "Cancelling: …" until the trainer exits, then is cancelled."""
    emu = operator_env
    trainer_account(emu)
    make_tj(emu, "run-1")
    with running_operator():
        run_to_running(emu, controller)
        pod_name = controller.trainer_pod(NS, JOB)["metadata"]["name"]
        emu.patch(TJS, NS, "run-1", {"spec": {"cancel": True}})
        st = wait_phase(emu, "run-1", "running", "CancelRequested")["status"]
        assert st["message"].startswith("Cancelling:") and not st.get("completionTime")
        emu.wait_for(lambda: emu.get(JOBS, NS, JOB) is None, timeout=5, message="Job deleted")
        pod = emu.wait_for_object(PODS, NS, pod_name, lambda p: p["metadata"].get("deletionTimestamp"), timeout=5)
        assert pod["metadata"]["deletionGracePeriodSeconds"] == 30  # the pod's default grace period
        time.sleep(1.0)  # the pod is still stopping: nothing may call the job cancelled yet
        assert (status_of(emu, "run-1")["phase"], status_of(emu, "run-1")["reason"]) == ("running", "CancelRequested")
        controller.finish_trainer(NS, JOB, 75, message="Cancelled on request: checkpoint at epoch 1, step 3")
        st = wait_phase(emu, "run-1", "cancelled", "Cancelled", timeout=5)["status"]
        emu.wait_for(lambda: emu.get(PODS, NS, pod_name) is None, timeout=5, message="the kubelet deleting the pod")
    assert [h["reason"] for h in st["history"]][-2:] == ["CancelRequested", "Cancelled"]
    assert phases(st) == ["pending", "running", "cancelled"]


def test_a_trainer_that_ignores_sigterm_is_cancelled_after_the_kubelets_kill(operator_env):
    """A stuck trainer: at the end of its grace period the kubelet kills it (exit 137); then cancelled."""
    emu = operator_env
    trainer_account(emu)
    make_tj(emu, "run-1")
    with JobController(emu, lag=0.3, grace_scale=15) as controller, running_operator():  # 30 s grace -> 2 s
        run_to_running(emu, controller)
        pod_name = controller.trainer_pod(NS, JOB)["metadata"]["name"]
        emu.patch(TJS, NS, "run-1", {"spec": {"cancel": True}})
        wait_phase(emu, "run-1", "running", "CancelRequested")
        wait_phase(emu, "run-1", "cancelled", "Cancelled", timeout=8)
    last = [v for v in emu.history(PODS, NS, pod_name) if v is not None][-1]
    assert last["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 137
