"""The emulator, driven by the official ``kubernetes`` client and raw HTTP, as the project's code uses it."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from typing import Any

import kubernetes
import pytest
from kubernetes.client.exceptions import ApiException

from tests.support.threaded import ThreadedKubeEmulator

GROUP, VERSION, PLURAL = "training.laxai.io", "v1alpha1", "trainingjobs"
TJ = f"{GROUP}/{VERSION}/{PLURAL}"
TJ_PATH = f"/apis/{GROUP}/{VERSION}/namespaces/default/{PLURAL}"


def tj(name: str, labels: dict[str, str] | None = None, **spec: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if labels:
        meta["labels"] = labels
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "TrainingJob", "metadata": meta,
            "spec": {"tenant_id": "t1", **spec}}


def job(name: str, owner: dict[str, Any] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "labels": {"app": "trainer"}}
    if owner:
        meta["ownerReferences"] = [{"apiVersion": owner["apiVersion"], "kind": owner["kind"],
                                    "name": owner["metadata"]["name"], "uid": owner["metadata"]["uid"],
                                    "controller": True, "blockOwnerDeletion": True}]
    return {"metadata": meta, "spec": {"backoffLimit": 0, "template": {"spec": {
        "restartPolicy": "Never", "containers": [{"name": "trainer", "image": "trainer:1"}]}}}}


def http(emu: ThreadedKubeEmulator, method: str, path: str, body: Any = None,
         content_type: str = "application/json") -> tuple[int, Any, Any]:
    """Raw HTTP: (status, headers, parsed JSON body)."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(emu.url + path, data=data, method=method,
                                     headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.headers, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, e.headers, json.loads(e.read() or b"null")


@pytest.fixture()
def custom(kube_api_client: Any) -> kubernetes.client.CustomObjectsApi:
    return kubernetes.client.CustomObjectsApi(kube_api_client)


@pytest.fixture()
def batch(kube_api_client: Any) -> kubernetes.client.BatchV1Api:
    return kubernetes.client.BatchV1Api(kube_api_client)


@pytest.fixture()
def core(kube_api_client: Any) -> kubernetes.client.CoreV1Api:
    return kubernetes.client.CoreV1Api(kube_api_client)


def create_tj(custom: kubernetes.client.CustomObjectsApi, body: dict[str, Any], ns: str = "default") -> Any:
    return custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, body)


# ------------------------------------------------------------------ CRUD


def test_create_answers_201_with_server_populated_metadata(kube_emulator, custom, batch):
    status, _, body = http(kube_emulator, "POST", TJ_PATH, tj("raw"))
    assert status == 201
    created = create_tj(custom, tj("tj1"))
    meta = created["metadata"]
    assert meta["name"] == "tj1" and meta["namespace"] == "default"
    assert meta["uid"] and meta["uid"] != body["metadata"]["uid"]
    assert meta["generation"] == 1 and meta["creationTimestamp"].endswith("Z")
    assert int(meta["resourceVersion"]) > int(body["metadata"]["resourceVersion"])
    created_job = batch.create_namespaced_job("default", job("j1"))
    assert created_job is not None and created_job.metadata.uid and created_job.metadata.generation == 1
    assert batch.read_namespaced_job("j1", "default").metadata.resource_version == created_job.metadata.resource_version
    assert kube_emulator.get(TJ, "default", "tj1")["metadata"]["uid"] == meta["uid"]


def test_resource_versions_increase_globally_across_kinds(kube_emulator, custom, batch):
    rvs = [int(create_tj(custom, tj("a"))["metadata"]["resourceVersion"]),
           int(batch.create_namespaced_job("default", job("j")).metadata.resource_version),
           int(create_tj(custom, tj("b"))["metadata"]["resourceVersion"])]
    assert rvs == sorted(rvs) and len(set(rvs)) == 3


def test_generate_name_makes_a_unique_name(custom):
    body = tj("")
    body["metadata"] = {"generateName": "run-"}
    names = {create_tj(custom, body)["metadata"]["name"] for _ in range(5)}
    assert len(names) == 5 and all(n.startswith("run-") and len(n) == 9 for n in names)


def test_duplicate_create_is_409_already_exists(kube_emulator, custom):
    create_tj(custom, tj("dup"))
    with pytest.raises(ApiException) as e:
        create_tj(custom, tj("dup"))
    assert e.value.status == 409
    status = json.loads(e.value.body)
    assert status["kind"] == "Status" and status["reason"] == "AlreadyExists"
    assert status["details"] == {"name": "dup", "group": GROUP, "kind": PLURAL}


@pytest.mark.parametrize("method", ["GET", "PATCH", "PUT", "DELETE"])
def test_missing_object_is_404_with_a_status_body(kube_emulator, method):
    body = {} if method in ("PATCH", "PUT") else None
    status, _, answer = http(kube_emulator, method, f"{TJ_PATH}/nope", body,
                             "application/merge-patch+json" if method == "PATCH" else "application/json")
    assert status == 404
    assert answer["reason"] == "NotFound" and answer["code"] == 404
    assert answer["message"] == f'trainingjobs.{GROUP} "nope" not found'


