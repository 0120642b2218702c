"""Property-based fuzzing of the OpenAPI document (schemathesis): no request gets a 5xx,
and every response matches the documented schema. Local backend, fake trainer; queue-only
(max_concurrent_jobs=0) so fuzzed submissions never start hundreds of processes. Auth is on
(as Helm deploys it), so schemathesis also checks that requests without a key are refused."""

from __future__ import annotations

import json

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import positive_data_acceptance

from laxai_api.app import create_app
from tests.api.conftest import LiveServer, local_settings

pytestmark = pytest.mark.timeout(300)
EXAMPLES_PER_OPERATION = 100
# Excluded check: positive_data_acceptance expects every schema-valid body to be accepted, but
# JSON Schema cannot express the model's cross-field rules (batch_size >= 2 x images_per_player,
# an alias and its name together, cancel=true at submit, a continue token from a previous page);
# those answer 422 with the field named, which test_app.py checks. Every other default check runs:
# no 5xx, status codes, content types, response bodies and headers as documented, auth enforced.
ADMIN_KEY = "fuzz-admin-key"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    settings = local_settings(tmp_path_factory.mktemp("fuzz"), max_concurrent_jobs=0, auth_enabled=True,
                              api_keys=json.dumps({ADMIN_KEY: "*"}))
    app = create_app(settings)
    with LiveServer(app) as live:
        yield live


def operations(url: str):
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
    return [result.ok() for result in schema.get_all_operations()]


def test_every_operation_is_fuzzed(server):
    labels = {op.label for op in operations(server.url)}
    assert {"POST /api/v1/train", "GET /api/v1/train/jobs", "GET /api/v1/train/{task_id}/status",
            "GET /api/v1/train/{task_id}", "DELETE /api/v1/train/{task_id}",
            "GET /api/v1/train/{task_id}/logs", "GET /", "GET /health", "GET /metrics"} <= labels


@pytest.mark.parametrize(
    "label",
    ["POST /api/v1/train", "GET /api/v1/train/jobs", "GET /api/v1/train/{task_id}/status",
     "GET /api/v1/train/{task_id}", "DELETE /api/v1/train/{task_id}", "GET /api/v1/train/{task_id}/logs",
     "GET /", "GET /health"],
)
def test_no_5xx_and_responses_match_the_schema(server, label):
    operation = next(op for op in operations(server.url) if op.label == label)

    @given(case=operation.as_strategy())
    @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, suppress_health_check=list(HealthCheck),
              database=None)
    def check(case):
        case.call_and_validate(headers={"X-API-Key": ADMIN_KEY}, excluded_checks=[positive_data_acceptance])

    check()
