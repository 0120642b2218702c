"""Which events a watcher sees and what a new watch starts with (tests/support/watching.py)."""

import pytest

from tests.support.api_errors import ApiError
from tests.support.kinds import Kind
from tests.support.selectors import parse_label_selector
from tests.support.watching import Watcher, initial_events

PODS = Kind("", "v1", "pods", "Pod", namespaced=True)
JOBS = Kind("batch", "v1", "jobs", "Job", namespaced=True)


def obj(name: str, ns: str = "a", rv: int = 1, **labels: str) -> dict:
    return {"metadata": {"name": name, "namespace": ns, "resourceVersion": str(rv), "labels": labels}}


def test_offer_follows_namespace_kind_and_selector_transitions():
    watcher = Watcher(PODS, "a", parse_label_selector("app=web"))
    web, db = obj("p", app="web"), obj("p", app="db")
    assert watcher.offer(PODS, "ADDED", None, web)["type"] == "ADDED"
    assert watcher.offer(PODS, "MODIFIED", web, web)["type"] == "MODIFIED"
    assert watcher.offer(PODS, "MODIFIED", web, db)["type"] == "DELETED"  # stopped matching
    assert watcher.offer(PODS, "MODIFIED", db, web)["type"] == "ADDED"  # started matching
    assert watcher.offer(PODS, "MODIFIED", db, db) is None
    assert watcher.offer(PODS, "DELETED", web, web)["type"] == "DELETED"
    assert watcher.offer(JOBS, "ADDED", None, web) is None
    assert watcher.offer(PODS, "ADDED", None, obj("p", ns="b", app="web")) is None


def test_initial_events_list_existing_objects_or_replay_history():
    watcher = Watcher(PODS, None)
    live = [obj("x", rv=3), obj("y", rv=4)]
    history = [(3, PODS, "ADDED", None, obj("x", rv=3)), (4, PODS, "ADDED", None, obj("y", rv=4)),
               (5, JOBS, "ADDED", None, obj("j", rv=5))]
    assert [e["object"]["metadata"]["name"] for e in initial_events(watcher, {}, live, history, 5)] == ["x", "y"]
    replay = initial_events(watcher, {"resourceVersion": "3"}, live, history, 5)
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in replay] == [("ADDED", "y")]
    assert initial_events(watcher, {"resourceVersion": "5"}, live, history, 5) == []
    bookmarked = initial_events(watcher, {"sendInitialEvents": "true"}, live, history, 5)
    assert bookmarked[-1]["type"] == "BOOKMARK" and bookmarked[-1]["object"]["metadata"]["resourceVersion"] == "5"


def test_a_resource_version_older_than_the_history_is_410_expired():
    history = [(7, PODS, "ADDED", None, obj("x", rv=7))]
    (event,) = initial_events(Watcher(PODS, None), {"resourceVersion": "5"}, [], history, 7)
    assert event["type"] == "ERROR" and event["object"]["code"] == 410
    assert initial_events(Watcher(PODS, None), {"resourceVersion": "6"}, [], history, 7)[0]["type"] == "ADDED"
    with pytest.raises(ApiError):
        initial_events(Watcher(PODS, None), {"resourceVersion": "abc"}, [], history, 7)
