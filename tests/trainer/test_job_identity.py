"""A run is an identity: a job's retries resume its checkpoint, new jobs say what they do.

One shared sequence of short runs (1-2 epochs on the small synthetic set, embedding 16):
job A with ``resume_from_checkpoint: false`` is preempted after epoch 1 and its retry must
resume; job B then restarts the name (archive); job C continues it with a new learning rate.
"""

import shutil
import threading
from types import SimpleNamespace

import pytest
import torch

from laxai_trainer import exit_codes
from laxai_trainer.config import TrainingConfig
from laxai_trainer.job import JobOptions, run_job
from laxai_trainer.progress import FanOut, ProgressTracker
from laxai_trainer.reid.engine import checkpoint as ckpt
from laxai_trainer.reid.engine.trainer import Trainer
from laxai_trainer.reid.models.model import build_model
from laxai_trainer.storage import open_storage
from tests.trainer.test_job import config, read_json, run_cli

pytestmark = pytest.mark.slow
RUN = "identity"


def run_once(root, tmp_path, doc, job_id, stop_after_epoch=None):
    """run_job in-process; the stop event is set once ``stop_after_epoch`` is reported (a preemption)."""
    stop = threading.Event()

    class StopAfter:
        def report(self, report):
            if stop_after_epoch is not None and (report.progress.current_epoch or 0) >= stop_after_epoch:
                stop.set()

    options = JobOptions(storage_root=str(root), run_name=RUN, cache_dir=tmp_path / "cache", device="cpu",
                         allow_download=False, stop=stop, job_id=job_id)
    return run_job(TrainingConfig.model_validate(doc), options, ProgressTracker(FanOut([StopAfter()])))


def tiny(**kw):
    tk = {"num_epochs": 2, "num_workers": 0, **kw.pop("training_kwargs", {})}
    return config(custom_name=RUN, save_intermediate=False, frames=1, training_kwargs=tk, **kw)


@pytest.fixture(scope="module")
def runs(synth_root, tmp_path_factory):
    work = tmp_path_factory.mktemp("identity")
    root = work / "root"
    shutil.copytree(synth_root, root)
    storage = open_storage(root)
    run = root / "tenant1" / "runs" / RUN
    out = SimpleNamespace(root=root, run=run, storage=storage)
    a = tiny(resume_from_checkpoint=False)
    out.a1 = run_once(root, work / "a1", a, "uid-a", stop_after_epoch=1)
    out.a1_meta = read_json(run / "run.json")
    # the retry through the CLI, as in the pod: LAXAI_JOB_ID is the same TrainingJob uid
    out.a2 = run_cli(work / "a2", a, str(root), {"LAXAI_JOB_ID": "uid-a"})
    out.a2_meta = read_json(run / "run.json")
    out.a_checkpoint = ckpt.load(storage, f"tenant1/runs/{RUN}/checkpoints/last.pt", work / "tmp")
    out.a_metrics = read_json(run / "metrics.json")
    # B: a new job, same name, the same request: nothing left to train -> config error, before any data sync
    out.b_log = work / "b" / "termination"
    out.b_log.parent.mkdir()
    out.b_log.write_text("")
    out.b_code = run_cli(work / "b", tiny(), str(root), {"LAXAI_JOB_ID": "uid-b",
                                                          "LAXAI_TERMINATION_LOG": str(out.b_log)})
    out.after_b_meta = read_json(run / "run.json")
    # C: a new job continuing with one more epoch and a new learning rate
    out.c = run_once(root, work / "c", tiny(training_kwargs={"num_epochs": 3, "learning_rate": 3e-4}), "uid-c")
    out.c_meta = read_json(run / "run.json")
    out.c_metrics = read_json(run / "metrics.json")
    # D: a new job starting the name over: the earlier outputs are archived, not lost
    out.before_d = {f.path for f in storage.list_files(f"tenant1/runs/{RUN}")}
    out.d = run_once(root, work / "d", tiny(resume_from_checkpoint=False, training_kwargs={"num_epochs": 1}),
                     "uid-d")
    out.d_meta = read_json(run / "run.json")
    return out


