"""End to end on 120×80 synthetic crops: `laxai-train run` in-process, on GCS, and preempted.

Three trained runs are shared by the tests of this module (CPU time is the constraint):

- ``straight``: 5 epochs on a local root (TrainingJob YAML, save_intermediate, wandb offline);
- ``gcs_resumed``: 1 epoch on a fake-gcs ``gs://`` root, then resumed to 2 from the GCS
  checkpoint — its 2 epochs must equal the first 2 of ``straight``;
- ``preempted``: the console script as a subprocess, SIGTERM once epoch 1 is reported →
  exit 75 and a checkpoint; then resumed to 3 — again equal to ``straight``.

The data is open-set (tests/trainer/open_set.py): val players are identities never trained on,
and five epochs visibly lift their val mAP.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml

from laxai_trainer import exit_codes
from laxai_trainer.cli import main
from laxai_trainer.config import TrainingConfig
from laxai_trainer.job import Job, JobOptions
from laxai_trainer.progress import FanOut, ProgressTracker
from laxai_trainer.reid.engine import checkpoint as ckpt
from laxai_trainer.reid.engine.trainer import Trainer, seed_everything
from laxai_trainer.reid.models.model import build_model
from laxai_trainer.status import significant
from laxai_trainer.storage import open_storage
from tests.trainer.open_set import PLAYERS, TENANT, VAL_CROPS, VAL_PLAYERS, make_open_set
from tests.trainer.wandb_records import find_run_files, read_run

pytestmark = pytest.mark.slow

EPOCHS = 5
#: The resume runs train only as far as their point needs (CPU time): the GCS run 1 epoch,
#: then resumed to 2; the preempted run is stopped in epoch 2 of 3 (a whole epoch of margin
#: for the SIGTERM to land before the run would finish).
GCS_EPOCHS = (1, 2)
PREEMPTED_EPOCHS = 3
BASE = {
    "tenant_id": TENANT,
    "verbose": True,
    "save_intermediate": True,
    "wandb_tags": ["ci", "straight"],
    "training_kwargs": {
        "num_epochs": EPOCHS,
        "batch_size": 12,
        "images_per_player": 2,
        "num_workers": 0,
        "learning_rate": 1e-3,
        "seed": 3,
    },
    "model_kwargs": {"embedding_dim": 16},
}
# Job-level runs stay on CPU (exact resume comparisons), never fetch weights, and wandb stays local.
ENV = {"LAXAI_PRETRAINED_DOWNLOAD": "false", "LAXAI_DEVICE": "cpu", "WANDB_MODE": "disabled", "WANDB_SILENT": "true"}


def config(**overrides) -> dict:
    doc = json.loads(json.dumps(BASE))
    for key, value in overrides.items():
        if key in ("training_kwargs", "model_kwargs"):
            doc[key].update(value)
        else:
            doc[key] = value
    return doc


@contextlib.contextmanager
def cli_sandbox(env: dict[str, str]):
    """main() in-process: env set, then signal handlers and logging handlers restored."""
    handlers = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    root = logging.getLogger()
    level, trainer_level = root.level, logging.getLogger("laxai_trainer").level
    with pytest.MonkeyPatch.context() as mp:
        for key, value in {**ENV, **env}.items():
            mp.setenv(key, value)
        try:
            yield
        finally:
            for s, h in handlers.items():
                signal.signal(s, h)
            for h in list(root.handlers):
                if getattr(h, "_laxai", False):
                    root.removeHandler(h)
                    h.close()
            root.setLevel(level)
            logging.getLogger("laxai_trainer").setLevel(trainer_level)


def run_cli(work: Path, doc: dict, root: str, env: dict[str, str] | None = None, name: str = "config.json") -> int:
    work.mkdir(parents=True, exist_ok=True)
    path = work / name
    path.write_text(yaml.safe_dump(doc) if name.endswith(".yaml") else json.dumps(doc))
    with cli_sandbox(env or {}):
        return main([
            "run", "--config", str(path), "--storage-root", root,
            "--progress-file", str(work / "progress.json"), "--log-file", str(work / "trainer.log"),
            "--cache-dir", str(work / "cache"),
        ])


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())


def assert_same_epochs(ours: list[dict], reference: list[dict]) -> None:
    assert len(ours) == len(reference)
    for a, b in zip(ours, reference, strict=True):
        for key in ("train_loss", "val_loss", "rank1", "rank5", "rank10", "mAP", "lr", "margin"):
            assert a[key] == pytest.approx(b[key], rel=1e-4, abs=1e-6), (a["epoch"], key)


# ---- shared runs ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    return make_open_set(tmp_path_factory.mktemp("open-set"))


@pytest.fixture(scope="module")
def straight(data_root, tmp_path_factory):
    work = tmp_path_factory.mktemp("straight")
    root = work / "root"
    shutil.copytree(data_root, root)
    # As a TrainingJob YAML, run-only keys included: they must be ignored.
    job = {"apiVersion": "training.laxai.io/v1alpha1", "kind": "TrainingJob", "metadata": {"name": "straight"},
           "spec": {**config(custom_name="straight"), "gpus": 0, "shmSize": "1Gi"}}
    code = run_cli(work, job, str(root), {"WANDB_MODE": "offline"}, name="job.yaml")
    run = root / TENANT / "runs" / "straight"
    return SimpleNamespace(code=code, root=root, run=run, work=work, metrics=read_json(run / "metrics.json"))


@pytest.fixture(scope="module")
def gcs_resumed(fake_gcs, tmp_path_factory, data_root):
    work = tmp_path_factory.mktemp("gcs")
    bucket = f"laxai-job-{uuid.uuid4().hex[:10]}"
    fake_gcs.create_bucket(bucket)
    root = f"gs://{bucket}"
    env = {"STORAGE_EMULATOR_HOST": fake_gcs.url}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("STORAGE_EMULATOR_HOST", fake_gcs.url)
        storage = open_storage(root)
        local = data_root / TENANT
        storage.upload_many([(p, p.relative_to(data_root).as_posix()) for p in local.rglob("*") if p.is_file()])
        first = run_cli(work / "first", config(custom_name="resumed", save_intermediate=False,
                                               training_kwargs={"num_epochs": GCS_EPOCHS[0]}), root, env)
        after_first = {f.path for f in storage.list_files(f"{TENANT}/runs/resumed")}
        second = run_cli(work / "second", config(custom_name="resumed", save_intermediate=False,
                                                 training_kwargs={"num_epochs": GCS_EPOCHS[1]}), root, env)
        prefix = f"{TENANT}/runs/resumed"
        yield SimpleNamespace(
            codes=(first, second), storage=storage, prefix=prefix, after_first=after_first,
            files={f.path for f in storage.list_files(prefix)},
            metrics=json.loads(storage.read_bytes(f"{prefix}/metrics.json")),
            run_meta=json.loads(storage.read_bytes(f"{prefix}/run.json")),
            work=work,
        )


@pytest.fixture(scope="module")
def preempted(data_root, tmp_path_factory):
    """The console script, SIGTERM once epoch 1 is reported; then resumed in-process."""
    work = tmp_path_factory.mktemp("preempted")
    root = work / "root"
    shutil.copytree(data_root, root)
    doc = config(custom_name="preempted", save_intermediate=False, training_kwargs={"num_epochs": PREEMPTED_EPOCHS})
    (work / "config.json").write_text(json.dumps(doc))
    progress = work / "progress.json"
    env = {**os.environ, **ENV, "OMP_NUM_THREADS": str(torch.get_num_threads()), "PYTHONUNBUFFERED": "1"}
    script = Path(sys.executable).parent / "laxai-train"
    command = [str(script)] if script.exists() else [sys.executable, "-m", "laxai_trainer.cli"]
    with open(work / "output.log", "wb") as out:
        proc = subprocess.Popen(
            [*command, "run", "--config", str(work / "config.json"), "--storage-root", str(root),
             "--progress-file", str(progress), "--cache-dir", str(work / "cache")],
            stdout=out, stderr=subprocess.STDOUT, env=env,
        )
        try:
            deadline = time.monotonic() + 400
            while time.monotonic() < deadline and proc.poll() is None:
                if progress.exists() and (read_json(progress)["progress"].get("current_epoch") or 0) >= 1:
                    break
                time.sleep(0.2)
            else:
                pytest.fail(f"epoch 1 was never reported: {(work / 'output.log').read_text()[-3000:]}")
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(timeout=300)
        finally:
            if proc.poll() is None:
                proc.kill()
    storage = open_storage(root)
    payload = ckpt.load(storage, f"{TENANT}/runs/preempted/checkpoints/last.pt", work / "tmp")
    report = read_json(progress)
    output = (work / "output.log").read_text()
    resumed = run_cli(work / "resume", doc, str(root))
    run = root / TENANT / "runs" / "preempted"
    return SimpleNamespace(code=code, payload=payload, report=report, output=output, resumed=resumed,
                           run=run, metrics=read_json(run / "metrics.json"))


# ---- the straight run -------------------------------------------------------------------


def test_straight_run_completes_with_the_documented_outputs(straight):
    assert straight.code == exit_codes.OK, (straight.work / "trainer.log").read_text()[-3000:]
    run = straight.run
    for rel in ("config.json", "run.json", "metrics.json", "final/model.pt", "final/model.torchscript.pt",
                "final/model.json", "checkpoints/last.pt", "logs/trainer.log"):
        assert (run / rel).is_file(), rel
    resolved = TrainingConfig.model_validate(read_json(run / "config.json"))
    assert resolved.custom_name == "straight" and resolved.training_kwargs.num_epochs == EPOCHS
    meta = read_json(run / "run.json")
    assert meta["status"] == "completed" and meta["device"] == "cpu"
    assert meta["init_source"]["kind"] == "random"
    assert meta["data"]["train"]["players"] == PLAYERS
    assert (meta["data"]["val"]["players"], meta["data"]["val"]["images"]) == (VAL_PLAYERS, VAL_PLAYERS * VAL_CROPS)


def test_metrics_json_has_every_epoch_and_the_best_epochs_final(straight):
    metrics = straight.metrics
    assert [e["epoch"] for e in metrics["epochs"]] == list(range(1, EPOCHS + 1))
    for epoch in metrics["epochs"]:
        assert {"train_loss", "val_loss", "rank1", "rank5", "rank10", "mAP", "lr", "margin",
                "images_per_second"} <= epoch.keys()
    best = max(metrics["epochs"], key=lambda e: e["mAP"])
    final = metrics["final"]
    assert final["best_epoch"] == best["epoch"] == metrics["best_epoch"]
    # the final metrics are the reported ones: 4 significant digits (laxai_trainer.status.significant)
    assert final["mAP"] == significant(best["mAP"]) and final["rank1"] == significant(best["rank1"])
    assert final["train_loss"] == significant(metrics["epochs"][-1]["train_loss"])


def test_training_lifts_val_map_well_above_the_untrained_model(straight, data_root):
    from laxai_trainer.reid.data import loaders as data

    cfg = TrainingConfig.model_validate(config())
    dirs = sorted((data_root / TENANT / "datasets").iterdir())
    train = data.scan_split(dirs, "train", 2, TENANT)
    val = data.scan_split(dirs, "val", 2, TENANT)
    assert not {p for _, p in train.players} & {p for _, p in val.players}  # open set: unseen identities
    seed_everything(cfg.training_kwargs.seed)  # the run's own initial weights
    trainer = Trainer(build_model(cfg.model_kwargs), cfg, torch.device("cpu"),
                      data.build_train_loader(train, cfg.training_kwargs, "cpu", 3),
                      data.build_val_loader(val, cfg.training_kwargs, "cpu"), num_classes=len(train.players))
    untrained = trainer.validate().mAP
    best = straight.metrics["final"]["mAP"]
    assert best >= untrained + 0.2, (untrained, [e["mAP"] for e in straight.metrics["epochs"]])


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")
def test_final_model_state_dict_and_torchscript_agree(straight):
    cfg = TrainingConfig.model_validate(config())
    model = build_model(cfg.model_kwargs)
    model.load_state_dict(torch.load(straight.run / "final/model.pt", weights_only=True))
    scripted = torch.jit.load(str(straight.run / "final/model.torchscript.pt"))
    x = torch.randn(3, 3, 120, 80)
    with torch.no_grad():
        expected = model.eval()(x)
        assert expected.shape == (3, 16)
        assert torch.allclose(scripted(x), expected, atol=1e-5)
    meta = read_json(straight.run / "final/model.json")
    assert meta["input_size"] == [120, 80] and meta["architecture"]["embedding_dim"] == 16
    assert meta["metrics"]["mAP"] == straight.metrics["final"]["mAP"]


def test_save_intermediate_keeps_epoch_files_and_the_best_checkpoint(straight):
    for epoch in straight.metrics["epochs"]:
        assert read_json(straight.run / f"intermediate/epoch_{epoch['epoch']:04d}.json") == epoch
    best = torch.load(straight.run / "checkpoints/best.pt", weights_only=False)
    assert best["epoch"] == straight.metrics["best_epoch"]


def test_last_checkpoint_holds_the_full_training_state(straight):
    payload = torch.load(straight.run / "checkpoints/last.pt", weights_only=False)
    state = payload["state"]
    assert state["epoch"] == EPOCHS and state["step"] == 0
    # margin 0.4, decay 0.99, threshold 0.01: 0.4·0.99³ is the first change above 0.01 (epoch 4);
    # epoch 5's 0.4·0.99⁴ is within 0.01 of it, so it stays
    assert [e["margin"] for e in straight.metrics["epochs"]] == pytest.approx([0.4] * 3 + [0.4 * 0.99**3] * 2)
    assert state["margin"] == pytest.approx(0.4 * 0.99**3)
    assert state["best_epoch"] == straight.metrics["best_epoch"]
    assert {"python", "numpy", "torch"} <= payload["rng"].keys()
    assert payload["optimizer"]["state"] and payload["scheduler"]["best"] == pytest.approx(state["best_map"])


def test_progress_file_and_log_report_every_epoch(straight):
    report = read_json(straight.work / "progress.json")
    progress = report["progress"]
    assert progress["status"] == "completed" and progress["current_epoch"] == EPOCHS
    assert progress["total_epochs"] == EPOCHS and progress["datasets_found"] == 1
    assert progress["datasets_processed"] == 1 and progress["eta_seconds"] == 0
    assert report["metrics"]["mAP"] == straight.metrics["final"]["mAP"]
    assert report["metrics"]["model_uri"].endswith("/tenant1/runs/straight/final/model.pt")
    assert progress["logs"] and "random initialisation" in (straight.work / "trainer.log").read_text()
    log = (straight.work / "trainer.log").read_text()
    for epoch in range(1, EPOCHS + 1):
        assert f"progress.report: running | epoch {epoch}/{EPOCHS}" in log
    assert "datasets 1/1" in log
    # the uploaded log is the same file
    assert (straight.run / "logs/trainer.log").read_text().startswith(log.splitlines()[0])


def test_verbose_true_logs_at_debug_level(straight):
    assert " DEBUG laxai_trainer." in (straight.work / "trainer.log").read_text()


def test_wandb_offline_run_holds_name_tags_config_metrics_and_model(straight):
    (run_file,) = find_run_files(straight.run / "wandb")  # uploaded with the run outputs
    data = read_run(run_file)
    assert data["name"] == "straight" and data["tags"] == ["ci", "straight"]
    assert data["config"]["training_kwargs"]["batch_size"] == 12
    logged = [h["mAP"] for h in data["history"] if "mAP" in h]
    assert logged == pytest.approx([e["mAP"] for e in straight.metrics["epochs"]])
    assert data["summary"]["mAP"] == pytest.approx(straight.metrics["final"]["mAP"], rel=1e-3)
    assert ("tenant1-straight-model", "model") in data["artifacts"]


# ---- resume ------------------------------------------------------------------------------


def test_gcs_run_writes_checkpoints_and_outputs_to_the_bucket(gcs_resumed):
    assert gcs_resumed.codes == (exit_codes.OK, exit_codes.OK)
    p = gcs_resumed.prefix
    for rel in ("checkpoints/last.pt", "final/model.pt", "final/model.torchscript.pt", "metrics.json",
                "config.json", "logs/trainer.log"):
        assert f"{p}/{rel}" in gcs_resumed.after_first, rel
    # save_intermediate false: no per-epoch files, no best checkpoint kept
    assert not any("/intermediate/" in f or f.endswith("best.pt") for f in gcs_resumed.files)


def test_resume_from_a_gcs_checkpoint_equals_the_straight_run(gcs_resumed, straight):
    assert gcs_resumed.run_meta["init_source"]["kind"] == "checkpoint"
    assert gcs_resumed.run_meta["init_source"]["uri"].startswith("gs://")
    assert gcs_resumed.run_meta["resumed_at_epoch"] == GCS_EPOCHS[0]
    assert_same_epochs(gcs_resumed.metrics["epochs"], straight.metrics["epochs"][:GCS_EPOCHS[1]])
    # best.pt was removed after the first finish (no save_intermediate): the best weights so far
    # came back from that finish's final model
    log = gcs_resumed.storage.read_bytes(f"{gcs_resumed.prefix}/logs/trainer.log").decode()
    assert "resumed from checkpoint" in log and "best-epoch weights of the resumed run not found" not in log


def test_sigterm_checkpoints_and_exits_75(preempted):
    assert preempted.code == exit_codes.RETRY, preempted.output[-3000:]
    state = preempted.payload["state"]
    assert 1 <= state["epoch"] < PREEMPTED_EPOCHS
    assert "SIGTERM received" in preempted.output
    assert preempted.report["progress"]["message"].startswith("Stopped (preemption or cancel): checkpoint at")


def test_resume_after_sigterm_equals_the_straight_run(preempted, straight):
    assert preempted.resumed == exit_codes.OK
    assert read_json(preempted.run / "run.json")["init_source"]["kind"] == "checkpoint"
    assert_same_epochs(preempted.metrics["epochs"], straight.metrics["epochs"][:PREEMPTED_EPOCHS])


# ---- wiring checks without training ------------------------------------------------------


def job_for(doc: dict, root: Path | str, tmp_path: Path, run: str = "wiring") -> tuple[Job, list]:
    reports: list = []

    class Collect:
        def report(self, report):
            reports.append(report)

    cfg = TrainingConfig.model_validate(doc)
    options = JobOptions(storage_root=str(root), run_name=run, cache_dir=tmp_path / "cache", allow_download=False)
    return Job(cfg, options, ProgressTracker(FanOut([Collect()]))), reports


def test_frames_uses_the_first_datasets_and_reports_each(synth_root, tmp_path):
    job, reports = job_for(config(frames=2), synth_root, tmp_path)
    dirs = job.sync()
    assert [d.name for d in dirs] == ["frame_0000", "frame_0001"]
    assert [(r.progress.datasets_found, r.progress.datasets_processed) for r in reports[1:]] == [
        (3, 0), (3, 1), (3, 2)]


def test_num_workers_above_the_cpus_is_a_warning_in_log_and_status(synth_root, tmp_path, monkeypatch, caplog):
    import laxai_trainer.job as job_module

    monkeypatch.setattr(job_module, "available_cpus", lambda: 2)
    job, reports = job_for(config(training_kwargs={"num_workers": 3}), synth_root, tmp_path)
    with caplog.at_level(logging.WARNING):
        job.loaders(job.sync(), torch.device("cpu"))
    assert "num_workers=3 exceeds the 2 CPU(s) available" in caplog.text
    job.step_end(SimpleNamespace(state=SimpleNamespace(partial_seconds=1.0)), 1, 1, 10, 0.5)
    assert "Warning: num_workers=3 exceeds the 2 CPU(s)" in reports[-1].progress.message
    monkeypatch.setattr(job_module, "available_cpus", lambda: 3)
    job.loaders(job.sync(), torch.device("cpu"))
    assert job.workers_warning is None


def test_resume_flag_decides_between_checkpoint_and_new_weights(straight, tmp_path):
    for resume, expected in ((True, "checkpoint"), (False, "warm_start")):
        # one epoch more than the finished run: continuing it has something left to train
        doc = config(custom_name="straight", resume_from_checkpoint=resume, training_kwargs={"num_epochs": EPOCHS + 1})
        job, _ = job_for(doc, straight.root, tmp_path, run="straight")
        cfg = job.config
        trainer = Trainer(build_model(cfg.model_kwargs), cfg, torch.device("cpu"), [], [], num_classes=PLAYERS)
        source = job.start_model(trainer)
        assert source.kind == expected
        if resume:
            assert trainer.state.epoch == EPOCHS and trainer.best_weights is not None
        else:
            assert source.uri.endswith("/runs/straight/final/model.pt") and trainer.state.epoch == 0


def test_unknown_tenant_exits_with_config_error(tmp_path, capsys):
    log_path = tmp_path / "termination"
    log_path.write_text("")
    code = run_cli(tmp_path / "w", config(tenant_id="nobody"), str(tmp_path / "empty-root"),
                   {"LAXAI_TERMINATION_LOG": str(log_path)})
    assert code == exit_codes.CONFIG_ERROR
    assert "tenant 'nobody' has no datasets" in log_path.read_text()
    progress = read_json(tmp_path / "w" / "progress.json")["progress"]
    assert progress["status"] == "failed" and "nobody" in progress["message"]


def test_force_pretraining_without_imagenet_weights_exits_with_config_error(data_root, tmp_path):
    log_path = tmp_path / "termination"
    log_path.write_text("")
    code = run_cli(tmp_path / "w", config(training_kwargs={"force_pretraining": True}), str(data_root),
                   {"LAXAI_TERMINATION_LOG": str(log_path), "TORCH_HOME": str(tmp_path / "torch")})
    assert code == exit_codes.CONFIG_ERROR
    assert "force_pretraining is true" in log_path.read_text()


def test_random_mining_run_with_a_worker_and_quiet_logging(synth_root, tmp_path):
    root = tmp_path / "root"
    shutil.copytree(synth_root, root)
    doc = config(custom_name="random", frames=1, verbose=False,
                 training_kwargs={"triplet_mining": "random", "num_epochs": 1, "num_workers": 1})
    assert run_cli(tmp_path / "w", doc, str(root)) == exit_codes.OK
    metrics = read_json(root / TENANT / "runs/random/metrics.json")
    epoch = metrics["epochs"][0]
    assert epoch["train_images"] == 3 * 20  # every anchor of 4 players x 5 crops, as a triplet
    # match-mode data carries kits.json: the same-kit (teammate) metrics are reported too
    assert 0 < epoch["same_kit_queries"] <= epoch["val_queries"]
    assert metrics["final"]["same_kit_rank1"] == significant(epoch["same_kit_rank1"])
    assert metrics["final"]["same_kit_mAP"] == significant(epoch["same_kit_mAP"])
    assert " DEBUG " not in (tmp_path / "w" / "trainer.log").read_text()


def test_a_stop_is_a_cancel_when_the_cancel_file_exists_or_the_trainingjob_says_so(tmp_path):
    """The local API's --cancel-file, or (in a pod) the status reporter's view of spec.cancel."""
    base = {"storage_root": str(tmp_path), "run_name": "r", "cache_dir": tmp_path / "cache"}
    flag = tmp_path / "cancel"
    assert not JobOptions(**base, cancel_file=flag).stop_is_cancel()
    assert not JobOptions(**base, cancel_requested=lambda: False).stop_is_cancel()
    assert JobOptions(**base, cancel_requested=lambda: True).stop_is_cancel()
    flag.touch()
    assert JobOptions(**base, cancel_file=flag, cancel_requested=lambda: False).stop_is_cancel()


def test_a_cancel_before_training_started_says_so(synth_root, tmp_path):
    """SIGTERM during the dataset sync: no checkpoint yet, and the last message still says cancel."""
    reports: list = []

    class Collect:
        def report(self, report):
            reports.append(report)

    options = JobOptions(storage_root=str(synth_root), run_name="early", cache_dir=tmp_path / "cache",
                         allow_download=False, cancel_requested=lambda: True)
    options.stop.set()
    result = Job(TrainingConfig.model_validate(config()), options, ProgressTracker(FanOut([Collect()]))).run()
    assert result.outcome == "preempted"
    assert reports[-1].progress.message.startswith("Cancelled on request before training started: no checkpoint")
