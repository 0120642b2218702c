"""Which job a run folder belongs to, and what a starting job does with what it finds there.

A run folder ``{tenant}/runs/{run}/`` belongs to the job that wrote its ``run.json``
(``job_id``: the TrainingJob's uid on Kubernetes, the task id in the local backend, set
through ``LAXAI_JOB_ID``; a trainer started by hand has none and is a new job every time).

- **retry**: the folder is this job's own (preemption, eviction, exit 75, node loss, a
  restarted task): continue from its checkpoint, whatever ``resume_from_checkpoint`` says;
  ``attempt`` counts the job's starts (run.json's count + 1).
- **new**: nothing there yet.
- **continue**: an earlier job's run and ``resume_from_checkpoint: true``: continue from its
  checkpoint; refused (config error) when that would train no epoch.
- **restart**: an earlier job's run and ``resume_from_checkpoint: false``: its outputs are moved
  to ``archive/<its started_at>/`` (run.json last, so an interrupted archive resumes into the
  same folder), then training starts over.

Torch-free and pure, but for :func:`outputs` and :func:`archive_run` (storage calls).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any, Literal

from laxai_trainer.run_layout import ARCHIVE_DIR, RunLayout

log = logging.getLogger(__name__)

ClaimKind = Literal["new", "retry", "continue", "restart"]


@dataclass(frozen=True)
class Claim:
    kind: ClaimKind
    attempt: int
    previous_job: str | None = None  # the job that wrote the folder before this one

    @property
    def loads_checkpoint(self) -> bool:
        return self.kind in ("retry", "continue")


def claim(previous: dict[str, Any] | None, job_id: str | None, resume: bool, has_outputs: bool) -> Claim:
    """What a job starting on a run folder does (module docstring)."""
    previous_job = (previous or {}).get("job_id")
    if job_id and previous_job == job_id:
        return Claim("retry", int((previous or {}).get("attempt") or 1) + 1, previous_job)
    if not has_outputs:
        return Claim("new", 1, previous_job)
    return Claim("continue" if resume else "restart", 1, previous_job)


def archive_stamp(previous: dict[str, Any] | None, now: str) -> str:
    """The archive folder of an earlier run: its start time (else now), as one path segment."""
    when = (previous or {}).get("started_at") or now
    return re.sub(r"[^0-9A-Za-z]", "", str(when))[:32] or "unknown"


def outputs(storage: Any, layout: RunLayout) -> list[str]:
    """The run folder's files, the archive excluded."""
    archive = f"{layout.prefix}/{ARCHIVE_DIR}/"
    return [f.path for f in storage.list_files(layout.prefix) if not f.path.startswith(archive)]


def archive_run(storage: Any, layout: RunLayout, stamp: str) -> str:
    """Move the run's outputs to ``archive/<stamp>/``; returns that folder. run.json moves last."""
    target = layout.archive(stamp)
    files = sorted(outputs(storage, layout), key=lambda p: p == layout.run_meta)
    for path in files:
        storage.move(path, f"{target}/{path[len(layout.prefix) + 1:]}")
    log.info("moved %d files of the earlier run to %s", len(files), storage.uri(target))
    return target
