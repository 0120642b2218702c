"""laxai_operator.status_mapping: Job + pods -> TrainingJob status, table-driven."""

from datetime import UTC, datetime, timedelta

import pytest

from laxai_operator.resource import HISTORY_LIMIT, HistoryEntry, Phase, TrainingJobSpec, TrainingJobStatus
from laxai_operator.status_mapping import (
    CANCEL_MARGIN,
    decide,
    invalid_spec,
    status_patch,
    stuck_reason,
    ttl_deadline,
)
from tests.operator.k8s_objects import T0, cond, job, pod, unschedulable

NOW = datetime(2026, 1, 1, 0, 5, tzinfo=UTC)  # T0 + 5 min
LATER = "2026-01-01T00:03:00Z"


def spec(**kw):
    return TrainingJobSpec.model_validate({"tenant_id": "t", **kw})


def run(status=None, sp=None, j=None, pods=(), now=NOW, generation=1, events=()):
    return decide(status or TrainingJobStatus(), sp or spec(), generation, j, list(pods), now, "tj-run-1",
                  list(events))


NO_SA = ('Error creating: pods "tj-run-1-" is forbidden: error looking up service account ns/laxai-trainer: '
         'serviceaccount "laxai-trainer" not found')


def failed_create(message=NO_SA, at="2026-01-01T00:04:00Z", first=T0):
    """The Warning Event the Job controller posts (again and again) when pod creation is refused."""
    return {"type": "Warning", "reason": "FailedCreate", "message": message, "count": 3,
            "involvedObject": {"kind": "Job", "name": "tj-run-1", "uid": "job-uid"},
            "firstTimestamp": first, "lastTimestamp": at}


OOM = {"exitCode": 137, "reason": "OOMKilled", "message": ""}
CONFIG = {"exitCode": 3, "reason": "Error", "message": "invalid config: training_kwargs.batch_size: too small\n"}
PREEMPTED = {"exitCode": 75, "reason": "Error", "message": "preempted after checkpoint"}
CRASH = {"exitCode": 1, "reason": "Error", "message": "Traceback ... RuntimeError: boom"}

EXITED_0 = {"exitCode": 0, "reason": "Completed", "finishedAt": LATER}
RECENT = "2026-01-01T00:04:00Z"  # a minute before NOW
OLD_START = "2025-12-31T20:00:00Z"  # a long run: the Job started hours before NOW
#: Events on the Job, by case id (the Job controller's FailedCreate reports).
CASE_EVENTS = {
    "pod-creation-refused-no-sa": [failed_create()],
    "pod-creation-refused-quota": [failed_create('Error creating: pods "tj-run-1-" is forbidden: exceeded quota: '
                                                 'gpu, requested: nvidia.com/gpu=1, used: nvidia.com/gpu=4')],
    "retry-refused-by-admission": [failed_create('Error creating: admission webhook "policy.example" denied the '
                                                 'request: no GPUs for tenant1', at=LATER)],
    "refusal-older-than-the-pod": [failed_create(at="2026-01-01T00:00:30Z")],
}

