"""A simulated kube-controller-manager for the emulator: the Job and TTL-after-finished controllers.

Tests drive only what the kubelet decides — the trainer pod's phase and exit code
(``run_trainer``, ``finish_trainer``) — and this controller does the rest, walking the
in-between states a real control plane shows, each ``lag`` seconds after the last
(REAL_K8S_FACTS.md, observed on kube-apiserver/kube-controller-manager v1.32):

- an unsuspended Job gets ``status.startTime`` and one pod (``generateName: <job>-``, the
  template's labels plus job-name/controller-uid, a controller ownerReference), Pending;
  kubernetes/kubernetes pkg/controller/job/job_controller.go (syncJob, manageJob) and
  pkg/controller/controller_utils.go (RealPodControl.CreatePodsWithGenerateName);
- a refused pod creation (missing ServiceAccount — the ServiceAccount admission plugin — or a
  refusal injected with ``refuse_pods``: ResourceQuota, an admission webhook) creates no pod,
  only a ``Warning FailedCreate`` Event on the Job, ``Error creating: <error>``, recorded again
  (count + 1, lastTimestamp) at each retry with back-off, as client-go's event correlator
  aggregates repeats (controller_utils.go: ``r.Recorder.Eventf(object, v1.EventTypeWarning,
  FailedCreatePodReason, "Error creating: %v", err)``);
- a terminated pod is first recorded in ``status.uncountedTerminatedPods`` (active 0, succeeded
  still 0), then counted, with the interim condition ``SuccessCriteriaMet`` / ``FailureTarget``,
  then the final ``Complete`` (with completionTime) / ``Failed`` (job_controller.go:
  trackJobStatusAndRemoveFinalizers; KEP-3329 and KEP-4368 for the interim conditions);
- podFailurePolicy (the first matching rule: Ignore on a pod condition, FailJob / Count on exit
  codes) and backoffLimit decide between a replacement pod and ``FailureTarget``
  (PodFailurePolicy / BackoffLimitExceeded); podReplacementPolicy Failed holds: the
  replacement comes only after the old pod is terminal;
- ``ttlSecondsAfterFinished``: the TTL controller deletes the finished Job (its pods go with it)
  that many seconds after Complete/Failed, read or not (pkg/controller/ttlafterfinished/
  ttlafterfinished_controller.go; kubernetes.io/docs/concepts/workloads/controllers/ttlafterfinished).

- graceful pod termination, the kubelet's part: deleting a pod whose trainer has started
  (Running) leaves it in place with ``deletionTimestamp`` (deletion time + grace period) and
  ``deletionGracePeriodSeconds`` = its ``terminationGracePeriodSeconds`` (default 30); the
  trainer got SIGTERM, and the pod goes (a delete with grace 0) once it has terminated
  (``finish_trainer``) or, at the end of the grace period, after the kubelet's SIGKILL (exit
  137). A pod not started yet, or already Succeeded/Failed, goes at once
  (kubernetes.io/docs/concepts/workloads/pods/pod-lifecycle/#pod-termination;
  pkg/registry/core/pod/strategy.go CheckGracefulDelete). ``grace_scale`` shortens the
  simulated grace period (seconds of it per second of the test).

``elapse(delta)`` moves the clock of a running Job forward: its startTime and its pods'
start times move that far into the past, as if the run had gone on that long (a long run). Not simulated: activeDeadlineSeconds, parallelism > 1, indexed
Jobs, successPolicy, pod finalizers (the controller remembers which pods it counted).
"""

from __future__ import annotations

import asyncio
import datetime
import logging

from tests.support.kinds import Kind
from tests.support.object_store import Obj
from tests.support.threaded import JOBS, PODS, ThreadedKubeEmulator

log = logging.getLogger(__name__)
EVENTS = "v1/events"
FINISHED = ("Complete", "Failed")


