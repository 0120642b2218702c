"""kopf handlers: thin glue from Kubernetes events to :class:`~laxai_operator.reconciler.Reconciler`.

- TrainingJob create / resume (operator start) / spec update -> reconcile: read-or-create the
  Job (deterministic name; 409 adopts it), sync suspend / activeDeadlineSeconds to it,
  cancel (delete the Job, phase cancelled), map status. Bounded retries with exponential
  backoff; when they run out the TrainingJob fails with reason ReconcileError instead of
  hanging.
- Job and Pod events (label-filtered to ours) -> reconcile of the owning TrainingJob.
- The Job controller's ``FailedCreate`` Events on Jobs (a refused pod: missing ServiceAccount,
  quota, admission) -> reconcile of the owning TrainingJob, which shows the Event's message
  within seconds (a refused pod leaves no other trace: no pod, no Job condition).
- No finalizer: deleting a TrainingJob deletes its Job and pods through ownerReferences
  (garbage collection), which works even while the operator is down. No handler here needs
  one (no on.delete, no daemons or timers — kopf puts a finalizer on objects with those).
- kopf's progress and diff-base records go to annotations: the structural CRD schema prunes
  kopf's default ``status.kopf`` field, so kopf would otherwise forget what it handled.

High availability: by default one replica, Deployment strategy ``Recreate``, kopf peering off
(``--standalone``). Kopf peering is a pause protocol, not a lock, with known races. One
replica suffices because the Jobs keep running without the operator and all state is in the
resources: a restart (seconds) only delays status updates. For faster failover,
``LAXAI_LEADER_ELECTION=true`` adds a Lease-based leader gate (:mod:`laxai_operator.leader`):
standbys wait for the Lease before kopf starts, the holder exits when it cannot renew.
Should two instances ever overlap anyway (a partitioned node's pod still running), they
cannot duplicate anything: the Job name is deterministic, creation is create-or-adopt,
terminal phases are final and status writes are idempotent — tests/operator/test_ha.py runs
two operators at once.
"""

from __future__ import annotations

import logging
from typing import Any

import kopf
from kubernetes.client.exceptions import ApiException

from laxai_operator import metrics, naming
from laxai_operator.kube import Kube, load_config
from laxai_operator.reconciler import NotOursYet, Reconciler
from laxai_operator.resource import GROUP, PLURAL, VERSION, Phase
from laxai_operator.settings import OperatorSettings

log = logging.getLogger(__name__)

TJ = (GROUP, VERSION, PLURAL)
#: Handler attempts before the TrainingJob is failed (ReconcileError); backoff 1, 2, 4 … 60 s.
RETRIES = 8
OURS = {naming.LABEL_MANAGED_BY: naming.MANAGED_BY}


def backoff(retry: int) -> float:
    return float(min(60, 2**retry))


def configure_kopf(settings: kopf.OperatorSettings) -> None:
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration"
    )
    settings.persistence.finalizer = f"{GROUP}/kopf-finalizer"  # never added: no handler needs it
    # Our own transition events are posted explicitly; kopf's per-handler chatter is not.
    settings.posting.level = logging.WARNING
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.networking.request_timeout = 60
    # No cluster scans: kopf would list/watch CustomResourceDefinitions and (in namespaced mode)
    # Namespaces at cluster scope, which the chart's namespaced Roles cannot grant; on a real
    # server that is 8 forbidden retries (~54 s) of reconciling nothing. The operator serves one
    # CRD, installed with it, and the namespaces it is given (LAXAI_WATCH_NAMESPACES) or all.
    settings.scanning.disabled = True


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    configure_kopf(settings)
    options = OperatorSettings()
    memo.reconciler = Reconciler(Kube(load_config()), options)  # per operator (memo), not per process
    memo.phases = {}
    metrics.PHASES.source = lambda: list(memo.phases.values())
    metrics.serve(options.metrics_port)


# The phase of every TrainingJob, for the metrics gauge: a dict fed by watch events, not a
# kopf index — kopf holds every handler until an index has seen the whole initial list and
# wakes each waiting object on every change (quadratic: minutes at startup with 5,000 jobs).
@kopf.on.event(*TJ)
def track_phase(memo: kopf.Memo, event: kopf.RawEvent, namespace: str, name: str, status: kopf.Status,
                **_: Any) -> None:
    if event.get("type") == "DELETED":
        memo.phases.pop((namespace, name), None)
    else:
        memo.phases[(namespace, name)] = status.get("phase") or "pending"


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    if memo.get("reconciler") is not None:
        memo.reconciler.close()


