"""Job + Pods (+ the current status, spec and clock) -> the TrainingJob's next status. Pure.

The operator owns every status field except ``progress`` (the trainer's, bar
``progress.status``) and ``metrics``. Rules, in order:

1. A terminal phase (completed/failed/cancelled) is final: nothing here changes it.
2. The trainer's exit 0 — a Succeeded pod, or the Job's Complete / SuccessCriteriaMet —
   -> completed. The pod turns Succeeded before the Job controller counts it, so a finishing
   run is never shown as pending, and a cancel that comes after the exit is too late.
3. ``spec.cancel``: the caller deletes the Job (its pods get SIGTERM and checkpoint); the phase
   stays (reason CancelRequested, "Cancelling: …") until no trainer pod is left running, then
   cancelled — or at CANCEL_MARGIN past the pods' terminationGracePeriodSeconds, when the
   kubelet has killed a stuck trainer anyway.
4. The Job's failure verdict (Failed, or its early form FailureTarget) -> failed, with a reason
   a user can act on: DeadlineExceeded, OOMKilled, TrainerConfigError (the trainer's
   termination message), BackoffLimitExceeded.
5. A Job that existed (``status.jobName`` set) and is gone -> failed JobDeleted, never recreated:
   re-running would silently start the training over.
6. Otherwise pending or running from the pods: running while a trainer pod runs; pending with
   the precise reason while not (Suspended/Queued, Unschedulable with the scheduler's message,
   ImagePullBackOff/ErrImagePull/..., Retrying after a failed attempt, PodCreationFailed with
   the Job controller's FailedCreate Event message). The startup timeout
   (``spec.startupTimeoutSeconds``; for PodCreationFailed at most POD_CREATION_TIMEOUT) counts
   only the current pod-less or pod-pending stretch — from the newest pod's creation, else from
   the latest of the Job's start, the last attempt's end and the moment the job stopped
   running — never from the age of the Job; ``recheck_at`` says when it falls due.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from laxai_operator.naming import CONTAINER_NAME
from laxai_operator.resource import (
    HISTORY_LIMIT,
    Condition,
    HistoryEntry,
    Phase,
    TrainingJobSpec,
    TrainingJobStatus,
)
from laxai_trainer import exit_codes
from laxai_trainer.reasons import Reason as R

PHASE_CONDITION = {
    Phase.pending: "Pending",
    Phase.running: "Running",
    Phase.completed: "Succeeded",
    Phase.failed: "Failed",
    Phase.cancelled: "Cancelled",
}
#: Container waiting reasons that mean "this pod will not start by itself".
STUCK_WAITING = ("ImagePullBackOff", "ErrImagePull", "InvalidImageName", "ErrImageNeverPull",
                 "CreateContainerConfigError", "CreateContainerError")
#: Job conditions that end it: no pod is to come any more.
FINISHED_CONDITIONS = frozenset({"Complete", "SuccessCriteriaMet", "Failed", "FailureTarget"})
#: Seconds a Job may go on being refused its pod (FailedCreate) before the TrainingJob fails
#: (or spec.startupTimeoutSeconds, if shorter): long enough for the Job controller's retries
#: to pick up a ServiceAccount or quota fixed at once, short enough not to hide the refusal.
POD_CREATION_TIMEOUT = 120
#: Seconds, beyond a pod's terminationGracePeriodSeconds, that a cancel waits for its pod to go
#: before the TrainingJob is cancelled anyway: the kubelet's SIGKILL and its report take a moment.
CANCEL_MARGIN = 15
#: The pod default (PodSpec.terminationGracePeriodSeconds) when the pod does not say.
DEFAULT_GRACE_SECONDS = 30
#: Reasons worth a Warning event.
WARNING_REASONS = frozenset({*STUCK_WAITING, "Unschedulable", "StartupTimeout", "Retrying", "OOMKilled",
                             "TrainerConfigError", "DeadlineExceeded", "BackoffLimitExceeded",
                             "JobDeleted", "Failed", R.pod_creation_failed})


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@dataclass(frozen=True)
class Verdict:
    """What the Job and pods say, before it is folded into the status."""

    phase: Phase
    reason: str
    message: str
    started: str | None = None  # when a trainer pod first ran
    finished: str | None = None  # when the Job reached its verdict
    pending_since: datetime | None = None  # start of the current pending stretch (startup timeout)
    timeout: int | None = None  # a shorter bound than spec.startupTimeoutSeconds for this stretch


@dataclass
class Decision:
    status: TrainingJobStatus
    transition: HistoryEntry | None = None  # the new history entry, if the phase or reason changed
    delete_job: bool = False  # cancelled or startup timeout: stop the pods
    recheck_at: datetime | None = None  # evaluate again then (startup timeout, TTL), even without events
    events: list[tuple[str, str, str]] = field(default_factory=list)  # (type, reason, message)


# ---- reading pods and Jobs ---------------------------------------------------------------


def _conditions(obj: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    conds = ((obj or {}).get("status") or {}).get("conditions") or []
    return {c.get("type"): c for c in conds if c.get("status") == "True"}


def _trainer_status(pod: dict[str, Any]) -> dict[str, Any]:
    for cs in (pod.get("status") or {}).get("containerStatuses") or []:
        if cs.get("name") == CONTAINER_NAME:
            return cs
    return {}


def _terminated(pod: dict[str, Any]) -> dict[str, Any]:
    cs = _trainer_status(pod)
    return (cs.get("state") or {}).get("terminated") or (cs.get("lastState") or {}).get("terminated") or {}


def _created(obj: dict[str, Any]) -> datetime:
    return parse_time(obj.get("metadata", {}).get("creationTimestamp")) or datetime.min.replace(tzinfo=UTC)


def _phase(pod: dict[str, Any]) -> str:
    return (pod.get("status") or {}).get("phase") or "Pending"


def _first_line(text: str | None, limit: int = 1024) -> str:
    text = (text or "").strip()
    return text[-limit:] if text else ""


def stuck_reason(pod: dict[str, Any]) -> tuple[str, str] | None:
    """Why a Pending pod cannot start, in words a user can act on; None when it just starts."""
    scheduled = next(
        (c for c in (pod.get("status") or {}).get("conditions") or [] if c.get("type") == "PodScheduled"), None
    )
    if scheduled and scheduled.get("status") == "False" and scheduled.get("reason") == "Unschedulable":
        return "Unschedulable", f"the trainer pod cannot be scheduled: {scheduled.get('message', '').strip()}"
    waiting = (_trainer_status(pod).get("state") or {}).get("waiting") or {}
    if waiting.get("reason") in STUCK_WAITING:
        image = _trainer_status(pod).get("image") or ""
        detail = waiting.get("message") or image
        return waiting["reason"], f"the trainer container cannot start ({waiting['reason']}): {detail}".strip()
    return None


def describe_exit(pod: dict[str, Any]) -> str:
    term = _terminated(pod)
    if not term:
        return f"pod {pod['metadata']['name']} failed: {(pod.get('status') or {}).get('reason', 'unknown')}"
    code = term.get("exitCode")
    meaning = {exit_codes.RETRY: "preempted, checkpoint written", exit_codes.FAILURE: "error",
               exit_codes.CONFIG_ERROR: "configuration error"}.get(code, term.get("reason") or "error")
    text = f"exit code {code} ({meaning})"
    message = _first_line(term.get("message"), 512)
    return f"{text}: {message}" if message else text


def failure_reason(job: dict[str, Any], pods: list[dict[str, Any]], spec: TrainingJobSpec) -> tuple[str, str]:
    """Why a failed Job failed."""
    conds = _conditions(job)
    cond = conds.get("Failed") or conds.get("FailureTarget") or {}
    job_reason = cond.get("reason", "")
    failed = [p for p in pods if _terminated(p) and _terminated(p).get("exitCode", 0) != 0]
    last = max(failed, key=_created) if failed else None
    term = _terminated(last) if last else {}
    if job_reason == "DeadlineExceeded":
        return "DeadlineExceeded", (
            f"the job ran longer than activeDeadlineSeconds ({spec.active_deadline_seconds}s, retries included)"
        )
    if term.get("exitCode") == exit_codes.CONFIG_ERROR:
        return "TrainerConfigError", _first_line(term.get("message")) or cond.get("message") or "config error"
    if term.get("reason") == "OOMKilled":
        limit = spec.resources.memory or "none set"
        return "OOMKilled", (
            f"the trainer ran out of memory (memory limit {limit}); raise spec.resources.memory "
            "or lower training_kwargs.batch_size / num_workers"
        )
    if job_reason == "BackoffLimitExceeded":
        last_text = f"; last attempt: {describe_exit(last)}" if last else ""
        return "BackoffLimitExceeded", f"the trainer failed more than backoffLimit ({spec.backoff_limit}) times{last_text}"
    return job_reason or "Failed", cond.get("message") or (describe_exit(last) if last else "the Job failed")


def trainer_exited_ok(pods: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The trainer pod that exited 0 (phase Succeeded), if any: the training is done."""
    done = [p for p in pods if _phase(p) == "Succeeded"]
    return max(done, key=_created) if done else None


