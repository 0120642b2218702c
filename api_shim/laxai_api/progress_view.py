"""How ``laxai wait``, ``laxai submit --wait`` and the quickstart show a job's progress.

On a terminal: a bar over the whole run (epochs, the current one counted by its steps)
with the elapsed time and the trainer's ETA; below it the labelled numbers of
:func:`laxai_trainer.progress.format_numbers`, then the trainer's message, whole, on lines
of its own; redrawn every second, so the
clock and the trainer's ETA (counted down from the report's ``updated_at``) keep moving
between polls. Anywhere else (a pipe, a log file): one plain line per change.
"""

from __future__ import annotations

import math
import os
import time
from datetime import UTC, datetime
from typing import Any, TextIO

from laxai_trainer.progress import format_duration, format_numbers
from laxai_trainer.status import Progress

#: Width used when the terminal does not say.
DEFAULT_COLUMNS = 80
BAR_WIDTH = (10, 30)


def parse_time(text: str | None) -> float | None:
    """An RFC 3339 timestamp as epoch seconds, or None."""
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC).timestamp()
    except ValueError:
        return None


def fraction_done(p: Progress) -> float:
    if not p.total_epochs:
        return 0.0
    steps = (p.current_step or 0) / p.total_steps if p.total_steps else 0.0
    return min(((p.current_epoch or 0) + steps) / p.total_epochs, 1.0)


def eta_now(p: Progress, now: float) -> float | None:
    """The trainer's ETA as of ``now`` (wall clock): its estimate minus the time since it reported."""
    if p.eta_seconds is None:
        return None
    reported = parse_time(p.updated_at)
    return max(p.eta_seconds - (now - reported), 0.0) if reported is not None else p.eta_seconds


def numbers_line(p: Progress, now: float) -> str:
    return format_numbers(p.model_copy(update={"eta_seconds": eta_now(p, now)}))


def bar_line(p: Progress, elapsed: float, now: float, columns: int) -> str:
    """``|████      |  50%  elapsed 1:05  eta 3:55``: the bar shrinks to fit, never below 10 cells."""
    eta = eta_now(p, now)
    text = f"{fraction_done(p) * 100:3.0f}%  elapsed {format_duration(elapsed)}"
    if eta is not None and not p.status.terminal:
        text += f"  eta {format_duration(eta)}"
    width = min(max(columns - len(text) - 3, BAR_WIDTH[0]), BAR_WIDTH[1])
    filled = round(fraction_done(p) * width)
    return f"|{'█' * filled}{' ' * (width - filled)}| {text}"


def rows(line: str, columns: int) -> int:
    """Terminal rows a line takes (it wraps at ``columns``)."""
    return max(1, math.ceil(len(line) / max(columns, 1)))


class ProgressView:
    """Draws status responses; call :meth:`update` per poll and :meth:`tick` every second."""

    def __init__(self, stream: TextIO, interactive: bool | None = None, started_at: float | None = None,
                 wall_clock: Any = time.time) -> None:
        self.stream = stream
        self.interactive = stream.isatty() if interactive is None else interactive
        self.wall_clock = wall_clock
        self.started_at = started_at if started_at is not None else wall_clock()
        self.status: dict[str, Any] | None = None
        self._drawn_rows = 0
        self._last_plain: tuple | None = None

    def columns(self) -> int:
        try:
            return os.get_terminal_size(self.stream.fileno()).columns or DEFAULT_COLUMNS
        except (OSError, ValueError, AttributeError):
            return DEFAULT_COLUMNS

    def update(self, status: dict[str, Any]) -> None:
        self.status = status
        if self.interactive:
            self.tick()
            return
        p = Progress.model_validate(status["progress"])
        key = (status["status"], p.current_epoch, p.current_step, p.current_loss, p.current_map, p.best_map,
               p.message)
        if key != self._last_plain:  # a log file gets one line per change, not every redraw
            self._last_plain = key
            line = numbers_line(p, self.wall_clock())
            self.stream.write(f"{line} — {p.message}\n" if p.message else f"{line}\n")
            self.stream.flush()

    def lines(self) -> list[str]:
        assert self.status is not None
        p = Progress.model_validate(self.status["progress"])
        now = self.wall_clock()
        message = p.message or self.status.get("message") or ""
        numbers = format_numbers(p.model_copy(update={"eta_seconds": None}))  # the ETA is on the bar line
        return [bar_line(p, now - self.started_at, now, self.columns()), numbers, *message.splitlines()]

    def tick(self) -> None:
        """Redraw (terminal only): the clock and ETA move even without a new report."""
        if not self.interactive or self.status is None:
            return
        columns = self.columns()
        lines = self.lines()
        up = f"\x1b[{self._drawn_rows - 1}F" if self._drawn_rows > 1 else "\r"
        body = "\n".join(f"{line}\x1b[K" for line in lines)
        self.stream.write(f"{up}{body}\x1b[J")  # erase what the previous, longer drawing left below
        self.stream.flush()
        self._drawn_rows = sum(rows(line, columns) for line in lines)

    def close(self) -> None:
        if self.interactive and self._drawn_rows:
            self.stream.write("\n")
            self.stream.flush()
        self._drawn_rows = 0
