"""Which TrainingJob watch events call for a reconcile, and why (pure).

The operator reacts to TrainingJob events with one ``kopf.on.event`` handler instead of kopf's
on.create / on.update / on.resume: those persist a diff base and handler progress in the
object (one extra PATCH, and one extra watch event, per TrainingJob and change) and run kopf's
change detection on every event — at a burst of 500 creations that was a third of the
operator's CPU. The state they kept is derivable: ``metadata.generation`` grows with every
spec change (the CRD has a status subresource, so status and metadata writes leave it alone —
https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definitions/#status-subresource),
and the generation this process last reconciled for lives in memory. After a restart that
memory is empty, so the initial listing reconciles every unfinished TrainingJob (what kopf's
resume handler did); everything the decision needs is in the resources.
"""

from __future__ import annotations

from typing import Any

from laxai_operator.resource import Phase

CREATE, UPDATE, RESUME = "create", "update", "resume"
#: Triggers of a TrainingJob's own lifecycle: retried, then the TrainingJob fails (ReconcileError).
LIFECYCLE = frozenset({CREATE, UPDATE, RESUME})


def settled(status: dict[str, Any], spec: dict[str, Any]) -> bool:
    """Finished with no TTL to arm: a restart has nothing to read or write for it (phases are final,
    its Job was deleted or finished before the phase was written)."""
    phase = status.get("phase")
    return phase in Phase.__members__ and Phase(phase).terminal and spec.get("ttlSecondsAfterFinished") is None


def trigger(event_type: str | None, body: dict[str, Any], handled: int | None) -> str | None:
    """The reason to reconcile on this event, or None.

    ``event_type``: the watch event's type; kopf delivers the initial listing (at start and after a
    relist) as ``None``. ``handled``: the generation this process last reconciled for, None if it
    has not seen the object yet.
    """
    if event_type == "DELETED":
        return None
    generation = (body.get("metadata") or {}).get("generation") or 0
    if handled is None:
        if event_type == "ADDED":
            return CREATE
        return None if settled(body.get("status") or {}, body.get("spec") or {}) else RESUME
    return UPDATE if generation > handled else None