CASES = [
    # (id, job, pods, spec, phase, reason, message fragment)
    # In-between states of real controller timing (REAL_K8S_FACTS.md):
    ("pod-succeeded-job-not-counted-yet", job(startTime=OLD_START),
     [pod(phase="Succeeded", terminated=EXITED_0)], {}, Phase.completed, "Completed", "exited 0"),
    ("pod-succeeded-job-counted-no-condition", job(startTime=OLD_START, succeeded=1),
     [pod(phase="Succeeded", terminated=EXITED_0)], {}, Phase.completed, "Completed", "exited 0"),
    ("pod-succeeded-pods-gone-success-criteria-met", job(succeeded=1, conditions=[cond("SuccessCriteriaMet")]),
     [], {}, Phase.completed, "Completed", "finished"),
    ("retrying-failed-pod-gone", job(failed=1), [], {}, Phase.pending, "Retrying",
     "the Job retries it"),
    ("pod-creation-refused-no-sa", job(created=RECENT), [], {}, Phase.pending, "PodCreationFailed",
     'serviceaccount "laxai-trainer" not found'),
    ("pod-creation-refused-quota", job(created=RECENT), [], {}, Phase.pending, "PodCreationFailed", "exceeded quota: gpu"),
    ("retry-refused-by-admission", job(failed=1),
     [pod(phase="Failed", terminated={**PREEMPTED, "finishedAt": RECENT})], {},
     Phase.pending, "PodCreationFailed", "denied the request"),
    ("refusal-older-than-the-pod", job(active=1), [pod(created="2026-01-01T00:01:00Z")], {}, Phase.pending,
     "Starting", "is starting"),
    ("no-pod-yet", job(), [], {}, Phase.pending, "JobCreated", "waiting for its pod"),
    ("pod-starting", job(active=1), [pod()], {}, Phase.pending, "Starting", "is starting"),
    ("unschedulable-gpu", job(active=1), [pod(conditions=[unschedulable()])], {}, Phase.pending,
     "Unschedulable", "Insufficient nvidia.com/gpu"),
    ("image-pull-backoff", job(active=1),
     [pod(waiting={"reason": "ImagePullBackOff", "message": 'Back-off pulling image "reg/nope:1"'})], {},
     Phase.pending, "ImagePullBackOff", "reg/nope:1"),
    ("err-image-pull", job(active=1), [pod(waiting={"reason": "ErrImagePull", "message": "not found"})], {},
     Phase.pending, "ErrImagePull", "not found"),
    ("config-error-waiting", job(active=1),
     [pod(waiting={"reason": "CreateContainerConfigError", "message": 'secret "wandb" not found'})], {},
     Phase.pending, "CreateContainerConfigError", 'secret "wandb" not found'),
    ("container-creating", job(active=1), [pod(waiting={"reason": "ContainerCreating"})], {},
     Phase.pending, "Starting", "is starting"),
    ("running", job(active=1), [pod(phase="Running", start=LATER, running=True)], {}, Phase.running,
     "Running", "is running"),
    ("suspended", job(suspend=True), [], {"suspend": True}, Phase.pending, "Suspended", "suspend"),
    ("queued", job(suspend=True, conditions=[cond("Suspended", "JobSuspended")]), [], {"queueName": "q"},
     Phase.pending, "Queued", "Kueue"),
    ("retrying-after-preemption", job(failed=1), [pod(phase="Failed", terminated=PREEMPTED)], {},
     Phase.pending, "Retrying", "exit code 75 (preempted"),
    ("completed", job(succeeded=1, completionTime=LATER, conditions=[cond("Complete", at=LATER)]),
     [pod(phase="Succeeded", terminated={"exitCode": 0})], {}, Phase.completed, "Completed", "finished"),
    ("success-criteria-met", job(conditions=[cond("SuccessCriteriaMet", at=LATER)]), [], {}, Phase.completed,
     "Completed", "finished"),
    ("config-error", job(failed=1, conditions=[cond("Failed", "PodFailurePolicy", "exit code 3 matching FailJob")]),
     [pod(phase="Failed", terminated=CONFIG)], {}, Phase.failed, "TrainerConfigError", "batch_size: too small"),
    ("config-error-failure-target", job(conditions=[cond("FailureTarget", "PodFailurePolicy")]),
     [pod(phase="Failed", terminated=CONFIG)], {}, Phase.failed, "TrainerConfigError", "invalid config"),
    ("oom", job(failed=4, conditions=[cond("Failed", "BackoffLimitExceeded", "Job has reached the specified backoff limit")]),
     [pod("p1", "Failed", terminated=OOM)], {"resources": {"memory": "16Gi"}}, Phase.failed, "OOMKilled",
     "memory limit 16Gi"),
    ("backoff-limit", job(failed=4, conditions=[cond("Failed", "BackoffLimitExceeded")]),
     [pod("p1", "Failed", terminated=CRASH, created=T0), pod("p2", "Failed", terminated=CRASH, created=LATER)],
     {"backoffLimit": 3}, Phase.failed, "BackoffLimitExceeded", "backoffLimit (3)"),
    ("deadline", job(conditions=[cond("Failed", "DeadlineExceeded", "Job was active longer than specified deadline")]),
     [], {"activeDeadlineSeconds": 3600}, Phase.failed, "DeadlineExceeded", "activeDeadlineSeconds (3600s"),
    ("deadline-beats-exit-code", job(conditions=[cond("Failed", "DeadlineExceeded")]),
     [pod(phase="Failed", terminated={"exitCode": 143, "reason": "Error"})], {"activeDeadlineSeconds": 60},
     Phase.failed, "DeadlineExceeded", "60s"),
    ("other-failure", job(conditions=[cond("Failed", "SomethingElse", "odd")]), [], {}, Phase.failed,
     "SomethingElse", "odd"),
    # A cancel keeps the phase until the trainer pod has stopped (test_cancel_waits_for_the_trainer_pod).
    ("cancel", job(active=1), [pod(phase="Running", running=True)], {"cancel": True}, Phase.running,
     "CancelRequested", "Cancelling: the trainer is writing its checkpoint"),
]


