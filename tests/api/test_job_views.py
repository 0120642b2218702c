"""Ready-made list items give the same JSON as the response models."""

from __future__ import annotations

import json

import pytest

from laxai_api.backends.base import JobRecord
from laxai_api.job_views import job_list_json, summary, summary_json
from laxai_api.schemas import JobList
from laxai_operator.resource import TrainingJobSpec
from laxai_trainer.status import Phase, Progress


def jobs() -> list[JobRecord]:
    return [
        JobRecord(task_id="a", tenant_id="t1", spec=TrainingJobSpec(tenant_id="t1")),
        JobRecord(task_id="b", tenant_id="t1", spec=TrainingJobSpec(tenant_id="t1", custom_name="run_b"),
                  phase=Phase.running, created_at="2026-01-01T00:00:00.000001Z", message="époque 2 — \"ok\"",
                  progress=Progress(status=Phase.pending, current_epoch=2, total_epochs=5, current_loss=0.1 + 0.2,
                                    logs=["line\n", "ünïcode"], eta_seconds=1e-7)),
    ]


@pytest.mark.parametrize("token", [None, "eyJhIjoxfQ"])
def test_a_list_of_ready_items_is_the_models_json(token):
    records = jobs()
    body = json.loads(job_list_json(7, [summary_json(job) for job in records], token))
    expected = JobList(total_jobs=7, jobs=[summary(job) for job in records], continue_=token)
    assert body == expected.model_dump(mode="json", by_alias=True)
    assert body["jobs"][1]["progress"]["status"] == "running"  # display_progress: the job's phase


def test_an_empty_page():
    assert json.loads(job_list_json(0, [], None)) == {"total_jobs": 0, "jobs": [], "continue": None}
