"""The local backend's job records: one SQLite file under LAXAI_HOME, so jobs survive restarts.

Queries are small and indexed (well under a millisecond), so they run on the event
loop directly; WAL mode lets a second process (``laxai`` tools, a benchmark) read.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from laxai_api.backends.base import (
    JobPage,
    JobRecord,
    ListQuery,
    decode_token,
    encode_token,
    invalid_token,
    now_rfc3339,
)
from laxai_api.errors import JobExists, RunNameInUse
from laxai_operator.resource import HISTORY_LIMIT, TrainingJobSpec
from laxai_trainer.status import Metrics, Phase, Progress

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    task_id TEXT NOT NULL UNIQUE,
    tenant_id TEXT NOT NULL,
    spec TEXT NOT NULL,
    phase TEXT NOT NULL,
    reason TEXT,
    message TEXT,
    progress TEXT NOT NULL,
    metrics TEXT,
    history TEXT NOT NULL DEFAULT '[]',
    created_at TEXT NOT NULL,
    started_at TEXT,
    completed_at TEXT,
    pid INTEGER,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    exit_code INTEGER,
    attempts INTEGER NOT NULL DEFAULT 0,
    run_name TEXT
);
CREATE INDEX IF NOT EXISTS jobs_by_tenant ON jobs (tenant_id, seq);
CREATE INDEX IF NOT EXISTS jobs_by_phase ON jobs (phase, seq);
"""
#: One active (pending/running) job per (tenant, run name), enforced by SQLite itself: two POSTs,
#: or two API processes on one LAXAI_HOME, cannot both insert (no check-then-act race).
ACTIVE_RUN_INDEX = (
    "CREATE UNIQUE INDEX IF NOT EXISTS one_active_job_per_run ON jobs (tenant_id, run_name)"
    " WHERE phase IN ('pending', 'running')"
)


