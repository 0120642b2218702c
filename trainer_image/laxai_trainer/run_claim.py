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

After a checkpoint is loaded, :func:`check_continuation` decides whether an earlier job's
run has anything left to train, and reopens an early-stopped one asked for more epochs.

Torch-free and pure, but for :func:`outputs`, :func:`archive_run` and :func:`claim_run`
(storage calls).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any, Literal

from laxai_trainer.errors import ConfigError
from laxai_trainer.run_layout import (
    ARCHIVE_DIR,
    RunLayout,
    meta_nothing_left,
    nothing_left,
    nothing_left_message,
    read_meta,
)

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


def find_claim(storage: Any, layout: RunLayout, previous: dict[str, Any] | None, job_id: str | None,
               resume: bool) -> Claim:
    """:func:`claim` from what the run folder holds; reads only."""
    has_outputs = previous is not None or bool(outputs(storage, layout))
    return claim(previous, job_id, resume, has_outputs)


def claim_run(storage: Any, layout: RunLayout, job_id: str | None, resume: bool, num_epochs: int,
              now: str) -> tuple[Claim, dict[str, Any]]:
    """Claim the run folder before writing to it: archive an earlier run that is started over,
    refuse to continue one that has nothing left to train. Returns the claim and the fields
    run.json records about it."""
    previous = read_meta(storage, layout)
    found = find_claim(storage, layout, previous, job_id, resume)
    record: dict[str, Any] = {"attempt": found.attempt, "claim": found.kind, "previous_job_id": found.previous_job}
    if found.kind == "retry":
        log.info("attempt %d of job %s: continuing from its own checkpoint (a job's retries always "
                 "resume, whatever resume_from_checkpoint says)", found.attempt, found.previous_job)
        # what the job's first attempt found stays on record (attempt > 1 says it is a retry)
        record.update({k: previous[k] for k in ("archived_to", "previous_job_id", "claim") if k in previous})
    elif found.kind == "continue" and meta_nothing_left(previous, num_epochs):
        epochs_done = int(previous.get("epochs_completed") or 0)
        raise ConfigError(nothing_left_message(layout.run_name, epochs_done, num_epochs))
    elif found.kind == "restart":
        target = archive_run(storage, layout, archive_stamp(previous, now))
        log.warning("resume_from_checkpoint is false: the earlier run's outputs were moved to %s; "
                    "starting over", storage.uri(target))
        record["archived_to"] = storage.uri(target)
    return found, record


def check_continuation(kind: ClaimKind, earlier_job: bool, epochs_done: int, stopped_early: bool,
                       earlier_num_epochs: int | None, num_epochs: int, run_name: str) -> bool:
    """After loading a checkpoint: True when an early-stopped earlier run is reopened (asked for
    more epochs than it had: its early-stopping state is to be cleared); ConfigError when
    continuing an earlier job's run would train nothing.

    ``earlier_job``: the checkpoint was written by another job (also on a retry whose own
    attempts wrote none yet).
    """
    if kind != "continue" and not earlier_job:
        return False
    if nothing_left(epochs_done, stopped_early, earlier_num_epochs, num_epochs):
        if kind == "continue":
            raise ConfigError(nothing_left_message(run_name, epochs_done, num_epochs))
        return False
    return stopped_early
