"""Files a tenant can write never run code: each torch load site refuses a crafted pickle."""

from __future__ import annotations

import io
import logging
import os
import re

import pytest
import torch

from laxai_trainer.config import ModelKwargs, TrainingConfig
from laxai_trainer.errors import ConfigError
from laxai_trainer.job import Job, JobOptions
from laxai_trainer.progress import FanOut, ProgressTracker
from laxai_trainer.reid.engine import checkpoint as ckpt
from laxai_trainer.reid.engine.trainer import Trainer
from laxai_trainer.reid.models.init_weights import initialise
from laxai_trainer.reid.models.model import (
    architecture,
    build_model,
    imagenet_cache_path,
    load_imagenet_state,
)
from laxai_trainer.run_layout import RunLayout, write_json
from laxai_trainer.safe_load import UnsafeFileError, load_tensors
from laxai_trainer.storage import open_storage

KW = ModelKwargs(embedding_dim=8, attention_layers=["layer4"])
TENANT, RUN = "t1", "r1"


class RunsCode:
    """Unpickling this calls os.system: what a hostile checkpoint would do."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture
def marker(tmp_path):
    return tmp_path / "code-ran"


@pytest.fixture
def hostile(marker) -> bytes:
    """A torch file whose pickle runs a command, next to real tensors."""
    buf = io.BytesIO()
    torch.save({"model": {"w": torch.zeros(2)}, "rng": RunsCode(marker)}, buf)
    return buf.getvalue()


@pytest.fixture
def storage(tmp_path):
    return open_storage(tmp_path / "root")


def test_the_crafted_file_does_run_code_when_unpickled_unsafely(hostile, marker):
    """The control: the payload is real, so the refusals below are not vacuous."""
    torch.load(io.BytesIO(hostile), weights_only=False)
    assert marker.exists()


def test_load_tensors_refuses_it_naming_the_file(hostile, marker):
    with pytest.raises(UnsafeFileError, match=r"^gs://b/t1/runs/r1/x\.pt: refused to load.*system") as err:
        load_tensors(io.BytesIO(hostile), "gs://b/t1/runs/r1/x.pt")
    assert isinstance(err.value, ConfigError)  # exit code 3: no retry fixes a tampered file
    assert "weights_only=False" not in str(err.value)  # torch's advice is not ours to give
    assert not marker.exists()


@pytest.mark.parametrize("data", [b"not a checkpoint", b"PK\x03\x04 a truncated zip"])
def test_a_file_that_is_not_torch_is_a_clear_error(data):
    with pytest.raises(UnsafeFileError, match=r"^m\.pt: (refused to load|not a readable torch file)"):
        load_tensors(io.BytesIO(data), "m.pt")


def test_checkpoint_resume_refuses_a_tampered_last_checkpoint(storage, tmp_path, hostile, marker):
    path = ckpt.checkpoint_path(f"{TENANT}/runs/{RUN}")
    storage.write_bytes(path, hostile)
    with pytest.raises(UnsafeFileError, match="^" + re.escape(f"{storage.uri(path)}: refused")):
        ckpt.load(storage, path, tmp_path / "tmp")
    assert not marker.exists()


def test_a_saved_checkpoint_loads_with_weights_only(storage, tmp_path):
    """Everything the trainer saves is tensors and plain data: RNG states included."""
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(model.parameters())
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="max")
    payload = ckpt.build_payload(model, opt, sched, ckpt.TrainState(history=[{"epoch": 1, "mAP": 0.5}]),
                                 {"arch": 1}, ckpt.capture_rng())
    buf = io.BytesIO()
    torch.save(payload, buf)
    loaded = torch.load(io.BytesIO(buf.getvalue()), weights_only=True)
    ckpt.restore_rng(loaded["rng"])


def job_with_checkpoint(storage, tmp_path, best_epoch: int) -> tuple[Job, Trainer]:
    cfg = TrainingConfig.model_validate({"tenant_id": TENANT, "custom_name": RUN, "model_kwargs": KW.model_dump()})
    options = JobOptions(storage_root=str(tmp_path / "root"), run_name=RUN, cache_dir=tmp_path / "cache",
                         allow_download=False)
    job = Job(cfg, options, ProgressTracker(FanOut([])))
    trainer = Trainer(build_model(KW), cfg, torch.device("cpu"), [], [])
    trainer.state.best_epoch, trainer.state.best_map = best_epoch, 0.5
    ckpt.save(job.storage, ckpt.checkpoint_path(job.layout.prefix), trainer.checkpoint_payload(), tmp_path / "tmp")
    return job, trainer


def test_resume_refuses_a_tampered_best_checkpoint(storage, tmp_path, hostile, marker):
    job, trainer = job_with_checkpoint(storage, tmp_path, best_epoch=1)
    best = ckpt.checkpoint_path(job.layout.prefix, ckpt.BEST)
    job.storage.write_bytes(best, hostile)
    with pytest.raises(UnsafeFileError, match="^" + re.escape(f"{job.storage.uri(best)}: refused")):
        job.start_model(trainer)
    assert not marker.exists()


def test_resume_refuses_a_tampered_final_model(storage, tmp_path, hostile, marker):
    job, trainer = job_with_checkpoint(storage, tmp_path, best_epoch=1)
    write_json(job.storage, job.layout.final_meta, {"best_epoch": 1, "metrics": {"mAP": 0.5}})
    job.storage.write_bytes(job.layout.final_model, hostile)
    with pytest.raises(UnsafeFileError, match="^" + re.escape(f"{job.storage.uri(job.layout.final_model)}: refused")):
        job.start_model(trainer)
    assert not marker.exists()


def test_warm_start_skips_a_tampered_previous_model_naming_it(storage, hostile, marker, caplog, tmp_path,
                                                               monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    layout = RunLayout(TENANT, "prev")
    storage.write_bytes(layout.final_model, hostile)
    write_json(storage, layout.final_meta, {"architecture": architecture(KW), "completed_at": "2026-01-01T00:00:00Z"})
    with caplog.at_level(logging.WARNING):
        source = initialise(build_model(KW), KW, False, storage, TENANT, allow_download=False)
    assert source.kind == "random"
    assert f"{storage.uri(layout.final_model)}: refused to load" in caplog.text
    assert not marker.exists()


def test_a_tampered_imagenet_cache_is_refused(hostile, marker, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    imagenet_cache_path().parent.mkdir(parents=True)
    imagenet_cache_path().write_bytes(hostile)
    with pytest.raises(UnsafeFileError, match="refused"):
        load_imagenet_state(allow_download=False)
    assert not marker.exists()
