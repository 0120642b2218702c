"""laxai_trainer.reid.data.pipeline: the loaders of ``training_kwargs`` from synced dataset folders."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
import torch

from laxai_trainer.config import TrainingKwargs
from laxai_trainer.errors import DataError
from laxai_trainer.reid.data.loaders import RandomTripletDataset
from laxai_trainer.reid.data.pipeline import _WorkerInit, build_loaders
from laxai_trainer.storage import open_storage
from laxai_trainer.sync import sync_datasets
from tests.trainer.conftest import SYNTH_FRAMES, SYNTH_PLAYERS, SYNTH_TENANT

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def dataset_dirs(synth_root: Path, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    cache = tmp_path_factory.mktemp("datasets")
    return list(sync_datasets(open_storage(str(synth_root)), SYNTH_TENANT, cache).dataset_dirs)


def kwargs(**overrides) -> TrainingKwargs:
    return TrainingKwargs.model_validate({"batch_size": 12, "images_per_player": 2, "num_workers": 0, **overrides})


def test_loader_wiring_follows_training_kwargs(dataset_dirs, tmp_path):
    tk = kwargs(images_per_player=3, num_workers=2, prefetch_factor=3, seed=11, input_pipeline="pil")
    loaders = build_loaders(dataset_dirs, tk, SYNTH_TENANT, CPU, tmp_path / "crops")
    train, val = loaders.train, loaders.val
    assert train.num_workers == 2 and train.prefetch_factor == 3 and train.persistent_workers
    assert isinstance(train.worker_init_fn, _WorkerInit)  # SIGTERM-proof workers
    assert (train.batch_sampler.P, train.batch_sampler.K, train.batch_sampler.seed) == (4, 3, 11)
    assert val.num_workers == 2
    assert loaders.summary["train"]["players"] == loaders.num_classes == SYNTH_FRAMES * SYNTH_PLAYERS
    assert loaders.summary["datasets"] == [d.name for d in dataset_dirs]
    assert not (tmp_path / "crops").exists()  # the PIL path builds no crop cache


def test_workers_ignore_sigterm_then_run_the_loaders_own_init(monkeypatch):
    calls: list = []
    monkeypatch.setattr(signal, "signal", lambda sig, handler: calls.append((sig, handler)))
    _WorkerInit(lambda worker_id: calls.append(worker_id))(5)
    assert calls == [(signal.SIGTERM, signal.SIG_IGN), 5]


def test_random_mining_builds_triplet_loader(dataset_dirs, tmp_path):
    tk = kwargs(triplet_mining="random", input_pipeline="pil")
    assert isinstance(build_loaders(dataset_dirs, tk, SYNTH_TENANT, CPU, tmp_path).train.dataset,
                      RandomTripletDataset)


def test_device_pipeline_builds_the_crop_cache_where_asked(dataset_dirs, tmp_path):
    from laxai_trainer.reid.data.batches import DeviceTrainBatches, DeviceValBatches

    messages: list[str] = []
    tk = kwargs(images_per_player=3, prefetch_factor=3, seed=11, input_pipeline="device")
    loaders = build_loaders(dataset_dirs, tk, SYNTH_TENANT, CPU, tmp_path / "crops",
                            lambda done, total, message: messages.append(message))
    train, val, summary = loaders.train, loaders.val, loaders.summary
    assert isinstance(train, DeviceTrainBatches) and isinstance(val, DeviceValBatches)
    assert (train.sampler.P, train.sampler.K, train.sampler.seed) == (4, 3, 11)
    assert train.store.prefetch == 3 and summary["crop_cache"]["built"] == ["frame_0000", "frame_0001", "frame_0002"]
    assert sorted(os.listdir(tmp_path / "crops")) == summary["crop_cache"]["built"]
    assert any("Crop cache:" in m for m in messages)


def test_min_images_per_player_can_leave_too_few_players(dataset_dirs, tmp_path):
    with pytest.raises(DataError, match=r"tenant 'tenant1', split 'train'"):
        build_loaders(dataset_dirs, kwargs(min_images_per_player=6), SYNTH_TENANT, CPU, tmp_path)


def test_val_kits_come_from_the_datasets_kit_info(dataset_dirs, tmp_path):
    """Match-mode synthetic data carries kits.json: a kit id per val image, two teams per frame."""
    loaders = build_loaders(dataset_dirs, kwargs(input_pipeline="pil"), SYNTH_TENANT, CPU, tmp_path)
    assert loaders.val_kits is not None and loaders.val_kits.shape == (loaders.summary["val"]["images"],)
    assert set(loaders.val_kits.tolist()) == set(range(2 * SYNTH_FRAMES))