@pytest.mark.parametrize(("case", "j", "pods", "sp", "phase", "reason", "fragment"), CASES, ids=[c[0] for c in CASES])
def test_mapping(case, j, pods, sp, phase, reason, fragment):
    d = run(sp=spec(**sp), j=j, pods=pods, events=CASE_EVENTS.get(case, ()))
    assert (d.status.phase, d.status.reason) == (phase, reason)
    assert fragment in d.status.message
    assert d.status.progress.status == phase
    assert d.status.observed_generation == 1
    assert d.transition is not None and d.transition.reason == reason
    assert d.status.history[-1] == d.transition
    assert d.status.completion_time is not None if phase.terminal else d.status.completion_time is None
    assert d.delete_job == (case == "cancel")
    conds = {c.type: c for c in d.status.conditions}
    expected_type = {"pending": "Pending", "running": "Running", "completed": "Succeeded",
                     "failed": "Failed", "cancelled": "Cancelled"}[phase.value]
    assert conds[expected_type].status == "True" and conds[expected_type].reason == reason
    (kind, ev_reason, _), = d.events
    assert ev_reason == reason
    assert kind == ("Normal" if reason in {"JobCreated", "Starting", "Running", "Suspended", "Queued",
                                           "Completed", "Cancelled", "CancelRequested"} else "Warning")


def test_cancel_after_the_trainer_exited_0_is_too_late():
    """The cancel came after exit 0 (before the Job's Complete): the model is trained and saved."""
    for j in (job(), job(succeeded=1, conditions=[cond("SuccessCriteriaMet")]),
              job(succeeded=1, conditions=[cond("Complete")])):
        d = run(sp=spec(cancel=True), j=j, pods=[pod(phase="Succeeded", terminated=EXITED_0)])
        assert (d.status.phase, d.status.reason, d.delete_job) == (Phase.completed, "Completed", False)
    d = run(sp=spec(cancel=True), j=job(active=1), pods=[pod(phase="Running", running=True)])
    assert (d.status.phase, d.status.reason, d.delete_job) == (Phase.running, "CancelRequested", True)
    # Exit 0 seen while the cancel is being carried out (the Job already deleted): still the result.
    d = run(status=d.status, sp=spec(cancel=True), j=None, pods=[pod(phase="Succeeded", terminated=EXITED_0)],
            now=NOW + timedelta(seconds=2))
    assert (d.status.phase, d.status.reason, d.delete_job) == (Phase.completed, "Completed", False)


def stopping(grace=None, **kw):
    """A running trainer pod being deleted gracefully (deletionTimestamp set, SIGTERM sent)."""
    p = pod(phase="Running", running=True, **kw)
    p["metadata"]["deletionTimestamp"] = "2026-01-01T00:05:30Z"
    if grace is not None:
        p["spec"] = {"terminationGracePeriodSeconds": grace}
    return p