def rfc3339(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _conditions(job: Obj) -> dict[str, Obj]:
    return {c["type"]: c for c in (job.get("status") or {}).get("conditions") or [] if c.get("status") == "True"}


def _phase(pod: Obj) -> str:
    return (pod.get("status") or {}).get("phase") or "Pending"


def _exit_code(pod: Obj, container: str | None = None) -> int | None:
    for cs in (pod.get("status") or {}).get("containerStatuses") or []:
        if container in (None, cs.get("name")):
            code = ((cs.get("state") or {}).get("terminated") or {}).get("exitCode")
            if code is not None:
                return int(code)
    return None


def failure_policy_action(job: Obj, pod: Obj) -> tuple[str, str]:
    """(action, message) of the first podFailurePolicy rule matching a Failed pod; Count if none
    (job_controller.go: matchPodFailurePolicy)."""
    rules = ((job.get("spec") or {}).get("podFailurePolicy") or {}).get("rules") or []
    pod_conds = {(c.get("type"), c.get("status")) for c in (pod.get("status") or {}).get("conditions") or []}
    name = f"{pod['metadata']['namespace']}/{pod['metadata']['name']}"
    for index, rule in enumerate(rules):
        for cond in rule.get("onPodConditions") or []:
            if (cond.get("type"), cond.get("status", "True")) in pod_conds:
                return rule["action"], f"Pod {name} has condition {cond['type']} matching {rule['action']} rule " \
                                       f"at index {index}"
        codes = rule.get("onExitCodes")
        if codes:
            code = _exit_code(pod, codes.get("containerName"))
            if code is None or code == 0:
                continue
            inside = code in codes.get("values") or []
            if inside == (codes.get("operator", "In") == "In"):
                return rule["action"], f"Container {codes.get('containerName') or 'main'} for pod {name} failed " \
                                       f"with exit code {code} matching {rule['action']} rule at index {index}"
    return "Count", ""


class JobController:
    """Job + TTL-after-finished controllers on a ``ThreadedKubeEmulator`` (use as a context manager)."""

    def __init__(self, emu: ThreadedKubeEmulator, *, lag: float = 0.15, retry_lag: float = 0.5,
                 grace_scale: float = 1.0) -> None:
        self.emu = emu
        self.grace_scale = grace_scale  # simulated grace-period seconds per real second
        self.lag = lag  # seconds between two steps of the controller (its watch + sync latency)
        self.retry_lag = retry_lag  # first back-off of a refused pod creation (then doubled, at most 8x)
        self.refusal: str | None = None  # an injected pod-creation error (quota, admission webhook)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending: dict[tuple[str, str], asyncio.TimerHandle] = {}
        self._counted: set[str] = set()  # pod uids moved into the Job's counters
        self._failed_creates: dict[tuple[str, str], int] = {}  # (job uid, message) -> retries so far
        self._ttl: dict[str, asyncio.TimerHandle] = {}
        self._kills: dict[str, asyncio.TimerHandle] = {}  # pod uid -> the kubelet's SIGKILL at grace end

    # ------------------------------------------------------------ lifecycle

    def __enter__(self) -> JobController:
        self.emu.call(self._attach)
        return self

    def __exit__(self, *exc: object) -> None:
        self.emu.call(self._detach)

    def _attach(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.emu.store.listeners.append(self._on_change)
        self.emu.store.grace_period = self._grace_period
        for job in self.emu.store.live(self.emu.store.kind(JOBS)):
            self._later(job["metadata"]["namespace"], job["metadata"]["name"])

    def _detach(self) -> None:
        self.emu.store.listeners.remove(self._on_change)
        self.emu.store.grace_period = None
        for handle in [*self._pending.values(), *self._ttl.values(), *self._kills.values()]:
            handle.cancel()

    # ------------------------------------------------------------ what tests drive (the kubelet's part)

    def refuse_pods(self, message: str | None) -> None:
        """Refuse every pod creation with this error (None: allow again), e.g. ``exceeded quota: …``."""
        self.refusal = message

    def trainer_pod(self, namespace: str, job: str, timeout: float = 10) -> Obj:
        """The Job's newest pod that has not terminated (waits for the controller to create it)."""
        def find() -> Obj | None:
            pods = [p for p in self.emu.objects(PODS, namespace, label_selector=f"job-name={job}")
                    if _phase(p) in ("Pending", "Running")]
            return max(pods, key=lambda p: int(p["metadata"]["resourceVersion"])) if pods else None
        return self.emu.wait_for(find, timeout, message=f"a pod of Job {namespace}/{job}")

    def run_trainer(self, namespace: str, job: str) -> Obj:
        """The kubelet started the trainer container: the pod is Running."""
        pod = self.trainer_pod(namespace, job)
        started = rfc3339(_now())
        return self.emu.set_pod_status(namespace, pod["metadata"]["name"], {
            "phase": "Running", "startTime": started,
            "conditions": [{"type": "PodScheduled", "status": "True"}, {"type": "Ready", "status": "True"}],
            "containerStatuses": [self._container(pod, {"running": {"startedAt": started}}, ready=True)]})

    def finish_trainer(self, namespace: str, job: str, exit_code: int = 0, message: str = "",
                       reason: str | None = None, disruption: bool = False) -> Obj:
        """The trainer exited: the pod is Succeeded (exit 0) or Failed; ``disruption`` adds the
        DisruptionTarget condition (preemption, eviction) that podFailurePolicy can ignore."""
        pod = self.trainer_pod(namespace, job)
        status = pod.get("status") or {}
        started = status.get("startTime") or rfc3339(_now())
        terminated = {"exitCode": exit_code, "reason": reason or ("Completed" if exit_code == 0 else "Error"),
                      "message": message, "startedAt": started, "finishedAt": rfc3339(_now())}
        conditions = [{"type": "PodScheduled", "status": "True"}, {"type": "Ready", "status": "False"}]
        if disruption:
            conditions.append({"type": "DisruptionTarget", "status": "True", "reason": "PreemptionByScheduler"})
        return self.emu.set_pod_status(namespace, pod["metadata"]["name"], {
            "phase": "Succeeded" if exit_code == 0 else "Failed", "startTime": started, "conditions": conditions,
            "containerStatuses": [self._container(pod, {"terminated": terminated})]})

    def elapse(self, namespace: str, job: str, delta: datetime.timedelta) -> None:
        """As if ``delta`` had passed: the Job's and its pods' start times move that far back."""
        def back(text: str | None) -> str | None:
            return text and rfc3339(datetime.datetime.fromisoformat(text.replace("Z", "+00:00")) - delta)

        found = self.emu.get(JOBS, namespace, job)
        assert found is not None and (found.get("status") or {}).get("startTime"), "the Job has not started"
        self._write(found, {"startTime": back(found["status"]["startTime"])})
        for pod in self.emu.objects(PODS, namespace, label_selector=f"job-name={job}"):
            status = pod.get("status") or {}
            statuses = []
            for cs in status.get("containerStatuses") or []:
                state = {k: {**v, **{t: back(v[t]) for t in ("startedAt", "finishedAt") if v.get(t)}}
                         for k, v in (cs.get("state") or {}).items()}
                statuses.append({**cs, "state": state})
            self.emu.set_pod_status(namespace, pod["metadata"]["name"], {
                "startTime": back(status.get("startTime")), "containerStatuses": statuses or None})

    @staticmethod
    def _container(pod: Obj, state: Obj, ready: bool = False) -> Obj:
        container = ((pod.get("spec") or {}).get("containers") or [{}])[0]
        return {"name": container.get("name", "main"), "image": container.get("image", ""), "imageID": "",
                "restartCount": 0, "ready": ready, "started": "running" in state, "state": state}

    # ------------------------------------------------------------ the controller (on the emulator's loop)

    def _on_change(self, kind: Kind, event_type: str, old: Obj | None, new: Obj) -> None:
        """Store listener: a change to a Job or to a pod a Job owns queues that Job's sync."""
        meta = new["metadata"]
        if kind.key == ("batch", "v1", "jobs"):
            if event_type == "DELETED":
                handle = self._ttl.pop(meta["uid"], None)
                if handle is not None:
                    handle.cancel()
            else:
                self._later(meta["namespace"], meta["name"])
        elif kind.key == ("", "v1", "pods"):
            self._kubelet(event_type, old, new)
            for ref in meta.get("ownerReferences") or []:
                if ref.get("kind") == "Job" and ref.get("controller"):
                    self._later(meta["namespace"], ref["name"])

    # ------------------------------------------------------------ graceful termination (the kubelet's part)

    @staticmethod
    def _grace_period(kind: Kind, obj: Obj) -> int:
        """Seconds a delete of this object leaves it in place (the API server's pod strategy)."""
        if kind.key != ("", "v1", "pods") or _phase(obj) != "Running":
            return 0  # not started on a node yet, or already terminated: deleted at once
        grace = (obj.get("spec") or {}).get("terminationGracePeriodSeconds")
        return 30 if grace is None else int(grace)

    def _kubelet(self, event_type: str, old: Obj | None, new: Obj) -> None:
        meta = new["metadata"]
        uid = meta["uid"]
        if event_type == "DELETED" or not meta.get("deletionTimestamp"):
            handle = self._kills.pop(uid, None)
            if handle is not None:
                handle.cancel()
            return
        if self._loop is None:
            return
        if _phase(new) in ("Succeeded", "Failed"):  # the trainer has exited: the kubelet deletes the pod
            self._loop.call_later(self.lag, self._delete_pod, meta["namespace"], meta["name"], uid)
        elif uid not in self._kills:
            grace = float(meta.get("deletionGracePeriodSeconds") or 0) / self.grace_scale
            self._kills[uid] = self._loop.call_later(grace, self._kill, meta["namespace"], meta["name"], uid)

    def _kill(self, namespace: str, name: str, uid: str) -> None:
        """The grace period is over: SIGKILL (exit 137), then the pod goes."""
        self._kills.pop(uid, None)
        pod = self.emu.store.current(self._store(PODS), namespace, name)
        if pod is None or pod["metadata"]["uid"] != uid or _phase(pod) in ("Succeeded", "Failed"):
            return
        started = ((pod.get("status") or {}).get("startTime")) or rfc3339(_now())
        terminated = {"exitCode": 137, "reason": "Error", "startedAt": started, "finishedAt": rfc3339(_now())}
        self.emu.set_pod_status(namespace, name, {
            "phase": "Failed", "conditions": [{"type": "Ready", "status": "False"}],
            "containerStatuses": [self._container(pod, {"terminated": terminated})]})

    def _delete_pod(self, namespace: str, name: str, uid: str) -> None:
        pod = self.emu.store.current(self._store(PODS), namespace, name)
        if pod is not None and pod["metadata"]["uid"] == uid:
            self.emu.store.delete_object(self._store(PODS), namespace, name, grace_period=0,
                                         preconditions={"uid": uid})
    def _later(self, namespace: str, name: str, delay: float | None = None) -> None:
        key = (namespace, name)
        if key in self._pending or self._loop is None:
            return  # a sync is queued: it will read the newest state (a workqueue deduplicates too)
        self._pending[key] = self._loop.call_later(self.lag if delay is None else delay, self._run_sync, key)

    def _run_sync(self, key: tuple[str, str]) -> None:
        self._pending.pop(key, None)
        try:
            self._sync(*key)
        except Exception as exc:  # a controller bug: make the test fail, as an emulator bug does
            log.exception("job controller sync of %s failed", key)
            self.emu.emulator.internal_errors.append(exc)

    def _store(self, ref: str) -> Kind:
        return self.emu.store.kind(ref)

    def _sync(self, namespace: str, name: str) -> None:
        """One step towards the Job's next state; each write queues the next step after ``lag``."""
        job = self.emu.store.current(self._store(JOBS), namespace, name)
        if job is None:
            return
        conds = _conditions(job)
        if set(FINISHED) & set(conds):
            self._arm_ttl(job, conds)
            return
        spec, status = job.get("spec") or {}, job.get("status") or {}
        uid = job["metadata"]["uid"]
        pods = [p for p in self.emu.store.live(self._store(PODS), namespace)
                if any(r.get("uid") == uid for r in p["metadata"].get("ownerReferences") or [])]
        active = [p for p in pods if _phase(p) in ("Pending", "Running")]
        done = [p for p in pods if _phase(p) in ("Succeeded", "Failed")]
        uncounted = [p for p in done if p["metadata"]["uid"] not in self._counted]
        if "SuccessCriteriaMet" in conds or "FailureTarget" in conds:
            final = "Complete" if "SuccessCriteriaMet" in conds else "Failed"
            interim = conds.get("FailureTarget") or conds["SuccessCriteriaMet"]
            extra = {"completionTime": rfc3339(_now())} if final == "Complete" else {}
            self._write(job, {**extra, "active": 0, "ready": 0, "conditions": [*status.get("conditions", []), {
                "type": final, "status": "True", "reason": interim.get("reason", ""),
                "message": interim.get("message", ""), "lastProbeTime": rfc3339(_now()),
                "lastTransitionTime": rfc3339(_now())}]})
            return
        recorded = (status.get("uncountedTerminatedPods") or {})
        if uncounted and not any(recorded.values()):
            # Step 1: the terminated pods are recorded, not yet counted (active drops, succeeded stays).
            self._write(job, {"active": len(active), "uncountedTerminatedPods": {
                "succeeded": [p["metadata"]["uid"] for p in uncounted if _phase(p) == "Succeeded"],
                "failed": [p["metadata"]["uid"] for p in uncounted if _phase(p) == "Failed"]}})
            return
        if uncounted:
            self._count(job, uncounted, active)
            return
        if spec.get("suspend"):
            return
        if not status.get("startTime"):
            self._write(job, {"startTime": rfc3339(_now()), "active": len(active)})
            return
        if not active:
            self._create_pod(job)
        elif status.get("active") != len(active):
            self._write(job, {"active": len(active)})

    def _count(self, job: Obj, uncounted: list[Obj], active: list[Obj]) -> None:
        """Step 2: move the recorded pods into the counters and decide (interim condition or retry)."""
        status = job.get("status") or {}
        succeeded, failed = int(status.get("succeeded") or 0), int(status.get("failed") or 0)
        verdict: tuple[str, str, str] | None = None
        for pod in sorted(uncounted, key=lambda p: int(p["metadata"]["resourceVersion"])):
            self._counted.add(pod["metadata"]["uid"])
            if _phase(pod) == "Succeeded":
                succeeded += 1
                continue
            action, message = failure_policy_action(job, pod)
            if action == "Ignore":
                continue  # not counted against backoffLimit: a replacement comes
            failed += 1
            if action == "FailJob":
                verdict = ("FailureTarget", "PodFailurePolicy", message)
            elif failed > int((job.get("spec") or {}).get("backoffLimit", 6)) and verdict is None:
                verdict = ("FailureTarget", "BackoffLimitExceeded", "Job has reached the specified backoff limit")
        completions = int((job.get("spec") or {}).get("completions") or 1)
        if verdict is None and succeeded >= completions:
            verdict = ("SuccessCriteriaMet", "CompletionsReached", "Reached expected number of succeeded pods")
        update: Obj = {"active": len(active), "succeeded": succeeded, "failed": failed,
                       "uncountedTerminatedPods": {"succeeded": [], "failed": []}}
        if verdict is not None:
            update["conditions"] = [*status.get("conditions", []), {
                "type": verdict[0], "status": "True", "reason": verdict[1], "message": verdict[2],
                "lastProbeTime": rfc3339(_now()), "lastTransitionTime": rfc3339(_now())}]
        self._write(job, update)

    def _create_pod(self, job: Obj) -> None:
        meta = job["metadata"]
        template = (job.get("spec") or {}).get("template") or {}
        account = (template.get("spec") or {}).get("serviceAccountName") or "default"
        error = self.refusal
        if error is None and self.emu.store.current(self._store("v1/serviceaccounts"), meta["namespace"],
                                                    account) is None:
            # The ServiceAccount admission plugin refuses a pod whose account does not exist.
            error = (f'pods "{meta["name"]}-" is forbidden: error looking up service account '
                     f'{meta["namespace"]}/{account}: serviceaccount "{account}" not found')
        if error is not None:
            retries = self._record_failed_create(job, f"Error creating: {error}")
            self._later(meta["namespace"], meta["name"], self.retry_lag * 2 ** min(retries, 3))
            return
        self.emu.make_pod_for_job(job, phase="Pending")

    def _record_failed_create(self, job: Obj, message: str) -> int:
        """A Warning FailedCreate Event on the Job; a repeat bumps count and lastTimestamp."""
        meta = job["metadata"]
        key = (meta["uid"], message)
        retries = self._failed_creates.get(key, 0)
        self._failed_creates[key] = retries + 1
        now = rfc3339(_now())
        events = self._store(EVENTS)
        found = [e for e in self.emu.store.live(events, meta["namespace"])
                 if (e.get("involvedObject") or {}).get("uid") == meta["uid"] and e.get("message") == message]
        if found:
            self.emu.patch(EVENTS, meta["namespace"], found[0]["metadata"]["name"],
                           {"count": int(found[0].get("count") or 1) + 1, "lastTimestamp": now})
        else:
            self.emu.create(EVENTS, {
                "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
                "involvedObject": {"apiVersion": "batch/v1", "kind": "Job", "name": meta["name"],
                                   "namespace": meta["namespace"], "uid": meta["uid"],
                                   "resourceVersion": meta["resourceVersion"]},
                "type": "Warning", "reason": "FailedCreate", "message": message, "count": 1,
                "firstTimestamp": now, "lastTimestamp": now,
                "source": {"component": "job-controller"}, "reportingComponent": "job-controller"})
        return retries

    def _write(self, job: Obj, status: Obj) -> None:
        self.emu.patch_status(JOBS, job["metadata"]["namespace"], job["metadata"]["name"], status)

    def _arm_ttl(self, job: Obj, conds: dict[str, Obj]) -> None:
        ttl = (job.get("spec") or {}).get("ttlSecondsAfterFinished")
        uid = job["metadata"]["uid"]
        if ttl is None or uid in self._ttl or self._loop is None:
            return
        finished = (job.get("status") or {}).get("completionTime") or next(
            c["lastTransitionTime"] for t, c in conds.items() if t in FINISHED)
        expires = datetime.datetime.fromisoformat(finished.replace("Z", "+00:00")) + datetime.timedelta(seconds=ttl)
        delay = max((expires - _now()).total_seconds(), 0.0)
        self._ttl[uid] = self._loop.call_later(delay, self._expire, job["metadata"]["namespace"],
                                               job["metadata"]["name"], uid)

    def _expire(self, namespace: str, name: str, uid: str) -> None:
        self._ttl.pop(uid, None)
        job = self.emu.store.current(self._store(JOBS), namespace, name)
        if job is not None and job["metadata"]["uid"] == uid:
            # The TTL controller deletes with Foreground propagation (the emulator: background).
            self.emu.store.delete_object(self._store(JOBS), namespace, name, propagation="Foreground",
                                         preconditions={"uid": uid})