def cancelling(
    status: TrainingJobStatus, pods: list[dict[str, Any]], now: datetime, current: Phase
) -> tuple[Verdict, datetime | None]:
    """The verdict while ``spec.cancel`` is being carried out, and when to look again.

    The Job's deletion (the caller's) makes the garbage collector delete its pods; a running pod
    is deleted gracefully (SIGTERM, up to terminationGracePeriodSeconds, then SIGKILL:
    kubernetes.io/docs/concepts/workloads/pods/pod-lifecycle/#pod-termination) and stays, with a
    deletionTimestamp, until the trainer has written its checkpoint and exited. Only then is
    the job cancelled; until then it keeps its phase with reason CancelRequested."""
    done = trainer_exited_ok(pods)
    if done is not None:  # the trainer finished before it saw the stop: the model is saved
        finished = _terminated(done).get("finishedAt") or rfc3339(now)
        return Verdict(Phase.completed, R.completed, f"training finished (trainer pod {done['metadata']['name']} "
                       "exited 0 before the cancel reached it)", finished=finished), None
    alive = [p for p in pods if _phase(p) in ("Pending", "Running")]
    since = cancel_requested_at(status) or now
    grace = max((int((p.get("spec") or {}).get("terminationGracePeriodSeconds") or DEFAULT_GRACE_SECONDS)
                 for p in alive), default=0)
    deadline = since + timedelta(seconds=grace + CANCEL_MARGIN)
    if alive and now < deadline:
        running = any(_phase(p) == "Running" for p in alive)
        what = "the trainer is writing its checkpoint and stopping" if running else "stopping the trainer pod"
        return Verdict(current, R.cancel_requested, f"Cancelling: {what}", status.start_time), deadline
    if alive:
        names = ", ".join(p["metadata"]["name"] for p in alive)
        message = (f"cancelled on request; trainer pod {names} did not stop within {grace + CANCEL_MARGIN}s "
                   "(terminationGracePeriodSeconds and a margin): the kubelet kills it")
    else:
        stopped = [p for p in pods if _terminated(p)]
        how = f" (last attempt: {describe_exit(max(stopped, key=_created))})" if stopped else ""
        message = f"cancelled on request; the trainer stopped{how} and its Job was deleted"
    return Verdict(Phase.cancelled, R.cancelled, message, finished=rfc3339(now)), None


