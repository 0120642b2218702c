"""The backend interface and what every backend shares: job records, pages, log tails."""

from __future__ import annotations

import abc
import base64
import binascii
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from laxai_api.errors import InvalidRequest, JobNotFound
from laxai_operator.resource import TrainingJobSpec
from laxai_trainer.status import Metrics, Phase, Progress

#: A Kubernetes object name (DNS subdomain): every task id, API-created or kubectl-created.
TASK_ID_PATTERN = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
MAX_PAGE = 1000
DEFAULT_TAIL = 100


def valid_task_id(task_id: str) -> bool:
    return bool(TASK_ID_PATTERN.match(task_id))


def now_rfc3339() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


@dataclass
class JobRecord:
    """One training job as every backend reports it."""

    task_id: str
    tenant_id: str
    spec: TrainingJobSpec
    phase: Phase = Phase.pending
    progress: Progress = field(default_factory=Progress)
    metrics: Metrics | None = None
    reason: str | None = None
    message: str | None = None
    conditions: list[dict[str, Any]] = field(default_factory=list)
    history: list[dict[str, Any]] = field(default_factory=list)
    created_at: str | None = None
    started_at: str | None = None
    completed_at: str | None = None
    attempts: int | None = None

    @property
    def run_name(self) -> str:
        return self.spec.run_name(self.task_id)

    def display_progress(self) -> Progress:
        """The progress object with its status always equal to the job's."""
        if self.progress.status == self.phase:
            return self.progress
        return self.progress.model_copy(update={"status": self.phase})

    def display_message(self) -> str:
        return self.message or self.progress.message or _DEFAULT_MESSAGES[self.phase]


_DEFAULT_MESSAGES = {
    Phase.pending: "Training job queued",
    Phase.running: "Training in progress",
    Phase.completed: "Training completed",
    Phase.failed: "Training failed",
    Phase.cancelled: "Training cancelled",
}


@dataclass
class JobPage:
    total: int
    jobs: Sequence[JobRecord]
    next_token: str | None
    #: The jobs' list items as JSON (job_views.summary_json), where the backend keeps them ready.
    items: list[bytes] | None = None


@dataclass
class ListQuery:
    status: Phase | None = None
    tenant_id: str | None = None
    limit: int = 100
    continue_token: str | None = None


@dataclass
class LogTail:
    source: str  # file | pod | storage | none
    lines: list[str]


def encode_token(cursor: list[Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(cursor).encode()).decode().rstrip("=")


def decode_token(token: str) -> list[Any]:
    """The cursor inside a continue token; 422 naming ``continue`` when it is not ours."""
    try:
        padded = token + "=" * (-len(token) % 4)
        cursor = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        cursor = None
    if not isinstance(cursor, list) or not cursor:
        raise invalid_token()
    return cursor


def invalid_token() -> InvalidRequest:
    return InvalidRequest(
        "Invalid request: continue",
        {"errors": [{"location": ["query", "continue"], "field": "continue",
                     "reason": "not a continue token returned by this API", "type": "value_error"}]},
    )


def tail_lines(path: Path, n: int, chunk: int = 64 * 1024) -> list[str]:
    """The last ``n`` lines of a text file, reading backwards from its end."""
    if n <= 0:
        return []
    with open(path, "rb") as fh:
        fh.seek(0, 2)
        end = fh.tell()
        data = b""
        pos = end
        while pos > 0 and data.count(b"\n") <= n:
            step = min(chunk, pos)
            pos -= step
            fh.seek(pos)
            data = fh.read(step) + data
    return tail_text(data.decode("utf-8", errors="replace"), n)


def tail_text(text: str, n: int) -> list[str]:
    if n <= 0:
        return []
    return text.splitlines()[-n:]


class Backend(abc.ABC):
    """Where jobs live and run. Implementations raise :mod:`laxai_api.errors` exceptions."""

    name: str

    async def start(self) -> None:  # noqa: B027 - optional hook
        """Connect, recover state, start background work."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Stop background work (running trainers are left running)."""

    @abc.abstractmethod
    async def submit(self, task_id: str, spec: TrainingJobSpec) -> JobRecord:
        """Create a pending job; JobExists when the task id is taken."""

    @abc.abstractmethod
    async def get(self, task_id: str) -> JobRecord:
        """The job, with current progress; JobNotFound when absent."""

    @abc.abstractmethod
    async def list(self, query: ListQuery) -> JobPage:
        """Jobs matching the filters, newest first, one page."""

    async def known(self, task_id: str) -> JobRecord | None:
        """The job if this replica knows it without asking anyone else, else None.

        For the POST's idempotency check: None may also mean "created elsewhere a moment ago";
        the create then fails with JobExists and the caller reads the job with :meth:`get`.
        """
        try:
            return await self.get(task_id)
        except JobNotFound:
            return None

    async def active_run(self, tenant_id: str, run_name: str) -> str | None:
        """The task id of a pending/running job of the tenant writing to ``run_name``, else None."""
        for phase in (Phase.pending, Phase.running):
            token = None
            while True:
                page = await self.list(ListQuery(phase, tenant_id, MAX_PAGE, token))
                for job in page.jobs:
                    if job.run_name == run_name and job.tenant_id == tenant_id:
                        return job.task_id
                token = page.next_token
                if not token:
                    break
        return None

    @abc.abstractmethod
    async def cancel(self, task_id: str) -> JobRecord:
        """Stop the job (its trainer really stops); JobFinished when already finished."""

    async def purge(self, task_id: str) -> JobRecord:
        """Remove a finished job's record and its run folder; returns the record as it was."""
        raise InvalidRequest(
            f"purge is not supported by the {self.name} backend",
            {"errors": [{"location": ["query", "purge"], "field": "purge", "type": "unsupported",
                         "reason": f"not supported by the {self.name} backend"}]},
        )

    @abc.abstractmethod
    async def logs(self, task_id: str, tail: int) -> LogTail:
        """The last ``tail`` lines of the trainer's log."""

    @abc.abstractmethod
    async def health(self) -> tuple[bool, dict[str, Any]]:
        """(reachable, details)."""
