"""laxai_operator.reconciler against the API emulator, driven directly (no kopf)."""

from __future__ import annotations

import pytest

from laxai_operator.job_builder import build_job
from laxai_operator.kube import Kube
from laxai_operator.reconciler import NotOursYet, Reconciler
from laxai_operator.resource import TrainingJobSpec
from laxai_operator.settings import OperatorSettings
from tests.operator.conftest import JOBS, NS, TJS, make_tj, status_of


@pytest.fixture()
def reconciler(operator_env):
    r = Reconciler(Kube(operator_env.api_client()), OperatorSettings(),
                   post_events=lambda body, evs: r.posted.extend((body["metadata"]["name"], *e) for e in evs))
    r.posted = []
    yield r
    r.close()


async def test_reconcile_is_idempotent(operator_env, reconciler):
    emu = operator_env
    make_tj(emu, "run-1")
    for _ in range(3):
        await reconciler.reconcile(NS, "run-1", "test")
    assert len(emu.objects(JOBS, NS)) == 1
    assert [h["reason"] for h in status_of(emu, "run-1")["history"]] == ["JobCreated"]
    assert reconciler.posted == [("run-1", "Normal", "JobCreated", "pending: Job tj-run-1 created; waiting for its pod")]
    versions = emu.history(TJS, NS, "run-1")
    await reconciler.reconcile(NS, "run-1", "test")
    assert emu.history(TJS, NS, "run-1") == versions  # nothing changed: nothing written


async def test_a_job_of_an_older_namesake_is_not_adopted(operator_env, reconciler):
    emu = operator_env
    tj = make_tj(emu, "run-1")
    spec = TrainingJobSpec.model_validate(tj["spec"])
    emu.create(JOBS, build_job("run-1", NS, "uid-of-a-deleted-trainingjob", spec, OperatorSettings()), namespace=NS)
    with pytest.raises(NotOursYet):
        await reconciler.reconcile(NS, "run-1", "test")
    assert status_of(emu, "run-1").get("jobName") is None


async def test_give_up_fails_with_the_error(operator_env, reconciler):
    emu = operator_env
    make_tj(emu, "run-1")
    await reconciler.give_up(NS, "run-1", "(500) etcd unavailable")
    st = status_of(emu, "run-1")
    assert (st["phase"], st["reason"]) == ("failed", "ReconcileError") and "etcd unavailable" in st["message"]
    assert [e[1:3] for e in reconciler.posted] == [("Warning", "ReconcileError")]
    await reconciler.reconcile(NS, "run-1", "test")  # terminal: no Job is created afterwards
    assert emu.objects(JOBS, NS) == []


async def test_missing_trainingjob_is_a_no_op(operator_env, reconciler):
    await reconciler.reconcile(NS, "nope", "test")
    await reconciler.give_up(NS, "nope", "x")
    assert operator_env.objects(JOBS, NS) == []


async def test_a_failed_event_reconcile_is_retried_on_a_timer(operator_env, reconciler, monkeypatch):
    """A transient API error on the last event of a Job must not leave the status stale forever."""
    import asyncio

    emu = operator_env
    make_tj(emu, "run-1")
    calls = []
    real = reconciler._reconcile

    async def flaky(namespace, name, body=None):
        calls.append(name)
        if len(calls) == 1:
            raise OSError("connection reset")
        await real(namespace, name, body)

    monkeypatch.setattr(reconciler, "_reconcile", flaky)
    reconciler.retry_base = 1.1  # first retry after 1.1 s instead of 2 s
    await reconciler.nudge(NS, "run-1", "job")
    assert status_of(emu, "run-1") == {}  # failed, nothing written yet
    for _ in range(100):  # up to 5 s
        if status_of(emu, "run-1").get("jobName"):
            break
        await asyncio.sleep(0.05)
    assert len(calls) == 2 and status_of(emu, "run-1")["jobName"] == "tj-run-1"


@pytest.mark.parametrize("trigger", ["create", "update", "resume"])
async def test_exhausted_lifecycle_retries_fail_the_trainingjob_instead_of_hanging(operator_env, reconciler,
                                                                                    monkeypatch, trigger):
    import asyncio

    from kubernetes.client.exceptions import ApiException

    from laxai_operator import reconciler as module

    emu = operator_env
    make_tj(emu, "run-1")
    emu.inject_failure("POST", r"/jobs$", status=500, times=None, message="etcd unavailable")
    monkeypatch.setattr(module, "NUDGE_RETRIES", 2)
    reconciler.retry_base = 0.01
    await reconciler.nudge(NS, "run-1", trigger)
    for _ in range(200):  # up to 10 s
        if status_of(emu, "run-1").get("phase") == "failed":
            break
        await asyncio.sleep(0.05)
    st = status_of(emu, "run-1")
    assert (st["phase"], st["reason"]) == ("failed", "ReconcileError") and "etcd unavailable" in st["message"]
    assert creations_tried(emu) == 3  # the first run and its 2 retries
    with pytest.raises(ApiException):  # what the retries met
        await reconciler.kube.create_job(NS, {"metadata": {"name": "probe"}})


