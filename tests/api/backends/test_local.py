"""The local backend's process management, with the fake trainer (tests/api/fake_trainer.py)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from pathlib import Path

import pytest

from laxai_api.backends.local import CANCEL_FILE, CANCELLING, LocalBackend, classify_exit, process_alive
from laxai_api.backends.local_store import JobStore
from laxai_api.errors import JobExists, JobFinished, JobNotFound, RunNameInUse
from laxai_operator.resource import TrainingJobSpec
from laxai_trainer import exit_codes
from laxai_trainer.status import Phase, Progress, ProgressReport
from tests.api.conftest import local_settings, stop_all


def spec(epochs: int = 2, tags: tuple[str, ...] = (), **extra) -> TrainingJobSpec:
    return TrainingJobSpec.model_validate(
        {"tenant_id": "tenant1", "training_kwargs": {"num_epochs": epochs}, "wandb_tags": list(tags), **extra}
    )


async def wait_phase(backend: LocalBackend, task_id: str, phases: set[Phase], timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while True:
        job = await backend.get(task_id)
        if job.phase in phases:
            return job
        assert time.monotonic() < deadline, f"{task_id} still {job.phase}"
        await asyncio.sleep(0.03)


def gone(pid: int) -> bool:
    """No such process, or only its zombie (its parent has not reaped it yet)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return _zombie(pid)


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except OSError:
        return True


