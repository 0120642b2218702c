"""laxai-train: the command-line contract (docs/architecture.md).

Fast checks run main() in-process; the training paths are in test_job.py, and the
SIGTERM path runs the real console script as a subprocess (test_preemption.py).
"""

import json
import subprocess
import sys

import pytest

from laxai_trainer import exit_codes
from laxai_trainer.cli import main, resolve_run_name
from laxai_trainer.config import TrainingConfig
from laxai_trainer.trainer_settings import TrainerSettings


@pytest.fixture
def termination_log(tmp_path, monkeypatch):
    path = tmp_path / "termination-log"
    path.write_text("")
    monkeypatch.setenv("LAXAI_TERMINATION_LOG", str(path))
    return path


def test_help_lists_the_env_settings(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["run", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for flag in ("--config", "--storage-root", "--run-name", "--progress-file", "--log-file", "--cache-dir",
                 "--cancel-file"):
        assert flag in out
    for name in TrainerSettings.model_fields:
        listed = f"  LAXAI_{name.upper()} " in out
        assert listed is (name != "backend"), name  # only what the trainer reads
    assert "(default: None)" not in out and not any(line.count("(default:") > 1 for line in out.splitlines())


def test_console_script_help_runs():
    result = subprocess.run(
        [sys.executable, "-m", "laxai_trainer.cli", "--help"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0 and "synth" in result.stdout and "LAXAI_STORAGE_ROOT" in result.stdout


def test_invalid_config_names_the_field_on_stderr_and_termination_log(tmp_path, capsys, termination_log):
    config = tmp_path / "job.yaml"
    config.write_text("tenant_id: t1\ntraining_kwargs:\n  marign: 0.3\n")
    code = main(["run", "--config", str(config), "--storage-root", str(tmp_path / "root")])
    assert code == exit_codes.CONFIG_ERROR
    err = capsys.readouterr().err
    assert "training_kwargs.marign" in err
    assert "training_kwargs.marign" in termination_log.read_text()


def test_config_from_env_var(tmp_path, monkeypatch, capsys, termination_log):
    monkeypatch.setenv("LAXAI_TRAINING_CONFIG", json.dumps({"tenant_id": "t1", "model_kwargs": {"use_cbam": "x"}}))
    assert main(["run", "--storage-root", str(tmp_path)]) == exit_codes.CONFIG_ERROR
    err = capsys.readouterr().err
    assert "LAXAI_TRAINING_CONFIG" in err and "model_kwargs.use_cbam" in err


def test_no_config_at_all_is_a_config_error(tmp_path, monkeypatch, capsys, termination_log):
    monkeypatch.delenv("LAXAI_TRAINING_CONFIG", raising=False)
    assert main(["run", "--storage-root", str(tmp_path)]) == exit_codes.CONFIG_ERROR
    assert "LAXAI_TRAINING_CONFIG" in capsys.readouterr().err


def test_unreadable_config_file_is_a_config_error(tmp_path, capsys, termination_log):
    assert main(["run", "--config", str(tmp_path / "missing.yaml")]) == exit_codes.CONFIG_ERROR
    assert "missing.yaml" in capsys.readouterr().err


def test_absent_termination_log_is_not_created(tmp_path, monkeypatch, capsys):
    path = tmp_path / "no-such-log"
    monkeypatch.setenv("LAXAI_TERMINATION_LOG", str(path))
    monkeypatch.setenv("LAXAI_TRAINING_CONFIG", "{}")
    assert main(["run"]) == exit_codes.CONFIG_ERROR
    assert not path.exists()


def test_run_keeps_freed_host_memory_before_training(tmp_path, monkeypatch, termination_log):
    import laxai_trainer.cli as cli
    import laxai_trainer.job as job

    calls = []

    def train(*args):
        calls.append("train")
        raise RuntimeError("stopped before training")

    monkeypatch.setattr(cli, "keep_freed_memory", lambda: calls.append("keep"))
    monkeypatch.setattr(job, "run_job", train)
    monkeypatch.setenv("LAXAI_TRAINING_CONFIG", json.dumps({"tenant_id": "t1"}))
    assert main(["run", "--storage-root", str(tmp_path), "--cache-dir", str(tmp_path / "c")]) == exit_codes.FAILURE
    assert calls == ["keep", "train"]


def test_run_name_precedence():
    named = TrainingConfig(tenant_id="t", custom_name="mine")
    unnamed = TrainingConfig(tenant_id="t")
    assert resolve_run_name(named, "cli", "env") == "mine"
    assert resolve_run_name(unnamed, "cli", "env") == "cli"
    assert resolve_run_name(unnamed, None, "env") == "env"
    assert resolve_run_name(unnamed, None, None).startswith("run-")


def test_bad_run_name_is_a_config_error(tmp_path, capsys, termination_log):
    config = tmp_path / "c.json"
    config.write_text(json.dumps({"tenant_id": "t1"}))
    assert main(["run", "--config", str(config), "--run-name", "../escape"]) == exit_codes.CONFIG_ERROR
    assert "run name '../escape'" in capsys.readouterr().err


@pytest.mark.parametrize(("mode", "kits"), [(None, True), ("match", True), ("random-kits", False)])
def test_synth_mode_flag_picks_the_generator(tmp_path, capsys, mode, kits):
    argv = ["synth", "--out", str(tmp_path), "--tenant", "t", "--players", "2", "--frames", "1",
            "--images-per-player", "2"] + ([] if mode is None else ["--mode", mode])
    assert main(argv) == exit_codes.OK
    assert (tmp_path / "t" / "datasets" / "frame_0000" / "kits.json").exists() is kits


def test_synth_unknown_mode_is_a_usage_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["synth", "--out", str(tmp_path), "--tenant", "t", "--mode", "other"])
    assert exit_info.value.code == 2 and "--mode" in capsys.readouterr().err
