"""Progress reporting: one tracker, several sinks.

The training code talks to a :class:`ProgressTracker` only (``tracker.update(...)``);
the tracker stamps the time, attaches the last log lines and the ETA, and hands one
:class:`~laxai_trainer.status.ProgressReport` to every :class:`Reporter`:

- :class:`JsonFileReporter` — the ``--progress-file`` (local backend, tests), rewritten atomically;
- :class:`LogReporter` — one log line per report;
- :class:`TqdmReporter` — a progress bar when stderr is a terminal;
- ``laxai_trainer.reporters.kubernetes`` — the TrainingJob status (see :mod:`laxai_trainer.reporters`).

A sink that fails is logged and skipped: reporting must never stop training.
"""

from __future__ import annotations

import collections
import json
import logging
import os
import tempfile
import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from laxai_trainer.status import LOG_TAIL, Metrics, Phase, Progress, ProgressReport

log = logging.getLogger(__name__)
#: LogReporter writes here; the log tail skips it so reports do not echo into themselves.
REPORT_LOGGER = "laxai_trainer.progress.report"
#: Longest log line kept in the tail (the status object must stay small).
MAX_LINE = 500
MAX_MESSAGE = 4096


class Reporter(Protocol):
    def report(self, report: ProgressReport) -> None: ...


def now_rfc3339() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def eta_seconds(
    epoch_seconds: Sequence[float], epochs_done: int, total_epochs: int,
    step: int = 0, steps: int | None = None, epoch_elapsed: float = 0.0,
) -> float | None:
    """Remaining time: the epoch duration × epochs left, the current one counted by its steps.

    The epoch duration is the mean of the epochs timed so far, or during the first epoch
    its time so far scaled by steps/step. None until there is either; 0 when nothing is left.
    """
    remaining = max(total_epochs - epochs_done, 0)
    if remaining == 0:
        return 0.0
    fraction_done = step / steps if steps and 0 < step <= steps else 0.0
    if epoch_seconds:
        per_epoch = sum(epoch_seconds) / len(epoch_seconds)
    elif fraction_done:
        per_epoch = epoch_elapsed / fraction_done
    else:
        return None
    return max(per_epoch * (remaining - fraction_done), 0.0)


class LogTail(logging.Handler):
    """Keeps the last ``size`` formatted log lines for Progress.logs."""

    def __init__(self, size: int = LOG_TAIL) -> None:
        super().__init__()
        self.lines: collections.deque[str] = collections.deque(maxlen=size)
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        if record.name == REPORT_LOGGER:
            return
        try:
            text = self.format(record)
        except Exception:  # a bad format string must not break logging
            text = str(record.msg)
        # First line only: a traceback would push everything else out of the tail.
        self.lines.append((text.splitlines() or [""])[0][:MAX_LINE])

    def snapshot(self) -> list[str]:
        return list(self.lines)


