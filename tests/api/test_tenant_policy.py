"""A tenant key sets the seed's fields and capped run fields, nothing else (both backends)."""

from __future__ import annotations

import json

import pytest

from laxai_api import tenant_policy
from laxai_api.errors import Forbidden
from laxai_api.settings import ApiSettings
from laxai_operator.resource import RunSpec, TrainingJobSpec
from tests.api.conftest import SHORT, harness_for

KEYS = {"key-t1": "tenant1", "key-admin": "*"}
TENANT = {"X-API-Key": "key-t1"}
ADMIN = {"X-API-Key": "key-admin"}
TTL_CAP = 86400

#: Each run field, with a value a tenant key may not send (admin-only, or above the default cap).
REFUSED = [
    ("image", {"image": "evil:latest"}),
    ("nodeSelector", {"nodeSelector": {"kubernetes.io/hostname": "node-1"}}),
    ("tolerations", {"tolerations": [{"operator": "Exists"}]}),
    ("priorityClassName", {"priorityClassName": "system-node-critical"}),
    ("queueName", {"queueName": "other-team"}),
    ("suspend", {"suspend": True}),
    ("gpus", {"gpus": 2}),
    ("resources.cpu", {"resources": {"cpu": "8001m"}}),
    ("resources.memory", {"resources": {"memory": "65Gi"}}),
    ("shmSize", {"shmSize": "33Gi"}),
    ("backoffLimit", {"backoffLimit": 4}),
    ("activeDeadlineSeconds", {"activeDeadlineSeconds": 604801}),
    ("startupTimeoutSeconds", {"startupTimeoutSeconds": 3601}),
    ("ttlSecondsAfterFinished", {"ttlSecondsAfterFinished": TTL_CAP + 1}),
]
#: Refused at submit for everyone (422), so not a tenant question.
NOT_A_TENANT_QUESTION = {"cancel"}


@pytest.fixture
async def secured(backend_kind, kube, tmp_path):
    keys = tmp_path / "keys.json"
    keys.write_text(json.dumps(KEYS))
    async with harness_for(backend_kind, tmp_path, kube, auth_enabled=True, api_keys_file=keys,
                           tenant_max_ttl_seconds_after_finished=TTL_CAP) as harness:
        yield harness


async def post(harness, extra: dict, headers: dict, **more_headers):
    return await harness.client.post(
        "/api/v1/train", json={"tenant_id": "tenant1", **SHORT, **extra}, headers={**headers, **more_headers})


async def recorded_spec(harness, task_id: str) -> dict:
    response = await harness.client.get(f"/api/v1/train/{task_id}", headers=ADMIN)
    assert response.status_code == 200, response.text
    return response.json()["spec"]


def test_every_run_field_is_covered():
    """A field added to RunSpec must be judged here: it is admin-only until tenant_policy caps it."""
    wire = {f.alias or name for name, f in RunSpec.model_fields.items()} - NOT_A_TENANT_QUESTION
    covered = {field.split(".")[0] for field, _ in REFUSED}
    assert covered == wire


@pytest.mark.parametrize(("field", "extra"), REFUSED, ids=[f for f, _ in REFUSED])
async def test_tenant_key_may_not_set_run_field(secured, field, extra):
    response = await post(secured, extra, TENANT)
    assert response.status_code == 403, response.text
    body = response.json()
    assert body["error"] == "forbidden" and field in body["message"]
    assert body["details"]["fields"] == [field]
    assert body["details"]["errors"][0]["field"] == field
    assert (await secured.client.get("/api/v1/train/jobs", headers=ADMIN)).json()["total_jobs"] == 0


@pytest.mark.parametrize(("field", "extra"), REFUSED, ids=[f for f, _ in REFUSED])
async def test_admin_key_sets_any_run_field(secured, field, extra):
    response = await post(secured, extra, ADMIN)
    assert response.status_code == 200, response.text
    spec = await recorded_spec(secured, response.json()["task_id"])
    key, value = next(iter(extra.items()))
    assert spec[key] == value


async def test_every_refused_field_is_named_at_once(secured):
    response = await post(secured, {"image": "evil:latest", "gpus": 8, "tolerations": [{"operator": "Exists"}]}, TENANT)
    assert response.status_code == 403
    assert response.json()["details"]["fields"] == ["gpus", "image", "tolerations"]
    assert response.json()["details"]["errors"][0] == {"field": "gpus", "reason": "at most 1 for a tenant API key",
                                                       "limit": 1}


async def test_tenant_key_within_caps_and_defaults_is_accepted(secured):
    within = {"gpus": 1, "resources": {"cpu": "8", "memory": "64Gi"}, "shmSize": "32Gi", "backoffLimit": 3,
              "activeDeadlineSeconds": 604800, "startupTimeoutSeconds": 3600, "ttlSecondsAfterFinished": TTL_CAP,
              # the defaults: the same spec as leaving them out
              "image": None, "nodeSelector": {}, "tolerations": None, "suspend": False}
    response = await post(secured, within, TENANT)
    assert response.status_code == 200, response.text
    spec = await recorded_spec(secured, response.json()["task_id"])
    assert spec["gpus"] == 1 and spec["resources"] == {"cpu": "8", "memory": "64Gi"} and "image" not in spec


