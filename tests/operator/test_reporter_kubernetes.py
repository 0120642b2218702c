"""laxai_trainer.reporters.kubernetes: the trainer's TrainingJob status reporter (unit level).

End to end: the last test runs the real trainer against the API emulator; test_handlers.py
checks that the operator keeps what the reporter wrote.
"""

import contextlib
import threading
import time

import pytest

from laxai_trainer.reporters.kubernetes import KubernetesStatusReporter, patch_body
from laxai_trainer.status import Metrics, Phase, Progress, ProgressReport


class FakeApi:
    def __init__(self, fail=None, cancel=None):
        self.calls = []
        self.fail = fail
        self.cancel = cancel  # spec.cancel of the TrainingJob the answers carry (None: no answer body)
        self.lock = threading.Lock()

    def patch_namespaced_custom_object_status(self, group, version, namespace, plural, name, body, **kw):
        with self.lock:
            self.calls.append((time.monotonic(), (group, version, namespace, plural, name), body))
        if self.fail:
            raise self.fail
        return None if self.cancel is None else {"spec": {"tenant_id": "t", "cancel": self.cancel}, "status": {}}


class ApiError(Exception):
    def __init__(self, status):
        super().__init__(f"HTTP {status}")
        self.status = status


def rep(status=Phase.running, epoch=None, metrics=None):
    return ProgressReport(progress=Progress(status=status, current_epoch=epoch, total_epochs=10), metrics=metrics)


def wait_for(pred, timeout=3.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.01)
    return False


def test_patch_body_carries_progress_and_metrics_only():
    body = patch_body(rep(epoch=3, metrics=Metrics(mAP=0.5)))
    assert set(body) == {"status"} and set(body["status"]) == {"progress", "metrics"}
    assert "status" not in body["status"]["progress"]  # the phase mirror is the operator's
    assert body["status"]["progress"]["current_epoch"] == 3 and body["status"]["metrics"]["mAP"] == 0.5
    assert "metrics" not in patch_body(rep())["status"]


def test_targets_its_own_trainingjob_status():
    api = FakeApi()
    KubernetesStatusReporter("run-1", "team-a", api).report(rep())
    (_, target, _), = api.calls
    assert target == ("training.laxai.io", "v1alpha1", "team-a", "trainingjobs", "run-1")


def test_rate_limited_but_the_latest_report_arrives():
    api = FakeApi()
    r = KubernetesStatusReporter("j", "ns", api, min_interval=0.3)
    r.report(rep(epoch=0))  # phase change: sent at once
    assert len(api.calls) == 1
    for epoch in range(1, 30):
        r.report(rep(epoch=epoch))
    assert len(api.calls) == 1  # all within the interval: held back
    assert wait_for(lambda: len(api.calls) == 2)
    time.sleep(0.4)
    assert len(api.calls) == 2  # the 28 intermediate reports were replaced, not queued
    assert api.calls[1][2]["status"]["progress"]["current_epoch"] == 29
    assert api.calls[1][0] - api.calls[0][0] >= 0.29
    r.close()


def test_phase_change_and_final_report_are_sent_at_once():
    api = FakeApi()
    r = KubernetesStatusReporter("j", "ns", api, min_interval=60)
    r.report(rep(Phase.pending))
    r.report(rep(Phase.running, epoch=1))
    r.report(rep(Phase.completed, epoch=10, metrics=Metrics(rank1=0.9)))
    assert len(api.calls) == 3
    assert api.calls[-1][2]["status"]["metrics"]["rank1"] == 0.9


def test_errors_never_reach_the_training_loop():
    api = FakeApi(fail=ApiError(500))
    r = KubernetesStatusReporter("j", "ns", api, min_interval=0.05)
    r.report(rep(Phase.running, epoch=1))
    r.report(rep(Phase.completed))
    assert len(api.calls) == 2  # tried, failed quietly, the next report tried again

    class Broken:
        def patch_namespaced_custom_object_status(self, *a, **k):
            raise OSError("connection refused")

    KubernetesStatusReporter("j", "ns", Broken()).report(rep())


def test_deleted_trainingjob_stops_reporting():
    api = FakeApi(fail=ApiError(404))
    r = KubernetesStatusReporter("j", "ns", api)
    r.report(rep(Phase.running))
    r.report(rep(Phase.completed))
    assert len(api.calls) == 1


