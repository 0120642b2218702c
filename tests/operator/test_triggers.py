"""laxai_operator.triggers: which TrainingJob events reconcile, and why."""

from __future__ import annotations

import pytest

from laxai_operator.triggers import CREATE, RESUME, UPDATE, settled, trigger


@pytest.mark.parametrize(("status", "spec", "expected"), [
    ({"phase": "completed"}, {}, True),
    ({"phase": "cancelled"}, {"cancel": True}, True),
    ({"phase": "failed"}, {"ttlSecondsAfterFinished": 60}, False),  # its TTL timer must be re-armed
    ({"phase": "running"}, {}, False),
    ({}, {}, False),
    ({"phase": "bogus"}, {}, False),
])
def test_settled(status, spec, expected):
    assert settled(status, spec) is expected


def tj(generation=1, phase=None, **spec):
    return {"metadata": {"name": "x", "generation": generation}, "spec": spec,
            "status": {"phase": phase} if phase else {}}


@pytest.mark.parametrize(("event", "body", "handled", "expected"), [
    ("ADDED", tj(), None, CREATE),
    (None, tj(phase="running"), None, RESUME),  # kopf's initial listing after a start
    (None, tj(phase="pending"), None, RESUME),
    (None, tj(phase="completed"), None, None),  # settled: nothing to read or write
    (None, tj(phase="completed", ttlSecondsAfterFinished=60), None, RESUME),  # its TTL is re-armed
    ("MODIFIED", tj(phase="running"), None, RESUME),  # never seen (missed its ADDED): as at a start
    ("MODIFIED", tj(1, "running"), 1, None),  # our status write, the trainer's progress, a label
    ("MODIFIED", tj(2, "running", cancel=True), 1, UPDATE),  # a spec change bumps the generation
    ("MODIFIED", tj(2, "completed"), 1, UPDATE),  # also after the end: an edited TTL is applied
    (None, tj(1, "running"), 1, None),  # a relist after a watch expired: nothing new
    ("ADDED", tj(1), 1, None),
    ("DELETED", tj(), None, None),
    ("DELETED", tj(2), 1, None),
])
def test_trigger(event, body, handled, expected):
    assert trigger(event, body, handled) == expected