async def test_a_quantity_the_crd_pattern_admits_but_is_none_is_422(secured):
    response = await post(secured, {"resources": {"cpu": "1.2.3"}}, TENANT)
    assert response.status_code == 422, response.text
    assert response.json()["error"] == "validation_error"
    assert response.json()["details"]["errors"][0]["field"] == "resources.cpu"


@pytest.mark.parametrize("body", [{}, {"activeDeadlineSeconds": None, "ttlSecondsAfterFinished": None}],
                         ids=["omitted", "null"])
async def test_omitted_capped_fields_get_at_most_the_cap(secured, body):
    response = await post(secured, body, TENANT)
    assert response.status_code == 200, response.text
    spec = await recorded_spec(secured, response.json()["task_id"])
    assert (spec["gpus"], spec["backoffLimit"], spec["startupTimeoutSeconds"]) == (1, 3, 900)
    assert (spec["activeDeadlineSeconds"], spec["ttlSecondsAfterFinished"]) == (604800, TTL_CAP)


async def test_admin_spec_is_not_capped(secured):
    response = await post(secured, {"gpus": 4}, ADMIN)
    spec = await recorded_spec(secured, response.json()["task_id"])
    assert spec["gpus"] == 4 and "activeDeadlineSeconds" not in spec and "ttlSecondsAfterFinished" not in spec


async def test_idempotent_retry_of_a_tenant_key_is_replayed(secured):
    first = await post(secured, {}, TENANT, **{"Idempotency-Key": "k1"})
    again = await post(secured, {}, TENANT, **{"Idempotency-Key": "k1"})
    assert again.status_code == 200 and again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["task_id"] == first.json()["task_id"]


@pytest.mark.parametrize(("cap", "default_gpus", "body", "expected"), [
    (1, None, {"gpus": 1}, 1),  # at the cap
    (0, None, {}, 0),  # a CPU-only service: the CRD default (1) is capped too
    (1, 2, {}, 1),  # the service default above the cap
    (4, 2, {}, 2),
    (4, None, {"gpus": 4}, 4),
])
async def test_gpu_cap(backend_kind, kube, tmp_path, cap, default_gpus, body, expected):
    keys = tmp_path / "keys.json"
    keys.write_text(json.dumps(KEYS))
    async with harness_for(backend_kind, tmp_path, kube, auth_enabled=True, api_keys_file=keys,
                           tenant_max_gpus=cap, default_gpus=default_gpus) as harness:
        accepted = await post(harness, body, TENANT)
        assert accepted.status_code == 200, accepted.text
        assert (await recorded_spec(harness, accepted.json()["task_id"]))["gpus"] == expected
        over = await post(harness, {"gpus": cap + 1}, TENANT)
        assert over.status_code == 403 and over.json()["details"]["errors"][0]["limit"] == cap


async def test_without_auth_the_single_user_sets_every_field(backend_kind, kube, tmp_path):
    async with harness_for(backend_kind, tmp_path, kube) as harness:
        response = await post(harness, {"image": "mine:dev", "gpus": 3}, {})
        assert response.status_code == 200, response.text


# ---- the pure functions ------------------------------------------------------------------------


def spec(**fields) -> TrainingJobSpec:
    return TrainingJobSpec.model_validate({"tenant_id": "t1", **fields})


def test_no_cap_means_any_value():
    limits = tenant_policy.TenantLimits(gpus=16)
    assert tenant_policy.violations(spec(gpus=16, resources={"memory": "1Ti"}, backoffLimit=100), limits) == []
    assert tenant_policy.capped_defaults(spec(), limits, None) == {"gpus": 1}  # the CRD default, under 16


def test_quantities_compare_by_value():
    limits = tenant_policy.TenantLimits(cpu="8", memory="64Gi")
    assert tenant_policy.violations(spec(resources={"cpu": "8000m", "memory": "68719476736"}), limits) == []
    refused = tenant_policy.violations(spec(resources={"cpu": "8001m", "memory": "65Gi"}), limits)
    assert [v.field for v in refused] == ["resources.cpu", "resources.memory"]


def test_admit_raises_forbidden_naming_fields():
    with pytest.raises(Forbidden) as err:
        tenant_policy.admit(spec(image="x", queueName="q"), tenant_policy.TenantLimits())
    assert err.value.details["fields"] == ["image", "queueName"]


def test_settings_read_caps_and_empty_means_no_cap(monkeypatch):
    monkeypatch.setenv("LAXAI_TENANT_MAX_GPUS", "2")
    monkeypatch.setenv("LAXAI_TENANT_MAX_MEMORY", "")
    monkeypatch.setenv("LAXAI_TENANT_MAX_ACTIVE_DEADLINE_SECONDS", "")
    monkeypatch.setenv("LAXAI_TENANT_MAX_TTL_SECONDS_AFTER_FINISHED", "60")
    limits = ApiSettings().tenant_limits()
    assert (limits.gpus, limits.memory, limits.active_deadline_seconds, limits.ttl_seconds_after_finished) == (
        2, None, None, 60)
    assert limits.cpu == "8"


@pytest.mark.parametrize(("name", "value"), [("LAXAI_TENANT_MAX_CPU", "lots"), ("LAXAI_TENANT_MAX_MEMORY", "0"),
                                             ("LAXAI_TENANT_MAX_GPUS", "-1"), ("LAXAI_TENANT_MAX_GPUS", "")])
def test_bad_caps_are_refused_naming_the_setting(monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    with pytest.raises(ValueError, match=name.removeprefix("LAXAI_").lower()):
        ApiSettings()
