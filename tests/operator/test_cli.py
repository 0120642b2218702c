"""``laxai-operator``: the run command as a process (JSON logs, liveness, metrics, namespaces)."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from laxai_operator.cli import kopf_options, main
from laxai_operator.settings import OperatorSettings
from tests.operator.conftest import JOBS, NS, make_tj


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_run_help_lists_every_setting(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["run", "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    for name in OperatorSettings.model_fields:
        listed = f"  LAXAI_{name.upper()} " in out
        assert listed is (name not in ("backend", "home")), name  # only what the operator reads
    assert "(default: None)" not in out and not any(line.count("(default:") > 1 for line in out.splitlines())
    assert "--log-format" in out and "(default: json)" in out


def test_crd_command_still_prints_the_crd(capsys):
    assert main(["crd"]) == 0
    assert "kind: CustomResourceDefinition" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, {"standalone": True, "clusterwide": True, "liveness_endpoint": "http://0.0.0.0:8081/healthz"}),
        ({"LAXAI_WATCH_NAMESPACES": "a,b", "LAXAI_HEALTH_PORT": "0"}, {"standalone": True, "namespaces": ["a", "b"]}),
        ({"LAXAI_HEALTH_PORT": "9000"}, {"standalone": True, "clusterwide": True,
                                         "liveness_endpoint": "http://0.0.0.0:9000/healthz"}),
    ],
)
def test_kopf_options_from_settings(monkeypatch, env, expected):
    for key in ("LAXAI_WATCH_NAMESPACES", "LAXAI_HEALTH_PORT"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert kopf_options(OperatorSettings()) == expected


def test_invalid_settings_stop_with_the_variable_named(monkeypatch, capsys):
    monkeypatch.setenv("LAXAI_NODE_SELECTOR", '["not", "an", "object"]')
    assert main(["run"]) == 2
    assert "node_selector" in capsys.readouterr().err


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status, resp.read().decode()
    except OSError:
        return 0, ""


def _start(env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "laxai_operator.cli", "run"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _stop(proc: subprocess.Popen) -> str:
    proc.terminate()
    try:
        out, _ = proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
    return out


@pytest.mark.slow
def test_run_process_serves_health_and_metrics_stable_across_restarts(kube_emulator):
    emu = kube_emulator
    metrics_port, health_port = free_port(), free_port()
    env = {**os.environ, "KUBECONFIG": str(emu.kubeconfig_path), "LAXAI_WATCH_NAMESPACES": NS,
           "LAXAI_METRICS_PORT": str(metrics_port), "LAXAI_HEALTH_PORT": str(health_port)}
    make_tj(emu, "run-1")
    make_tj(emu, "run-2")
    make_tj(emu, "elsewhere", namespace="other")  # not watched
    emu.patch("tj", NS, "run-2", {"spec": {"cancel": True}})
    outputs = []
    for _ in range(2):  # the phase gauge is rebuilt from the resources after a restart
        proc = _start(env)
        try:
            emu.wait_for_object(JOBS, NS, "tj-run-1", timeout=30)
            emu.wait_for(lambda: _get(f"http://127.0.0.1:{health_port}/healthz")[0] == 200, timeout=30,
                         message="liveness endpoint")

            def scraped():
                code, text = _get(f"http://127.0.0.1:{metrics_port}/metrics")
                wanted = ['laxai_trainingjobs{phase="pending"} 1.0', 'laxai_trainingjobs{phase="cancelled"} 1.0',
                          "laxai_operator_reconcile_duration_seconds_count"]
                return text if code == 200 and all(w in text for w in wanted) else None

            text = emu.wait_for(scraped, timeout=30, message="metrics")
            assert 'laxai_trainingjobs{phase="running"} 0.0' in text
            time.sleep(0.3)
        finally:
            outputs.append(_stop(proc))
    assert emu.get(JOBS, "other", "tj-elsewhere") is None  # LAXAI_WATCH_NAMESPACES took effect
    lines = [ln for ln in outputs[0].splitlines() if ln.strip()]
    assert lines and all(isinstance(json.loads(ln), dict) for ln in lines)  # JSON logs
    # kopf's per-handler success lines are off (not verbose); the operator's own lines stay
    assert any("created Job default/tj-run-1" in ln for ln in lines)
    assert not any(re.fullmatch(r"Handler .* succeeded\.", json.loads(ln).get("message", "")) for ln in lines)
