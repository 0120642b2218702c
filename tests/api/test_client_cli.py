"""The ``laxai`` CLI against a live uvicorn on 127.0.0.1."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from laxai_api.client_cli import main, new_lines

pytestmark = pytest.mark.timeout(120)
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_submit_a_trainingjob_manifest_then_wait_status_logs_list(live_server, capsys):
    code, out, _ = run(capsys, "--url", live_server.url, "submit", "-f", str(EXAMPLES / "trainingjob-cpu.yaml"))
    assert code == 0
    task_id = out.strip()
    code, out, err = run(capsys, "--url", live_server.url, "wait", task_id, "--interval", "0.05")
    assert code == 0 and f"{task_id}: completed" in out and "rank1=0.5000" in out
    assert "epoch" in err  # the progress, one plain line per change (stderr is not a terminal here)
    plain = err.splitlines()
    assert len(plain) == len(set(plain)) and "\x1b[" not in err
    code, out, _ = run(capsys, "--url", live_server.url, "status", task_id, "--detail", "--json")
    detail = json.loads(out)
    assert detail["spec"]["gpus"] == 0 and detail["spec"]["custom_name"] == "cpu_smoke"
    assert detail["spec"]["training_kwargs"]["num_epochs"] == 2
    code, out, _ = run(capsys, "--url", live_server.url, "logs", task_id, "--tail", "1")
    assert out == "done\n"
    code, out, err = run(capsys, "--url", live_server.url, "list")
    assert task_id in out and "completed" in out and "2/2" in out and "1 of 1 jobs" in err


def test_submit_with_flags_and_set(live_server, capsys):
    code, out, _ = run(capsys, "--url", live_server.url, "submit", "--tenant", "tenant1", "--epochs", "2",
                       "--embedding-dim", "64", "--name", "flags", "--set", "training_kwargs.margin=0.3", "--json")
    assert code == 0
    task_id = json.loads(out)["task_id"]
    code, out, _ = run(capsys, "--url", live_server.url, "status", task_id, "--detail", "--json")
    spec = json.loads(out)["spec"]
    assert spec["training_kwargs"]["num_epochs"] == 2 and spec["training_kwargs"]["margin"] == 0.3
    assert spec["model_kwargs"]["embedding_dim"] == 64 and spec["custom_name"] == "flags"


def test_seed_body_file_with_override(live_server, capsys):
    code, out, _ = run(capsys, "--url", live_server.url, "submit", "-f", str(EXAMPLES / "seed_request.json"),
                       "--epochs", "1", "--wait", "--interval", "0.05")
    assert code == 0 and "completed" in out


def test_errors_name_the_field_and_exit_1(live_server, capsys):
    code, _, err = run(capsys, "--url", live_server.url, "submit", "--tenant", "tenant1",
                       "--set", "training_kwargs.num_epoch=3")
    assert code == 1 and "422 validation_error" in err and "training_kwargs.num_epoch: unknown field" in err
    code, _, err = run(capsys, "--url", live_server.url, "status", "nope")
    assert code == 1 and "404 not_found" in err
    code, _, err = run(capsys, "--url", live_server.url, "submit")
    assert code == 2 and "--tenant" in err


def test_cancel_and_wait_exit_codes(live_server, capsys):
    code, out, _ = run(capsys, "--url", live_server.url, "submit", "--tenant", "tenant1", "--epochs", "5000",
                       "--set", "wandb_tags=[fake-sleep=0.05]")
    task_id = out.strip()
    started = time.monotonic()
    code, out, _ = run(capsys, "--url", live_server.url, "cancel", task_id)
    assert time.monotonic() - started < 1.0  # at once; `wait` follows it to cancelled
    assert code == 0 and f"{task_id}: running (Cancelling" in out
    code, out, _ = run(capsys, "--url", live_server.url, "wait", task_id, "--interval", "0.05")
    assert code == 1 and "cancelled" in out
    code, _, err = run(capsys, "--url", live_server.url, "cancel", task_id)
    assert code == 1 and "409 job_finished" in err


def test_logs_follow_prints_each_line_once(live_server, capsys):
    code, out, _ = run(capsys, "--url", live_server.url, "submit", "--tenant", "tenant1", "--epochs", "20",
                       "--set", "wandb_tags=[fake-sleep=0.05]")
    task_id = out.strip()
    code, out, _ = run(capsys, "--url", live_server.url, "logs", "-f", task_id, "--interval", "0.1")
    lines = out.splitlines()
    epochs = [line for line in lines if line.startswith("epoch")]
    assert epochs == [f"epoch {i}/20 loss={1 / i:.4f}" for i in range(1, 21)] and lines[-1] == "done"


def test_logs_follow_of_a_finished_job_prints_only_the_tail(live_server, capsys):
    code, out, _ = run(capsys, "--url", live_server.url, "submit", "--tenant", "tenant1", "--epochs", "5")
    task_id = out.strip()
    assert run(capsys, "--url", live_server.url, "wait", task_id, "--interval", "0.05")[0] == 0
    code, out, _ = run(capsys, "--url", live_server.url, "logs", "-f", task_id, "--tail", "2", "--interval", "0.05")
    assert code == 0 and out.splitlines() == ["epoch 5/5 loss=0.2000", "done"]
    code, out, _ = run(capsys, "--url", live_server.url, "logs", "-f", task_id, "--tail", "0", "--interval", "0.05")
    assert code == 0 and out == ""


def test_status_is_a_readable_summary_and_json_on_request(live_server, capsys):
    code, out, _ = run(capsys, "--url", live_server.url, "submit", "--tenant", "tenant1", "--epochs", "2")
    task_id = out.strip()
    run(capsys, "--url", live_server.url, "wait", task_id, "--interval", "0.05")
    code, out, _ = run(capsys, "--url", live_server.url, "status", task_id)
    assert code == 0 and out.splitlines()[0] == f"{task_id}: completed"
    assert "epoch 2/2" in out and "train loss" in out and len(out.splitlines()) < 10
    code, out, _ = run(capsys, "--url", live_server.url, "status", task_id, "--json")
    assert json.loads(out)["status"] == "completed"


def test_wait_for_an_unknown_job_is_a_404_before_any_bar(live_server, capsys):
    code, out, err = run(capsys, "--url", live_server.url, "wait", "does-not-exist")
    assert code == 1 and out == "" and err.startswith("laxai: 404 not_found") and "|" not in err


def test_an_api_that_is_down_is_named_with_how_to_start_one(capsys):
    code, _, err = run(capsys, "--url", "http://127.0.0.1:9", "list")
    assert code == 1 and "http://127.0.0.1:9" in err and "laxai-api --backend local" in err


@pytest.mark.parametrize(
    ("name", "text", "said"),
    [("job.json", '{"tenant_id": "tenant1",}', "job.json: invalid JSON at line 1, column 25"),
     ("job.yaml", "tenant_id: [tenant1\n", "job.yaml: invalid YAML at line 2")],
)
def test_a_broken_job_file_is_an_error_naming_the_file(tmp_path, capsys, name, text, said):
    path = tmp_path / name
    path.write_text(text)
    code, _, err = run(capsys, "--url", "http://127.0.0.1:9", "submit", "-f", str(path))
    assert code == 2 and said.replace("job.", str(tmp_path / "job.")) in err, err


def test_rm_removes_a_finished_job(live_server, capsys):
    code, out, _ = run(capsys, "--url", live_server.url, "submit", "--tenant", "tenant1", "--epochs", "1")
    task_id = out.strip()
    run(capsys, "--url", live_server.url, "wait", task_id, "--interval", "0.05")
    code, out, _ = run(capsys, "--url", live_server.url, "rm", task_id)
    assert code == 0 and "removed" in out
    code, _, err = run(capsys, "--url", live_server.url, "status", task_id)
    assert code == 1 and "404" in err


def test_api_key_and_url_from_environment(live_server, capsys, monkeypatch):
    monkeypatch.setenv("LAXAI_API_URL", live_server.url)
    code, _, err = run(capsys, "list")
    assert code == 0 and "0 of 0 jobs" in err


@pytest.mark.parametrize(
    ("previous", "current", "new"),
    [
        ([], ["a", "b"], ["a", "b"]),
        (["a", "b"], ["a", "b"], []),
        (["a", "b"], ["a", "b", "c"], ["c"]),
        (["a", "b", "c"], ["b", "c", "d", "e"], ["d", "e"]),
        (["x"], ["y", "z"], ["y", "z"]),
        (["a", "a"], ["a", "a", "a"], ["a"]),
    ],
)
def test_new_lines(previous, current, new):
    assert new_lines(previous, current) == new


def test_wait_in_a_terminal_redraws_in_place_with_a_ticking_clock(live_server, capsys):
    """`laxai wait` as a user runs it: its own process, stderr a pseudo-terminal."""
    import fcntl
    import os
    import pty
    import struct
    import subprocess
    import sys
    import termios

    code, out, _ = run(capsys, "--url", live_server.url, "submit", "--tenant", "tenant1", "--epochs", "50",
                       "--set", "wandb_tags=[fake-sleep=0.1]")
    task_id = out.strip()
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    proc = subprocess.Popen([sys.executable, "-m", "laxai_api.client_cli", "--url", live_server.url, "wait",
                             task_id, "--interval", "0.5"], stdin=slave, stdout=slave, stderr=slave)
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data.decode(errors="replace"))
    os.close(master)
    assert proc.wait(timeout=60) == 0
    text = "".join(chunks)
    assert "\x1b[2F" in text and "\x1b[K" in text  # redrawn in place, not one line per poll
    import re

    clock = sorted(set(re.findall(r"elapsed (\d+:\d\d)", text)))
    assert len(clock) >= 3, clock  # the clock ticks (every second, polls every 0.5 s)
    assert "running | epoch" in text and f"{task_id}: completed" in text
