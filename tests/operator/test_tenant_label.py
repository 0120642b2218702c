"""The operator sets the tenant label from spec.tenant_id, so kubectl's label views and the
API's tenant lists (which filter by spec.tenant_id) agree."""

from __future__ import annotations

import asyncio

from laxai_api.app import create_app
from laxai_api.backends.kubernetes import KubernetesBackend
from tests.api.conftest import local_settings, serve
from tests.operator.conftest import NS, TJS, make_tj, running_operator

TENANT = "training.laxai.io/tenant"


def labelled(emu, tenant: str) -> list[str]:
    return sorted(o["metadata"]["name"] for o in emu.objects(TJS, NS, label_selector=f"{TENANT}={tenant}"))


async def test_kubectl_views_and_rest_lists_agree_on_tenants(operator_env, tmp_path):
    emu = operator_env
    make_tj(emu, "no-label", tenant_id="tenant1")  # as `kubectl apply` makes it: no tenant label
    forged = make_tj(emu, "forged", tenant_id="tenant2")
    emu.patch(TJS, NS, "forged", {"metadata": {"labels": {TENANT: "tenant1"}}})
    with running_operator():
        # both: the two TrainingJobs are handled concurrently, in either order
        await asyncio.to_thread(emu.wait_for, lambda: (labelled(emu, "tenant2"), labelled(emu, "tenant1"))
                                == (["forged"], ["no-label"]), 15, message="labels follow spec.tenant_id")
        emu.patch(TJS, NS, "no-label", {"metadata": {"labels": {TENANT: "tenant9"}}})  # edited later: put back
        await asyncio.to_thread(emu.wait_for, lambda: labelled(emu, "tenant1") == ["no-label"], 15,
                                message="an edited label is put back")
    assert TENANT not in (forged["metadata"].get("labels") or {})  # created without one
    settings = local_settings(tmp_path, backend="kubernetes", namespace=NS)
    async with serve(create_app(settings, KubernetesBackend(settings, api_client=emu.api_client()))) as client:
        for tenant in ("tenant1", "tenant2"):
            listed = (await client.get("/api/v1/train/jobs", params={"tenant_id": tenant})).json()
            assert sorted(j["task_id"] for j in listed["jobs"]) == labelled(emu, tenant)