def group_gone(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    # Only zombies left (reaped by their parent soon) count as gone.
    return all(_zombie(int(p.name)) for p in Path("/proc").iterdir() if p.name.isdigit() and _pgid(p) == pgid)


def _pgid(proc: Path) -> int | None:
    try:
        return int((proc / "stat").read_text().rsplit(")", 1)[1].split()[2])
    except (OSError, ValueError, IndexError):
        return None


@pytest.fixture
async def backend(tmp_path):
    b = LocalBackend(local_settings(tmp_path, max_concurrent_jobs=1, cancel_grace_seconds=1.0))
    await b.start()
    yield b
    await stop_all(b)  # never leave a trainer behind
    await b.close()


# ---- classify_exit: pure --------------------------------------------------------------


def _report(status: Phase, message: str | None = None) -> ProgressReport:
    return ProgressReport(progress=Progress(status=status, message=message))


@pytest.mark.parametrize(
    ("code", "cancel", "report", "phase", "reason"),
    [
        (exit_codes.OK, False, None, Phase.completed, "Completed"),
        (exit_codes.RETRY, True, None, Phase.cancelled, "Cancelled"),
        (-signal.SIGKILL, True, None, Phase.cancelled, "Cancelled"),
        (exit_codes.RETRY, False, None, Phase.failed, "Preempted"),
        (exit_codes.CONFIG_ERROR, False, _report(Phase.failed, "no data for tenant1"), Phase.failed, "TrainerConfigError"),
        (exit_codes.FAILURE, False, None, Phase.failed, "TrainerFailed"),
        (-signal.SIGSEGV, False, None, Phase.failed, "Killed"),
        (None, False, _report(Phase.completed), Phase.completed, "Completed"),
        (None, False, _report(Phase.failed, "bad"), Phase.failed, "TrainerFailed"),
        (None, False, _report(Phase.running), Phase.failed, "ProcessLost"),
        (None, False, None, Phase.failed, "ProcessLost"),
        (None, True, _report(Phase.running), Phase.cancelled, "Cancelled"),
        (exit_codes.OK, True, _report(Phase.completed), Phase.completed, "Completed"),
    ],
)
def test_classify_exit(code, cancel, report, phase, reason):
    outcome = classify_exit(code, cancel, report, ["line 1", "Traceback: boom"])
    assert (outcome.phase, outcome.reason) == (phase, reason)
    if phase == Phase.failed and reason in ("TrainerFailed", "Killed", "TrainerConfigError"):
        assert "Traceback: boom" in outcome.message
    if reason == "TrainerConfigError":
        assert "no data for tenant1" in outcome.message
    if reason == "Killed":
        assert "SIGSEGV" in outcome.message


# ---- the process lifecycle --------------------------------------------------------------


async def test_runs_the_trainer_contract_to_completed(backend, tmp_path):
    job = await backend.submit("job-a", spec(epochs=3, custom_name="myrun"))
    assert job.phase == Phase.pending and job.progress.total_epochs == 3
    done = await wait_phase(backend, "job-a", {Phase.completed, Phase.failed})
    assert done.phase == Phase.completed, done.message
    assert done.progress.current_epoch == 3 and done.progress.status == Phase.completed
    assert done.metrics.rank1 == 0.5 and done.completed_at and done.started_at and done.attempts == 1
    assert [h["phase"] for h in done.history] == ["pending", "running", "completed"]
    job_dir = tmp_path / "home" / "jobs" / "job-a"
    recorded = json.loads((job_dir / "argv.json").read_text())
    argv = dict(zip(recorded["argv"][1::2], recorded["argv"][2::2], strict=True))
    assert argv["--run-name"] == "job-a"
    assert recorded["job_id"] == "job-a"  # the trainer's job identity: a restart of this task resumes it
    assert argv["--storage-root"] == str(tmp_path / "storage")
    assert argv["--progress-file"] == str(job_dir / "progress.json")
    assert argv["--log-file"] == str(job_dir / "trainer.log")
    assert argv["--cache-dir"] == str(tmp_path / "home" / "cache")
    config = json.loads(Path(argv["--config"]).read_text())
    assert config["custom_name"] == "myrun" and config["training_kwargs"]["num_epochs"] == 3
    assert "gpus" not in config  # run fields are not the trainer's
    logs = await backend.logs("job-a", 2)
    assert logs.source == "file" and logs.lines == ["epoch 3/3 loss=0.3333", "done"]


async def test_api_keys_are_not_passed_to_the_trainer(tmp_path, monkeypatch):
    monkeypatch.setenv("LAXAI_API_KEYS", '{"secret": "*"}')
    b = LocalBackend(local_settings(tmp_path))
    await b.start()
    try:
        await b.submit("job-env", spec(epochs=1))
        await wait_phase(b, "job-env", {Phase.completed})
    finally:
        await b.close()
    env_keys = json.loads((tmp_path / "home" / "jobs" / "job-env" / "argv.json").read_text())["env_keys"]
    assert "LAXAI_API_KEYS" not in env_keys and "PATH" in env_keys


async def test_live_progress_while_running(backend):
    await backend.submit("job-p", spec(epochs=200, tags=("fake-sleep=0.05",)))
    deadline = time.monotonic() + 20
    while (job := await backend.get("job-p")).progress.current_epoch in (None, 0):
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    assert job.phase == Phase.running and job.progress.current_loss is not None
    assert job.progress.total_epochs == 200


async def test_fifo_queue_and_concurrency_limit(backend):
    slow = spec(epochs=3, tags=("fake-sleep=0.2",))
    for name in ("q1", "q2", "q3"):
        await backend.submit(name, slow)
    await asyncio.sleep(0.3)
    phases = [(await backend.get(n)).phase for n in ("q1", "q2", "q3")]
    assert phases == [Phase.running, Phase.pending, Phase.pending]  # limit 1, oldest first
    await wait_phase(backend, "q3", {Phase.completed}, timeout=30)
    started = [(await backend.get(n)).started_at for n in ("q1", "q2", "q3")]
    assert started == sorted(started)


async def test_zero_concurrency_only_queues(tmp_path):
    b = LocalBackend(local_settings(tmp_path, max_concurrent_jobs=0))
    await b.start()
    try:
        await b.submit("held", spec(epochs=1))
        await asyncio.sleep(0.3)
        assert (await b.get("held")).phase == Phase.pending
    finally:
        await b.close()


async def test_cancel_running_stops_the_whole_process_group(backend, tmp_path):
    await backend.submit("job-c", spec(epochs=1000, tags=("fake-sleep=0.05", "fake-child")))
    job_dir = tmp_path / "home" / "jobs" / "job-c"
    deadline = time.monotonic() + 20
    while not (job_dir / "child.pid").exists():
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    pid = backend._running["job-c"].pid
    child = int((job_dir / "child.pid").read_text())
    cancelling = await backend.cancel("job-c")  # answers at once: the trainer is still stopping
    assert cancelling.phase == Phase.running and cancelling.reason == "CancelRequested"
    assert cancelling.progress.message == CANCELLING
    assert (job_dir / CANCEL_FILE).exists()  # the trainer's --cancel-file: its log says "cancelled"
    assert (await backend.get("job-c")).progress.message == CANCELLING  # not the trainer's last report
    cancelled = await wait_phase(backend, "job-c", {Phase.cancelled})
    assert cancelled.reason == "Cancelled"
    assert cancelled.progress.status == Phase.cancelled and cancelled.progress.message == "Cancelled by request"
    assert cancelled.progress.current_epoch is not None  # the trainer's last report is kept
    assert group_gone(pid) and gone(child)
    assert "SIGTERM: checkpoint written" in (await backend.logs("job-c", 5)).lines[-1]
    with pytest.raises(JobFinished):
        await backend.cancel("job-c")


async def test_cancel_escalates_to_sigkill_after_the_grace_period(backend):
    await backend.submit("job-k", spec(epochs=1000, tags=("fake-sleep=0.05", "fake-ignore-term")))
    await wait_phase(backend, "job-k", {Phase.running})
    await asyncio.sleep(0.3)  # let it install its SIGTERM handler
    pid = backend._running["job-k"].pid
    start = time.monotonic()
    assert (await backend.cancel("job-k")).phase == Phase.running
    await asyncio.sleep(0.5)
    assert (await backend.get("job-k")).phase == Phase.running  # within the 1 s grace period
    await wait_phase(backend, "job-k", {Phase.cancelled})
    assert time.monotonic() - start >= 0.9  # waited the 1 s grace period, then SIGKILL
    assert group_gone(pid)


async def test_cancel_pending_never_starts(backend):
    await backend.submit("first", spec(epochs=1000, tags=("fake-sleep=0.05",)))
    await backend.submit("second", spec(epochs=1))
    cancelled = await backend.cancel("second")
    assert cancelled.phase == Phase.cancelled and cancelled.started_at is None
    await backend.cancel("first")
    await wait_phase(backend, "first", {Phase.cancelled})
    await asyncio.sleep(0.2)
    assert (await backend.get("second")).attempts == 0


@pytest.mark.parametrize(
    ("tag", "reason", "text"),
    [("fake-exit=1", "TrainerFailed", "exited with code 1"), ("fake-exit=3", "TrainerConfigError", "")],
)
async def test_failed_exit_codes_keep_the_reason_and_log_tail(backend, tag, reason, text):
    await backend.submit("job-f", spec(epochs=1, tags=(tag,)))
    job = await wait_phase(backend, "job-f", {Phase.completed, Phase.failed, Phase.cancelled})
    assert job.phase == Phase.failed and job.reason == reason
    assert text in job.message and "RuntimeError: boom" in job.message
    assert job.conditions[0]["type"] == "Failed"


async def test_missing_trainer_command_fails_the_job(tmp_path):
    b = LocalBackend(local_settings(tmp_path, trainer_command="/nonexistent/laxai-train"))
    await b.start()
    try:
        await b.submit("job-x", spec())
        job = await b.get("job-x")
        assert job.phase == Phase.failed and job.reason == "TrainerNotStarted"
        ok, details = await b.health()
        assert not ok and "trainer command not found" in details["trainer_error"]
    finally:
        await b.close()


async def test_duplicate_and_unknown_ids(backend):
    await backend.submit("dup", spec(epochs=1))
    with pytest.raises(JobExists):
        await backend.submit("dup", spec(epochs=1))
    for call in (backend.get, backend.cancel):
        with pytest.raises(JobNotFound):
            await call("nope")
    with pytest.raises(JobNotFound):
        await backend.logs("nope", 10)


# ---- restarts -----------------------------------------------------------------------------


async def test_records_survive_a_restart_and_live_trainers_are_adopted(tmp_path):
    settings = local_settings(tmp_path, max_concurrent_jobs=1)
    first = LocalBackend(settings)
    await first.start()
    await first.submit("done", spec(epochs=1))
    await wait_phase(first, "done", {Phase.completed})
    await first.submit("live", spec(epochs=15, tags=("fake-sleep=0.1",)))
    await first.submit("queued", spec(epochs=1))
    await wait_phase(first, "live", {Phase.running})
    await first.close()  # the API stops; the trainer keeps running

    second = LocalBackend(settings)
    await second.start()
    try:
        assert (await second.get("done")).phase == Phase.completed
        assert (await second.get("live")).phase == Phase.running
        assert (await second.get("queued")).phase == Phase.pending
        live = await wait_phase(second, "live", {Phase.completed, Phase.failed}, timeout=30)
        assert live.phase == Phase.completed, live.message  # read from its progress file
        await wait_phase(second, "queued", {Phase.completed}, timeout=30)
    finally:
        await second.close()


async def test_a_trainer_gone_during_a_restart_is_failed_with_a_reason(tmp_path):
    settings = local_settings(tmp_path)
    first = LocalBackend(settings)
    await first.start()
    await first.submit("lost", spec(epochs=1000, tags=("fake-sleep=0.05",)))
    await wait_phase(first, "lost", {Phase.running})
    pid = first._running["lost"].pid
    await first.close()
    os.killpg(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while process_alive(pid, "lost"):
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)

    second = LocalBackend(settings)
    await second.start()
    try:
        job = await second.get("lost")
        assert job.phase == Phase.failed and job.reason == "ProcessLost"
        assert "custom_name" in job.message
    finally:
        await second.close()


def test_the_store_allows_one_active_job_per_tenant_and_run_name(tmp_path):
    """Enforced by SQLite's unique index: two API processes on one home cannot both insert."""
    first, second = JobStore(tmp_path / "jobs.sqlite3"), JobStore(tmp_path / "jobs.sqlite3")
    try:
        first.insert("job-1", spec(custom_name="shared"), "queued")
        with pytest.raises(RunNameInUse) as refused:
            second.insert("job-2", spec(custom_name="shared"), "queued")
        assert refused.value.details["task_id"] == "job-1"
        second.insert("job-3", spec(custom_name="shared", tenant_id="tenant2"), "queued")  # another tenant
        with pytest.raises(JobExists):  # a task id taken stays JobExists
            second.insert("job-1", spec(custom_name="other"), "queued")
        first.transition("job-1", Phase.cancelled, "Cancelled", "done", only_from=Phase.pending)
        second.insert("job-2", spec(custom_name="shared"), "queued")  # the name is free again
    finally:
        first.close()
        second.close()


def test_an_older_database_gets_the_run_name_column(tmp_path):
    import sqlite3

    from laxai_api.backends import local_store

    path = tmp_path / "jobs.sqlite3"
    old = sqlite3.connect(path)
    old.executescript(local_store.SCHEMA.replace(",\n    run_name TEXT", ""))
    old.execute("INSERT INTO jobs (task_id, tenant_id, spec, phase, progress, created_at) VALUES (?, ?, ?, ?, ?, ?)",
                ("old-1", "tenant1", spec(custom_name="kept").model_dump_json(), "running", "{}", "2026-01-01"))
    old.commit()
    old.close()
    store = JobStore(path)
    try:
        with pytest.raises(RunNameInUse):
            store.insert("new-1", spec(custom_name="kept"), "queued")
    finally:
        store.close()
