"""Label and field selector parsing and matching (tests/support/selectors.py)."""

import pytest

from tests.support.selectors import SelectorError, matches, parse_field_selector, parse_label_selector

POD = {"metadata": {"name": "p1", "namespace": "ns", "labels": {"app": "web", "tier": "gpu"}},
       "status": {"phase": "Running", "ready": True}}


@pytest.mark.parametrize(("selector", "expected"), [
    ("app=web", True), ("app==web", True), ("app=db", False), ("app!=db", True), ("app!=web", False),
    ("missing!=x", True), ("app in (db, web)", True), ("app in (db)", False), ("app notin (db,cache)", True),
    ("app notin (web)", False), ("missing notin (x)", True), ("tier", True), ("missing", False),
    ("!missing", True), ("!tier", False), ("app=web,tier=gpu", True), ("app=web,tier=cpu", False),
    ("app in (web,db),!missing", True), ("", True), ("app=", False),
])
def test_label_selector_operators(selector, expected):
    assert matches(POD, parse_label_selector(selector)) is expected


def test_empty_label_value_matches_an_empty_label():
    assert matches({"metadata": {"labels": {"flag": ""}}}, parse_label_selector("flag="))


@pytest.mark.parametrize("bad", ["app in (web", "app in web)", "a=b,,c=d", "app = = web", "a b"])
def test_malformed_label_selectors_are_rejected(bad):
    with pytest.raises(SelectorError):
        parse_label_selector(bad)


@pytest.mark.parametrize(("selector", "expected"), [
    ("metadata.name=p1", True), ("metadata.name==p2", False), ("metadata.namespace!=ns", False),
    ("status.phase=Running", True), ("status.phase!=Running", False), ("status.ready=true", True),
    ("spec.nodeName=", True), ("spec.nodeName!=", False), ("metadata.name=p1,status.phase=Failed", False),
])
def test_field_selectors_read_dotted_paths(selector, expected):
    assert matches(POD, fields=parse_field_selector(selector)) is expected


@pytest.mark.parametrize("bad", ["metadata.name", "metadata.name in (a)", "a=b=c"])
def test_malformed_field_selectors_are_rejected(bad):
    with pytest.raises(SelectorError):
        parse_field_selector(bad)
