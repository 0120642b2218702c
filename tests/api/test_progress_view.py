"""The progress display of `laxai wait` and the quickstart, drawn into a pseudo-terminal."""

from __future__ import annotations

import fcntl
import io
import os
import pty
import re
import struct
import termios

import pytest

from laxai_api.progress_view import ProgressView, bar_line, eta_now, parse_time
from laxai_trainer.status import Progress

T0 = parse_time("2026-01-01T00:00:00Z")
LONG_MESSAGE = ("Training on cpu from random initialisation; no pretrained weights were found under "
                "/data/laxai/tenant1/runs/quickstart/final and downloads are off")


def status(**progress) -> dict:
    p = {"status": "running", "total_epochs": 3, "current_epoch": 0, "updated_at": "2026-01-01T00:00:00Z",
         **progress}
    return {"status": p["status"], "task_id": "t1", "message": "Training in progress", "progress": p}


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def terminal():
    """A pty 100 columns wide: (stream the view writes to, function that reads what it drew)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    stream = os.fdopen(slave, "w", encoding="utf-8")

    def read() -> str:
        stream.flush()
        chunks = []
        while True:
            try:
                os.set_blocking(master, False)
                chunks.append(os.read(master, 65536).decode())
            except BlockingIOError:
                return "".join(chunks)

    yield stream, read
    stream.close()
    os.close(master)


def plain(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", text).replace("\r", "")


def test_a_terminal_gets_steps_labels_and_the_whole_message_on_its_own_line(terminal):
    stream, read = terminal
    clock = Clock(T0 + 65)
    view = ProgressView(stream, started_at=T0, wall_clock=clock)
    assert view.interactive and view.columns() == 100
    view.update(status(current_epoch=1, current_step=30, total_steps=60, current_loss=0.41, current_map=0.5,
                       best_map=0.5, eta_seconds=300, message=LONG_MESSAGE))
    lines = plain(read()).splitlines()
    assert lines[0].startswith("|") and lines[0].endswith(" 50%  elapsed 1:05  eta 3:55")
    assert len(lines[0]) <= 100 and "█" * 15 in lines[0]  # 30 cells, half full
    assert lines[1] == "running | epoch 2/3 | step 30/60 | train loss 0.4100 | val mAP 0.5000 | best mAP 0.5000"
    assert "".join(lines[2:]) == LONG_MESSAGE  # whole, on its own lines (the terminal wraps it)


def test_the_clock_and_eta_tick_without_new_data(terminal):
    stream, read = terminal
    clock = Clock(T0 + 10)
    view = ProgressView(stream, started_at=T0, wall_clock=clock)
    view.update(status(eta_seconds=100, current_step=1, total_steps=10, message="step"))
    first = plain(read())
    clock.now += 1
    view.tick()
    second = read()
    assert "elapsed 0:10  eta 1:30" in first
    assert "elapsed 0:11  eta 1:29" in plain(second)
    assert second.startswith("\x1b[2F")  # redrawn in place: up over the two lines below the bar


def test_a_log_file_gets_one_line_per_change():
    out = io.StringIO()
    view = ProgressView(out, wall_clock=Clock(T0))
    assert not view.interactive
    for body in (status(message="a"), status(message="a"), status(current_epoch=1, message="b")):
        view.update(body)
        view.tick()
    assert out.getvalue().splitlines() == ["running | epoch 0/3 — a", "running | epoch 1/3 — b"]


def test_eta_counts_down_from_the_report_time():
    p = Progress(eta_seconds=60, updated_at="2026-01-01T00:00:00Z")
    assert eta_now(p, T0 + 15) == 45 and eta_now(p, T0 + 90) == 0
    assert eta_now(Progress(eta_seconds=60), T0) == 60  # no report time: as reported


def test_bar_line_never_squeezes_the_bar_below_ten_cells():
    line = bar_line(Progress(total_epochs=2, current_epoch=1, message="x" * 500), 5, T0, 20)
    assert line == "|█████     |  50%  elapsed 0:05"  # the message is never on the bar line