async def _reconcile(memo: kopf.Memo, trigger: str, namespace: str, name: str, retry: int,
                     body: dict[str, Any] | None = None) -> None:
    reconciler: Reconciler = memo.reconciler
    try:
        await reconciler.reconcile(namespace, name, trigger, body)
    except (ApiException, NotOursYet, OSError) as exc:
        if retry + 1 >= RETRIES:
            await reconciler.give_up(namespace, name, str(exc).strip())
            return
        raise kopf.TemporaryError(f"{trigger}: {exc}", delay=backoff(retry)) from exc


@kopf.on.create(*TJ, id="create", retries=RETRIES)
async def on_create(memo: kopf.Memo, namespace: str, name: str, retry: int, body: kopf.Body | None = None,
                    **_: Any) -> None:
    # The body kopf just delivered is the first read (one request less per new TrainingJob).
    await _reconcile(memo, "create", namespace, name, retry, None if body is None else dict(body))


def settled(status: dict[str, Any], spec: dict[str, Any]) -> bool:
    """Finished with no TTL to arm: a restart has nothing to read or write for it (phases are final,
    its Job was deleted or finished before the phase was written)."""
    phase = status.get("phase")
    return phase in Phase.__members__ and Phase(phase).terminal and spec.get("ttlSecondsAfterFinished") is None


def _unsettled(status: kopf.Status, spec: kopf.Spec, **_: Any) -> bool:
    return not settled(dict(status), dict(spec))


# ``when``: for thousands of finished jobs kopf does not even start the handler, so a restart
# makes no Job/pod reads and no progress-annotation patches for them.
@kopf.on.resume(*TJ, id="resume", retries=RETRIES, when=_unsettled)
async def on_resume(memo: kopf.Memo, namespace: str, name: str, retry: int, **_: Any) -> None:
    await _reconcile(memo, "resume", namespace, name, retry)


@kopf.on.update(*TJ, id="update", field="spec", retries=RETRIES)
async def on_update(memo: kopf.Memo, namespace: str, name: str, retry: int, **_: Any) -> None:
    await _reconcile(memo, "update", namespace, name, retry)


def _tenant_label_differs(labels: kopf.Labels, spec: kopf.Spec, **_: Any) -> bool:
    tenant = spec.get("tenant_id")
    return isinstance(tenant, str) and labels.get(naming.LABEL_TENANT) != tenant


@kopf.on.event(*TJ, when=_tenant_label_differs)
def tenant_label(spec: kopf.Spec, patch: kopf.Patch, **_: Any) -> None:
    """The tenant label follows spec.tenant_id (immutable; labels are not): kubectl-created
    TrainingJobs get it, an edited one is put back, so ``kubectl get tj -l
    training.laxai.io/tenant=X`` lists what the API lists for tenant X. kopf sends this in the
    patch it makes for the event anyway (no extra request when it has one to make)."""
    patch.metadata.labels[naming.LABEL_TENANT] = spec["tenant_id"]


def _owner_name(body: kopf.Body) -> str | None:
    return (body.metadata.annotations or {}).get(naming.ANNOTATION_TRAININGJOB) or (
        body.metadata.labels or {}
    ).get(naming.LABEL_TRAININGJOB)


@kopf.on.event("batch", "v1", "jobs", labels=OURS)
async def on_job_event(memo: kopf.Memo, body: kopf.Body, event: kopf.RawEvent, namespace: str, **_: Any) -> None:
    if event.get("type") == "ADDED" and not body.get("status"):
        return  # our own fresh creation: the reconcile that made it has already mapped it
    name = _owner_name(body)
    if name and memo.get("reconciler") is not None:
        await memo.reconciler.nudge(namespace, name, "job")


@kopf.on.event("v1", "pods", labels=OURS)
async def on_pod_event(memo: kopf.Memo, body: kopf.Body, namespace: str, **_: Any) -> None:
    name = _owner_name(body)
    if name and memo.get("reconciler") is not None:
        await memo.reconciler.nudge(namespace, name, "pod")


def _pod_creation_refused(body: kopf.Body, **_: Any) -> bool:
    return body.get("reason") == "FailedCreate" and (body.get("involvedObject") or {}).get("kind") == "Job"


@kopf.on.event("v1", "events", when=_pod_creation_refused)
async def on_failed_create(memo: kopf.Memo, body: kopf.Body, namespace: str, **_: Any) -> None:
    reconciler: Reconciler | None = memo.get("reconciler")
    job_name = body["involvedObject"].get("name") or ""
    name = naming.trainingjob_of_job(job_name)
    if name is None and reconciler is not None:  # a truncated + hashed Job name: ask the Job
        job = await reconciler.kube.get_job(namespace, job_name)
        labels = ((job or {}).get("metadata") or {}).get("labels") or {}
        if labels.get(naming.LABEL_MANAGED_BY) == naming.MANAGED_BY:
            name = (job["metadata"].get("annotations") or {}).get(naming.ANNOTATION_TRAININGJOB)
    if name and reconciler is not None:
        await reconciler.nudge(namespace, name, "event")