async def test_event_triggers_never_fail_the_trainingjob(operator_env, reconciler, monkeypatch):
    """A Job or pod event whose reconcile keeps failing leaves the phase to the next event."""
    import asyncio

    from laxai_operator import reconciler as module

    emu = operator_env
    make_tj(emu, "run-1")
    emu.inject_failure("POST", r"/jobs$", status=500, times=None)
    monkeypatch.setattr(module, "NUDGE_RETRIES", 2)
    reconciler.retry_base = 0.01
    await reconciler.nudge(NS, "run-1", "job")
    for _ in range(100):
        if creations_tried(emu) >= 3 and not reconciler._timers:
            break
        await asyncio.sleep(0.05)
    assert creations_tried(emu) == 3 and status_of(emu, "run-1") == {}


def creations_tried(emu) -> int:
    return emu.call(lambda: sum(1 for r in emu.emulator._requests if r._raw_request.method == "POST"
                                and r._raw_request.path.endswith("/jobs")))


async def test_a_stale_read_cannot_put_running_over_completed(operator_env, reconciler, monkeypatch):
    """A writer that decided from an older status (a slow reconcile, a second operator) must not
    regress a terminal phase: its write is conditional on the version it read (409), and the
    re-run, reading the newer status, leaves the terminal phase alone."""
    from tests.operator.conftest import trainer_state

    emu = operator_env
    make_tj(emu, "run-1")
    await reconciler.reconcile(NS, "run-1", "test")
    emu.make_pod_for_job(emu.get(JOBS, NS, "tj-run-1"), phase="Running", container_statuses=trainer_state(running={}))
    stale = emu.get(TJS, NS, "run-1")  # pending: what the slow writer read
    emu.patch_status(TJS, NS, "run-1", {"phase": "completed", "reason": "Completed",
                                        "completionTime": "2026-01-01T01:00:00Z"})  # another writer, meanwhile
    real_get, reads = reconciler.kube.get_trainingjob, []

    async def first_read_is_stale(namespace, name):
        reads.append(name)
        return stale if len(reads) == 1 else await real_get(namespace, name)

    monkeypatch.setattr(reconciler.kube, "get_trainingjob", first_read_is_stale)
    await reconciler.reconcile(NS, "run-1", "test")
    st = status_of(emu, "run-1")
    assert (st["phase"], st["reason"]) == ("completed", "Completed")
    assert len(reads) == 2  # the 409 made it read again
    assert [p[2] for p in reconciler.posted] == ["JobCreated"]  # no false "Running" event either


def trainingjob_reads(emu, name: str) -> int:
    return emu.call(lambda: sum(1 for r in emu.emulator._requests if r._raw_request.method == "GET"
                                and r._raw_request.path.endswith(f"/trainingjobs/{name}")))


async def test_a_delivered_body_is_the_first_read(operator_env, reconciler):
    """The create path passes the TrainingJob its watch event carried: no GET of it."""
    emu = operator_env
    tj = make_tj(emu, "run-1")
    await reconciler.reconcile(NS, "run-1", "test", body=tj)
    assert trainingjob_reads(emu, "run-1") == 0
    assert status_of(emu, "run-1")["jobName"] == "tj-run-1"


async def test_a_stale_delivered_body_is_read_again(operator_env, reconciler):
    """A body older than the stored object: the conditional status write gets 409, the run reads
    again and decides from the newest spec (here: cancelled, so the Job just made is deleted)."""
    emu = operator_env
    stale = make_tj(emu, "run-1")
    emu.patch(TJS, NS, "run-1", {"spec": {"cancel": True}})
    await reconciler.reconcile(NS, "run-1", "test", body=stale)
    assert trainingjob_reads(emu, "run-1") == 1
    assert status_of(emu, "run-1")["phase"] == "cancelled"
    assert emu.objects(JOBS, NS) == []


async def test_status_updates_do_not_wait_for_busy_api_threads(operator_env):
    """A nudge (a pod or Job changed) uses threads of its own: with every creation thread busy,
    a running job's status is still written."""
    import asyncio
    import threading

    emu = operator_env
    make_tj(emu, "run-1")
    r = Reconciler(Kube(operator_env.api_client(), workers=1), OperatorSettings(), post_events=lambda body, evs: None)
    release = threading.Event()
    try:
        await r.reconcile(NS, "run-1", "test")
        emu.make_pod_for_job("tj-run-1", NS, phase="Running")
        busy = asyncio.get_running_loop().run_in_executor(r.kube.pool, release.wait, 30)
        await asyncio.wait_for(r.nudge(NS, "run-1", "pod"), timeout=10)
        assert status_of(emu, "run-1")["phase"] == "running"
    finally:
        release.set()
        await busy
        r.close()
