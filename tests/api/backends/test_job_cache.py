"""The TrainingJob cache: the pure index, then the list+watch loop against the API emulator."""

from __future__ import annotations

import asyncio
import json
import threading

import kubernetes
import pytest

from laxai_api.backends.job_cache import JobCache, JobIndex, trim
from laxai_api.backends.kubernetes import CREATED_AT_ANNOTATION, record_from_object, sort_key
from laxai_api.job_views import summary_json
from laxai_trainer.status import Phase
from tests.support.threaded import TRAININGJOBS, ThreadedKubeEmulator

NS = "default"


def index() -> JobIndex:
    return JobIndex(record_from_object, sort_key, annotations=(CREATED_AT_ANNOTATION,))


def tj(name: str, rv: int, tenant: str = "t1", phase: str | None = None, second: int = 0, **meta) -> dict:
    obj = {"metadata": {"name": name, "resourceVersion": str(rv), "creationTimestamp": f"2026-01-01T00:00:{second:02d}Z",
                        **meta},
           "spec": {"tenant_id": tenant}}
    if phase:
        obj["status"] = {"phase": phase}
    return obj


def names(jobs) -> list[str]:
    return [j.name for j in jobs]


# ---- the index ------------------------------------------------------------------------------


def test_added_modified_deleted_and_stale_events_are_ignored():
    ix = index()
    assert ix.upsert(tj("a", 5))
    assert ix.get("a").phase == Phase.pending and ix.total("t1", Phase.pending) == 1
    assert ix.upsert(tj("a", 7, phase="running"))
    assert not ix.upsert(tj("a", 6, phase="failed"))  # older than what is held: a late event or write
    assert ix.get("a").phase == Phase.running
    assert ix.total("t1", Phase.pending) == 0 and ix.total("t1", Phase.running) == 1
    assert ix.delete(tj("a", 8))
    assert ix.get("a") is None and ix.total(None, None) == 0 and ix.resource_version == 8


def test_a_deleted_job_is_not_resurrected_by_a_late_write_response():
    ix = index()
    ix.upsert(tj("a", 5))
    ix.delete(tj("a", 9))
    assert not ix.upsert(tj("a", 8, phase="running"))  # e.g. our cancel's response, after the DELETED event
    assert ix.get("a") is None
    assert ix.upsert(tj("a", 12))  # recreated under the same name later
    assert ix.get("a").rv == 12


def test_relist_drops_what_is_gone_and_keeps_newer_own_writes():
    ix = index()
    ix.upsert(tj("old", 3))
    ix.upsert(tj("changed", 4))
    ix.upsert(tj("mine", 20))  # our own create, applied from its response after the snapshot was taken
    ix.replace([ix.prepare(tj("changed", 6, phase="running")), ix.prepare(tj("new", 7))], rv=10)
    assert sorted(ix.jobs) == ["changed", "mine", "new"]
    assert ix.get("changed").phase == Phase.running and ix.resource_version == 20


def test_pages_are_newest_first_and_stable_under_inserts():
    ix = index()
    for i in range(5):
        ix.upsert(tj(f"j{i}", 10 + i, second=i))
    total, first, cursor = ix.page(None, None, 2)
    assert names(first) == ["j4", "j3"] and total == 5
    ix.upsert(tj("j9", 30, second=59))  # a new job does not shift later pages
    _, second, cursor = ix.page(None, None, 2, cursor)
    assert names(second) == ["j2", "j1"]
    _, last, cursor = ix.page(None, None, 2, cursor)
    assert names(last) == ["j0"] and cursor is None


def test_same_second_jobs_order_by_name_and_microsecond_annotation_wins():
    ix = index()
    ix.upsert(tj("b", 1, second=5))
    ix.upsert(tj("a", 2, second=5))
    ix.upsert(tj("c", 3, second=5, annotations={CREATED_AT_ANNOTATION: "2026-01-01T00:00:05.500000Z"}))
    assert names(ix.page(None, None, 10)[1]) == ["c", "b", "a"]


def test_tenant_and_status_filters_never_mix_tenants():
    ix = index()
    for i in range(6):
        ix.upsert(tj(f"x{i}", i + 1, tenant="t1" if i % 2 else "t2", phase="running" if i < 4 else "completed",
                     second=i))
    total, jobs, _ = ix.page("t1", None, 100)
    assert total == 3 and names(jobs) == ["x5", "x3", "x1"]
    total, jobs, cursor = ix.page("t2", Phase.running, 1)
    assert total == 2 and names(jobs) == ["x2"] and cursor is not None
    assert names(ix.page("t2", Phase.running, 1, cursor)[1]) == ["x0"]
    assert ix.page("t3", None, 10) == (0, [], None)
    ix.upsert(tj("x1", 50, tenant="t1", phase="completed", second=1))
    assert ix.total("t1", Phase.running) == 1 and ix.total(None, Phase.completed) == 3