def test_cancel_requested_reads_spec_cancel_from_the_patch_answers():
    api = FakeApi(cancel=False)
    r = KubernetesStatusReporter("j", "ns", api)
    r.report(rep())
    assert not r.cancel_requested()
    assert api.calls[-1][2] == {"status": {}}  # asked: one no-op PATCH, whose answer says no
    api.cancel = True
    r.report(rep(Phase.completed))  # any answer with spec.cancel set is noted
    calls = len(api.calls)
    assert r.cancel_requested() and len(api.calls) == calls  # known: no further request
    assert r.sent == 2  # the probes are not progress reports


def test_cancel_requested_never_raises():
    r = KubernetesStatusReporter("j", "ns", FakeApi(fail=ApiError(500)))
    assert r.cancel_requested() is False


def test_from_env_requires_the_trainingjob(monkeypatch):
    monkeypatch.delenv("LAXAI_TRAININGJOB_NAME", raising=False)
    with pytest.raises(RuntimeError, match="LAXAI_TRAININGJOB_NAME"):
        KubernetesStatusReporter.from_env()


@contextlib.contextmanager
def trainer_in_job_container(emu, tmp_path, monkeypatch, num_epochs):
    """A TrainingJob on tiny data, the real operator, its Job, a Running pod, and the Job's container
    run as a process with the container's command and env (KUBECONFIG standing in for the pod's
    token): yields (pod, trainer process) while the operator runs."""
    import os
    import subprocess
    import sys

    from laxai_trainer.reid.data.synth import generate
    from tests.operator.conftest import JOBS, NS, make_tj, running_operator, start_trainer_pod

    root = tmp_path / "storage"
    generate(root, "tenant1", players=4, frames=2, images_per_player=4, val_players=4, seed=1)
    monkeypatch.setenv("LAXAI_STORAGE_ROOT", str(root))  # before the operator starts: it reads it once
    make_tj(emu, "run-1", gpus=0, training_kwargs={"num_epochs": num_epochs, "batch_size": 8, "images_per_player": 2,
                                                   "num_workers": 0},
            model_kwargs={"embedding_dim": 32, "use_cbam": False})
    with running_operator():
        job = emu.wait_for_object(JOBS, NS, "tj-run-1")
        pod, _ = start_trainer_pod(emu, job, "run-1")
        (container,) = job["spec"]["template"]["spec"]["containers"]
        env = {**os.environ, **{e["name"]: e["value"] for e in container["env"] if "value" in e}}
        env.update(KUBECONFIG=str(emu.kubeconfig_path), LAXAI_HOME=str(tmp_path / "home"),  # the pod's emptyDir
                   OMP_NUM_THREADS="1")
        command = [os.path.join(os.path.dirname(sys.executable), container["command"][0]), *container["command"][1:]]
        yield pod, subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@pytest.mark.slow
def test_a_real_trainer_run_reports_live_progress_and_metrics(operator_env, tmp_path, monkeypatch):
    """The trainer, run with exactly the command and env of the Job the operator made, reports
    each epoch into the TrainingJob status while it runs, and its final metrics."""
    from tests.operator.conftest import NS, TJS, trainer_state, wait_phase

    emu = operator_env
    with trainer_in_job_container(emu, tmp_path, monkeypatch, num_epochs=3) as (pod, trainer):
        epochs_seen_live = set()
        while trainer.poll() is None:
            progress = (emu.get(TJS, NS, "run-1")["status"].get("progress") or {})
            if progress.get("current_epoch"):
                epochs_seen_live.add(progress["current_epoch"])
            time.sleep(0.2)
        output = trainer.communicate()[0]
        assert trainer.returncode == 0, output[-3000:]
        st = emu.wait_for_object(TJS, NS, "run-1", lambda o: (o["status"].get("metrics") or {}).get("mAP") is not None)
        emu.set_pod_status(NS, pod["metadata"]["name"], {"phase": "Succeeded", "containerStatuses": trainer_state(
            terminated={"exitCode": 0, "reason": "Completed"})})
        emu.set_job_status(NS, "tj-run-1", {"succeeded": 1, "conditions": [
            {"type": "Complete", "status": "True", "lastTransitionTime": "2026-01-01T00:10:00Z"}]})
        st = wait_phase(emu, "run-1", "completed")["status"]
    assert epochs_seen_live & {1, 2}, f"no epoch reached the status while training ran: {epochs_seen_live}"
    progress, metrics = st["progress"], st["metrics"]
    assert progress["current_epoch"] == 3 and progress["total_epochs"] == 3
    assert progress["current_loss"] is not None and progress["datasets_found"] == 2 and progress["logs"]
    assert progress["status"] == "completed"  # the operator's phase mirror
    assert 0 <= metrics["mAP"] <= 1 and metrics["epochs_completed"] == 3