def cancel_requested_at(status: TrainingJobStatus) -> datetime | None:
    """When this job started cancelling (its CancelRequested history entry), None if it has not."""
    if status.reason != R.cancel_requested:
        return None
    entry = next((h for h in reversed(status.history) if h.reason == R.cancel_requested), None)
    return parse_time(entry.time) if entry else None


def awaiting_pod(job: dict[str, Any], pods: list[dict[str, Any]]) -> bool:
    """The Job should have a pod and has none starting, running or done: the only time its
    FailedCreate Events matter (the caller reads them only then)."""
    if (job.get("spec") or {}).get("suspend") or set(_conditions(job)) & FINISHED_CONDITIONS:
        return False
    return not any(_phase(p) in ("Pending", "Running", "Succeeded") and not p["metadata"].get("deletionTimestamp")
                   for p in pods)


def _event_time(event: dict[str, Any]) -> datetime | None:
    times = [parse_time(t) for t in (event.get("lastTimestamp"), event.get("eventTime"),
                                     (event.get("series") or {}).get("lastObservedTime"))]
    return max((t for t in times if t is not None), default=None)


def pod_creation_refusal(events: list[dict[str, Any]], after: datetime) -> dict[str, Any] | None:
    """The newest Warning FailedCreate Event on the Job seen after ``after`` (the newest pod's
    creation): the Job controller's only report of a refused pod (quota, admission, a missing
    ServiceAccount). Older ones belong to an attempt that did get its pod."""
    refusals = [e for e in events if e.get("reason") == "FailedCreate" and e.get("type") == "Warning"
                and (_event_time(e) or after) >= after]
    return max(refusals, key=lambda e: _event_time(e) or after) if refusals else None


