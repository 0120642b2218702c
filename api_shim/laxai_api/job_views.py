"""What a job looks like in each response: pure functions from a JobRecord to response bodies.

A list's items can also be rendered to JSON ahead of time (:func:`summary_json`): the
kubernetes backend's cache keeps each job's item ready, so a page of 1,000 is a join of
ready-made fragments (:func:`job_list_json`), not 1,000 models built and validated per call.
Both paths give the same JSON (tests/api/test_job_views.py).
"""

from __future__ import annotations

import json

from laxai_api.backends.base import JobRecord
from laxai_api.schemas import JobDetail, JobSummary, TrainResponse


def status_response(job: JobRecord, status: str | None = None, message: str | None = None) -> TrainResponse:
    return TrainResponse(
        status=status or job.phase, task_id=job.task_id,
        message=message or job.display_message(), progress=job.display_progress(),
    )


def summary(job: JobRecord) -> JobSummary:
    return JobSummary(
        status=job.phase, task_id=job.task_id, message=job.display_message(), progress=job.display_progress(),
        tenant_id=job.tenant_id, run_name=job.run_name, created_at=job.created_at,
    )


def summary_json(job: JobRecord) -> bytes:
    """The job's list item as compact JSON, exactly as the JobList response serialises it."""
    return summary(job).model_dump_json(by_alias=True).encode()


def job_list_json(total: int, items: list[bytes], next_token: str | None) -> bytes:
    """A JobList body (the same fields and order as the model) from ready-made items."""
    return b"".join((b'{"total_jobs":', str(total).encode(), b',"jobs":[', b",".join(items),
                     b'],"continue":', json.dumps(next_token).encode(), b"}"))


def detail(job: JobRecord) -> JobDetail:
    return JobDetail(
        status=job.phase, task_id=job.task_id, message=job.display_message(), progress=job.display_progress(),
        tenant_id=job.tenant_id, run_name=job.run_name, created_at=job.created_at,
        reason=job.reason, spec=job.spec.model_dump(by_alias=True, mode="json", exclude_none=True),
        conditions=job.conditions, history=job.history, started_at=job.started_at,
        completed_at=job.completed_at, metrics=job.metrics, attempts=job.attempts,
    )
