"""tests/support/job_controller.py: the simulated Job and TTL controllers walk the real in-between states."""

from __future__ import annotations

import datetime

import pytest

from tests.support.job_controller import JobController, failure_policy_action

NS = "default"
JOBS = "batch/v1/jobs"
PODS = "v1/pods"


def make_job(emu, name="train", *, backoff=3, ttl=None, suspend=False, account="trainer"):
    spec = {
        "completions": 1, "parallelism": 1, "backoffLimit": backoff, "suspend": suspend,
        "podReplacementPolicy": "Failed",
        "podFailurePolicy": {"rules": [
            {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
            {"action": "FailJob", "onExitCodes": {"containerName": "trainer", "operator": "In", "values": [3]}},
            {"action": "Count", "onExitCodes": {"containerName": "trainer", "operator": "In", "values": [1, 75]}},
        ]},
        "template": {"metadata": {"labels": {"app": "t"}}, "spec": {
            "restartPolicy": "Never", "serviceAccountName": account,
            "containers": [{"name": "trainer", "image": "reg/t:1"}]}},
    }
    if ttl is not None:
        spec["ttlSecondsAfterFinished"] = ttl
    return emu.create(JOBS, {"metadata": {"name": name, "namespace": NS}, "spec": spec})


def service_account(emu, name="trainer"):
    emu.create("v1/serviceaccounts", {"metadata": {"name": name, "namespace": NS}})


@pytest.fixture()
def controller(kube_emulator):
    with JobController(kube_emulator, lag=0.05, retry_lag=0.1) as c:
        yield c


def conditions(job):
    return [c["type"] for c in (job.get("status") or {}).get("conditions") or [] if c["status"] == "True"]


def job_states(emu, name="train"):
    """(active, succeeded, failed, True conditions) of every stored version of the Job."""
    out = []
    for version in emu.history(JOBS, NS, name):
        if version is not None:
            st = version.get("status") or {}
            state = (st.get("active"), st.get("succeeded"), st.get("failed"), tuple(conditions(version)))
            if not out or out[-1] != state:
                out.append(state)
    return out


def wait_conditions(emu, want, name="train"):
    return emu.wait_for_object(JOBS, NS, name, lambda j: set(want) <= set(conditions(j)), timeout=5)


def test_success_walks_pod_succeeded_then_success_criteria_met_then_complete(kube_emulator, controller):
    emu = kube_emulator
    service_account(emu)
    make_job(emu)
    pod = controller.trainer_pod(NS, "train")
    assert pod["metadata"]["name"].startswith("train-") and pod["status"]["phase"] == "Pending"
    assert pod["metadata"]["labels"]["job-name"] == "train" and pod["metadata"]["labels"]["app"] == "t"
    assert pod["metadata"]["ownerReferences"][0]["controller"] is True
    controller.run_trainer(NS, "train")
    emu.wait_for_object(JOBS, NS, "train", lambda j: j["status"].get("active") == 1, timeout=5)
    controller.finish_trainer(NS, "train", 0)
    job = wait_conditions(emu, ["Complete"])
    assert job["status"]["completionTime"] and job["status"]["startTime"]
    states = job_states(emu)
    i_pod_done = states.index((0, None, None, ()))  # the pod is Succeeded, the Job counts nothing yet
    i_criteria = states.index((0, 1, 0, ("SuccessCriteriaMet",)))
    i_complete = states.index((0, 1, 0, ("SuccessCriteriaMet", "Complete")))
    assert i_pod_done < i_criteria < i_complete
    assert len(emu.objects(PODS, NS)) == 1  # no second pod after success


def test_missing_service_account_is_only_a_failed_create_event_repeated(kube_emulator, controller):
    emu = kube_emulator
    make_job(emu)

    def failed_creates():
        return [e for e in emu.objects("v1/events", NS) if e["reason"] == "FailedCreate"]

    event = emu.wait_for(lambda: [e for e in failed_creates() if e["count"] >= 3], timeout=5)[0]
    assert event["type"] == "Warning" and event["involvedObject"]["kind"] == "Job"
    assert event["involvedObject"]["uid"] == emu.get(JOBS, NS, "train")["metadata"]["uid"]
    assert event["message"] == ('Error creating: pods "train-" is forbidden: error looking up service account '
                                'default/trainer: serviceaccount "trainer" not found')
    assert len(failed_creates()) == 1 and emu.objects(PODS, NS) == []  # aggregated; no pod at all
    assert conditions(emu.get(JOBS, NS, "train")) == []
    service_account(emu)  # fixed: the next retry creates the pod
    controller.trainer_pod(NS, "train", timeout=5)


def test_injected_refusal_quota(kube_emulator, controller):
    emu = kube_emulator
    service_account(emu)
    controller.refuse_pods('pods "train-" is forbidden: exceeded quota: gpu, requested: nvidia.com/gpu=1')
    make_job(emu)
    emu.wait_for(lambda: any("exceeded quota: gpu" in e.get("message", "") for e in emu.objects("v1/events", NS)),
                 timeout=5)
    assert emu.objects(PODS, NS) == []
    controller.refuse_pods(None)
    controller.trainer_pod(NS, "train", timeout=5)


def test_fail_job_exit_code_walks_failure_target_then_failed(kube_emulator, controller):
    emu = kube_emulator
    service_account(emu)
    make_job(emu)
    controller.run_trainer(NS, "train")
    controller.finish_trainer(NS, "train", 3, message="invalid config")
    job = wait_conditions(emu, ["Failed"])
    failure_target = next(c for c in job["status"]["conditions"] if c["type"] == "FailureTarget")
    assert failure_target["reason"] == "PodFailurePolicy" and "exit code 3 matching FailJob" in failure_target["message"]
    states = job_states(emu)
    assert states.index((0, 0, 1, ("FailureTarget",))) < states.index((0, 0, 1, ("FailureTarget", "Failed")))
    assert len(emu.objects(PODS, NS)) == 1  # no retry


def test_counted_failures_retry_until_the_backoff_limit(kube_emulator, controller):
    emu = kube_emulator
    service_account(emu)
    make_job(emu, backoff=1)
    first = controller.run_trainer(NS, "train")
    controller.finish_trainer(NS, "train", 1)
    second = controller.trainer_pod(NS, "train", timeout=5)  # a replacement, after the first is terminal
    assert second["metadata"]["name"] != first["metadata"]["name"]
    controller.run_trainer(NS, "train")
    controller.finish_trainer(NS, "train", 1)
    job = wait_conditions(emu, ["Failed"])
    assert job["status"]["failed"] == 2
    assert next(c for c in job["status"]["conditions"] if c["type"] == "Failed")["reason"] == "BackoffLimitExceeded"


def test_disruption_is_ignored_and_replaced(kube_emulator, controller):
    emu = kube_emulator
    service_account(emu)
    make_job(emu, backoff=0)
    first = controller.run_trainer(NS, "train")
    controller.finish_trainer(NS, "train", 75, disruption=True)
    second = controller.trainer_pod(NS, "train", timeout=5)
    assert second["metadata"]["name"] != first["metadata"]["name"]
    assert not (emu.get(JOBS, NS, "train")["status"].get("failed") or 0)


def test_ttl_controller_deletes_the_finished_job_and_its_pods(kube_emulator, controller):
    emu = kube_emulator
    service_account(emu)
    make_job(emu, ttl=0)
    controller.run_trainer(NS, "train")
    controller.finish_trainer(NS, "train", 0)
    emu.wait_for(lambda: emu.get(JOBS, NS, "train") is None, timeout=5, message="TTL deletion")
    assert emu.objects(PODS, NS) == []
    assert "Complete" in conditions([v for v in emu.history(JOBS, NS, "train") if v][-1])


def test_elapse_makes_a_long_run(kube_emulator, controller):
    emu = kube_emulator
    service_account(emu)
    make_job(emu)
    controller.run_trainer(NS, "train")
    controller.elapse(NS, "train", datetime.timedelta(hours=3))
    pod = controller.trainer_pod(NS, "train")
    now = datetime.datetime.now(datetime.UTC)
    for started in (emu.get(JOBS, NS, "train")["status"]["startTime"], pod["status"]["startTime"],
                    pod["status"]["containerStatuses"][0]["state"]["running"]["startedAt"]):
        age = now - datetime.datetime.fromisoformat(started.replace("Z", "+00:00"))
        assert datetime.timedelta(hours=2, minutes=59) < age < datetime.timedelta(hours=3, minutes=1)


def test_a_suspended_job_gets_no_pod(kube_emulator, controller):
    import time

    emu = kube_emulator
    service_account(emu)
    make_job(emu, suspend=True)
    time.sleep(0.4)
    assert emu.objects(PODS, NS) == [] and not (emu.get(JOBS, NS, "train").get("status") or {}).get("startTime")
    emu.patch(JOBS, NS, "train", {"spec": {"suspend": False}})
    controller.trainer_pod(NS, "train", timeout=5)


@pytest.mark.parametrize(("code", "conds", "action"), [
    (3, [], "FailJob"), (1, [], "Count"), (75, [{"type": "DisruptionTarget", "status": "True"}], "Ignore"),
    (137, [], "Count"),  # no rule matches: counted
])
def test_failure_policy_action(code, conds, action):
    job = {"spec": {"podFailurePolicy": {"rules": [
        {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
        {"action": "FailJob", "onExitCodes": {"containerName": "trainer", "operator": "In", "values": [3]}},
        {"action": "Count", "onExitCodes": {"containerName": "trainer", "operator": "In", "values": [1, 75]}}]}}}
    pod = {"metadata": {"name": "p", "namespace": NS}, "status": {"conditions": conds, "containerStatuses": [
        {"name": "trainer", "state": {"terminated": {"exitCode": code}}}]}}
    assert failure_policy_action(job, pod)[0] == action


def test_deleting_the_job_terminates_a_running_pod_gracefully(kube_emulator, controller):
    """The garbage collector's delete of a running pod leaves it terminating (deletionTimestamp,
    the grace period) until the trainer exits; then the kubelet deletes it. Not-started pods go at once."""
    emu = kube_emulator
    service_account(emu)
    make_job(emu)
    controller.run_trainer(NS, "train")
    name = controller.trainer_pod(NS, "train")["metadata"]["name"]
    emu.delete(JOBS, NS, "train", propagation="Background")
    pod = emu.get(PODS, NS, name)
    assert pod["metadata"]["deletionTimestamp"] and pod["metadata"]["deletionGracePeriodSeconds"] == 30
    assert pod["status"]["phase"] == "Running"
    controller.finish_trainer(NS, "train", 75)
    emu.wait_for(lambda: emu.get(PODS, NS, name) is None, timeout=2, message="pod deleted after the exit")
    make_job(emu, "pending")
    pending = controller.trainer_pod(NS, "pending")["metadata"]["name"]
    emu.delete(JOBS, NS, "pending", propagation="Background")
    assert emu.get(PODS, NS, pending) is None  # never started: no grace period


def test_a_pod_that_ignores_sigterm_is_killed_at_the_end_of_its_grace_period(kube_emulator):
    emu = kube_emulator
    service_account(emu)
    with JobController(emu, lag=0.05, grace_scale=60) as c:  # a 30 s grace period takes 0.5 s
        job = make_job(emu)
        c.run_trainer(NS, "train")
        name = c.trainer_pod(NS, "train")["metadata"]["name"]
        emu.delete(JOBS, NS, job["metadata"]["name"], propagation="Background")
        assert emu.get(PODS, NS, name)["metadata"]["deletionTimestamp"]
        emu.wait_for(lambda: emu.get(PODS, NS, name) is None, timeout=3, message="pod killed and deleted")
    last = [v for v in emu.history(PODS, NS, name) if v is not None][-1]
    assert last["status"]["phase"] == "Failed"
    assert last["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 137