def test_unknown_resource_and_bad_requests_answer_status_bodies(kube_emulator):
    status, _, answer = http(kube_emulator, "GET", "/apis/nope.io/v1/namespaces/default/things")
    assert status == 404 and answer["kind"] == "Status"
    status, _, answer = http(kube_emulator, "POST", TJ_PATH, ["not", "an", "object"])
    assert status == 400 and answer["reason"] == "BadRequest"
    other_ns = tj("x")
    other_ns["metadata"]["namespace"] = "other"
    status, _, answer = http(kube_emulator, "POST", TJ_PATH, other_ns)
    assert status == 400 and "does not match the namespace" in answer["message"]


def test_names_and_labels_are_validated(kube_emulator, custom, batch):
    with pytest.raises(ApiException) as e:
        create_tj(custom, tj("Upper_Case"))
    assert e.value.status == 422 and "metadata.name" in e.value.body
    with pytest.raises(ApiException) as e:
        batch.create_namespaced_job("default", job("j" * 64))  # Job names end up in a pod label
    assert e.value.status == 422
    with pytest.raises(ApiException) as e:
        create_tj(custom, tj("bad-label", labels={"tenant": "not a valid value"}))
    assert e.value.status == 422 and "metadata.labels" in e.value.body


def test_put_replaces_and_detects_stale_resource_versions(custom):
    first = create_tj(custom, tj("put", activeDeadlineSeconds=101))
    fresh = dict(first, spec={**first["spec"], "activeDeadlineSeconds": 102})
    replaced = custom.replace_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "put", fresh)
    assert replaced["spec"]["activeDeadlineSeconds"] == 102 and replaced["metadata"]["generation"] == 2
    assert int(replaced["metadata"]["resourceVersion"]) > int(first["metadata"]["resourceVersion"])
    stale = dict(first, spec={**first["spec"], "activeDeadlineSeconds": 103})  # still carries the old resourceVersion
    with pytest.raises(ApiException) as e:
        custom.replace_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "put", stale)
    assert e.value.status == 409 and json.loads(e.value.body)["reason"] == "Conflict"
    assert custom.get_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "put")["spec"]["activeDeadlineSeconds"] == 102
    # A merge patch carrying a stale resourceVersion is an optimistic-concurrency check too.
    with pytest.raises(ApiException) as e:
        custom.patch_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "put", {
            "metadata": {"resourceVersion": first["metadata"]["resourceVersion"]}, "spec": {"activeDeadlineSeconds": 104}})
    assert e.value.status == 409


def test_status_subresource_is_separate_from_the_main_resource(kube_emulator, custom):
    created = create_tj(custom, dict(tj("st"), status={"phase": "running"}))
    assert "status" not in created  # create ignores status when there is a status subresource
    custom.patch_namespaced_custom_object_status(GROUP, VERSION, "default", PLURAL, "st",
                                                 {"status": {"phase": "running"}})
    # Writing status through the main resource is ignored...
    main = custom.patch_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "st",
                                                 {"status": {"phase": "failed"}, "spec": {"activeDeadlineSeconds": 102}})
    assert main["status"]["phase"] == "running" and main["spec"]["activeDeadlineSeconds"] == 102
    # ...and writing spec through /status too.
    sub = custom.patch_namespaced_custom_object_status(GROUP, VERSION, "default", PLURAL, "st",
                                                       {"spec": {"activeDeadlineSeconds": 105}, "status": {"phase": "completed"}})
    assert sub["spec"]["activeDeadlineSeconds"] == 102 and sub["status"]["phase"] == "completed"
    stored = kube_emulator.get(TJ, "default", "st")
    assert stored["status"]["phase"] == "completed" and stored["spec"]["activeDeadlineSeconds"] == 102


def test_generation_changes_only_with_spec(kube_emulator, custom):
    created = create_tj(custom, tj("gen"))
    rv = created["metadata"]["resourceVersion"]

    def patch(body: dict[str, Any], status: bool = False) -> dict[str, Any]:
        fn = custom.patch_namespaced_custom_object_status if status else custom.patch_namespaced_custom_object
        return fn(GROUP, VERSION, "default", PLURAL, "gen", body)

    labelled = patch({"metadata": {"labels": {"a": "b"}, "annotations": {"x": "y"}}})
    assert labelled["metadata"]["generation"] == 1 and labelled["metadata"]["resourceVersion"] != rv
    assert patch({"status": {"phase": "running"}}, status=True)["metadata"]["generation"] == 1
    assert patch({"spec": {"activeDeadlineSeconds": 104}})["metadata"]["generation"] == 2
    assert patch({"spec": {"activeDeadlineSeconds": 100}})["metadata"]["generation"] == 3
    before = kube_emulator.get(TJ, "default", "gen")["metadata"]["resourceVersion"]
    unchanged = patch({"spec": {"activeDeadlineSeconds": 100}})  # a no-op: no new version, no event
    assert unchanged["metadata"]["generation"] == 3 and unchanged["metadata"]["resourceVersion"] == before


