"""Auth and tenant isolation matrix, against both backends."""

from __future__ import annotations

import json

import pytest

from tests.api.conftest import SHORT, harness_for

KEYS = {"key-t1": "tenant1", "key-t2": "tenant2", "key-admin": "*"}
T1 = {"X-API-Key": "key-t1"}
T2 = {"Authorization": "Bearer key-t2"}
ADMIN = {"X-API-Key": "key-admin"}


@pytest.fixture
async def secured(backend_kind, kube, tmp_path):
    keys = tmp_path / "keys.json"
    keys.write_text(json.dumps(KEYS))
    async with harness_for(backend_kind, tmp_path, kube, auth_enabled=True, api_keys_file=keys) as harness:
        yield harness


async def submit(harness, headers, tenant="tenant1"):
    response = await harness.client.post("/api/v1/train", json={"tenant_id": tenant, **SHORT}, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()["task_id"]


ROUTES = [
    ("POST", "/api/v1/train"), ("GET", "/api/v1/train/jobs"), ("GET", "/api/v1/train/{id}/status"),
    ("GET", "/api/v1/train/{id}"), ("DELETE", "/api/v1/train/{id}"), ("GET", "/api/v1/train/{id}/logs"),
]


@pytest.mark.parametrize(("method", "path"), ROUTES)
@pytest.mark.parametrize("headers", [{}, {"X-API-Key": "wrong"}, {"Authorization": "Bearer wrong"},
                                     {"Authorization": "Basic a2V5LXQxOg=="}, {"X-API-Key": ""}])
async def test_no_or_bad_key_is_401(secured, method, path, headers):
    task_id = await submit(secured, ADMIN)
    response = await secured.client.request(
        method, path.format(id=task_id), headers=headers, json={"tenant_id": "tenant1"} if method == "POST" else None
    )
    assert response.status_code == 401, response.text
    assert set(response.json()) == {"error", "message", "details"} and response.json()["error"] == "unauthorized"
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert "wrong" not in response.text


async def test_system_routes_need_no_key(secured):
    for path in ("/", "/health", "/metrics", "/openapi.json", "/docs"):
        assert (await secured.client.get(path)).status_code == 200, path


async def test_tenant_keys_see_only_their_tenant(secured):
    mine = await submit(secured, T1)
    theirs = await submit(secured, T2, "tenant2")
    # another tenant's job does not exist for this key
    for method, path in ROUTES[2:]:
        response = await secured.client.request(method, path.format(id=theirs), headers=T1)
        assert response.status_code == 404 and response.json()["error"] == "not_found", (method, path)
    assert (await secured.client.get(f"/api/v1/train/{mine}/status", headers=T1)).status_code == 200
    # a body or filter naming another tenant is 403
    forbidden = await secured.client.post("/api/v1/train", json={"tenant_id": "tenant2"}, headers=T1)
    assert forbidden.status_code == 403 and forbidden.json()["error"] == "forbidden"
    assert (await secured.client.get("/api/v1/train/jobs", params={"tenant_id": "tenant2"}, headers=T1)).status_code == 403
    # lists are limited to the key's tenant
    listed = (await secured.client.get("/api/v1/train/jobs", headers=T1)).json()
    assert [j["task_id"] for j in listed["jobs"]] == [mine] and listed["total_jobs"] == 1
    same = (await secured.client.get("/api/v1/train/jobs", params={"tenant_id": "tenant1"}, headers=T1)).json()
    assert same["total_jobs"] == 1
    # admin sees and acts on everything
    everything = (await secured.client.get("/api/v1/train/jobs", headers=ADMIN)).json()
    assert {j["task_id"] for j in everything["jobs"]} == {mine, theirs}
    assert (await secured.client.get(f"/api/v1/train/{theirs}", headers=ADMIN)).status_code == 200
    # the owner cancels its job; the other tenant could not
    assert (await secured.client.delete(f"/api/v1/train/{theirs}", headers=T1)).status_code == 404


async def test_idempotency_keys_are_per_tenant(secured):
    a = await secured.client.post("/api/v1/train", json={"tenant_id": "tenant1"}, headers={**T1, "Idempotency-Key": "k"})
    b = await secured.client.post("/api/v1/train", json={"tenant_id": "tenant2"}, headers={**T2, "Idempotency-Key": "k"})
    assert a.json()["task_id"] != b.json()["task_id"]