def _left_running(status: TrainingJobStatus, now: datetime) -> datetime | None:
    """When the TrainingJob last stopped running (now if it still is), None if it never ran:
    a pending stretch after a run starts there, not at the Job's (old) startTime."""
    if status.phase is Phase.running:
        return now
    history = status.history
    for i in range(len(history) - 1, -1, -1):
        if history[i].phase is Phase.running:
            return parse_time(history[i + 1].time) if i + 1 < len(history) else now
    return None


def _latest(first: datetime, *more: datetime | None) -> datetime:
    return max([first, *(m for m in more if m is not None)])


def observe(
    job: dict[str, Any], pods: list[dict[str, Any]], spec: TrainingJobSpec, now: datetime,
    status: TrainingJobStatus | None = None, job_events: Sequence[dict[str, Any]] = (),
) -> Verdict:
    """Phase and reason from an existing Job, its pods and (when no pod exists) its Events."""
    status = status or TrainingJobStatus()
    conds = _conditions(job)
    job_status = job.get("status") or {}
    running = [p for p in pods if _phase(p) == "Running"]
    started = min(((p.get("status") or {}).get("startTime") for p in running if p.get("status", {}).get("startTime")),
                  default=None)
    verdict_time = lambda c: c.get("lastTransitionTime") or rfc3339(now)  # noqa: E731
    for kind in ("Complete", "SuccessCriteriaMet"):
        if kind in conds:
            finished = job_status.get("completionTime") or verdict_time(conds[kind])
            return Verdict(Phase.completed, R.completed, "training finished", started, finished)
    for kind in ("Failed", "FailureTarget"):
        if kind in conds:
            reason, message = failure_reason(job, pods, spec)
            return Verdict(Phase.failed, reason, message, started, verdict_time(conds[kind]))
    done = trainer_exited_ok(pods)
    if done is not None:
        # The pod turns Succeeded before the Job controller counts it (REAL_K8S_FACTS.md): exit 0
        # is the trainer's "trained and saved", so the run is complete now, not pending.
        finished = _terminated(done).get("finishedAt") or rfc3339(now)
        return Verdict(Phase.completed, R.completed, f"training finished (trainer pod {done['metadata']['name']} "
                       "exited 0)", started, finished)
    if running:
        pod = running[0]
        return Verdict(Phase.running, R.running, f"trainer pod {pod['metadata']['name']} is running", started)
    if (job.get("spec") or {}).get("suspend") or "Suspended" in conds:
        if spec.queue_name and not spec.suspend:
            return Verdict(Phase.pending, R.queued, f"waiting for Kueue to admit the job (queue {spec.queue_name})")
        return Verdict(Phase.pending, R.suspended, "the job is suspended (spec.suspend)")
    pending = [p for p in pods if _phase(p) == "Pending" and not p["metadata"].get("deletionTimestamp")]
    if pending:
        pod = max(pending, key=_created)
        reason, message = stuck_reason(pod) or (R.starting, f"trainer pod {pod['metadata']['name']} is starting")
        return Verdict(Phase.pending, reason, message, started, pending_since=_created(pod))
    # No pod starting or running: the current attempt's pod-less stretch began at the latest of
    # the Job's start, the end of the last attempt and the moment this job stopped running.
    newest = max(pods, key=_created) if pods else None
    newest_created = _created(newest) if newest else _created(job)
    last_end = parse_time(_terminated(newest).get("finishedAt")) if newest else None
    since = _latest(parse_time(job_status.get("startTime")) or _created(job), newest_created, last_end,
                    _left_running(status, now))
    refusal = pod_creation_refusal(list(job_events), newest_created)
    if refusal is not None:
        return Verdict(Phase.pending, R.pod_creation_failed,
                       f"the Job controller cannot create the trainer pod: {_first_line(refusal.get('message'))}",
                       started, pending_since=since, timeout=POD_CREATION_TIMEOUT)
    failed = [p for p in pods if _phase(p) == "Failed"]
    if failed or int(job_status.get("failed") or 0) > 0:
        what = f"attempt failed ({describe_exit(max(failed, key=_created))})" if failed else "an attempt failed"
        return Verdict(Phase.pending, R.retrying, f"{what}; the Job retries it", started, pending_since=since)
    return Verdict(Phase.pending, R.job_created, f"Job {job['metadata']['name']} created; waiting for its pod",
                   pending_since=since)