def test_json_patch_with_a_failed_test_is_422_as_kopf_expects(kube_emulator, custom):
    created = create_tj(custom, tj("jp"))
    path = f"{TJ_PATH}/jp"
    ops = [{"op": "test", "path": "/metadata/resourceVersion", "value": created["metadata"]["resourceVersion"]},
           {"op": "add", "path": "/metadata/finalizers", "value": ["example.com/f"]}]
    status, _, body = http(kube_emulator, "PATCH", path, ops, "application/json-patch+json")
    assert status == 200 and body["metadata"]["finalizers"] == ["example.com/f"]
    status, _, body = http(kube_emulator, "PATCH", path, ops, "application/json-patch+json")  # now stale
    assert status == 422 and body["kind"] == "Status"
    status, _, body = http(kube_emulator, "PATCH", path, {"spec": {}}, "application/json-patch+json")
    assert status == 400  # a JSON patch must be a list of operations
    status, _, body = http(kube_emulator, "PATCH", path, {"spec": {}}, "application/strategic-merge-patch+json")
    assert status == 415  # as in Kubernetes: no strategic merge for custom resources


def test_strategic_merge_patch_of_built_in_kinds(batch):
    batch.create_namespaced_job("default", job("smp"))
    patched = batch.patch_namespaced_job("smp", "default", {"metadata": {"labels": {"extra": "1"}}})
    assert patched.metadata.labels == {"app": "trainer", "extra": "1"}


# ------------------------------------------------------------------ list, selectors, paging


def test_label_selectors(custom):
    for name, labels in [("a", {"tenant": "t1", "tier": "gpu"}), ("b", {"tenant": "t2", "tier": "cpu"}),
                         ("c", {"tenant": "t3"}), ("d", None)]:
        create_tj(custom, tj(name, labels=labels))

    def names(selector: str) -> list[str]:
        listed = custom.list_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, label_selector=selector)
        return [item["metadata"]["name"] for item in listed["items"]]

    assert names("tenant=t1") == ["a"]
    assert names("tenant==t2") == ["b"]
    assert names("tenant!=t1") == ["b", "c", "d"]
    assert names("tenant in (t1, t3)") == ["a", "c"]
    assert names("tenant notin (t1,t3)") == ["b", "d"]
    assert names("tier") == ["a", "b"]
    assert names("!tier") == ["c", "d"]
    assert names("tenant in (t1,t2),tier=cpu") == ["b"]
    assert names("") == ["a", "b", "c", "d"]
    with pytest.raises(ApiException) as e:
        names("tenant in (t1")
    assert e.value.status == 400


def test_field_selectors(kube_emulator, core, custom):
    create_tj(custom, tj("f1"))
    create_tj(custom, tj("f2"), ns="other")
    listed = custom.list_cluster_custom_object(GROUP, VERSION, PLURAL, field_selector="metadata.name=f2")
    assert [(i["metadata"]["namespace"], i["metadata"]["name"]) for i in listed["items"]] == [("other", "f2")]
    listed = custom.list_cluster_custom_object(GROUP, VERSION, PLURAL, field_selector="metadata.namespace!=other")
    assert [i["metadata"]["name"] for i in listed["items"]] == ["f1"]
    for name, phase in [("p1", "Running"), ("p2", "Succeeded"), ("p3", "Running")]:
        kube_emulator.create("v1/pods", {"metadata": {"name": name, "namespace": "default"},
                                         "spec": {"containers": []}, "status": {"phase": phase}})
    running = core.list_namespaced_pod("default", field_selector="status.phase=Running")
    assert [p.metadata.name for p in running.items] == ["p1", "p3"]
    not_running = core.list_namespaced_pod("default", field_selector="status.phase!=Running,metadata.name!=p9")
    assert [p.metadata.name for p in not_running.items] == ["p2"]


@pytest.mark.parametrize(("resource", "selector"), [
    ("pods", "status.hostIP=10.0.0.1"),  # not a selectable pod field (the documented example)
    ("events", "message=x"),
    ("trainingjobs", "spec.tenant_id=t1"),  # custom resources: metadata only
])
def test_unsupported_field_labels_are_refused(kube_emulator, core, custom, resource, selector):
    """kube-apiserver's field-label conversions accept only listed fields (pkg/apis/core/v1/conversion.go)."""
    calls = {"pods": lambda **kw: core.list_namespaced_pod("default", **kw),
             "events": lambda **kw: core.list_namespaced_event("default", **kw),
             "trainingjobs": lambda **kw: custom.list_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, **kw)}
    for watch in ({}, {"watch": True, "timeout_seconds": 1}):
        with pytest.raises(ApiException) as e:
            calls[resource](field_selector=selector, _preload_content=False, **watch)
        assert e.value.status == 400 and f"field label not supported: {selector.split('=')[0]}" in e.value.body
    core.list_namespaced_event("default", field_selector="reason=FailedCreate,involvedObject.kind=Job")


