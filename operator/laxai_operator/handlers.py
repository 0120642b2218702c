"""kopf handlers: thin glue from Kubernetes events to :class:`~laxai_operator.reconciler.Reconciler`.

- TrainingJob events -> reconcile when it is new, its spec changed, or it is unfinished when the
  operator starts (:mod:`laxai_operator.triggers`): read-or-create the Job (deterministic name;
  409 adopts it), sync suspend / activeDeadlineSeconds to it, cancel (delete the Job, phase
  cancelled), map status. Bounded retries with exponential backoff; when they run out the
  TrainingJob fails with reason ReconcileError instead of hanging.
- Job and Pod events (label-selected to ours, server-side) -> reconcile of the owning TrainingJob.
- The Job controller's ``FailedCreate`` Events on Jobs (a refused pod: missing ServiceAccount,
  quota, admission) -> reconcile of the owning TrainingJob, which shows the Event's message
  within seconds (a refused pod leaves no other trace: no pod, no Job condition).
- No finalizer: deleting a TrainingJob deletes its Job and pods through ownerReferences
  (garbage collection), which works even while the operator is down. No handler here needs
  one (no on.delete, no daemons or timers — kopf puts a finalizer on objects with those).
- Only ``on.event`` handlers: kopf writes nothing into the objects (no progress or diff-base
  annotations, no extra PATCH per change); what was handled is a generation in memory.

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

import gc
import logging
from typing import Any

import kopf
from kubernetes.client.exceptions import ApiException

from laxai_operator import metrics, naming, triggers
from laxai_operator.kube import Kube, load_config
from laxai_operator.reconciler import Reconciler
from laxai_operator.resource import GROUP, PLURAL, VERSION
from laxai_operator.settings import OperatorSettings

log = logging.getLogger(__name__)

TJ = (GROUP, VERSION, PLURAL)
OURS = {naming.LABEL_MANAGED_BY: naming.MANAGED_BY}
#: The Job controller's report of a refused pod, the only Events the operator reads.
POD_CREATION_REFUSED = "reason=FailedCreate,involvedObject.kind=Job"


class NoDiffBase(kopf.DiffBaseStorage):
    """No handler here reacts to diffs (only ``on.event`` handlers): kopf still builds a diff base
    — a deep copy of the object — on every event unless its storage says there is nothing to
    compare (a tenth of the operator's CPU at a burst of creations). Nothing is stored either."""

    def build(self, *, body: kopf.Body, extra_fields: Any = None) -> kopf.BodyEssence:
        return kopf.BodyEssence()

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        return None

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        return None


def configure_kopf(settings: kopf.OperatorSettings) -> None:
    settings.persistence.diffbase_storage = NoDiffBase()
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
    # Server-side filters: the operator is not woken by other Jobs and pods of the namespace, nor by
    # Events other than FailedCreate on Jobs — its own transition Events included (one per change).
    ours = f"{naming.LABEL_MANAGED_BY}={naming.MANAGED_BY}"
    settings.watching.label_selectors["batch", "v1", "jobs"] = ours
    settings.watching.label_selectors["v1", "pods"] = ours
    settings.watching.field_selectors["v1", "events"] = POD_CREATION_REFUSED


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    configure_kopf(settings)
    options = OperatorSettings()
    memo.reconciler = Reconciler(Kube(load_config()), options)  # per operator (memo), not per process
    # The phase of every TrainingJob, for the metrics gauge: a dict fed by watch events, not a
    # kopf index — kopf holds every handler until an index has seen the whole initial list and
    # wakes each waiting object on every change (quadratic: minutes at startup with 5,000 jobs).
    memo.phases = {}
    memo.handled = {}  # (namespace, name) -> the generation last reconciled for (triggers.trigger)
    memo.heap = LongLivedHeap()
    metrics.PHASES.source = lambda: list(memo.phases.values())
    metrics.serve(options.metrics_port)


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    if memo.get("reconciler") is not None:
        memo.reconciler.close()


@kopf.on.event(*TJ)
async def on_trainingjob(memo: kopf.Memo, event: kopf.RawEvent, body: kopf.Body, namespace: str, name: str,
                         **_: Any) -> None:
    """Every TrainingJob event: the phase gauge, the tenant label, and a reconcile when the
    TrainingJob is new, changed its spec, or is unfinished at start (:mod:`laxai_operator.triggers`)."""
    key = (namespace, name)
    reconciler: Reconciler | None = memo.get("reconciler")
    if event.get("type") == "DELETED":
        memo.phases.pop(key, None)
        memo.handled.pop(key, None)
        if reconciler is not None:
            reconciler.forget(key)
        return
    memo.heap.saw(event.get("type"))
    raw = dict(body)
    memo.phases[key] = (raw.get("status") or {}).get("phase") or "pending"
    if reconciler is None:
        return
    if (tenant := tenant_to_label(raw)) is not None:
        try:
            raw = await reconciler.kube.label_trainingjob(namespace, name, naming.LABEL_TENANT, tenant) or raw
        except (ApiException, OSError) as exc:  # the reconcile must not wait for it: the next event retries
            log.warning("could not set the tenant label of %s/%s: %s", namespace, name, exc)
    why = triggers.trigger(event.get("type"), raw, memo.handled.get(key))
    memo.handled[key] = raw["metadata"].get("generation") or 0
    if why is not None:
        # The delivered body (or the labelled one) is the first read: one request less per new TrainingJob.
        await reconciler.nudge(namespace, name, why, raw if why == triggers.CREATE else None)


class LongLivedHeap:
    """Collect, then leave what exists out of the garbage collector's scans (``gc.freeze``), at the
    first change after each listing (kopf delivers a listing's objects as ``type None``).

    After the initial listing the heap holds kopf's memory of every TrainingJob (5,000 and
    more, finished ones included), and every full collection a burst of creations triggers
    scanned all of it: ~1 s of CPU per 500 creations with 5,000 stored (bench.operator_latency).
    Frozen objects are still freed by reference counting; the collection first leaves no
    garbage cycles among them. One per operator (kopf's per-object memos share it).
    """

    def __init__(self) -> None:
        self.listed = False

    def saw(self, event_type: str | None) -> None:
        if event_type is None:
            self.listed = True
        elif self.listed:
            self.listed = False
            gc.collect()
            gc.freeze()


def tenant_to_label(body: dict[str, Any]) -> str | None:
    """The tenant label follows spec.tenant_id (immutable; labels are not): kubectl-created
    TrainingJobs get it, an edited one is put back, so ``kubectl get tj -l
    training.laxai.io/tenant=X`` lists what the API lists for tenant X. Labelled before the
    reconcile, from whose answer it continues: its status write then meets the version it read,
    and the events after it already carry the label (no second patch)."""
    tenant = (body.get("spec") or {}).get("tenant_id")
    if isinstance(tenant, str) and (body["metadata"].get("labels") or {}).get(naming.LABEL_TENANT) != tenant:
        return tenant
    return None


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