def _set_conditions(
    conditions: list[Condition], phase: Phase, reason: str, message: str, when: str, generation: int | None
) -> list[Condition]:
    """One condition per phase type: the current one True, the others that were True now False."""
    current = PHASE_CONDITION[phase]
    out: list[Condition] = []
    seen = False
    for cond in conditions:
        if cond.type == current:
            seen = True
            flipped = cond.status != "True"
            out.append(cond.model_copy(update={
                "status": "True", "reason": reason, "message": message, "observed_generation": generation,
                "last_transition_time": when if flipped else cond.last_transition_time,
            }))
        elif cond.type in PHASE_CONDITION.values() and cond.status == "True":
            out.append(cond.model_copy(update={
                "status": "False", "reason": reason, "message": message, "last_transition_time": when,
                "observed_generation": generation,
            }))
        else:
            out.append(cond)
    if not seen:
        out.append(Condition(type=current, status="True", reason=reason, message=message,
                             last_transition_time=when, observed_generation=generation))
    return out


def _count_attempts(previous: int | None, job: dict[str, Any] | None, pods: list[dict[str, Any]]) -> int:
    job_status = (job or {}).get("status") or {}
    counted = sum(int(job_status.get(k) or 0) for k in ("active", "failed", "succeeded"))
    return max(previous or 0, len({p["metadata"].get("uid", p["metadata"]["name"]) for p in pods}), counted)


def decide(
    status: TrainingJobStatus,
    spec: TrainingJobSpec,
    generation: int | None,
    job: dict[str, Any] | None,
    pods: list[dict[str, Any]],
    now: datetime,
    job_name: str,
    job_events: Sequence[dict[str, Any]] = (),
) -> Decision:
    """The next status of a TrainingJob; see the module docstring for the rules."""
    if status.phase.terminal:
        return Decision(status=status, recheck_at=ttl_deadline(status, spec))
    delete_job = False
    recheck_at = None
    observed = observe(job, pods, spec, now, status, job_events) if job is not None else None
    if spec.cancel and not (observed and observed.phase is Phase.completed):
        # A cancel that comes after the trainer exited 0 is too late: the model is trained and saved.
        current = observed.phase if observed and not observed.phase.terminal else status.phase
        verdict, recheck_at = cancelling(status, pods, now, current)
        delete_job = job is not None
    elif observed is not None:
        verdict = observed
    elif status.job_name:
        verdict = Verdict(Phase.failed, R.job_deleted,
                          f"Job {status.job_name} was deleted before it finished; create a new TrainingJob to rerun",
                          finished=rfc3339(now))
    else:
        verdict = Verdict(Phase.pending, R.creating, "creating the Job")
    if verdict.phase is Phase.pending and verdict.pending_since is not None:
        limit = min(spec.startup_timeout_seconds, verdict.timeout or spec.startup_timeout_seconds)
        deadline = verdict.pending_since + timedelta(seconds=limit)
        if now >= deadline:
            if verdict.reason == R.pod_creation_failed:
                reason, text = verdict.reason, f"no trainer pod could be created within {limit}s"
            else:
                reason = R.startup_timeout if verdict.reason in (R.starting, R.job_created, R.retrying) \
                    else verdict.reason
                text = f"startup timeout: no trainer pod ran within {limit}s (spec.startupTimeoutSeconds)"
            verdict = Verdict(Phase.failed, reason, f"{text}; {verdict.message}", finished=rfc3339(now))
            delete_job = job is not None
        else:
            recheck_at = deadline
    return fold(status, verdict, generation, job, pods, now, job_name if job is not None else status.job_name,
                delete_job, recheck_at, spec)


