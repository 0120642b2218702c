"""laxai_operator.naming: deterministic Job names and label values."""

import re

import pytest

from laxai_operator.naming import bounded, job_name, label_value, selector

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")


@pytest.mark.parametrize(
    ("name", "expected"),
    [("run-1", "tj-run-1"), ("a" * 54, "tj-" + "a" * 54)],
)
def test_short_names_are_prefixed(name, expected):
    assert job_name(name) == expected


@pytest.mark.parametrize("name", ["a" * 55, "a" * 61, "b" * 253, "x." * 100 + "y", "long-name-" * 20])
def test_long_names_are_truncated_and_hashed(name):
    out = job_name(name)
    # <= 57: the Job controller's pod names are then "<job>-" + 5 random characters, never cut
    assert len(out) <= 57 and DNS_LABEL.match(out)
    assert len(out + "-") <= 63 - 5
    assert out == job_name(name)  # deterministic
    assert job_name(name + "z") != out  # the hash tells near-identical names apart


def test_truncation_keeps_distinct_names_distinct():
    names = [f"{'x' * 70}-{i}" for i in range(50)]
    assert len({job_name(n) for n in names}) == 50
    assert len({label_value(n) for n in names}) == 50


def test_label_values_fit():
    assert label_value("short") == "short"
    assert len(label_value("n" * 200)) == 63
    assert bounded("abc-" + "-" * 100).endswith(bounded("abc-" + "-" * 100)[-8:])


def test_selector():
    assert selector("run") == "app.kubernetes.io/managed-by=laxai-operator,training.laxai.io/trainingjob=run"