@pytest.mark.slow
def test_a_cancelled_trainer_pod_logs_a_cancel_not_a_preemption(operator_env, tmp_path, monkeypatch):
    """spec.cancel set, then SIGTERM (the Job's deletion): the trainer, with the Job's command and
    env, checkpoints and says "Cancelled on request" (it asked its TrainingJob), exit 75."""
    import signal

    from laxai_trainer import exit_codes
    from tests.operator.conftest import JOBS, NS, TJS

    emu = operator_env
    with trainer_in_job_container(emu, tmp_path, monkeypatch, num_epochs=50) as (_, trainer):
        try:
            emu.wait_for_object(TJS, NS, "run-1", lambda o: ((o.get("status") or {}).get("progress") or {}).get(
                "current_epoch"), timeout=120)
            emu.patch(TJS, NS, "run-1", {"spec": {"cancel": True}})
            emu.wait_for(lambda: emu.get(JOBS, NS, "tj-run-1") is None, timeout=10, message="Job deleted")
            trainer.send_signal(signal.SIGTERM)  # the kubelet's, for the deleted pod
            output = trainer.communicate(timeout=120)[0]
        finally:
            if trainer.poll() is None:
                trainer.kill()
        message = emu.get(TJS, NS, "run-1")["status"]["progress"]["message"]
    assert trainer.returncode == exit_codes.RETRY, output[-3000:]
    assert message.startswith("Cancelled on request: checkpoint at"), output[-3000:]
    assert "Cancelled on request: checkpoint at" in output and "Stopped (preemption or cancel)" not in output


def test_in_cluster_api_needs_no_client_library(kube_emulator, tmp_path):
    """The pod's path: plain HTTP(S) + bearer token from the (rotating) token file."""
    from laxai_trainer.reporters.kubernetes import InClusterStatusApi, StatusApiError
    from tests.operator.conftest import NS, TJS, make_tj

    make_tj(kube_emulator, "run-1")
    token = tmp_path / "token"
    token.write_text("abc\n")
    api = InClusterStatusApi(kube_emulator.url, token_file=str(token))
    r = KubernetesStatusReporter("run-1", NS, api)
    r.report(rep(Phase.running, epoch=4, metrics=Metrics(rank5=0.7)))
    status = kube_emulator.get(TJS, NS, "run-1")["status"]
    assert status["progress"]["current_epoch"] == 4 and status["metrics"]["rank5"] == 0.7
    with pytest.raises(StatusApiError) as err:
        api.patch_namespaced_custom_object_status("training.laxai.io", "v1alpha1", NS, "trainingjobs", "nope",
                                                  {"status": {}})
    assert err.value.status == 404
    r404 = KubernetesStatusReporter("nope", NS, api)
    r404.report(rep(Phase.running))
    r404.report(rep(Phase.completed))
    assert r404.sent == 0  # deleted TrainingJob: stops quietly


def test_from_env_uses_the_service_account_in_a_pod(monkeypatch, tmp_path):
    from laxai_trainer.reporters import kubernetes as module

    (tmp_path / "token").write_text("t")
    monkeypatch.setattr(module, "SA_DIR", str(tmp_path))
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "6443")
    monkeypatch.setenv("LAXAI_TRAININGJOB_NAME", "run-1")
    monkeypatch.setenv("LAXAI_TRAININGJOB_NAMESPACE", "team-a")
    monkeypatch.setattr(module.ssl, "create_default_context", lambda cafile=None: ("ctx", cafile))
    r = module.KubernetesStatusReporter.from_env()
    assert isinstance(r.api, module.InClusterStatusApi)
    assert r.api.base_url == "https://10.0.0.1:6443" and r.api.token_file == f"{tmp_path}/token"
    assert r.api.context == ("ctx", f"{tmp_path}/ca.crt")
    assert (r.name, r.namespace) == ("run-1", "team-a")
