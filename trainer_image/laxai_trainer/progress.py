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


def eta_seconds(epoch_seconds: Sequence[float], epochs_done: int, total_epochs: int) -> float | None:
    """Remaining time: the mean duration of the epochs timed so far × epochs left.

    None until one epoch was timed; 0 when nothing is left.
    """
    remaining = max(total_epochs - epochs_done, 0)
    if remaining == 0:
        return 0.0
    if not epoch_seconds:
        return None
    return sum(epoch_seconds) / len(epoch_seconds) * remaining


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


def format_report(report: ProgressReport) -> str:
    """One line: phase, epoch, losses, ETA, message."""
    p = report.progress
    parts = [p.status.value]
    if p.total_epochs:
        parts.append(f"epoch {p.current_epoch or 0}/{p.total_epochs}")
    if p.datasets_found is not None:
        parts.append(f"datasets {p.datasets_processed or 0}/{p.datasets_found}")
    if p.current_loss is not None:
        parts.append(f"loss {p.current_loss:.4f}")
    if p.best_loss is not None:
        parts.append(f"best val loss {p.best_loss:.4f}")
    if report.metrics and report.metrics.mAP is not None:
        parts.append(f"mAP {report.metrics.mAP:.3f}")
    if p.eta_seconds:
        parts.append(f"eta {p.eta_seconds:.0f}s")
    line = " | ".join(parts)
    return f"{line} — {p.message}" if p.message else line


class LogReporter:
    """Logs each report as one line."""

    def __init__(self, level: int = logging.INFO) -> None:
        self.level = level
        self.logger = logging.getLogger(REPORT_LOGGER)

    def report(self, report: ProgressReport) -> None:
        self.logger.log(self.level, "%s", format_report(report))


class TqdmReporter:
    """A progress bar over epochs on stderr (used when stderr is a terminal).

    The bar shows our own ETA (mean epoch time × epochs left), not tqdm's rate: the bar
    only moves at epoch ends, and a resumed run starts part-way.
    """

    BAR_FORMAT = "{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} epochs [{elapsed}{postfix}]"

    def __init__(self, file: Any = None) -> None:
        self.file = file
        self._bar: Any = None

    def report(self, report: ProgressReport) -> None:
        from tqdm import tqdm

        p = report.progress
        if self._bar is None and p.total_epochs:
            self._bar = tqdm(total=p.total_epochs, file=self.file, dynamic_ncols=True, bar_format=self.BAR_FORMAT)
        if self._bar is None:
            return
        self._bar.n = p.current_epoch or 0
        postfix = {}
        if p.current_loss is not None:
            postfix["loss"] = f"{p.current_loss:.4f}"
        if report.metrics and report.metrics.mAP is not None:
            postfix["mAP"] = f"{report.metrics.mAP:.3f}"
        if p.eta_seconds:
            postfix["eta"] = f"{p.eta_seconds:.0f}s"
        self._bar.set_postfix(postfix, refresh=False)
        self._bar.set_description((p.message or p.status.value)[:40], refresh=False)
        self._bar.refresh()
        if p.status.terminal:
            self.close()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


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
        return self.update(current_epoch=epoch, eta_seconds=eta_seconds(self.epoch_seconds, epoch, total), **fields)

    def finish(self, status: Phase, message: str, metrics: Metrics | None = None) -> ProgressReport:
        eta = 0.0 if status == Phase.completed else None
        return self.update(metrics=metrics, status=status, message=message, eta_seconds=eta)
