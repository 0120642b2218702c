"""Handler paths that keep the operator cheap with thousands of TrainingJobs."""

from __future__ import annotations

from tests.operator.conftest import NS, TJS, events_for, make_tj, running_operator, wait_phase


def job_reads(emu) -> list[str]:
    return emu.call(lambda: [r._raw_request.path for r in emu.emulator._requests
                             if r._raw_request.method == "GET" and "/jobs/" in r._raw_request.path])


def test_a_restart_reads_nothing_for_finished_jobs(operator_env):
    emu = operator_env
    make_tj(emu, "done")
    with running_operator():
        emu.wait_for_object("batch/v1/jobs", NS, "tj-done")
        emu.patch_status(TJS, NS, "done", {"phase": "completed", "reason": "Succeeded",
                                          "completionTime": "2026-01-01T00:00:00Z"})
        emu.delete("batch/v1/jobs", NS, "tj-done", propagation="Background")
    make_tj(emu, "live")
    before = len(job_reads(emu))
    with running_operator():  # a restart: resume for "done", create for "live"
        wait_phase(emu, "live", "pending")
        emu.wait_for_object("batch/v1/jobs", NS, "tj-live")
    assert [p for p in job_reads(emu)[before:] if p.endswith("/tj-done")] == []
    assert emu.get(TJS, NS, "done")["status"]["phase"] == "completed"


def requests(emu) -> list[tuple[str, str, str]]:
    return emu.call(lambda: [(r._raw_request.method, r._raw_request.path, r._raw_request.query_string)
                             for r in emu.emulator._requests])


def test_a_new_trainingjob_costs_three_requests(operator_env):
    """Job create, status patch, the JobCreated Event: kopf writes nothing into the TrainingJob
    (no diff-base or progress annotations, no extra PATCH and watch event per change)."""
    emu = operator_env
    with running_operator():
        make_tj(emu, "warm")
        emu.wait_for(lambda: ("Normal", "JobCreated") in events_for(emu, "warm"), message="warm-up done")
        before = len(requests(emu))
        emu.create(TJS, {"apiVersion": "training.laxai.io/v1alpha1", "kind": "TrainingJob",  # as the API makes it
                         "metadata": {"name": "new", "namespace": NS, "labels": {"training.laxai.io/tenant": "t1"}},
                         "spec": {"tenant_id": "t1"}}, namespace=NS)
        wait_phase(emu, "new", "pending")
        emu.wait_for(lambda: len(requests(emu)) >= before + 3, message="the JobCreated Event")
        made = [(m, p.rsplit("/", 2)[-2:]) for m, p, _ in requests(emu)[before:] if m != "GET"]
    assert sorted(made) == sorted([("POST", ["default", "jobs"]), ("PATCH", ["new", "status"]),
                                   ("POST", ["default", "events"])])
    assert (emu.get(TJS, NS, "new")["metadata"].get("annotations") or {}) == {}


def test_a_trainingjob_without_the_tenant_label_costs_one_request_more(operator_env):
    """kubectl-made: labelled once, before the reconcile (whose status write then meets the version it read)."""
    emu = operator_env
    with running_operator():
        make_tj(emu, "warm")
        emu.wait_for(lambda: ("Normal", "JobCreated") in events_for(emu, "warm"), message="warm-up done")
        before = len(requests(emu))
        make_tj(emu, "new")
        wait_phase(emu, "new", "pending")
        emu.wait_for(lambda: len(requests(emu)) >= before + 4, message="the JobCreated Event")
        made = [(m, p.rsplit("/", 2)[-2:]) for m, p, _ in requests(emu)[before:] if m != "GET"]
    assert sorted(made) == sorted([("PATCH", ["trainingjobs", "new"]), ("POST", ["default", "jobs"]),
                                   ("PATCH", ["new", "status"]), ("POST", ["default", "events"])])
    assert emu.get(TJS, NS, "new")["metadata"]["labels"] == {"training.laxai.io/tenant": "tenant1"}


def test_watches_select_only_what_the_operator_acts_on(operator_env):
    """Server-side selectors: other Jobs and pods of the namespace, and Events other than FailedCreate
    on Jobs (the operator's own transition Events included), never reach the operator."""
    from urllib.parse import parse_qs

    emu = operator_env
    with running_operator():
        make_tj(emu, "x")
        wait_phase(emu, "x", "pending")
        watches = {p.rsplit("/", 1)[-1]: parse_qs(q) for _, p, q in requests(emu) if "watch=true" in q}
    ours = ["app.kubernetes.io/managed-by=laxai-operator"]
    assert watches["jobs"]["labelSelector"] == ours and watches["pods"]["labelSelector"] == ours
    assert watches["events"]["fieldSelector"] == ["reason=FailedCreate,involvedObject.kind=Job"]
    assert "labelSelector" not in watches["trainingjobs"]  # kubectl-made ones have no label yet


def test_the_listed_heap_is_frozen_once_at_the_first_change_after_a_listing(monkeypatch):
    from laxai_operator import handlers

    calls = []
    monkeypatch.setattr(handlers.gc, "collect", lambda: calls.append("collect"))
    monkeypatch.setattr(handlers.gc, "freeze", lambda: calls.append("freeze"))
    heap = handlers.LongLivedHeap()
    heap.saw("ADDED")  # no listing yet: nothing to freeze
    for _ in range(3):
        heap.saw(None)  # the initial listing, one event per TrainingJob
    assert calls == []
    heap.saw("ADDED")
    heap.saw("MODIFIED")
    assert calls == ["collect", "freeze"]
    heap.saw(None)  # a relist after a watch expired
    heap.saw("MODIFIED")
    assert calls == ["collect", "freeze"] * 2


def test_a_failed_label_patch_does_not_hold_up_the_job(operator_env):
    emu = operator_env
    emu.inject_failure("PATCH", r"/trainingjobs/new$", status=500, times=1)
    with running_operator():
        make_tj(emu, "new")  # without the tenant label, as kubectl makes it
        emu.wait_for_object("batch/v1/jobs", NS, "tj-new")
        wait_phase(emu, "new", "pending")
        # the status write's event brings the label's second try
        emu.wait_for(lambda: (emu.get(TJS, NS, "new")["metadata"].get("labels") or {}).get(
            "training.laxai.io/tenant") == "tenant1", message="the tenant label")