def test_limit_and_continue_page_through_everything_once(custom):
    for i in range(7):
        create_tj(custom, tj(f"page-{i}"))
    seen, token, pages = [], None, 0
    while True:
        listed = custom.list_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, limit=3,
                                                      _continue=token)
        pages += 1
        seen += [item["metadata"]["name"] for item in listed["items"]]
        assert int(listed["metadata"]["resourceVersion"]) > 0
        token = listed["metadata"].get("continue")
        if not token:
            break
        assert listed["metadata"]["remainingItemCount"] == 7 - len(seen)
    assert pages == 3 and seen == [f"page-{i}" for i in range(7)]
    with pytest.raises(ApiException) as e:
        custom.list_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, limit=3, _continue="garbage")
    assert e.value.status == 400


def test_namespaces_are_listed_and_created_on_first_use(core, custom):
    create_tj(custom, tj("ns"), ns="team-a")
    names = [n.metadata.name for n in core.list_namespace().items]
    assert {"default", "kube-system", "team-a"} <= set(names)
    assert core.read_namespace("team-a").status.phase == "Active"


def test_delete_collection_with_a_selector(custom):
    for name, tenant in [("x1", "a"), ("x2", "a"), ("x3", "b")]:
        create_tj(custom, tj(name, labels={"tenant": tenant}))
    custom.delete_collection_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, label_selector="tenant=a")
    listed = custom.list_namespaced_custom_object(GROUP, VERSION, "default", PLURAL)
    assert [item["metadata"]["name"] for item in listed["items"]] == ["x3"]


# ------------------------------------------------------------------ watch


def collect_watch(fn: Any, *args: Any, count: int, **kwargs: Any) -> tuple[list[tuple[str, str, str]], Any]:
    """Start a watch in a thread; return (the collected events list, the thread) at once (not yet connected)."""
    events: list[tuple[str, str, str]] = []
    watch = kubernetes.watch.Watch()

    def run() -> None:
        for event in watch.stream(fn, *args, **kwargs):
            obj = event["object"]
            meta = obj["metadata"] if isinstance(obj, dict) else obj.metadata.to_dict()
            events.append((event["type"], meta["name"], meta.get("resourceVersion") or meta["resource_version"]))
            if len(events) >= count:
                watch.stop()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return events, thread


def test_watch_streams_changes_after_the_listed_resource_version(kube_emulator, custom):
    create_tj(custom, tj("before"))
    listed = custom.list_namespaced_custom_object(GROUP, VERSION, "default", PLURAL)
    events, thread = collect_watch(custom.list_namespaced_custom_object, GROUP, VERSION, "default", PLURAL,
                                   resource_version=listed["metadata"]["resourceVersion"], count=3,
                                   timeout_seconds=10)
    created = create_tj(custom, tj("w"))
    patched = custom.patch_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "w", {"spec": {"activeDeadlineSeconds": 103}})
    custom.delete_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "w")
    thread.join(10)
    assert [(t, n) for t, n, _ in events] == [("ADDED", "w"), ("MODIFIED", "w"), ("DELETED", "w")]
    assert events[0][2] == created["metadata"]["resourceVersion"]
    assert events[1][2] == patched["metadata"]["resourceVersion"]
    assert int(events[2][2]) > int(events[1][2])


def test_watch_replays_history_from_a_resource_version(custom):
    first = create_tj(custom, tj("r1"))
    create_tj(custom, tj("r2"))
    custom.patch_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "r1", {"spec": {"activeDeadlineSeconds": 100}})
    events, thread = collect_watch(custom.list_namespaced_custom_object, GROUP, VERSION, "default", PLURAL,
                                   resource_version=first["metadata"]["resourceVersion"], count=2,
                                   timeout_seconds=10)
    thread.join(10)
    assert [(t, n) for t, n, _ in events] == [("ADDED", "r2"), ("MODIFIED", "r1")]


def test_watch_without_resource_version_starts_with_existing_objects(custom):
    create_tj(custom, tj("old"))
    events, thread = collect_watch(custom.list_namespaced_custom_object, GROUP, VERSION, "default", PLURAL,
                                   count=2, timeout_seconds=10)
    deadline = time.monotonic() + 10  # the initial ADDED shows the watch is connected (else "new" could be listed)
    while not events and time.monotonic() < deadline:
        time.sleep(0.01)
    kubernetes_body = tj("new")
    del kubernetes_body["metadata"]  # posted without metadata.namespace: the URL names it
    kubernetes_body["metadata"] = {"name": "new"}
    create_tj(custom, kubernetes_body)
    thread.join(10)
    assert [(t, n) for t, n, _ in events] == [("ADDED", "old"), ("ADDED", "new")]