class JsonFileReporter:
    """Rewrites ``path`` with the latest report: temp file in the same folder, then rename."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def report(self, report: ProgressReport) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        data = json.dumps(report.model_dump(mode="json", by_alias=True), indent=2)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(data)
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def format_numbers(p: Progress) -> str:
    """The numbers of a report, each with its label: epoch, step, train loss, val/best mAP, ETA."""
    parts = [p.status.value]
    if p.total_epochs:
        # Inside an epoch (steps done), the epoch in progress; else the last finished one.
        epoch = (p.current_epoch or 0) + (1 if p.current_step else 0)
        parts.append(f"epoch {min(epoch, p.total_epochs)}/{p.total_epochs}")
    if p.current_step and p.total_steps:
        parts.append(f"step {p.current_step}/{p.total_steps}")
    if p.datasets_found is not None and not p.current_epoch and not p.current_step:
        parts.append(f"datasets {p.datasets_processed or 0}/{p.datasets_found}")
    if p.current_loss is not None:
        parts.append(f"train loss {p.current_loss:.4f}")
    if p.current_map is not None:
        parts.append(f"val mAP {p.current_map:.4f}")
    if p.best_map is not None:
        parts.append(f"best mAP {p.best_map:.4f}")
    if p.eta_seconds is not None and not p.status.terminal:
        parts.append(f"eta {format_duration(p.eta_seconds)}")
    return " | ".join(parts)


def format_duration(seconds: float) -> str:
    """H:MM:SS or M:SS."""
    total = int(round(max(seconds, 0)))
    hours, rest = divmod(total, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def format_report(report: ProgressReport) -> str:
    """One log line: the labelled numbers, then the message."""
    line = format_numbers(report.progress)
    return f"{line} — {report.progress.message}" if report.progress.message else line


class LogReporter:
    """Logs each report as one line."""

    def __init__(self, level: int = logging.INFO) -> None:
        self.level = level
        self.logger = logging.getLogger(REPORT_LOGGER)

    def report(self, report: ProgressReport) -> None:
        self.logger.log(self.level, "%s", format_report(report))


class TqdmReporter:
    """A progress bar on stderr (used when stderr is a terminal): the bar counts training
    steps of the whole run, its postfix is :func:`format_numbers`, and the message has a line
    of its own (a long message never shrinks the bar or gets cut)."""

    BAR_FORMAT = "{percentage:3.0f}%|{bar}| [{elapsed}] {postfix}"

    def __init__(self, file: Any = None) -> None:
        self.file = file
        self._bar: Any = None
        self._message: Any = None

    def report(self, report: ProgressReport) -> None:
        from tqdm import tqdm

        p = report.progress
        if self._bar is None and p.total_epochs:
            self._bar = tqdm(total=p.total_epochs, file=self.file, dynamic_ncols=True, bar_format=self.BAR_FORMAT)
            self._message = tqdm(file=self.file, bar_format="{desc}", dynamic_ncols=False, ncols=10_000)
        if self._bar is None:
            return
        fraction = (p.current_step or 0) / p.total_steps if p.total_steps else 0.0
        self._bar.n = round((p.current_epoch or 0) + fraction, 3)
        self._bar.set_postfix_str(format_numbers(p), refresh=False)
        self._message.set_description_str(" — ".join((p.message or "").splitlines()), refresh=False)
        self._bar.refresh()
        self._message.refresh()
        if p.status.terminal:
            self.close()

    def close(self) -> None:
        for bar in (self._bar, self._message):
            if bar is not None:
                bar.close()
        self._bar = self._message = None


class FanOut:
    """Sends each report to every reporter; one failing reporter does not stop the others."""

    def __init__(self, reporters: Sequence[Reporter]) -> None:
        self.reporters = list(reporters)
        self._failed: set[int] = set()

    def report(self, report: ProgressReport) -> None:
        for i, reporter in enumerate(self.reporters):
            try:
                reporter.report(report)
            except Exception as exc:
                # Warn once per reporter, then at debug level: no log flood on every step.
                level = logging.DEBUG if i in self._failed else logging.WARNING
                self._failed.add(i)
                log.log(level, "progress reporter %s failed: %s", type(reporter).__name__, exc)


class ProgressTracker:
    """The current progress and metrics; every change is reported to all sinks."""

    def __init__(self, reporter: Reporter, tail: LogTail | None = None) -> None:
        self.reporter = reporter
        self.tail = tail
        self.progress = Progress()
        self.metrics: Metrics | None = None
        self.epoch_seconds: list[float] = []
        self._lock = threading.Lock()

    def update(self, metrics: Metrics | None = None, **fields: Any) -> ProgressReport:
        """Set progress fields (and metrics), then report."""
        with self._lock:
            if "message" in fields and fields["message"] is not None:
                fields["message"] = str(fields["message"])[:MAX_MESSAGE]
            values = self.progress.model_dump()
            values.update(fields)
            values["updated_at"] = now_rfc3339()
            if self.tail is not None:
                values["logs"] = self.tail.snapshot()
            self.progress = Progress.model_validate(values)
            if metrics is not None:
                self.metrics = metrics
            report = ProgressReport(progress=self.progress, metrics=self.metrics)
        self.reporter.report(report)
        return report

    def epoch_done(self, epoch: int, seconds: float, **fields: Any) -> ProgressReport:
        """Record an epoch's duration, then report it with the ETA."""
        self.epoch_seconds.append(seconds)
        total = fields.get("total_epochs", self.progress.total_epochs) or epoch
        eta = eta_seconds(self.epoch_seconds, epoch, total)
        return self.update(current_epoch=epoch, current_step=0, eta_seconds=eta, **fields)

    def step(self, epoch: int, step: int, steps: int | None, epoch_elapsed: float, **fields: Any) -> ProgressReport:
        """Report progress inside epoch ``epoch`` (1-based) with the ETA counted by steps."""
        total = fields.get("total_epochs", self.progress.total_epochs) or epoch
        eta = eta_seconds(self.epoch_seconds, epoch - 1, total, step, steps, epoch_elapsed)
        return self.update(current_step=step, total_steps=steps, eta_seconds=eta, **fields)

    def finish(self, status: Phase, message: str, metrics: Metrics | None = None) -> ProgressReport:
        eta = 0.0 if status == Phase.completed else None
        return self.update(metrics=metrics, status=status, message=message, eta_seconds=eta)