def fold(
    status: TrainingJobStatus,
    verdict: Verdict,
    generation: int | None,
    job: dict[str, Any] | None,
    pods: list[dict[str, Any]],
    now: datetime,
    job_name: str | None,
    delete_job: bool,
    recheck_at: datetime | None,
    spec: TrainingJobSpec | None,
) -> Decision:
    """Fold a verdict into the status: conditions, history, times, attempts."""
    when = rfc3339(now)
    update: dict[str, Any] = {
        "phase": verdict.phase,
        "reason": verdict.reason,
        "message": verdict.message[:4096],
        "observed_generation": generation,
        "job_name": job_name,
        "attempts": _count_attempts(status.attempts, job, pods),
        "progress": status.progress.model_copy(update={"status": verdict.phase}),
        "start_time": status.start_time or verdict.started,
    }
    if verdict.phase.terminal:
        update["completion_time"] = verdict.finished or when
    transition = None
    if (verdict.phase, verdict.reason) != (status.phase, status.reason) or not status.history:
        transition = HistoryEntry(phase=verdict.phase, time=when, reason=verdict.reason, message=verdict.message[:4096])
        update["history"] = [*status.history, transition][-HISTORY_LIMIT:]
        update["conditions"] = _set_conditions(status.conditions, verdict.phase, verdict.reason,
                                               verdict.message[:32768], when, generation)
    new = status.model_copy(update=update)
    if verdict.phase.terminal:
        recheck_at = ttl_deadline(new, spec) if spec is not None else None
    events = []
    if transition is not None:
        kind = "Warning" if verdict.phase is Phase.failed or verdict.reason in WARNING_REASONS else "Normal"
        events.append((kind, verdict.reason, f"{verdict.phase.value}: {verdict.message}"[:1024]))
    return Decision(status=new, transition=transition, delete_job=delete_job, recheck_at=recheck_at, events=events)


def invalid_spec(status: TrainingJobStatus, message: str, generation: int | None, now: datetime) -> Decision:
    """A spec the models reject (only possible where the CRD schema was bypassed): fail, say why."""
    if status.phase.terminal:
        return Decision(status=status)
    verdict = Verdict(Phase.failed, R.invalid_spec, f"the spec is invalid: {message}", finished=rfc3339(now))
    return fold(status, verdict, generation, None, [], now, status.job_name, False, None, None)


def ttl_deadline(status: TrainingJobStatus, spec: TrainingJobSpec) -> datetime | None:
    """When a finished TrainingJob is to be deleted (ttlSecondsAfterFinished), or None."""
    finished = parse_time(status.completion_time)
    if not status.phase.terminal or spec.ttl_seconds_after_finished is None or finished is None:
        return None
    return finished + timedelta(seconds=spec.ttl_seconds_after_finished)


def status_patch(status: TrainingJobStatus) -> dict[str, Any]:
    """The merge patch of the operator-owned status fields (null removes; progress: status only)."""
    wire = status.model_dump(mode="json", by_alias=True)
    owned = {k: v for k, v in wire.items() if k not in ("progress", "metrics")}
    owned["progress"] = {"status": wire["progress"]["status"]}
    return {"status": owned}
