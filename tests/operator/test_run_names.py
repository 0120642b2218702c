"""laxai_operator.run_names and its reconciler gate: one active TrainingJob per (tenant, custom_name)."""

from __future__ import annotations

import asyncio

import pytest

from laxai_api.backends.kubernetes import KubernetesBackend
from laxai_api.settings import ApiSettings
from laxai_operator.kube import Kube
from laxai_operator.reconciler import Reconciler
from laxai_operator.resource import TrainingJobSpec
from laxai_operator.run_names import Claimant, claimants, holder, run_key
from laxai_operator.settings import OperatorSettings
from tests.operator.conftest import JOBS, NS, TJS, make_tj, status_of


def c(name, created="2026-01-01T00:00:00Z", has_job=False):
    return Claimant(name, created, has_job)


@pytest.mark.parametrize(("me", "contenders", "expected"), [
    ("a", [c("a")], None),
    ("b", [c("a"), c("b")], "a"),  # same second: by name
    ("a", [c("a"), c("b")], None),
    ("a", [c("a", "2026-01-01T00:00:05Z"), c("b", "2026-01-01T00:00:01Z")], "b"),  # the older goes first
    ("a", [c("a"), c("b", "2026-01-01T00:00:09Z", has_job=True)], "b"),  # one already writing holds it
    ("a", [c("a"), c("b", has_job=True), c("c", has_job=True)], "b"),
])
def test_holder(me, contenders, expected):
    assert holder(me, contenders) == expected


def test_claimants_are_the_active_trainingjobs_of_the_same_tenant_and_name():
    def tj(name, tenant="t1", run="r", phase=None, job=None):
        return {"metadata": {"name": name, "creationTimestamp": "2026-01-01T00:00:00Z"},
                "spec": {"tenant_id": tenant, "custom_name": run},
                "status": {k: v for k, v in (("phase", phase), ("jobName", job)) if v}}
    items = [tj("a"), tj("b", phase="running", job="tj-b"), tj("c", phase="completed"), tj("d", tenant="t2"),
             tj("e", run="other"), tj("f", phase="pending")]
    found = claimants(items, ("t1", "r"), with_jobs={"f"})
    assert [(x.name, x.has_job) for x in found] == [("a", False), ("b", True), ("f", True)]
    assert run_key({"tenant_id": "t1"}) is None  # without custom_name a job writes to its own name


@pytest.fixture()
def reconciler(operator_env):
    r = Reconciler(Kube(operator_env.api_client()), OperatorSettings(), post_events=lambda body, evs: None)
    yield r
    r.close()


async def test_a_kubectl_trainingjob_waits_for_the_api_job_on_its_run_then_starts(operator_env, reconciler, tmp_path):
    emu = operator_env
    settings = ApiSettings(backend="kubernetes", namespace=NS, home=tmp_path, storage_root=str(tmp_path / "s"))
    api = KubernetesBackend(settings, api_client=emu.api_client())
    await api.start()
    try:
        spec = TrainingJobSpec.model_validate({"tenant_id": "tenant1", "custom_name": "shared"})
        await api.submit("from-api", spec)
    finally:
        await api.close()
    await reconciler.reconcile(NS, "from-api", "test")
    make_tj(emu, "from-kubectl", custom_name="shared")
    await reconciler.reconcile(NS, "from-kubectl", "test")
    st = status_of(emu, "from-kubectl")
    assert (st["phase"], st["reason"]) == ("pending", "RunNameInUse") and "from-api" in st["message"]
    assert [j["metadata"]["name"] for j in emu.objects(JOBS, NS)] == ["tj-from-api"]
    # another tenant's run of that name is another run
    make_tj(emu, "other-tenant", tenant_id="tenant2", custom_name="shared")
    await reconciler.reconcile(NS, "other-tenant", "test")
    assert status_of(emu, "other-tenant")["reason"] != "RunNameInUse"
    # the API job finishes (cancelled here): the waiting one is woken and gets its Job
    emu.patch(TJS, NS, "from-api", {"spec": {"cancel": True}})
    await reconciler.reconcile(NS, "from-api", "test")
    assert status_of(emu, "from-api")["phase"] == "cancelled"
    for _ in range(100):
        if status_of(emu, "from-kubectl").get("jobName"):
            break
        await asyncio.sleep(0.05)
    assert status_of(emu, "from-kubectl")["jobName"] == "tj-from-kubectl"
    assert emu.get(JOBS, NS, "tj-from-kubectl") is not None


async def test_a_newer_trainingjob_never_overtakes_one_that_has_its_job(operator_env, reconciler):
    emu = operator_env
    make_tj(emu, "zz-first", custom_name="r")
    await reconciler.reconcile(NS, "zz-first", "test")
    make_tj(emu, "aa-second", custom_name="r")  # sorts first by name, maybe in the same second
    await reconciler.reconcile(NS, "aa-second", "test")
    assert status_of(emu, "aa-second")["reason"] == "RunNameInUse"
    assert emu.get(JOBS, NS, "tj-aa-second") is None


async def test_concurrent_reconciles_of_two_namesakes_create_one_job(operator_env, reconciler):
    emu = operator_env
    for name in ("job-b", "job-a"):
        make_tj(emu, name, custom_name="r")
    await asyncio.gather(reconciler.reconcile(NS, "job-b", "test"), reconciler.reconcile(NS, "job-a", "test"))
    assert len(emu.objects(JOBS, NS)) == 1
    waiting = [n for n in ("job-a", "job-b") if status_of(emu, n).get("reason") == "RunNameInUse"]
    assert len(waiting) == 1