def test_cancel_waits_for_the_trainer_pod_to_stop():
    """Cancelling keeps the phase (reason CancelRequested) until the pod has checkpointed and exited."""
    sp = spec(cancel=True)
    running = run(j=job(active=1), pods=[pod(phase="Running", running=True)]).status
    first = run(status=running, sp=sp, j=job(active=1), pods=[pod(phase="Running", running=True)])
    assert (first.status.phase, first.status.reason, first.delete_job) == (Phase.running, "CancelRequested", True)
    assert first.status.progress.status == Phase.running and first.status.completion_time is None
    assert first.recheck_at == NOW + timedelta(seconds=30 + CANCEL_MARGIN)  # the pod default grace period
    # The Job is gone, the pod still stopping: no change, no new history entry, no delete.
    later = NOW + timedelta(seconds=10)
    still = run(status=first.status, sp=sp, j=None, pods=[stopping()], now=later)
    assert (still.status.phase, still.status.reason, still.delete_job) == (Phase.running, "CancelRequested", False)
    assert still.transition is None and still.recheck_at == first.recheck_at
    # The trainer wrote its checkpoint and exited 75: cancelled, saying how it stopped.
    exited = pod(phase="Failed", terminated=PREEMPTED)
    exited["metadata"]["deletionTimestamp"] = "2026-01-01T00:05:30Z"
    done = run(status=still.status, sp=sp, j=None, pods=[exited], now=later)
    assert (done.status.phase, done.status.reason) == (Phase.cancelled, "Cancelled")
    assert "exit code 75" in done.status.message and done.status.completion_time == "2026-01-01T00:05:10Z"
    assert [h.reason for h in done.status.history] == ["Running", "CancelRequested", "Cancelled"]
    gone = run(status=still.status, sp=sp, j=None, pods=[], now=later)
    assert (gone.status.phase, gone.status.reason) == (Phase.cancelled, "Cancelled")


def test_a_stuck_pod_cannot_keep_a_job_cancelling_past_its_grace_period():
    sp = spec(cancel=True)
    first = run(sp=sp, j=job(active=1), pods=[stopping(grace=60)])
    bound = NOW + timedelta(seconds=60 + CANCEL_MARGIN)
    assert first.recheck_at == bound  # read from the pod's terminationGracePeriodSeconds
    before = run(status=first.status, sp=sp, j=None, pods=[stopping(grace=60)], now=bound - timedelta(seconds=1))
    assert before.status.reason == "CancelRequested" and before.recheck_at == bound
    after = run(status=first.status, sp=sp, j=None, pods=[stopping(grace=60)], now=bound)
    assert (after.status.phase, after.status.reason) == (Phase.cancelled, "Cancelled")
    assert f"did not stop within {60 + CANCEL_MARGIN}s" in after.status.message


def test_a_finishing_run_is_never_timed_out_by_the_age_of_the_job():
    running = run(j=job(active=1, startTime=OLD_START), pods=[pod(phase="Running", running=True, start=OLD_START)],
                  sp=spec(startupTimeoutSeconds=10)).status
    d = run(status=running, sp=spec(startupTimeoutSeconds=10), j=job(startTime=OLD_START),
            pods=[pod(phase="Succeeded", terminated=EXITED_0)], now=NOW + timedelta(seconds=1))
    assert (d.status.phase, d.status.reason) == (Phase.completed, "Completed")
    assert d.status.completion_time == LATER  # when the trainer exited
    assert [h.phase for h in d.status.history] == [Phase.running, Phase.completed]


