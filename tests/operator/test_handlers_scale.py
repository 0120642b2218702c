"""Handler paths that keep the operator cheap with thousands of TrainingJobs."""

from __future__ import annotations

from tests.operator.conftest import NS, TJS, make_tj, running_operator, wait_phase


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