def test_watch_filters_by_namespace_and_selector_and_reports_leaving_objects(custom):
    events, thread = collect_watch(custom.list_namespaced_custom_object, GROUP, VERSION, "default", PLURAL,
                                   label_selector="tenant=a", count=3, timeout_seconds=10)
    create_tj(custom, tj("elsewhere", labels={"tenant": "a"}), ns="other")  # another namespace
    create_tj(custom, tj("b", labels={"tenant": "b"}))  # another tenant
    create_tj(custom, tj("sel", labels={"tenant": "b"}))
    custom.patch_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "sel",
                                          {"metadata": {"labels": {"tenant": "a"}}})
    custom.patch_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "sel", {"spec": {"activeDeadlineSeconds": 102}})
    custom.patch_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "sel",
                                          {"metadata": {"labels": {"tenant": "c"}}})
    thread.join(10)
    assert [(t, n) for t, n, _ in events] == [("ADDED", "sel"), ("MODIFIED", "sel"), ("DELETED", "sel")]


def test_watch_ends_after_timeout_seconds(kube_emulator):
    request = urllib.request.Request(f"{kube_emulator.url}{TJ_PATH}?watch=true&timeoutSeconds=1")
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.read() == b""  # no objects, no events: the server closed it after 1 s


def test_watch_with_send_initial_events_ends_the_burst_with_a_bookmark(kube_emulator, custom):
    create_tj(custom, tj("i1"))
    url = f"{kube_emulator.url}{TJ_PATH}?watch=true&sendInitialEvents=true&timeoutSeconds=1"
    with urllib.request.urlopen(url, timeout=10) as response:
        events = [json.loads(line) for line in response.read().splitlines()]
    assert [e["type"] for e in events] == ["ADDED", "BOOKMARK"]
    assert events[1]["object"]["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}


def test_watch_from_a_compacted_resource_version_is_410_gone(tmp_path):
    with ThreadedKubeEmulator(workdir=tmp_path, event_history_limit=3) as emu:
        for i in range(5):
            emu.create(TJ, tj(f"c{i}"), namespace="default")
        with urllib.request.urlopen(f"{emu.url}{TJ_PATH}?watch=true&resourceVersion=1", timeout=10) as response:
            event = json.loads(response.readline())
    assert event["type"] == "ERROR" and event["object"]["code"] == 410


# ------------------------------------------------------------------ deletion


def test_deleting_a_trainingjob_garbage_collects_its_jobs_and_their_pods(kube_emulator, custom, batch, core):
    owner = create_tj(custom, tj("gc"))
    created = batch.create_namespaced_job("default", job("gc-trainer", owner))
    pod = kube_emulator.make_pod_for_job(created)  # a V1Job is fine, as is a dict or a name
    assert pod["metadata"]["ownerReferences"][0]["uid"] == created.metadata.uid
    unrelated = batch.create_namespaced_job("default", job("unrelated"))
    custom.delete_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "gc")
    assert kube_emulator.get(TJ, "default", "gc") is None
    assert kube_emulator.get("batch/v1/jobs", "default", "gc-trainer") is None
    assert kube_emulator.get("v1/pods", "default", pod["metadata"]["name"]) is None
    assert batch.read_namespaced_job("unrelated", "default").metadata.uid == unrelated.metadata.uid


def test_deleting_a_job_without_propagation_policy_orphans_its_pods_as_kubernetes_does(kube_emulator, batch):
    batch.create_namespaced_job("default", job("orphaning"))
    pod = kube_emulator.make_pod_for_job("orphaning", "default")
    status, headers, _ = http(kube_emulator, "DELETE", "/apis/batch/v1/namespaces/default/jobs/orphaning")
    assert status == 200 and "child pods are preserved" in headers["Warning"]
    kept = kube_emulator.get("v1/pods", "default", pod["metadata"]["name"])
    assert kept is not None and "ownerReferences" not in kept["metadata"]
    batch.create_namespaced_job("default", job("background"))
    pod = kube_emulator.make_pod_for_job("background", "default")
    batch.delete_namespaced_job("background", "default", propagation_policy="Background")
    assert kube_emulator.get("v1/pods", "default", pod["metadata"]["name"]) is None


def test_finalizers_defer_deletion_until_removed(kube_emulator, custom):
    body = tj("fin")
    body["metadata"]["finalizers"] = ["example.com/cleanup"]
    create_tj(custom, body)
    custom.delete_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "fin")
    pending = custom.get_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "fin")
    assert pending["metadata"]["deletionTimestamp"] and pending["metadata"]["finalizers"] == ["example.com/cleanup"]
    with pytest.raises(ApiException) as e:  # no new finalizers on an object being deleted
        custom.patch_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "fin",
                                              {"metadata": {"finalizers": ["example.com/cleanup", "x/y"]}})
    assert e.value.status == 422
    custom.patch_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "fin",
                                          {"metadata": {"finalizers": None}})
    assert kube_emulator.get(TJ, "default", "fin") is None
    versions = kube_emulator.history(TJ, "default", "fin")
    assert versions[-1] is None and versions[-2]["metadata"]["deletionTimestamp"]