class JobStore:
    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.db.row_factory = sqlite3.Row
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA busy_timeout=5000")
        self.db.executescript(SCHEMA)
        columns = {row["name"] for row in self.db.execute("PRAGMA table_info(jobs)")}
        if "run_name" not in columns:  # a database of an earlier version
            self.db.execute("ALTER TABLE jobs ADD COLUMN run_name TEXT")
        self.db.execute("UPDATE jobs SET run_name = COALESCE(json_extract(spec, '$.custom_name'), task_id)"
                        " WHERE run_name IS NULL")
        self.db.execute(ACTIVE_RUN_INDEX)

    def close(self) -> None:
        self.db.close()

    def ping(self) -> None:
        self.db.execute("SELECT 1").fetchone()

    # ---- writes ---------------------------------------------------------------------

    def insert(self, task_id: str, spec: TrainingJobSpec, message: str) -> None:
        created = now_rfc3339()
        progress = Progress(
            status=Phase.pending, total_epochs=spec.training_kwargs.num_epochs, message=message
        )
        history = [{"phase": "pending", "time": created, "reason": "Submitted", "message": message}]
        run_name = spec.run_name(task_id)
        try:
            self.db.execute(
                "INSERT INTO jobs (task_id, tenant_id, run_name, spec, phase, progress, history, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (task_id, spec.tenant_id, run_name, spec.model_dump_json(by_alias=True, exclude_unset=True),
                 Phase.pending.value, progress.model_dump_json(), json.dumps(history), created),
            )
        except sqlite3.IntegrityError:
            if self.row(task_id) is not None:  # whichever unique index SQLite names, the id comes first
                raise JobExists(task_id) from None
            other = self.active_job(spec.tenant_id, run_name)
            raise RunNameInUse(other or "?", spec.tenant_id, run_name) from None

    def update(self, task_id: str, **fields: Any) -> None:
        if not fields:
            return
        cols = ", ".join(f"{name} = ?" for name in fields)
        values = [_to_column(v) for v in fields.values()]
        self.db.execute(f"UPDATE jobs SET {cols} WHERE task_id = ?", (*values, task_id))

    def transition(
        self, task_id: str, phase: Phase, reason: str, message: str, progress: Progress | None = None,
        only_from: Phase | None = None, **fields: Any,
    ) -> bool:
        """Move a job to ``phase`` and record it in the history; False when ``only_from`` did not hold."""
        row = self.row(task_id)
        if row is None or (only_from is not None and row["phase"] != only_from.value):
            return False
        time = now_rfc3339()
        history = json.loads(row["history"])
        history.append({"phase": phase.value, "time": time, "reason": reason, "message": message[:4096]})
        current = progress or Progress.model_validate_json(row["progress"])
        current = current.model_copy(update={"status": phase})
        if phase.terminal:
            fields.setdefault("completed_at", time)
        elif phase == Phase.running:
            fields.setdefault("started_at", row["started_at"] or time)
        self.update(
            task_id, phase=phase.value, reason=reason, message=message[:4096],
            progress=current, history=history[-HISTORY_LIMIT:], **fields,
        )
        return True

    # ---- reads ----------------------------------------------------------------------

    def delete(self, task_id: str) -> None:
        self.db.execute("DELETE FROM jobs WHERE task_id = ?", (task_id,))

    def row(self, task_id: str) -> sqlite3.Row | None:
        return self.db.execute("SELECT * FROM jobs WHERE task_id = ?", (task_id,)).fetchone()

    def active_job(self, tenant_id: str, run_name: str) -> str | None:
        """The task id of the pending/running job of the tenant writing to ``run_name``."""
        row = self.db.execute(
            "SELECT task_id FROM jobs WHERE tenant_id = ? AND run_name = ? AND phase IN ('pending', 'running')",
            (tenant_id, run_name),
        ).fetchone()
        return row["task_id"] if row else None

    def rows_in(self, phase: Phase) -> list[sqlite3.Row]:
        return self.db.execute("SELECT * FROM jobs WHERE phase = ? ORDER BY seq", (phase.value,)).fetchall()

    def oldest_pending(self, exclude: set[str]) -> sqlite3.Row | None:
        for row in self.db.execute("SELECT * FROM jobs WHERE phase = 'pending' ORDER BY seq"):
            if row["task_id"] not in exclude:
                return row
        return None

    def page(self, query: ListQuery) -> JobPage:
        where, params = [], []
        if query.status is not None:
            where.append("phase = ?")
            params.append(query.status.value)
        if query.tenant_id is not None:
            where.append("tenant_id = ?")
            params.append(query.tenant_id)
        clause = " WHERE " + " AND ".join(where) if where else ""
        total = self.db.execute(f"SELECT COUNT(*) FROM jobs{clause}", params).fetchone()[0]
        if query.continue_token:
            cursor = decode_token(query.continue_token)
            if len(cursor) != 1 or not isinstance(cursor[0], int):
                raise invalid_token()
            where.append("seq < ?")
            params.append(cursor[0])
            clause = " WHERE " + " AND ".join(where)
        rows = self.db.execute(
            f"SELECT * FROM jobs{clause} ORDER BY seq DESC LIMIT ?", (*params, query.limit + 1)
        ).fetchall()
        more = len(rows) > query.limit
        rows = rows[: query.limit]
        token = encode_token([rows[-1]["seq"]]) if more and rows else None
        return JobPage(total=total, jobs=[record_from_row(r) for r in rows], next_token=token)


def _to_column(value: Any) -> Any:
    if hasattr(value, "model_dump_json"):
        return value.model_dump_json()
    if isinstance(value, list | dict):
        return json.dumps(value)
    if isinstance(value, Phase):
        return value.value
    return value


def record_from_row(row: sqlite3.Row) -> JobRecord:
    phase = Phase(row["phase"])
    return JobRecord(
        task_id=row["task_id"],
        tenant_id=row["tenant_id"],
        spec=TrainingJobSpec.model_validate_json(row["spec"]),
        phase=phase,
        progress=Progress.model_validate_json(row["progress"]),
        metrics=Metrics.model_validate_json(row["metrics"]) if row["metrics"] else None,
        reason=row["reason"],
        message=row["message"],
        conditions=conditions_for(phase, row["reason"], row["message"], row["completed_at"] or row["started_at"]),
        history=json.loads(row["history"]),
        created_at=row["created_at"],
        started_at=row["started_at"],
        completed_at=row["completed_at"],
        attempts=row["attempts"],
    )


_CONDITION_TYPES = {
    Phase.running: "Running",
    Phase.completed: "Succeeded",
    Phase.failed: "Failed",
    Phase.cancelled: "Cancelled",
}


def conditions_for(phase: Phase, reason: str | None, message: str | None, time: str | None) -> list[dict]:
    """Kubernetes-style conditions of a local job, derived from its phase."""
    kind = _CONDITION_TYPES.get(phase)
    if kind is None or time is None:
        return []
    return [{"type": kind, "status": "True", "reason": reason or kind, "message": message or "",
             "lastTransitionTime": time}]
