"""High availability: one replica with the Recreate strategy, and — should two operators ever
overlap (a partitioned node's pod still running while its replacement starts) — nothing is
duplicated: two real operators run at once against the same API here."""

from __future__ import annotations

import contextlib

from tests.operator.conftest import (
    JOBS,
    NS,
    TJS,
    make_tj,
    running_operator,
    start_trainer_pod,
    wait_phase,
)


def test_two_operators_at_once_make_one_job_each(operator_env):
    emu = operator_env
    names = [f"run-{i}" for i in range(8)]
    with contextlib.ExitStack() as stack:
        stack.enter_context(running_operator())
        stack.enter_context(running_operator())
        for name in names:
            make_tj(emu, name)
        for name in names:
            emu.wait_for_object(JOBS, NS, f"tj-{name}")
            wait_phase(emu, name, "pending", "JobCreated")
        job = emu.get(JOBS, NS, "tj-run-0")
        start_trainer_pod(emu, job, "run-0")
        emu.patch(TJS, NS, "run-1", {"spec": {"cancel": True}})
        wait_phase(emu, "run-1", "cancelled")
        emu.wait_for(lambda: emu.get(JOBS, NS, "tj-run-1") is None, message="cancelled Job deleted")
    jobs = emu.objects(JOBS, NS)
    assert sorted(j["metadata"]["name"] for j in jobs) == sorted(f"tj-{n}" for n in names if n != "run-1")
    for name in names:
        versions = emu.history(JOBS, NS, f"tj-{name}")
        created = sum(1 for prev, cur in zip([None, *versions], versions, strict=False) if prev is None and cur)
        assert created == 1, name  # the loser of each race got 409 and adopted the Job
        history = [(h["phase"], h["reason"]) for h in emu.get(TJS, NS, name)["status"]["history"]]
        assert all(a != b for a, b in zip(history, history[1:], strict=False)), history