def test_delete_preconditions(kube_emulator, custom):
    created = create_tj(custom, tj("pre"))
    with pytest.raises(ApiException) as e:
        custom.delete_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "pre",
                                               body={"preconditions": {"uid": "other"}})
    assert e.value.status == 409
    custom.delete_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "pre",
                                           body={"preconditions": {"uid": created["metadata"]["uid"]}})
    assert kube_emulator.get(TJ, "default", "pre") is None


# ------------------------------------------------------------------ CRD schema


def test_schema_defaults_are_applied_on_create(custom):
    created = create_tj(custom, tj("defaults"))
    spec = created["spec"]
    assert spec["verbose"] is True and spec["wandb_tags"] == [] and spec["gpus"] == 1
    assert spec["training_kwargs"]["num_epochs"] == 50 and spec["training_kwargs"]["triplet_mining"] == "batch_hard"
    assert spec["model_kwargs"]["attention_layers"] == ["layer2", "layer3", "layer4"]


def test_schema_violations_are_422_naming_each_field(custom):
    with pytest.raises(ApiException) as e:
        create_tj(custom, tj("bad", training_kwargs={"num_epochs": 0, "learning_rate": 0,
                                                     "triplet_mining": "hardest"}))
    assert e.value.status == 422
    status = json.loads(e.value.body)
    assert status["reason"] == "Invalid"
    fields = {cause["field"] for cause in status["details"]["causes"]}
    assert fields == {"spec.training_kwargs.num_epochs", "spec.training_kwargs.learning_rate",
                      "spec.training_kwargs.triplet_mining"}
    assert "spec.training_kwargs.num_epochs" in status["message"]
    missing = tj("missing")
    del missing["spec"]["tenant_id"]
    with pytest.raises(ApiException) as e:
        create_tj(custom, missing)
    assert json.loads(e.value.body)["details"]["causes"] == [
        {"reason": "FieldValueRequired", "message": "Required value", "field": "spec.tenant_id"}]


def test_status_writes_are_validated_too(custom):
    create_tj(custom, tj("badstatus"))
    with pytest.raises(ApiException) as e:
        custom.patch_namespaced_custom_object_status(GROUP, VERSION, "default", PLURAL, "badstatus",
                                                     {"status": {"phase": "exploded"}})
    assert e.value.status == 422 and "status.phase" in e.value.body


def test_unknown_fields_are_pruned_with_a_warning_or_rejected_when_strict(kube_emulator):
    body = tj("prune", typo_field=1)
    body["status"] = {"kopf": {"progress": {}}}
    status, headers, created = http(kube_emulator, "POST", TJ_PATH, body)
    assert status == 201 and "typo_field" not in created["spec"]
    assert 'unknown field \\"spec.typo_field\\"' in headers["Warning"] or "spec.typo_field" in headers["Warning"]
    status, _, answer = http(kube_emulator, "PATCH", f"{TJ_PATH}/prune/status", {"status": {"kopf": {"x": 1}}},
                             "application/merge-patch+json")
    assert status == 200 and "kopf" not in answer["status"]  # undeclared status fields vanish
    status, _, answer = http(kube_emulator, "POST", f"{TJ_PATH}?fieldValidation=Strict", tj("strict", typo=1))
    assert status == 422 and answer["details"]["causes"][0]["field"] == "spec.typo"


# ------------------------------------------------------------------ discovery, logs, helpers


def test_discovery_serves_the_crd_and_the_built_in_kinds(kube_api_client):
    dynamic = kubernetes.dynamic.DynamicClient(kube_api_client)
    tjs = dynamic.resources.get(api_version=f"{GROUP}/{VERSION}", kind="TrainingJob")
    assert tjs.namespaced and tjs.name == PLURAL and "status" in tjs.subresources
    for api_version, kind in [("v1", "Pod"), ("v1", "Event"), ("events.k8s.io/v1", "Event"), ("batch/v1", "Job"),
                              ("coordination.k8s.io/v1", "Lease"), ("v1", "ConfigMap"), ("v1", "Secret"),
                              ("v1", "ServiceAccount"), ("v1", "Namespace")]:
        assert dynamic.resources.get(api_version=api_version, kind=kind)
    assert "log" in dynamic.resources.get(api_version="v1", kind="Pod").subresources
    assert dynamic.resources.get(api_version=f"{GROUP}/{VERSION}", kind="TrainingJob").get(
        namespace="default").items == []


def test_pod_logs_with_tail_lines(kube_emulator, core, batch):
    batch.create_namespaced_job("default", job("logs"))
    pod = kube_emulator.make_pod_for_job("logs", "default", phase="Running")
    name = pod["metadata"]["name"]
    assert core.read_namespaced_pod_log(name, "default") == ""
    kube_emulator.set_pod_log("default", name, "one\ntwo\nthree\n")
    assert core.read_namespaced_pod_log(name, "default") == "one\ntwo\nthree\n"
    assert core.read_namespaced_pod_log(name, "default", tail_lines=2) == "two\nthree\n"
    with pytest.raises(ApiException) as e:
        core.read_namespaced_pod_log("ghost", "default")
    assert e.value.status == 404


