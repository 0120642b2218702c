"""One reconcile of one TrainingJob: read the resources, decide (pure), write what changed.

State lives in the resources only (the TrainingJob, its Job, their pods): each run reads them
fresh, so an operator restart or a repeated event can neither lose nor duplicate anything.
Runs for the same TrainingJob are serialised by a per-object lock; the bursts of Job/Pod
events are coalesced (a run that is already queued will read the newest state anyway).
Time-based transitions (startup timeout, TTL) are re-evaluated at the instant they fall due
(``loop.call_later``), not by polling; after a restart, kopf's resume handler re-arms them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from kubernetes.client.exceptions import ApiException
from pydantic import ValidationError

from laxai_operator import events, metrics, naming, run_names, triggers
from laxai_operator.job_builder import build_job, job_spec_patch
from laxai_operator.kube import Kube
from laxai_operator.resource import Phase, TrainingJobSpec, TrainingJobStatus
from laxai_operator.settings import OperatorSettings
from laxai_operator.status_mapping import (
    Decision,
    Verdict,
    awaiting_pod,
    decide,
    fold,
    invalid_spec,
    rfc3339,
    status_patch,
)
from laxai_trainer.reasons import Reason

log = logging.getLogger(__name__)
Key = tuple[str, str]
#: Timer retries of a reconcile that failed (backoff 2, 4, … 60 s: about 4 minutes in all).
NUDGE_RETRIES = 8
#: Runs of one reconcile when its status write meets a newer version (409): read again, decide again.
CONFLICT_RETRIES = 5
#: A TrainingJob waiting for its run name (RunNameInUse) looks again this often, besides being
#: nudged when the holder finishes (a deleted holder sends no such nudge).
RUN_NAME_RECHECK = timedelta(seconds=30)


class NotOursYet(Exception):
    """A Job with our deterministic name belongs to another (older) TrainingJob of that name."""


def owned_by(obj: dict[str, Any], uid: str) -> bool:
    return any(ref.get("uid") == uid and ref.get("controller") for ref in obj["metadata"].get("ownerReferences") or [])


def trainer_pods(pods: list[dict[str, Any]], name: str, job: dict[str, Any] | None,
                 since: str | None = None) -> list[dict[str, Any]]:
    """Pods of this TrainingJob's current Job (labels checked here too: not every API honours selectors);
    with the Job already deleted (a cancel), the labelled pods created since the TrainingJob."""
    out = []
    job_uid = job["metadata"].get("uid") if job is not None else None
    for pod in pods:
        labels = pod["metadata"].get("labels") or {}
        if labels.get(naming.LABEL_TRAININGJOB) != naming.label_value(name):
            continue
        owners = [r for r in pod["metadata"].get("ownerReferences") or [] if r.get("kind") == "Job"]
        if owners and job_uid and owners[0].get("uid") != job_uid:
            continue  # a pod of an earlier Job of the same name
        if job is None and since and (pod["metadata"].get("creationTimestamp") or since) < since:
            continue  # a pod of an earlier TrainingJob of the same name
        out.append(pod)
    return out


def read_status(raw: dict[str, Any] | None) -> TrainingJobStatus:
    """The stored status; a malformed trainer part (progress, metrics) never blocks the operator."""
    raw = raw or {}
    try:
        return TrainingJobStatus.model_validate(raw)
    except ValidationError:
        owned = {k: v for k, v in raw.items() if k not in ("progress", "metrics")}
        try:
            return TrainingJobStatus.model_validate(owned)
        except ValidationError:
            return TrainingJobStatus()


class Reconciler:
    def __init__(
        self,
        kube: Kube,
        settings: OperatorSettings,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        post_events: Callable[[dict[str, Any], list[tuple[str, str, str]]], None] = events.post,
    ) -> None:
        self.post_events = post_events
        self.kube = kube
        self.settings = settings
        self.clock = clock
        self._locks: dict[Key, asyncio.Lock] = {}
        self._queued: set[Key] = set()
        self._timers: dict[Key, asyncio.TimerHandle] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._failures: dict[Key, int] = {}
        self._lifecycle: set[Key] = set()  # lifecycle reconciles not yet through (nudge)
        self._run_locks: dict[tuple[str, str, str], asyncio.Lock] = {}
        self.retry_base = 2.0  # seconds; the n-th retry waits retry_base ** n (at most 60)

    # ---- entry points ----------------------------------------------------------------

    async def reconcile(self, namespace: str, name: str, trigger: str, body: dict[str, Any] | None = None,
                        urgent: bool = False) -> None:
        """One run now (after any run in progress); raises. ``body``: the TrainingJob as just
        delivered by its watch event, used instead of a first read (a stale one costs a 409 on the
        status write, then a fresh read). ``urgent``: a running job's status, whose calls go to
        the threads kept for it (not queued behind a burst of creations) — unless a lifecycle
        reconcile of this TrainingJob is still due."""
        key = (namespace, name)
        async with self._locks.setdefault(key, asyncio.Lock()):
            self._queued.discard(key)  # a nudge from now on runs again: this run may read too early
            started = time.perf_counter()
            pool = self.kube.urgent() if urgent and key not in self._lifecycle else contextlib.nullcontext()
            try:
                with pool:
                    await self._reconcile(namespace, name, body)
            except Exception:
                metrics.ERRORS.labels(trigger).inc()
                raise
            finally:
                metrics.RECONCILE_SECONDS.labels(trigger).observe(time.perf_counter() - started)

    async def nudge(self, namespace: str, name: str, trigger: str, body: dict[str, Any] | None = None) -> None:
        """Reconcile soon, coalescing bursts; never raises. A failed run is retried on a timer with
        backoff; when the retries of a TrainingJob's own lifecycle (``triggers.LIFECYCLE``: create,
        spec update, resume) run out, the TrainingJob fails (``give_up``) instead of hanging; for
        Job/Pod/Event triggers the next event retries. ``body``: as in :meth:`reconcile`."""
        key = (namespace, name)
        if trigger in triggers.LIFECYCLE:
            self._lifecycle.add(key)
        if key in self._queued:
            return
        self._queued.add(key)
        try:
            await self.reconcile(namespace, name, trigger, body, urgent=True)
            self._failures.pop(key, None)
            self._lifecycle.discard(key)
        except Exception as exc:
            await self._retry_later(key, trigger, exc)
        finally:
            self._queued.discard(key)

    async def _retry_later(self, key: Key, trigger: str, exc: Exception) -> None:
        # The event that brought us here will not come again (e.g. the Job's last update).
        failures = self._failures[key] = self._failures.get(key, 0) + 1
        if failures <= NUDGE_RETRIES:
            delay = min(60.0, self.retry_base**failures)
            log.warning("reconcile of %s/%s after %s failed (%s); retry %d/%d in %.0fs",
                        *key, trigger, exc, failures, NUDGE_RETRIES, delay)
            self._schedule(key, self.clock() + timedelta(seconds=delay))
            return
        self._failures.pop(key, None)
        if key not in self._lifecycle:
            log.error("reconcile of %s/%s failed %d times, giving up until its next event: %s",
                      *key, failures, exc)
            return
        self._lifecycle.discard(key)
        log.error("reconcile of %s/%s failed %d times: failing it: %s", *key, failures, exc)
        try:
            await self.give_up(*key, str(exc).strip())
        except Exception as final:  # the API is still unreachable: the next start resumes it
            log.error("could not fail %s/%s: %s", *key, final)

    async def give_up(self, namespace: str, name: str, error: str) -> None:
        """Retries are exhausted: fail the TrainingJob with the error instead of leaving it pending."""
        tj = await self.kube.get_trainingjob(namespace, name)
        if tj is None:
            return
        status = read_status(tj.get("status"))
        if status.phase.terminal:
            return
        now = self.clock()
        verdict = Verdict(Phase.failed, Reason.reconcile_error,
                          f"the operator could not reconcile this job: {error}"[:4096], finished=rfc3339(now))
        decision = fold(status, verdict, tj["metadata"].get("generation"), None, [], now, status.job_name,
                        False, None, None)
        await self._write(tj, status, decision)

    def close(self) -> None:
        for handle in self._timers.values():
            handle.cancel()
        self._timers.clear()
        for task in self._tasks:
            task.cancel()
        self.kube.close()

    # ---- one run -------------------------------------------------------------------

    async def _reconcile(self, namespace: str, name: str, body: dict[str, Any] | None = None) -> None:
        """One run; a stale read (the status write answers 409) is decided again from fresh state."""
        for attempt in range(CONFLICT_RETRIES):
            try:
                return await self._reconcile_once(namespace, name, body if attempt == 0 else None)
            except ApiException as exc:
                if exc.status != 409 or attempt + 1 == CONFLICT_RETRIES:
                    raise
                log.debug("status of %s/%s changed under us; reconciling again", namespace, name)

    async def _reconcile_once(self, namespace: str, name: str, body: dict[str, Any] | None = None) -> None:
        tj = body if body is not None else await self.kube.get_trainingjob(namespace, name)
        if tj is None or tj["metadata"].get("deletionTimestamp"):
            self.forget((namespace, name))
            return
        meta = tj["metadata"]
        status = read_status(tj.get("status"))
        now = self.clock()
        try:
            spec = TrainingJobSpec.model_validate(tj.get("spec") or {})
        except ValidationError as exc:
            await self._write(tj, status, invalid_spec(status, _errors(exc), meta.get("generation"), now))
            return
        job_name = status.job_name or naming.job_name(name)
        # The run-name gate and the Job's creation are one step per run (run_names).
        async with self._run_lock(namespace, spec):
            if not status.job_name and not status.phase.terminal and not spec.cancel:
                if (other := await self._run_name_holder(namespace, name, spec)) is not None:
                    await self._write(tj, status, run_names.waiting(status, spec, other, meta.get("generation"), now))
                    self._schedule((namespace, name), now + RUN_NAME_RECHECK)
                    return
            job, created = await self._job(namespace, name, meta["uid"], spec, status, job_name)
        pods, job_events = [], []
        if job is not None and not created:  # a Job created this instant has no pods yet
            pods = trainer_pods(await self.kube.list_pods(namespace, naming.selector(name)), name, job)
            if not status.phase.terminal and awaiting_pod(job, pods):
                job_events = await self.kube.list_pod_creation_failures(namespace, job["metadata"]["uid"])
        elif job is None and spec.cancel and status.job_name and not status.phase.terminal:
            # Cancelling: the Job is gone, its pods may still be stopping (graceful termination).
            pods = trainer_pods(await self.kube.list_pods(namespace, naming.selector(name)), name, None,
                                meta.get("creationTimestamp"))
        decision = decide(status, spec, meta.get("generation"), job, pods, now, job_name, job_events)
        if decision.delete_job:
            await self.kube.delete_job(namespace, job_name)
        await self._write(tj, status, decision)
        if decision.status.phase.terminal and not status.phase.terminal and spec.custom_name:
            await self._wake_waiters(namespace, name, spec)
        due = decision.recheck_at
        if due is not None and decision.status.phase.terminal and now >= due:
            log.info("TTL of %s/%s expired: deleting it", namespace, name)
            await self.kube.delete_trainingjob(namespace, name)
            self.forget((namespace, name))
            return
        self._schedule((namespace, name), due)

    async def _job(
        self, namespace: str, name: str, uid: str, spec: TrainingJobSpec, status: TrainingJobStatus, job_name: str
    ) -> tuple[dict[str, Any] | None, bool]:
        """The TrainingJob's Job — created when it never existed, mutable fields synced — and
        whether this call created it."""
        active = not status.phase.terminal and not spec.cancel
        if active and not status.job_name:
            # Never recorded: create straight away (one request); 409 means an earlier run did.
            manifest = build_job(name, namespace, uid, spec, self.settings)
            try:
                job = await self.kube.create_job(namespace, manifest)
                log.info("created Job %s/%s", namespace, job_name)
                return job, True
            except ApiException as exc:
                if exc.status != 409:
                    raise
        job = await self.kube.get_job(namespace, job_name)
        if job is not None and not owned_by(job, uid):
            if status.phase.terminal:
                return None, False
            raise NotOursYet(f"Job {job_name} belongs to another TrainingJob named {name}; waiting for its deletion")
        if job is not None and active:
            patch = job_spec_patch(spec, job)
            if patch:
                job = await self.kube.patch_job(namespace, job_name, patch) or job
        return job, False

    # ---- one writer per run (run_names) ----------------------------------------------

    def _run_lock(self, namespace: str, spec: TrainingJobSpec) -> asyncio.Lock | contextlib.nullcontext:
        if not spec.custom_name:
            return contextlib.nullcontext()
        return self._run_locks.setdefault((namespace, spec.tenant_id, spec.custom_name), asyncio.Lock())

    async def _run_name_holder(self, namespace: str, name: str, spec: TrainingJobSpec) -> str | None:
        if not spec.custom_name:
            return None
        key = (spec.tenant_id, spec.custom_name)
        jobs = await self.kube.list_jobs(namespace, f"{naming.LABEL_TENANT}={spec.tenant_id}")
        with_jobs = {(j["metadata"].get("annotations") or {}).get(naming.ANNOTATION_TRAININGJOB) for j in jobs}
        tjs = await self.kube.list_trainingjobs(namespace)
        return run_names.holder(name, run_names.claimants(tjs, key, with_jobs - {None}))

    async def _wake_waiters(self, namespace: str, name: str, spec: TrainingJobSpec) -> None:
        """The run is free: reconcile the TrainingJobs that wait for it."""
        key = (spec.tenant_id, spec.custom_name)
        for tj in await self.kube.list_trainingjobs(namespace):
            if (tj.get("status") or {}).get("reason") == run_names.REASON and run_names.run_key(tj.get("spec")) == key:
                self._schedule((namespace, tj["metadata"]["name"]), self.clock())

    async def _write(self, tj: dict[str, Any], old: TrainingJobStatus, decision: Decision) -> None:
        meta = tj["metadata"]
        patch = status_patch(decision.status)
        if patch != status_patch(old):
            # Conditional on the version decided from: a writer that read an older status (a second
            # operator, a slow reconcile) gets 409 instead of putting `running` over `completed`.
            patch["metadata"] = {"resourceVersion": meta["resourceVersion"]}
            await self.kube.patch_trainingjob_status(meta["namespace"], meta["name"], patch)
        if decision.events:
            self.post_events(tj, decision.events)

    # ---- timers --------------------------------------------------------------------

    def _schedule(self, key: Key, due: datetime | None) -> None:
        old = self._timers.pop(key, None)
        if old is not None:
            old.cancel()
        if due is None:
            return
        delay = max((due - self.clock()).total_seconds(), 0.0) + 0.05
        self._timers[key] = asyncio.get_running_loop().call_later(delay, self._fire, key)

    def _fire(self, key: Key) -> None:
        self._timers.pop(key, None)
        task = asyncio.ensure_future(self.nudge(key[0], key[1], "timer"))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def forget(self, key: Key) -> None:
        """The TrainingJob is gone: no timer, no retries, no lock kept for it."""
        self._failures.pop(key, None)
        self._lifecycle.discard(key)
        self._schedule(key, None)
        lock = self._locks.get(key)
        if lock is not None and not lock.locked():
            self._locks.pop(key, None)


def _errors(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or 'spec'}: {err['msg']}" for err in exc.errors()
    )