def test_unservable_objects_are_not_indexed_and_leave_when_they_turn_unservable():
    ix = index()
    ix.upsert({"metadata": {"name": "bad", "resourceVersion": "1"}, "spec": {"tenant_id": "../x"}})
    assert ix.get("bad") is None
    ix.upsert(tj("ok", 2))
    ix.upsert({"metadata": {"name": "ok", "resourceVersion": "3"}, "spec": {}})
    assert ix.get("ok") is None and ix.total(None, None) == 0


def test_entries_keep_only_what_responses_need():
    big = tj("a", 5, phase="completed", labels={"training.laxai.io/tenant": "t1"},
             annotations={CREATED_AT_ANNOTATION: "2026-01-01T00:00:00.000001Z",
                          "training.laxai.io/last-handled-configuration": "x" * 5000},
             managedFields=[{"manager": "kopf", "fieldsV1": {"f:spec": {"x": "y" * 5000}}}])
    big["status"].update({"jobName": "tj-a", "observedGeneration": 3, "progress": {"current_epoch": 2}})
    kept = trim(big, (CREATED_AT_ANNOTATION,))
    assert kept["metadata"] == {"name": "a", "creationTimestamp": "2026-01-01T00:00:00Z",
                                "annotations": {CREATED_AT_ANNOTATION: "2026-01-01T00:00:00.000001Z"}}
    assert set(kept["status"]) == {"phase", "progress"}
    ix = index()
    ix.upsert(big)
    assert len(ix.get("a").doc) < 400 and len(ix.get("a").item) < 600
    record = ix.record(ix.get("a"))
    assert record.phase == Phase.completed and record.progress.current_epoch == 2
    assert record.created_at == "2026-01-01T00:00:00.000001Z"


def with_run(obj: dict, run: str) -> dict:
    obj["spec"]["custom_name"] = run
    return obj


def test_active_runs_follow_phases_tenants_and_deletes():
    ix = index()
    ix.upsert(with_run(tj("a", 1, phase="running"), "r"))
    ix.upsert(with_run(tj("b", 2, second=5), "r"))  # newer, pending: both hold the run
    ix.upsert(with_run(tj("c", 3, tenant="t2"), "r"))
    assert ix.active_run("t1", "r") == "b" and ix.active_run("t2", "r") == "c"
    ix.upsert(with_run(tj("b", 4, phase="completed", second=5), "r"))  # finished: no longer active
    assert ix.active_run("t1", "r") == "a"
    ix.delete(tj("a", 5))
    assert ix.active_run("t1", "r") is None and ix.active_run("t1", "other") is None
    ix.upsert(with_run(tj("c", 6, tenant="t2"), "renamed"))
    assert ix.active_run("t2", "r") is None and ix.active_run("t2", "renamed") == "c"
    assert ix._active == {("t2", "renamed"): {ix.get("c").key}}  # nothing left behind


def test_holds_tells_the_watch_thread_what_needs_no_preparing():
    ix = index()
    ix.upsert(tj("a", 5))  # e.g. our create, applied from its response before the watch echoes it
    assert ix.holds(tj("a", 5)) and ix.holds(tj("a", 4))
    assert not ix.holds(tj("a", 6)) and not ix.holds(tj("b", 1))


def test_list_items_are_rendered_once_per_version():
    ix = index()
    ix.upsert(tj("a", 1))
    first = ix.get("a").item
    assert json.loads(first) == json.loads(summary_json(ix.record(ix.get("a"))))
    ix.upsert(tj("a", 2, phase="running"))
    assert json.loads(ix.get("a").item)["status"] == "running"


# ---- list + watch against the emulator -------------------------------------------------------------


def body(name: str, tenant: str = "t1") -> dict:
    return {"apiVersion": "training.laxai.io/v1alpha1", "kind": "TrainingJob",
            "metadata": {"name": name}, "spec": {"tenant_id": tenant}}