def test_pending_after_a_run_times_out_from_when_it_stopped_running():
    """The pod vanished (evicted, garbage-collected) with no replacement yet: the stretch starts now."""
    sp = spec(startupTimeoutSeconds=60)
    running = run(j=job(active=1, startTime=OLD_START), pods=[pod(phase="Running", running=True)], sp=sp).status
    d = run(status=running, sp=sp, j=job(startTime=OLD_START), now=NOW + timedelta(seconds=5))
    assert d.status.phase == Phase.pending and d.recheck_at == NOW + timedelta(seconds=65)
    later = run(status=d.status, sp=sp, j=job(startTime=OLD_START), now=NOW + timedelta(seconds=64))
    assert later.status.phase == Phase.pending and later.recheck_at == NOW + timedelta(seconds=65)
    assert run(status=d.status, sp=sp, j=job(startTime=OLD_START),
               now=NOW + timedelta(seconds=65)).status.reason == "StartupTimeout"


def test_retrying_times_out_from_the_failed_attempts_end_not_the_jobs_start():
    sp = spec(startupTimeoutSeconds=60)
    failed = pod(phase="Failed", terminated={**PREEMPTED, "finishedAt": "2026-01-01T00:04:30Z"})
    d = run(sp=sp, j=job(startTime=OLD_START, failed=1), pods=[failed])
    assert (d.status.phase, d.status.reason) == (Phase.pending, "Retrying")
    assert d.recheck_at == datetime(2026, 1, 1, 0, 5, 30, tzinfo=UTC)
    late = run(sp=sp, j=job(startTime=OLD_START, failed=1), pods=[failed], now=datetime(2026, 1, 1, 0, 5, 30,
                                                                                       tzinfo=UTC))
    assert (late.status.phase, late.status.reason) == (Phase.failed, "StartupTimeout")


@pytest.mark.parametrize(("startup", "bound"), [(900, 120), (60, 60)])
def test_pod_creation_failure_fails_after_a_bounded_time(startup, bound):
    sp = spec(startupTimeoutSeconds=startup)
    created = datetime(2026, 1, 1, tzinfo=UTC)
    before = run(sp=sp, j=job(), events=[failed_create()], now=created + timedelta(seconds=bound - 1))
    assert before.status.reason == "PodCreationFailed" and before.recheck_at == created + timedelta(seconds=bound)
    after = run(sp=sp, j=job(), events=[failed_create()], now=created + timedelta(seconds=bound))
    assert (after.status.phase, after.status.reason) == (Phase.failed, "PodCreationFailed")
    assert f"within {bound}s" in after.status.message and 'serviceaccount "laxai-trainer"' in after.status.message
    assert after.delete_job


def test_completion_time_comes_from_the_job():
    d = run(j=job(succeeded=1, completionTime=LATER, conditions=[cond("Complete", at=LATER)]))
    assert d.status.completion_time == LATER


def test_start_time_is_when_the_pod_first_ran_and_sticks():
    d = run(j=job(active=1), pods=[pod(phase="Running", start=LATER, running=True)])
    assert d.status.start_time == LATER
    d2 = run(status=d.status, j=job(failed=1), pods=[pod(phase="Failed", terminated=PREEMPTED, start=LATER)])
    assert d2.status.start_time == LATER and d2.status.phase == Phase.pending


@pytest.mark.parametrize("terminal", [Phase.completed, Phase.failed, Phase.cancelled])
@pytest.mark.parametrize(
    "j,pods,sp",
    [
        (None, [], {}),
        (job(active=1), [pod(phase="Running", running=True)], {}),
        (job(), [], {"cancel": True}),
        (job(conditions=[cond("Failed", "BackoffLimitExceeded")]), [], {}),
    ],
)
def test_terminal_phases_are_final(terminal, j, pods, sp):
    status = TrainingJobStatus(phase=terminal, reason="X", completion_time=T0, job_name="tj-run-1")
    d = run(status=status, sp=spec(**sp), j=j, pods=pods)
    assert d.status == status and d.transition is None and not d.delete_job and not d.events


def test_job_deleted_under_a_running_trainingjob_fails_it():
    status = TrainingJobStatus(phase=Phase.running, reason="Running", job_name="tj-run-1")
    d = run(status=status, j=None)
    assert (d.status.phase, d.status.reason) == (Phase.failed, "JobDeleted")
    assert "tj-run-1" in d.status.message