def test_make_pod_for_job_looks_like_the_job_controllers_pods(kube_emulator, batch):
    created = batch.create_namespaced_job("default", job("ctl"))
    pod = kube_emulator.make_pod_for_job("ctl", "default", phase="Failed", container_statuses=[
        {"name": "trainer", "state": {"terminated": {"exitCode": 3, "reason": "Error", "message": "bad config"}}}])
    labels = pod["metadata"]["labels"]
    assert labels["batch.kubernetes.io/job-name"] == "ctl" and labels["job-name"] == "ctl"
    assert labels["controller-uid"] == labels["batch.kubernetes.io/controller-uid"] == created.metadata.uid
    assert pod["spec"]["containers"][0]["name"] == "trainer"  # the Job's pod template
    assert pod["status"]["phase"] == "Failed"
    assert pod["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 3
    listed = kubernetes.client.CoreV1Api(kube_emulator.api_client()).list_namespaced_pod(
        "default", label_selector="job-name=ctl")
    assert [p.metadata.name for p in listed.items] == [pod["metadata"]["name"]]
    updated = kube_emulator.set_job_status("default", "ctl", {"failed": 1, "conditions": [
        {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}]})
    assert batch.read_namespaced_job_status("ctl", "default").status.failed == 1
    assert updated["metadata"]["generation"] == 1


def test_kubeconfig_file_works_with_load_kube_config(kube_emulator):
    config = kubernetes.client.Configuration()
    kubernetes.config.load_kube_config(config_file=str(kube_emulator.kubeconfig_path),
                                       client_configuration=config)
    with kubernetes.client.ApiClient(config) as client:
        names = [n.metadata.name for n in kubernetes.client.CoreV1Api(client).list_namespace().items]
    assert "default" in names


def test_kmock_reactions_still_inject_faults(kube_emulator, core):
    kube_emulator.call(lambda: kube_emulator.emulator["get /api/v1/namespaces/default/configmaps"] << 503)
    with pytest.raises(ApiException) as e:
        core.list_namespaced_config_map("default")
    assert e.value.status == 503
    assert core.list_namespaced_secret("default").items == []


def test_job_crud_with_the_typed_client(kube_emulator, batch):
    created = batch.create_namespaced_job("default", job("crud"))
    assert [j.metadata.name for j in batch.list_namespaced_job("default").items] == ["crud"]
    created.spec.backoff_limit = 3
    replaced = batch.replace_namespaced_job("crud", "default", created)
    assert replaced.spec.backoff_limit == 3 and replaced.metadata.generation == 2
    status = batch.patch_namespaced_job_status("crud", "default", {"status": {"active": 1}})
    assert status.status.active == 1 and status.metadata.generation == 2
    batch.delete_namespaced_job("crud", "default", propagation_policy="Background")
    assert batch.list_namespaced_job("default").items == []
    assert kube_emulator.history("batch/v1/jobs", "default", "crud")[-1] is None


def test_concurrent_writers_with_the_same_resource_version_conflict(kube_emulator, custom):
    base = create_tj(custom, tj("race"))
    outcomes: list[int] = []

    def replace(deadline: int) -> None:  # a mutable field (CEL guards the others)
        body = dict(base, spec={**base["spec"], "activeDeadlineSeconds": deadline})
        try:
            custom.replace_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "race", body)
            outcomes.append(200)
        except ApiException as e:
            outcomes.append(e.status)

    # Each write differs from the stored object: an equal one is a no-op that keeps the
    # resourceVersion, so a later writer with that version would rightly succeed too.
    threads = [threading.Thread(target=replace, args=(100 + i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert sorted(outcomes) == [200] + [409] * 7
    assert kube_emulator.get(TJ, "default", "race")["metadata"]["generation"] == 2


def test_store_helpers_mirror_the_api(kube_emulator, custom):
    kube_emulator.create(TJ, tj("h1", labels={"tenant": "a"}), namespace="default")
    kube_emulator.create(TJ, tj("h2", labels={"tenant": "b"}), namespace="other")
    assert [o["metadata"]["name"] for o in kube_emulator.objects(TJ)] == ["h1", "h2"]
    assert [o["metadata"]["name"] for o in kube_emulator.objects("tj", label_selector="tenant=b")] == ["h2"]
    assert [o["metadata"]["name"] for o in kube_emulator.objects("TrainingJob", "default")] == ["h1"]
    kube_emulator.patch_status(TJ, "default", "h1", {"phase": "running"})
    kube_emulator.patch(TJ, "default", "h1", {"spec": {"activeDeadlineSeconds": 102}})
    seen = custom.get_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "h1")
    assert seen["status"]["phase"] == "running" and seen["spec"]["activeDeadlineSeconds"] == 102
    assert [v["metadata"]["generation"] for v in kube_emulator.history(TJ, "default", "h1")] == [1, 1, 2]
    with pytest.raises(TimeoutError, match="h1"):
        kube_emulator.wait_for_object(TJ, "default", "h1", lambda o: o["spec"]["activeDeadlineSeconds"] == 109, timeout=0.2)
    kube_emulator.delete(TJ, "default", "h1")
    assert kube_emulator.get(TJ, "default", "h1") is None


async def test_async_clients_on_another_loop(kube_emulator):
    import aiohttp

    async with aiohttp.ClientSession() as session:
        async with session.get(f"{kube_emulator.url}/api/v1/namespaces") as response:
            names = [item["metadata"]["name"] for item in (await response.json())["items"]]
    assert response.status == 200 and "default" in names


def test_closed_watches_are_forgotten(kube_emulator, custom):
    with urllib.request.urlopen(f"{kube_emulator.url}{TJ_PATH}?watch=true", timeout=10) as response:
        create_tj(custom, tj("first"))
        assert json.loads(response.readline())["type"] == "ADDED"
    assert kube_emulator.call(lambda: len(kube_emulator.store.watchers)) == 1
    create_tj(custom, tj("second"))  # writing to the closed stream fails and ends it
    kube_emulator.wait_for(lambda: kube_emulator.call(lambda: not kube_emulator.store.watchers),
                           timeout=5, message="the closed watch to be dropped")


def test_emulator_bugs_answer_500_and_are_recorded(tmp_path, monkeypatch):
    from tests.support.object_store import ObjectStore

    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(ObjectStore, "list_objects", broken)
    with ThreadedKubeEmulator(workdir=tmp_path) as emu:
        status, _, body = http(emu, "GET", TJ_PATH)
        assert status == 500 and body["reason"] == "InternalError" and "boom" in body["message"]
        assert [str(e) for e in emu.internal_errors] == ["boom"]


def test_strategic_merge_directives_are_refused_not_misapplied(kube_emulator, batch):
    batch.create_namespaced_job("default", job("directive"))
    status, _, body = http(kube_emulator, "PATCH", "/apis/batch/v1/namespaces/default/jobs/directive",
                           {"metadata": {"labels": {"$patch": "replace"}}}, "application/strategic-merge-patch+json")
    assert status == 400 and "$patch" in body["message"]


def test_orphan_propagation_keeps_dependents_without_their_owner_reference(kube_emulator, custom, batch):
    owner = create_tj(custom, tj("orphan-owner"))
    batch.create_namespaced_job("default", job("orphan-job", owner))
    custom.delete_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "orphan-owner",
                                           propagation_policy="Orphan")
    kept = kube_emulator.get("batch/v1/jobs", "default", "orphan-job")
    assert kept is not None and "ownerReferences" not in kept["metadata"]


def test_injected_failures_hit_matching_requests_a_set_number_of_times(kube_emulator, custom):
    create_tj(custom, tj("flaky"))
    failure = kube_emulator.inject_failure("PATCH", r"/trainingjobs/flaky/status$", status=503, times=2)
    for _ in range(2):
        with pytest.raises(ApiException) as e:
            custom.patch_namespaced_custom_object_status(GROUP, VERSION, "default", PLURAL, "flaky",
                                                         {"status": {"phase": "running"}})
        assert e.value.status == 503 and json.loads(e.value.body)["reason"] == "ServiceUnavailable"
    custom.patch_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "flaky", {"spec": {"activeDeadlineSeconds": 102}})
    done = custom.patch_namespaced_custom_object_status(GROUP, VERSION, "default", PLURAL, "flaky",
                                                        {"status": {"phase": "running"}})
    assert done["status"]["phase"] == "running" and failure.hits == 2
    kube_emulator.inject_failure(None, r"/namespaces/default/trainingjobs", status=500, times=None)
    for _ in range(3):
        with pytest.raises(ApiException):
            custom.list_namespaced_custom_object(GROUP, VERSION, "default", PLURAL)
    kube_emulator.clear_failures()
    assert custom.list_namespaced_custom_object(GROUP, VERSION, "default", PLURAL)["items"]


def test_emulator_options_take_effect(tmp_path):
    with ThreadedKubeEmulator(crd_paths=(), workdir=tmp_path, request_log_limit=10,
                              default_namespaces=("only",)) as emu:
        status, _, _ = http(emu, "GET", TJ_PATH)
        assert status == 404  # no CRD given: TrainingJobs are not served
        for _ in range(50):
            http(emu, "GET", "/api/v1/namespaces")
        assert 10 <= emu.call(lambda: len(emu.emulator._requests)) <= 20  # kmock's log stays bounded
        assert [ns["metadata"]["name"] for ns in emu.objects("v1/namespaces")] == ["only"]
        assert emu.kubeconfig_path.parent == tmp_path and emu.url in emu.kubeconfig_path.read_text()
