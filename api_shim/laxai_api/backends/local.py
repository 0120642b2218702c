"""The local backend: each job is a ``laxai-train run`` subprocess; records live in SQLite.

- Concurrency: at most LAXAI_MAX_CONCURRENT_JOBS trainers run at once; the others wait
  (status pending) and start in submission order.
- Each trainer runs in its own process group (new session), so cancel reaches the
  DataLoader workers too: SIGTERM to the group, SIGKILL after LAXAI_CANCEL_GRACE_SECONDS,
  and a SIGKILL sweep of the group after the trainer exits.
- Cancel answers at once: it writes the job's ``cancel-requested`` file (the trainer's
  ``--cancel-file``: its last log line then says "cancelled on request"), signals the
  group and returns the job still running with reason CancelRequested and
  ``progress.message`` "Cancelling…"; it becomes cancelled when the trainer has exited.
- Files per job under LAXAI_HOME/jobs/<task_id>/: config.json (the trainer's config),
  progress.json (--progress-file), trainer.log (--log-file), output.log (stdout/stderr).
- Restarts: stopping the API leaves trainers running. On start, a trainer that is still
  alive is adopted (watched until it exits; its result is read from its progress file);
  a job whose process is gone is marked failed with reason ProcessLost — resubmitting
  with the same custom_name resumes from its last checkpoint. Queued jobs stay queued.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import sqlite3
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from laxai_api.backends.base import Backend, JobPage, JobRecord, ListQuery, LogTail, tail_lines
from laxai_api.backends.local_store import JobStore, record_from_row
from laxai_api.errors import Conflict, InvalidRequest, JobFinished, JobNotFound
from laxai_api.settings import ApiSettings
from laxai_operator.resource import TrainingJobSpec
from laxai_trainer import exit_codes
from laxai_trainer.reasons import Reason
from laxai_trainer.status import Phase, Progress, ProgressReport
from laxai_trainer.storage import open_storage
from laxai_trainer.sync import datasets_prefix

#: Settings the trainer must not inherit.
PRIVATE_ENV = ("LAXAI_API_KEYS", "LAXAI_API_KEYS_FILE")
#: Log lines quoted in a failed job's message.
FAILURE_TAIL = 15
#: What a running job shows between DELETE and its trainer's exit.
CANCELLING = "Cancelling: the trainer is writing its checkpoint and stopping"
#: The trainer's --cancel-file (its existence at a stop request means cancel, not preemption).
CANCEL_FILE = "cancel-requested"
#: How often an adopted trainer (not our child) is checked.
ADOPTED_POLL_SECONDS = 0.5


@dataclass
class Outcome:
    phase: Phase
    reason: str
    message: str


def classify_exit(
    code: int | None, cancel_requested: bool, report: ProgressReport | None, log_tail: list[str]
) -> Outcome:
    """The job's final status from how its trainer ended.

    ``code`` is None when the exit status is unknown (the trainer was adopted after an
    API restart, or vanished): the trainer's last progress report decides then.
    """
    reported = report.progress.status if report else None
    if code == exit_codes.OK or (code is None and reported == Phase.completed):
        if cancel_requested and reported != Phase.completed:
            return Outcome(Phase.cancelled, Reason.cancelled, "Cancelled by request")
        return Outcome(Phase.completed, Reason.completed, "Training completed")
    if cancel_requested:
        # Includes 75 (RETRY): the trainer checkpointed on our SIGTERM.
        return Outcome(Phase.cancelled, Reason.cancelled, "Cancelled by request")
    tail = "\n".join(log_tail[-FAILURE_TAIL:])
    said = report.progress.message if report and report.progress.message else None
    if code is None:
        if reported == Phase.failed:
            return Outcome(Phase.failed, Reason.trainer_failed, _with_tail(said or "The trainer failed", tail))
        return Outcome(
            Phase.failed,
            Reason.process_lost,
            "The trainer process was gone when the API restarted; resubmit with the same "
            "custom_name to resume from its last checkpoint",
        )
    if code == exit_codes.CONFIG_ERROR:
        return Outcome(Phase.failed, Reason.trainer_config_error,
                       _with_tail(said or "Invalid configuration or input", tail))
    if code == exit_codes.RETRY:
        return Outcome(
            Phase.failed, Reason.preempted,
            "The trainer was stopped by a signal the API did not send (exit 75) after writing a "
            "checkpoint; resubmit with the same custom_name to resume",
        )
    if code < 0:
        name = signal.Signals(-code).name if -code in signal.valid_signals() else str(-code)
        return Outcome(Phase.failed, Reason.killed, _with_tail(f"The trainer was killed by {name}", tail))
    return Outcome(Phase.failed, Reason.trainer_failed, _with_tail(f"The trainer exited with code {code}", tail))


def _with_tail(message: str, tail: str) -> str:
    return f"{message}\n--- last log lines ---\n{tail}" if tail else message


def missing_datasets(storage_root: str, tenant_id: str) -> str | None:
    """Why a local storage root visibly has no dataset for the tenant (the trainer would fail
    seconds later), else None. Remote roots (gs://) are left to the trainer: no network call here."""
    if "://" in storage_root:
        return None
    folder = Path(storage_root) / datasets_prefix(tenant_id)
    if folder.is_dir() and any(p.is_dir() for p in folder.iterdir()):
        return None
    return (f"tenant '{tenant_id}' has no datasets under {folder} "
            f"(expected {folder}/{{dataset_id}}/{{train|val}}/{{player_id}}/*.jpg; "
            f"`laxai-train synth --out {storage_root} --tenant {tenant_id}` makes a synthetic one)")


def process_alive(pid: int, task_id: str) -> bool:
    """Whether ``pid`` is still our trainer for ``task_id`` (not a zombie, not a reused pid)."""
    proc = Path(f"/proc/{pid}")
    if not Path("/proc/self").exists():  # no procfs: best effort
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    try:
        state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        cmdline = (proc / "cmdline").read_bytes()
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X") and task_id.encode() in cmdline


def kill_group(pgid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


@dataclass
class _Trainer:
    task_id: str
    pid: int
    proc: asyncio.subprocess.Process | None  # None: adopted after a restart
    done: asyncio.Event = field(default_factory=asyncio.Event)
    watcher: asyncio.Task | None = None
    stopper: asyncio.Task | None = None  # the cancel in progress (SIGTERM, grace, SIGKILL)


class LocalBackend(Backend):
    name = "local"

    def __init__(self, settings: ApiSettings):
        self.home = Path(settings.home).resolve()
        self.jobs_dir = self.home / "jobs"
        self.cache_dir = self.home / "cache"
        root = settings.storage_root
        self.storage_root = root if "://" in root else str(Path(root).resolve())
        self.argv = settings.trainer_argv()
        self.max_concurrent = settings.max_concurrent_jobs
        self.grace = settings.cancel_grace_seconds
        self.store: JobStore | None = None
        self._running: dict[str, _Trainer] = {}
        self._lock = asyncio.Lock()

    # ---- lifecycle ------------------------------------------------------------------

    async def start(self) -> None:
        self.store = JobStore(self.home / "jobs.sqlite3")
        for row in self.store.rows_in(Phase.running):
            pid = row["pid"]
            if pid and process_alive(pid, row["task_id"]):
                self._watch(_Trainer(row["task_id"], pid, None))
            else:
                self._finalize(row["task_id"], None)
        await self._schedule()

    async def close(self) -> None:
        watchers = [task for t in self._running.values() for task in (t.watcher, t.stopper) if task]
        for task in watchers:
            task.cancel()
        await asyncio.gather(*watchers, return_exceptions=True)
        self._running.clear()
        if self.store:
            self.store.close()
            self.store = None

    # ---- the interface --------------------------------------------------------------

    async def submit(self, task_id: str, spec: TrainingJobSpec) -> JobRecord:
        if (missing := missing_datasets(self.storage_root, spec.tenant_id)) is not None:
            raise InvalidRequest(missing, {"errors": [
                {"location": ["body", "tenant_id"], "field": "tenant_id", "reason": missing, "type": "no_datasets"}]})
        self.store.insert(task_id, spec, "Training job queued")
        job = await self.get(task_id)  # as accepted (pending), even when it starts at once
        await self._schedule()
        return job

    async def get(self, task_id: str) -> JobRecord:
        return self._fresh(record_from_row(self._row(task_id)))

    async def list(self, query: ListQuery) -> JobPage:
        page = self.store.page(query)
        page.jobs = [self._fresh(job) for job in page.jobs]
        return page

    async def cancel(self, task_id: str) -> JobRecord:
        async with self._lock:
            row = self._row(task_id)
            phase = Phase(row["phase"])
            if phase.terminal:
                raise JobFinished(task_id, phase.value)
            if phase == Phase.pending:
                self.store.transition(
                    task_id, Phase.cancelled, "Cancelled", "Cancelled before it started", only_from=Phase.pending
                )
                return await self.get(task_id)
            self.store.update(task_id, cancel_requested=1, reason="CancelRequested", message=CANCELLING)
            trainer = self._running.get(task_id)
            if trainer is not None and trainer.stopper is None:
                (self.jobs_dir / task_id / CANCEL_FILE).touch()
                trainer.stopper = asyncio.get_running_loop().create_task(self._stop(trainer))
        if trainer is None:
            self._finalize(task_id, None)
        return await self.get(task_id)

    async def purge(self, task_id: str) -> JobRecord:
        """Delete a finished job: its record, LAXAI_HOME/jobs/<task_id>/ and its run folder
        ({root}/{tenant}/runs/{run_name}: checkpoints, model, logs). 409 while the job, or
        another job writing to the same run folder, is pending or running."""
        async with self._lock:
            job = await self.get(task_id)
            if not job.phase.terminal:
                raise Conflict(f"Job '{task_id}' is {job.phase.value}: cancel it first",
                               {"task_id": task_id, "status": job.phase.value, "error_type": "job_active"})
            for phase in (Phase.pending, Phase.running):
                for row in self.store.rows_in(phase):
                    other = record_from_row(row)
                    if other.tenant_id == job.tenant_id and other.run_name == job.run_name:
                        raise Conflict(
                            f"Job '{other.task_id}' is writing to run '{job.run_name}'",
                            {"task_id": other.task_id, "custom_name": job.run_name, "error_type": "run_name_in_use"})
            await asyncio.to_thread(self._remove_files, job)
            self.store.delete(task_id)
        return job

    def _remove_files(self, job: JobRecord) -> None:
        shutil.rmtree(self.jobs_dir / job.task_id, ignore_errors=True)
        storage = open_storage(self.storage_root)
        for info in storage.list_files(f"{job.tenant_id}/runs/{job.run_name}"):
            storage.delete(info.path)
        if (folder := storage.local_path(f"{job.tenant_id}/runs/{job.run_name}")) is not None:
            shutil.rmtree(folder, ignore_errors=True)  # the empty folders left

    async def logs(self, task_id: str, tail: int) -> LogTail:
        self._row(task_id)
        job_dir = self.jobs_dir / task_id
        for path in (job_dir / "trainer.log", job_dir / "output.log"):
            if path.exists() and path.stat().st_size > 0:
                return LogTail("file", tail_lines(path, tail))
        return LogTail("none", [])

    async def health(self) -> tuple[bool, dict[str, Any]]:
        details: dict[str, Any] = {
            "database": str(self.home / "jobs.sqlite3"),
            "running": len(self._running),
            "max_concurrent_jobs": self.max_concurrent,
            "trainer_command": self.argv[0],
        }
        ok = True
        try:
            self.store.ping()
        except (sqlite3.Error, AttributeError) as exc:
            ok, details["database_error"] = False, str(exc)
        if shutil.which(self.argv[0]) is None:
            ok, details["trainer_error"] = False, f"trainer command not found: {self.argv[0]}"
        return ok, details

    # ---- internals ------------------------------------------------------------------

    def _row(self, task_id: str) -> sqlite3.Row:
        row = self.store.row(task_id)
        if row is None:
            raise JobNotFound(task_id)
        return row

    def _report(self, task_id: str) -> ProgressReport | None:
        try:
            return ProgressReport.model_validate_json((self.jobs_dir / task_id / "progress.json").read_bytes())
        except (OSError, ValueError):
            return None

    def _fresh(self, job: JobRecord) -> JobRecord:
        """A running job's live progress comes from its progress file."""
        if job.phase == Phase.running:
            report = self._report(job.task_id)
            if report is not None:
                job.progress = report.progress
                job.metrics = report.metrics or job.metrics
            if job.reason == "CancelRequested":
                job.progress = job.progress.model_copy(update={"message": job.message})
            elif report is not None:
                job.message = None  # the trainer's own message says more than "Started"
        return job

    def _log_tail(self, task_id: str) -> list[str]:
        """The end of stdout/stderr (it holds tracebacks the trainer could not log), else its log file."""
        for name in ("output.log", "trainer.log"):
            path = self.jobs_dir / task_id / name
            if path.exists() and path.stat().st_size:
                return tail_lines(path, FAILURE_TAIL)
        return []

    async def _schedule(self) -> None:
        """Start queued jobs, oldest first, while there is room."""
        async with self._lock:
            while len(self._running) < self.max_concurrent:
                row = self.store.oldest_pending(set(self._running))
                if row is None:
                    return
                await self._launch(row)

    def _command(self, task_id: str, job_dir: Path) -> list[str]:
        return [
            *self.argv, "run",
            "--config", str(job_dir / "config.json"),
            "--storage-root", self.storage_root,
            "--run-name", task_id,
            "--progress-file", str(job_dir / "progress.json"),
            "--log-file", str(job_dir / "trainer.log"),
            "--cache-dir", str(self.cache_dir),
            "--cancel-file", str(job_dir / CANCEL_FILE),
        ]

    async def _launch(self, row: sqlite3.Row) -> None:
        task_id = row["task_id"]
        job_dir = self.jobs_dir / task_id
        job_dir.mkdir(parents=True, exist_ok=True)
        spec = TrainingJobSpec.model_validate_json(row["spec"])
        (job_dir / "config.json").write_text(spec.training_config().model_dump_json(indent=2))
        env = {k: v for k, v in os.environ.items() if k not in PRIVATE_ENV}
        env["PYTHONUNBUFFERED"] = "1"
        env["LAXAI_JOB_ID"] = task_id  # a restart of this task resumes its own checkpoint
        argv = self._command(task_id, job_dir)
        try:
            with open(job_dir / "output.log", "ab") as out:
                proc = await asyncio.create_subprocess_exec(
                    *argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                    start_new_session=True, env=env,
                )
        except OSError as exc:
            self.store.transition(
                task_id, Phase.failed, Reason.trainer_not_started, f"Could not start {argv[0]}: {exc}",
                only_from=Phase.pending,
            )
            return
        progress = Progress(
            status=Phase.running, total_epochs=spec.training_kwargs.num_epochs, message="Trainer starting"
        )
        self.store.transition(
            task_id, Phase.running, "Started", "Trainer started", progress=progress, only_from=Phase.pending,
            pid=proc.pid, attempts=row["attempts"] + 1, cancel_requested=0,
        )
        self._watch(_Trainer(task_id, proc.pid, proc))

    def _watch(self, trainer: _Trainer) -> None:
        self._running[trainer.task_id] = trainer
        trainer.watcher = asyncio.get_running_loop().create_task(self._wait(trainer))

    async def _wait(self, trainer: _Trainer) -> None:
        if trainer.proc is not None:
            code: int | None = await trainer.proc.wait()
        else:
            while process_alive(trainer.pid, trainer.task_id):
                await asyncio.sleep(ADOPTED_POLL_SECONDS)
            code = None
        kill_group(trainer.pid, signal.SIGKILL)  # stragglers: DataLoader workers, children
        self._finalize(trainer.task_id, code)
        self._running.pop(trainer.task_id, None)
        trainer.done.set()
        await self._schedule()

    def _finalize(self, task_id: str, code: int | None) -> None:
        row = self.store.row(task_id)
        if row is None or row["phase"] != Phase.running.value:
            return
        report = self._report(task_id)
        outcome = classify_exit(code, bool(row["cancel_requested"]), report, self._log_tail(task_id))
        extra: dict[str, Any] = {"exit_code": code, "pid": None}
        if report is not None and report.metrics is not None:
            extra["metrics"] = report.metrics
        progress = report.progress if report else None
        if progress is not None and outcome.phase == Phase.cancelled:
            # The trainer's last word on our SIGTERM reads as a preemption ("the retry resumes").
            progress = progress.model_copy(update={"message": outcome.message})
        self.store.transition(
            task_id, outcome.phase, outcome.reason, outcome.message,
            progress=progress, only_from=Phase.running, **extra,
        )

    async def _stop(self, trainer: _Trainer) -> None:
        """SIGTERM, then SIGKILL after the grace period; the watcher finalizes the job."""
        kill_group(trainer.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(asyncio.shield(trainer.done.wait()), self.grace)
        except TimeoutError:
            kill_group(trainer.pid, signal.SIGKILL)