def test_no_job_and_none_made_yet_is_pending():
    d = run(j=None)
    assert (d.status.phase, d.status.reason, d.status.job_name) == (Phase.pending, "Creating", None)


def test_cancel_without_a_job_deletes_nothing():
    d = run(sp=spec(cancel=True), j=None)
    assert d.status.phase == Phase.cancelled and not d.delete_job


# ---- startup timeout -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pods", "j", "reason"),
    [
        ([pod(conditions=[unschedulable()])], job(active=1), "Unschedulable"),
        ([pod(waiting={"reason": "ImagePullBackOff", "message": "nope"})], job(active=1), "ImagePullBackOff"),
        ([pod()], job(active=1), "StartupTimeout"),
        ([], job(), "StartupTimeout"),
    ],
)
def test_startup_timeout_fails_with_the_precise_reason(pods, j, reason):
    sp = spec(startupTimeoutSeconds=60)
    before = run(sp=sp, j=j, pods=pods, now=datetime(2026, 1, 1, 0, 0, 59, tzinfo=UTC))
    assert before.status.phase == Phase.pending and not before.delete_job
    assert before.recheck_at == datetime(2026, 1, 1, 0, 1, tzinfo=UTC)
    after = run(sp=sp, j=j, pods=pods, now=datetime(2026, 1, 1, 0, 1, tzinfo=UTC))
    assert (after.status.phase, after.status.reason) == (Phase.failed, reason)
    assert "startup timeout" in after.status.message and "60s" in after.status.message
    assert after.delete_job


def test_startup_timeout_counts_from_the_current_pod_not_the_first():
    sp = spec(startupTimeoutSeconds=60)
    pods = [pod("old", "Failed", created=T0, terminated=PREEMPTED), pod("new", created=LATER)]
    d = run(sp=sp, j=job(active=1, failed=1), pods=pods, now=datetime(2026, 1, 1, 0, 3, 30, tzinfo=UTC))
    assert d.status.phase == Phase.pending and d.recheck_at == datetime(2026, 1, 1, 0, 4, tzinfo=UTC)


@pytest.mark.parametrize(
    ("j", "pods"),
    [
        (job(suspend=True), []),  # suspended/queued: waiting is the point
        (job(active=1), [pod(phase="Running", running=True)]),  # healthy long run: never timed out
    ],
)
def test_startup_timeout_does_not_apply(j, pods):
    d = run(sp=spec(startupTimeoutSeconds=10, suspend=j["spec"]["suspend"]), j=j, pods=pods,
            now=NOW + timedelta(days=3))
    assert not d.status.phase.terminal and d.recheck_at is None


def test_suspended_job_resumed_times_out_from_its_start_time():
    j = job(startTime="2026-01-01T00:04:00Z")  # resumed at 00:04
    d = run(sp=spec(startupTimeoutSeconds=120), j=j)
    assert d.status.phase == Phase.pending and d.recheck_at == datetime(2026, 1, 1, 0, 6, tzinfo=UTC)


# ---- history, conditions, attempts ----------------------------------------------------------


def test_lifecycle_history_and_conditions():
    s = TrainingJobStatus()
    steps = [
        (job(), []),
        (job(active=1), [pod(conditions=[unschedulable()])]),
        (job(active=1), [pod(phase="Running", running=True, start=LATER)]),
        (job(active=1), [pod(phase="Running", running=True, start=LATER)]),  # no change
        (job(succeeded=1, completionTime=LATER, conditions=[cond("Complete", at=LATER)]), []),
    ]
    for i, (j, pods) in enumerate(steps):
        s = run(status=s, j=j, pods=pods, now=NOW + timedelta(seconds=i)).status
    assert [(h.phase, h.reason) for h in s.history] == [
        (Phase.pending, "JobCreated"), (Phase.pending, "Unschedulable"), (Phase.running, "Running"),
        (Phase.completed, "Completed"),
    ]
    conds = {c.type: c for c in s.conditions}
    assert conds["Succeeded"].status == "True"
    assert conds["Running"].status == "False" and conds["Pending"].status == "False"
    # Pending became False when running started, and stayed so: its transition time is that moment.
    assert conds["Pending"].last_transition_time == "2026-01-01T00:05:02Z"


