"""One writer per run: which TrainingJob may start on a (tenant, custom_name). Pure.

Every door (the API, kubectl, a GitOps tool) ends at the operator, so this is where "at most
one active job per (tenant, custom_name) in a namespace" is enforced: before a TrainingJob's
Job is created, the other active (non-terminal) TrainingJobs on the same run are looked at.

- One of them already has a Job (its trainer may be writing the run): it holds the run.
- Else the oldest (creationTimestamp, ties by name) of them all, this one included, goes first.

The loser stays ``pending`` with reason ``RunNameInUse`` naming the holder, and starts when the
holder has finished (it is reconciled again then). A TrainingJob without ``custom_name`` writes
to its own name, which no other TrainingJob of the namespace can have.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from laxai_operator.resource import Phase, TrainingJobSpec, TrainingJobStatus
from laxai_operator.status_mapping import Decision, Verdict, fold

REASON = "RunNameInUse"


@dataclass(frozen=True)
class Claimant:
    name: str
    created: str  # creationTimestamp (RFC 3339, UTC, fixed width: compares as text)
    has_job: bool


def run_key(spec: Any) -> tuple[str, str] | None:
    """(tenant, custom_name) of a stored spec; None without a custom_name or when unreadable."""
    if not isinstance(spec, dict):
        return None
    tenant, name = spec.get("tenant_id"), spec.get("custom_name")
    return (tenant, name) if isinstance(tenant, str) and isinstance(name, str) and name else None


def claimants(trainingjobs: list[dict[str, Any]], key: tuple[str, str], with_jobs: set[str]) -> list[Claimant]:
    """The active TrainingJobs on run ``key``; ``with_jobs`` names those whose Job exists."""
    out = []
    for tj in trainingjobs:
        status = tj.get("status") or {}
        phase = status.get("phase") or Phase.pending.value
        if run_key(tj.get("spec")) != key or phase not in (Phase.pending.value, Phase.running.value):
            continue
        meta = tj["metadata"]
        has_job = meta["name"] in with_jobs or bool(status.get("jobName"))
        out.append(Claimant(meta["name"], meta.get("creationTimestamp") or "", has_job))
    return out


def holder(me: str, contenders: list[Claimant]) -> str | None:
    """The TrainingJob that ``me`` must wait for, or None when ``me`` may start."""
    others = sorted((c for c in contenders if c.name != me), key=lambda c: (c.created, c.name))
    writing = [c for c in others if c.has_job]
    if writing:
        return writing[0].name
    mine = next((c for c in contenders if c.name == me), None)
    if mine is None or not others:
        return None
    first = others[0]
    return first.name if (first.created, first.name) < (mine.created, mine.name) else None


def waiting(
    status: TrainingJobStatus, spec: TrainingJobSpec, other: str, generation: int | None, now: datetime
) -> Decision:
    """The pending status of a TrainingJob kept from starting by ``other``."""
    verdict = Verdict(
        Phase.pending, REASON,
        f"TrainingJob {other} is writing run {spec.tenant_id}/runs/{spec.custom_name}; this job starts when it "
        "has finished (or choose another custom_name)",
    )
    return fold(status, verdict, generation, None, [], now, status.job_name, False, None, spec)