async def eventually(predicate, timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


@pytest.fixture
async def running_cache(request):
    """(emulator, cache) with the emulator's options from the test's ``emulator`` mark."""
    mark = request.node.get_closest_marker("emulator")
    options = dict(mark.kwargs) if mark else {}
    cache_options = {"watch_timeout": options.pop("watch_timeout", 300), "backoff": 0.05}
    with ThreadedKubeEmulator(**options) as kube:
        kube.create(TRAININGJOBS, body("before"), NS)
        client = kube.api_client()
        cache = JobCache(kubernetes.client.CustomObjectsApi(client), NS, index(), **cache_options)
        await cache.start()
        assert await cache.wait_synced(10)
        try:
            yield kube, cache
        finally:
            await cache.close()
            client.close()


def watch_requests(kube) -> list[str]:
    return kube.call(lambda: [r._raw_request.path_qs for r in kube.emulator._requests
                              if "watch=true" in r._raw_request.path_qs and "trainingjobs" in r._raw_request.path_qs])


async def test_the_cache_follows_creates_updates_and_deletes(running_cache):
    kube, cache = running_cache
    assert cache.index.get("before") is not None and cache.lists == 1
    kube.create(TRAININGJOBS, body("a", "t2"), NS)
    await eventually(lambda: cache.index.get("a") is not None)
    kube.patch_status(TRAININGJOBS, NS, "a", {"phase": "running"})
    await eventually(lambda: cache.index.get("a").phase == Phase.running)
    kube.delete(TRAININGJOBS, NS, "before")
    await eventually(lambda: cache.index.get("before") is None)
    assert cache.index.total("t2", Phase.running) == 1 and cache.lists == 1


async def test_objects_are_parsed_in_the_watch_thread_not_on_the_event_loop():
    loop_thread, parsed_in = threading.current_thread(), []

    def parse(obj):
        parsed_in.append(threading.current_thread())
        return record_from_object(obj)

    with ThreadedKubeEmulator() as kube:
        for name in ("one", "two"):
            kube.create(TRAININGJOBS, body(name), NS)
        client = kube.api_client()
        cache = JobCache(kubernetes.client.CustomObjectsApi(client), NS, JobIndex(parse, sort_key), backoff=0.05)
        await cache.start()
        try:
            assert await cache.wait_synced(10)
            kube.create(TRAININGJOBS, body("three"), NS)
            await eventually(lambda: cache.index.get("three") is not None)
            assert len(parsed_in) >= 3 and loop_thread not in parsed_in
            assert cache.index.record(cache.index.get("three")).task_id == "three"  # parsed once, kept
            assert parsed_in.count(loop_thread) == 0
        finally:
            await cache.close()
            client.close()


@pytest.mark.emulator(event_history_limit=5)
async def test_410_gone_relists(running_cache):
    kube, cache = running_cache
    failing = kube.inject_failure("GET", r"trainingjobs\?.*watch=true", 500, times=None)
    kube.call(kube.emulator.close_watches)  # the open watch ends; rewatches fail while the history moves on
    kube.call(lambda: setattr(kube.emulator, "_closing", False))
    await eventually(lambda: failing.hits >= 1)
    for i in range(8):
        kube.create(TRAININGJOBS, body(f"n{i}"), NS)
    kube.delete(TRAININGJOBS, NS, "before")
    kube.clear_failures()
    await eventually(lambda: cache.lists == 2)  # the resume point is gone: 410, then a fresh list
    await eventually(lambda: cache.index.get("n7") is not None)
    assert cache.index.get("before") is None and cache.index.total(None, None) == 8


@pytest.mark.emulator(bookmark_interval=0.1)
async def test_bookmarks_move_the_resume_point_without_trainingjob_changes(running_cache):
    kube, cache = running_cache
    pod = kube.create("v1/pods", {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "x"}]}},
                      NS)
    await eventually(lambda: cache.index.resource_version >= int(pod["metadata"]["resourceVersion"]))
    assert all("allowWatchBookmarks=true" in path for path in watch_requests(kube))


@pytest.mark.emulator(watch_timeout=1)
async def test_a_watch_that_times_out_is_resumed_without_a_relist(running_cache):
    kube, cache = running_cache
    await eventually(lambda: len(watch_requests(kube)) >= 2, timeout=15)
    kube.create(TRAININGJOBS, body("later"), NS)
    await eventually(lambda: cache.index.get("later") is not None)
    assert cache.lists == 1
    assert all("resourceVersion=" in path and "timeoutSeconds=1" in path for path in watch_requests(kube))


def test_parsed_records_are_reused_until_the_job_changes_and_stay_bounded():
    ix = JobIndex(record_from_object, sort_key, parsed=2)
    for i in range(3):
        ix.upsert(tj(f"j{i}", i + 1))
    first = ix.record(ix.get("j0"))
    assert ix.record(ix.get("j0")) is first
    ix.upsert(tj("j0", 10, phase="running"))
    assert ix.record(ix.get("j0")).phase == Phase.running  # a new version is parsed again
    ix.record(ix.get("j1"))
    ix.record(ix.get("j2"))
    assert len(ix._parsed) == 2 and "j0" not in ix._parsed


def test_a_filed_list_is_collected_and_frozen_out_of_the_collectors_scans(monkeypatch):
    """Thousands of cached jobs are long-lived: the full collections a burst triggers must not scan them."""
    from laxai_api.backends import job_cache

    calls = []
    monkeypatch.setattr(job_cache.gc, "collect", lambda: calls.append("collect"))
    monkeypatch.setattr(job_cache.gc, "freeze", lambda: calls.append("freeze"))
    cache = JobCache(None, NS, index())
    cache._replaced([cache.index.prepare(tj("a", 5))], 5)
    assert calls == ["collect", "freeze"] and cache.synced and names(cache.index.page(None, None, 10)[1]) == ["a"]