def test_same_phase_new_reason_keeps_condition_transition_time():
    s = run(j=job(), now=NOW).status
    s = run(status=s, j=job(active=1), pods=[pod(conditions=[unschedulable()])], now=NOW + timedelta(seconds=30)).status
    (pending,) = s.conditions
    assert pending.reason == "Unschedulable" and pending.last_transition_time == "2026-01-01T00:05:00Z"


def test_history_is_bounded_to_the_latest():
    history = [HistoryEntry(phase=Phase.pending, time=T0, reason=f"R{i}") for i in range(HISTORY_LIMIT)]
    s = TrainingJobStatus(history=history, reason="R19")
    d = run(status=s, j=job(active=1), pods=[pod(phase="Running", running=True)])
    assert len(d.status.history) == HISTORY_LIMIT
    assert d.status.history[0].reason == "R1" and d.status.history[-1].reason == "Running"


def test_unchanged_inputs_make_no_transition():
    d1 = run(j=job(active=1), pods=[pod(phase="Running", running=True)])
    d2 = run(status=d1.status, j=job(active=1), pods=[pod(phase="Running", running=True)],
             now=NOW + timedelta(minutes=1))
    assert d2.transition is None and not d2.events
    assert status_patch(d2.status) == status_patch(d1.status)


@pytest.mark.parametrize(
    ("previous", "j", "pods", "attempts"),
    [
        (None, job(), [], 0),
        (None, job(active=1), [pod()], 1),
        (1, job(active=1, failed=1), [pod("a", "Failed", terminated=PREEMPTED), pod("b")], 2),
        (3, job(active=1), [pod("c")], 3),  # old pods garbage-collected: never goes down
        (0, job(failed=2, active=1), [], 3),  # from the Job's counters
    ],
)
def test_attempts(previous, j, pods, attempts):
    assert run(status=TrainingJobStatus(attempts=previous), j=j, pods=pods).status.attempts == attempts


def test_status_patch_leaves_the_trainers_fields_alone():
    s = TrainingJobStatus.model_validate(
        {"phase": "running", "progress": {"status": "running", "current_epoch": 3}, "metrics": {"mAP": 0.5}}
    )
    patch = status_patch(s)["status"]
    assert patch["progress"] == {"status": "running"} and "metrics" not in patch
    assert patch["phase"] == "running" and "reason" in patch  # null removes a stale reason


def test_ttl_deadline():
    done = TrainingJobStatus(phase=Phase.completed, completion_time=T0)
    assert ttl_deadline(done, spec(ttlSecondsAfterFinished=30)) == datetime(2026, 1, 1, 0, 0, 30, tzinfo=UTC)
    assert ttl_deadline(done, spec()) is None
    assert ttl_deadline(TrainingJobStatus(), spec(ttlSecondsAfterFinished=30)) is None
    d = run(sp=spec(ttlSecondsAfterFinished=30), j=job(conditions=[cond("Complete", at=LATER)]))
    assert d.recheck_at == datetime(2026, 1, 1, 0, 3, 30, tzinfo=UTC)


def test_stuck_reason_ignores_a_pod_that_just_starts():
    assert stuck_reason(pod()) is None
    assert stuck_reason(pod(conditions=[cond("PodScheduled", "", "", status="True")])) is None


def test_invalid_spec():
    d = invalid_spec(TrainingJobStatus(), "tenant_id: Field required", 2, NOW)
    assert (d.status.phase, d.status.reason) == (Phase.failed, "InvalidSpec")
    assert "tenant_id" in d.status.message
