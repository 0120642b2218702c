"""laxai_trainer.wandb_run: mode choice, offline files with the metrics, never fatal."""

import logging

import pytest

from laxai_trainer.wandb_run import WandbRun, artifact_name, wandb_mode
from tests.trainer.wandb_records import find_run_files, read_run


@pytest.mark.parametrize(
    ("env", "mode"),
    [
        ({}, "offline"),
        ({"WANDB_API_KEY": "k"}, "online"),
        ({"WANDB_API_KEY": "k", "WANDB_MODE": "offline"}, "offline"),
        ({"WANDB_MODE": "disabled"}, "disabled"),
        ({"WANDB_MODE": "dryrun"}, "offline"),
    ],
)
def test_mode_follows_api_key_and_wandb_mode(env, mode):
    assert wandb_mode(env) == mode


def test_offline_run_files_hold_name_tags_config_metrics_and_artifact(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    run = WandbRun()
    run.start("my_run", ["tag1", "tag2"], {"tenant_id": "t1", "training_kwargs": {"margin": 0.4}}, tmp_path)
    assert run.active and run.mode == "offline"
    run.log_epoch(1, {"train_loss": 0.5, "mAP": 0.25, "skipped": None})
    run.log_epoch(2, {"train_loss": 0.4, "mAP": 0.5})
    model = tmp_path / "model.pt"
    model.write_bytes(b"weights")
    run.finish({"mAP": 0.5, "best_epoch": 2}, model, artifact_name("t1", "my_run"))
    assert not run.active
    files = WandbRun.offline_files(tmp_path)
    assert files and all(p.is_relative_to(tmp_path / "wandb") for p in files)
    (run_file,) = find_run_files(tmp_path)
    data = read_run(run_file)
    assert data["name"] == "my_run" and data["tags"] == ["tag1", "tag2"]
    assert data["config"]["training_kwargs"] == {"margin": 0.4}
    history = [{k: v for k, v in h.items() if not k.startswith("_")} for h in data["history"]]
    assert history == [{"train_loss": 0.5, "mAP": 0.25}, {"train_loss": 0.4, "mAP": 0.5}]
    assert data["summary"]["best_epoch"] == 2
    assert ("t1-my_run-model", "model") in data["artifacts"]


def test_resumed_run_keeps_its_id(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    run = WandbRun()
    run.start("r", [], {}, tmp_path, run_id="abc123")
    assert run.run_id == "abc123"
    run.close_quietly(exit_code=0)


def test_disabled_mode_does_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    run = WandbRun()
    run.start("r", [], {}, tmp_path)
    run.log_epoch(1, {"x": 1})
    run.finish({}, None, "a")
    assert not run.active and WandbRun.offline_files(tmp_path) == []


def test_wandb_failures_are_logged_and_never_raised(tmp_path, monkeypatch, caplog):
    import wandb

    def broken_init(**kwargs):
        raise RuntimeError("wandb backend unreachable")

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setattr(wandb, "init", broken_init)
    run = WandbRun()
    with caplog.at_level(logging.WARNING):
        run.start("r", [], {}, tmp_path)
        run.log_epoch(1, {"x": 1})
        run.finish({"x": 1}, None, "a")
    assert not run.active
    assert "wandb init failed" in caplog.text and "unreachable" in caplog.text


def test_a_failing_log_call_switches_wandb_off(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("WANDB_MODE", "offline")
    run = WandbRun()
    run.start("r", [], {}, tmp_path)

    def broken_log(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(run.run, "log", broken_log)
    with caplog.at_level(logging.WARNING):
        run.log_epoch(1, {"x": 1})
    assert not run.active and "disk full" in caplog.text


def test_artifact_name_is_safe():
    assert artifact_name("tenant.1", "run:2/x") == "tenant.1-run-2-x-model"
