"""laxai_trainer.progress and .reporters: tracker, sinks, log tail, ETA."""

import json
import logging
import sys
import types

import pytest

from laxai_trainer.progress import (
    FanOut,
    JsonFileReporter,
    LogReporter,
    LogTail,
    ProgressTracker,
    TqdmReporter,
    eta_seconds,
    format_report,
)
from laxai_trainer.reporters import make_reporters
from laxai_trainer.status import LOG_TAIL, Metrics, Phase, Progress, ProgressReport


class Collect:
    def __init__(self):
        self.reports = []

    def report(self, report):
        self.reports.append(report)


class Broken:
    def report(self, report):
        raise RuntimeError("sink down")


def test_eta_is_mean_epoch_time_times_epochs_left():
    assert eta_seconds([], 0, 10) is None
    assert eta_seconds([10.0, 20.0], 2, 10) == pytest.approx(120.0)
    assert eta_seconds([10.0], 10, 10) == 0.0


def test_eta_counts_the_current_epoch_by_its_steps():
    # First epoch, 25 of 100 steps in 30 s: an epoch takes ~120 s, 3.75 epochs are left.
    assert eta_seconds([], 0, 4, step=25, steps=100, epoch_elapsed=30.0) == pytest.approx(450.0)
    # Later epochs use the mean epoch time: 1 done (60 s), half of the second, 3 planned.
    assert eta_seconds([60.0], 1, 3, step=50, steps=100, epoch_elapsed=10.0) == pytest.approx(90.0)
    assert eta_seconds([], 0, 4, step=0, steps=100, epoch_elapsed=5.0) is None  # nothing timed yet


def test_tracker_step_reports_steps_and_a_falling_eta():
    tracker = ProgressTracker(Collect())
    tracker.update(total_epochs=2)
    first = tracker.step(1, 10, 100, 10.0).progress
    later = tracker.step(1, 50, 100, 50.0).progress
    assert (first.current_step, first.total_steps) == (10, 100)
    assert first.eta_seconds == pytest.approx(190.0) and later.eta_seconds == pytest.approx(150.0)
    done = tracker.epoch_done(1, 100.0).progress
    assert done.current_step == 0 and done.eta_seconds == pytest.approx(100.0)


def test_tracker_reports_fields_time_logs_and_eta():
    sink = Collect()
    tail = LogTail()
    tail.lines.extend(["a", "b"])
    tracker = ProgressTracker(sink, tail)
    tracker.update(status=Phase.running, total_epochs=4, message="training")
    tracker.epoch_done(1, 30.0, current_loss=0.5, best_loss=0.6)
    report = sink.reports[-1]
    assert report.progress.current_epoch == 1
    assert report.progress.eta_seconds == pytest.approx(90.0)
    assert report.progress.logs == ["a", "b"]
    assert report.progress.updated_at.endswith("Z")
    assert report.progress.message == "training"  # fields persist across updates
    tracker.finish(Phase.completed, "done", Metrics(mAP=0.7))
    assert sink.reports[-1].metrics.mAP == 0.7 and sink.reports[-1].progress.eta_seconds == 0.0


def test_tracker_rejects_unknown_fields():
    with pytest.raises(ValueError):
        ProgressTracker(Collect()).update(epoch=3)


def test_json_file_reporter_rewrites_atomically(tmp_path):
    path = tmp_path / "sub" / "progress.json"
    reporter = JsonFileReporter(path)
    for epoch in (1, 2):
        reporter.report(ProgressReport(progress=Progress(status=Phase.running, current_epoch=epoch)))
    data = json.loads(path.read_text())
    assert data["progress"]["current_epoch"] == 2 and data["metrics"] is None
    assert ProgressReport.model_validate(data).progress.status == Phase.running
    assert [p.name for p in path.parent.iterdir()] == ["progress.json"]  # no temp files left


def test_log_tail_keeps_the_last_lines_first_line_only():
    logger = logging.getLogger("test_progress_tail")
    logger.propagate = False
    tail = LogTail()
    logger.addHandler(tail)
    logger.setLevel(logging.INFO)
    try:
        for i in range(LOG_TAIL + 5):
            logger.info("line %d", i)
        try:
            raise ValueError("boom")
        except ValueError:
            logger.exception("failed\nsecond line")
    finally:
        logger.removeHandler(tail)
    lines = tail.snapshot()
    assert len(lines) == LOG_TAIL
    assert lines[0].endswith(f"line {6}") and lines[-1].endswith("failed")