def test_a_preempted_resume_false_job_resumes_its_own_checkpoint(runs):
    assert runs.a1.outcome == "preempted" and runs.a1_meta["attempt"] == 1
    assert runs.a2 == exit_codes.OK
    meta = runs.a2_meta
    assert meta["job_id"] == "uid-a" and meta["attempt"] == 2 and meta["claim"] == "new"  # as its first attempt found it
    assert meta["init_source"]["kind"] == "checkpoint" and meta["resumed_at_epoch"] == 1
    assert [e["epoch"] for e in runs.a_metrics["epochs"]] == [1, 2]
    assert runs.a_checkpoint["writer"]["job_id"] == "uid-a" and runs.a_checkpoint["writer"]["attempt"] == 2


def test_a_new_job_with_nothing_left_to_train_is_a_config_error(runs):
    assert runs.b_code == exit_codes.CONFIG_ERROR
    text = runs.b_log.read_text()
    assert "nothing left to train" in text and "resume_from_checkpoint: false" in text
    assert runs.after_b_meta == runs.a2_meta  # B left the run as A finished it


def test_more_epochs_continue_with_the_new_learning_rate_applied(runs):
    assert runs.c.outcome == "completed"
    assert runs.c_meta["claim"] == "continue" and runs.c_meta["resumed_at_epoch"] == 2
    assert runs.c_meta["previous_job_id"] == "uid-a"
    assert runs.c_meta["changed_on_resume"] == ["learning_rate 0.001 -> 0.0003"]
    epochs = runs.c_metrics["epochs"]
    assert [e["epoch"] for e in epochs] == [1, 2, 3]
    assert epochs[1]["lr"] == pytest.approx(1e-3) and epochs[2]["lr"] == pytest.approx(3e-4)


def test_resume_false_from_a_new_job_archives_the_earlier_run(runs):
    meta = runs.d_meta
    assert meta["claim"] == "restart" and meta["init_source"]["kind"] != "checkpoint"
    archive = meta["archived_to"].split(f"/runs/{RUN}/", 1)[1]
    assert archive.startswith("archive/")
    prefix = f"tenant1/runs/{RUN}"
    archived = [f.path.replace(f"/{archive}/", "/") for f in runs.storage.list_files(f"{prefix}/{archive}")]
    assert set(archived) == runs.before_d  # every earlier output is in the archive
    assert read_json(runs.run / archive / "run.json")["job_id"] == "uid-c"
    assert [e["epoch"] for e in read_json(runs.run / "metrics.json")["epochs"]] == [1]


# ---- hyperparameters over a restored optimizer / scheduler (no training) -------------------


def trainer_for(**tk) -> Trainer:
    cfg = TrainingConfig.model_validate(config(training_kwargs=tk))
    return Trainer(build_model(cfg.model_kwargs), cfg, torch.device("cpu"), [], [])


def test_changed_optimizer_and_scheduler_settings_replace_the_restored_ones():
    old = trainer_for(learning_rate=1e-3, weight_decay=1e-4, lr_scheduler_factor=0.5, lr_scheduler_patience=3,
                      lr_scheduler_min_lr=1e-6)
    payload = old.checkpoint_payload()
    new = trainer_for(learning_rate=2e-4, weight_decay=0.0, lr_scheduler_factor=0.2, lr_scheduler_patience=1,
                      lr_scheduler_min_lr=1e-5)
    changes = new.load_checkpoint(payload)
    assert len(changes) == 5
    group = new.optimizer.param_groups[0]
    assert (group["lr"], group["weight_decay"]) == (2e-4, 0.0)
    s = new.scheduler
    assert (s.factor, s.patience, s.min_lrs) == (0.2, 1, [1e-5])
    # the state dict the next checkpoint holds carries the new values too
    assert new.scheduler.state_dict()["patience"] == 1


def test_unchanged_settings_keep_the_restored_state_a_reduced_lr_included():
    old = trainer_for(learning_rate=1e-3)
    old.optimizer.param_groups[0]["lr"] = 5e-4  # ReduceLROnPlateau halved it
    new = trainer_for(learning_rate=1e-3)
    assert new.load_checkpoint(old.checkpoint_payload()) == []
    assert new.optimizer.param_groups[0]["lr"] == 5e-4