def test_log_tail_skips_the_log_reporters_own_lines():
    tail = LogTail()
    root = logging.getLogger()
    root.addHandler(tail)
    old = root.level
    root.setLevel(logging.INFO)
    try:
        LogReporter().report(ProgressReport(progress=Progress(status=Phase.running)))
        logging.getLogger("laxai_trainer.reid.engine.trainer").info("real line")
    finally:
        root.removeHandler(tail)
        root.setLevel(old)
    assert [line.split(": ", 1)[1] for line in tail.snapshot()] == ["real line"]


def test_fanout_survives_a_failing_reporter(caplog):
    good = Collect()
    fan = FanOut([Broken(), good])
    with caplog.at_level(logging.WARNING):
        fan.report(ProgressReport())
        fan.report(ProgressReport())
    assert len(good.reports) == 2
    assert sum("sink down" in r.message for r in caplog.records) == 1  # warned once


def test_format_report_labels_every_number():
    line = format_report(
        ProgressReport(
            progress=Progress(status=Phase.running, current_epoch=2, total_epochs=5, current_step=7, total_steps=20,
                              current_loss=0.1234, current_map=0.25, best_map=0.5, eta_seconds=142,
                              message="epoch done"),
            metrics=Metrics(mAP=0.5),
        )
    )
    assert line == ("running | epoch 3/5 | step 7/20 | train loss 0.1234 | val mAP 0.2500 | best mAP 0.5000 "
                    "| eta 2:22 — epoch done")


def test_make_reporters_picks_sinks(tmp_path, monkeypatch):
    monkeypatch.delenv("LAXAI_TRAININGJOB_NAME", raising=False)
    kinds = [type(r).__name__ for r in make_reporters(tmp_path / "p.json", tty=True)]
    assert kinds == ["LogReporter", "JsonFileReporter", "TqdmReporter"]
    assert [type(r).__name__ for r in make_reporters()] == ["LogReporter"]


def test_make_reporters_loads_the_kubernetes_reporter_lazily(monkeypatch):
    module = types.ModuleType("laxai_trainer.reporters.kubernetes")

    class KubernetesStatusReporter:
        @classmethod
        def from_env(cls):
            return cls()

        def report(self, report):
            pass

    module.KubernetesStatusReporter = KubernetesStatusReporter
    monkeypatch.setitem(sys.modules, "laxai_trainer.reporters.kubernetes", module)
    monkeypatch.setenv("LAXAI_TRAININGJOB_NAME", "job1")
    assert type(make_reporters()[-1]).__name__ == "KubernetesStatusReporter"


def test_missing_kubernetes_reporter_is_logged_not_fatal(monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "laxai_trainer.reporters.kubernetes", None)  # import fails
    monkeypatch.setenv("LAXAI_TRAININGJOB_NAME", "job1")
    with caplog.at_level(logging.ERROR):
        reporters = make_reporters()
    assert [type(r).__name__ for r in reporters] == ["LogReporter"]
    assert "LAXAI_TRAININGJOB_NAME is set" in caplog.text


def test_tqdm_bar_follows_steps_and_puts_the_message_on_its_own_line():
    import io

    out = io.StringIO()
    bar = TqdmReporter(file=out)
    bar.report(ProgressReport(progress=Progress(status=Phase.running, message="syncing")))  # no total yet
    assert out.getvalue() == ""
    long = "Training on cpu from random initialisation; no pretrained weights were found " * 2
    bar.report(ProgressReport(progress=Progress(status=Phase.running, current_epoch=1, total_epochs=4,
                                                current_step=50, total_steps=100, current_loss=0.5,
                                                eta_seconds=30, message=long)))
    text = out.getvalue()
    assert " 38%|" in text  # 1.5 of 4 epochs
    assert "epoch 2/4 | step 50/100 | train loss 0.5000" in text and "eta 0:30" in text
    assert long.strip() in text  # whole, on its own line
    bar.report(ProgressReport(progress=Progress(status=Phase.completed, current_epoch=4, total_epochs=4)))
    assert "100%|" in out.getvalue() and bar._bar is None
