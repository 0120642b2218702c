"""Device batches: the old sampling, augmentations by (seed, epoch, step), residency and staging."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from laxai_trainer.config import TrainingConfig, TrainingKwargs
from laxai_trainer.reid.data import batches as B
from laxai_trainer.reid.data import device_augment as da
from laxai_trainer.reid.data import loaders as data
from laxai_trainer.reid.data.crop_cache import ensure_crop_cache, split_images
from laxai_trainer.reid.data.device_augment import normalize
from laxai_trainer.reid.engine.trainer import Trainer, seed_everything
from laxai_trainer.reid.models.model import build_model
from tests.trainer.conftest import SYNTH_TENANT
from tests.trainer.open_set import TENANT, make_open_set

CPU = torch.device("cpu")


def kwargs(**overrides) -> TrainingKwargs:
    return TrainingKwargs(**{"batch_size": 8, "images_per_player": 2, "num_workers": 0, **overrides})


@pytest.fixture(scope="module")
def split(synth_root: Path, tmp_path_factory) -> tuple[data.SplitIndex, data.SplitIndex, torch.Tensor, torch.Tensor]:
    dirs = sorted((synth_root / SYNTH_TENANT / "datasets").iterdir())
    train = data.scan_split(dirs, "train", 2, SYNTH_TENANT)
    val = data.scan_split(dirs, "val", 2, SYNTH_TENANT)
    cache = ensure_crop_cache(dirs, tmp_path_factory.mktemp("crops"))
    return train, val, split_images(train, cache.datasets), split_images(val, cache.datasets)


def epoch(batches: B.DeviceTrainBatches, n: int) -> list[tuple[torch.Tensor, ...]]:
    batches.set_epoch(n)
    return list(batches)


def same(a: list, b: list) -> bool:
    return len(a) == len(b) and all(torch.equal(x, y) for ba, bb in zip(a, b, strict=True)
                                    for x, y in zip(ba, bb, strict=True))


def test_batch_hard_batches_follow_the_old_pk_sampler(split) -> None:
    train, _, images, _ = split
    tk = kwargs(seed=5)
    old = data.build_train_loader(train, tk, CPU, tk.seed)
    old.batch_sampler.set_epoch(2)
    new = epoch(B.DeviceTrainBatches(images, train, tk, CPU, tk.seed), 2)
    old_labels = [labels for _, labels in old]
    assert len(new) == len(old_labels) > 1
    for (imgs, labels), expected in zip(new, old_labels, strict=True):
        assert imgs.shape == (8, 3, 120, 80) and imgs.dtype == torch.float32
        assert torch.equal(labels, expected)  # the same P x K draw of (seed, epoch)


def test_a_batch_is_a_function_of_seed_epoch_and_step(split) -> None:
    train, _, images, _ = split
    one = B.DeviceTrainBatches(images, train, kwargs(), CPU, 1)
    torch.manual_seed(123)  # the global RNG plays no part
    two = B.DeviceTrainBatches(images.clone(), train, kwargs(), CPU, 1)
    assert same(epoch(one, 3), epoch(two, 3))
    assert not same(epoch(one, 3), epoch(one, 4))
    assert not same(epoch(one, 3), epoch(B.DeviceTrainBatches(images, train, kwargs(), CPU, 2), 3))
    # a mid-epoch resume skips batches without touching the rest
    one.set_epoch(3)
    it = iter(one)
    next(it)
    assert same(list(it), epoch(two, 3)[1:])


def test_each_batch_is_its_crops_augmented_with_its_steps_parameters(split) -> None:
    """The per-crop channel sums kept for the run give the pixels of sums computed per batch."""
    train, _, images, _ = split
    batches = B.DeviceTrainBatches(images, train, kwargs(), CPU, 4)
    batches.set_epoch(2)
    steps = list(zip(batches._indices(), batches, strict=True))
    assert len(steps) > 1
    for step, (idx, (imgs, _)) in enumerate(steps):
        params = da.draw_params(len(idx), (120, 80), da.step_generator(4, 2, step))
        assert torch.equal(imgs, da.augment(images[idx], params))


def test_random_mode_yields_triplets_with_the_old_picks(split) -> None:
    train, _, images, _ = split
    tk = kwargs(triplet_mining="random", batch_size=8)
    batches = epoch(B.DeviceTrainBatches(images, train, tk, CPU, 0), 1)
    assert sum(len(b[3]) for b in batches) == len(train)  # every anchor once
    for a, p, n, la, ln in batches:
        assert a.shape == p.shape == n.shape and len(la) == len(ln) == len(a)
        assert bool((la != ln).all())
    sampler = data.SeededBatchSampler(len(train), 8, 0)
    sampler.set_epoch(1)
    anchors = [i for b in sampler.batches() for i, _ in b]
    assert torch.equal(torch.cat([b[3] for b in batches]), torch.tensor([train.samples[i].label for i in anchors]))


def test_staged_host_batches_equal_resident_ones(split) -> None:
    train, _, images, _ = split
    resident = B.DeviceTrainBatches(images, train, kwargs(), CPU, 0, resident=True)
    staged = B.DeviceTrainBatches(images, train, kwargs(), CPU, 0, resident=False)
    assert resident.store.resident and not staged.store.resident
    assert same(epoch(resident, 1), epoch(staged, 1))


@pytest.mark.parametrize("prefetch", [1, 3])
def test_prefetch_factor_is_how_many_batches_are_staged_ahead(split, prefetch: int, monkeypatch) -> None:
    train, _, images, _ = split
    gathered = []
    real = torch.index_select
    monkeypatch.setattr(B.torch, "index_select", lambda *a, **k: gathered.append(1) or real(*a, **k))
    batches = B.DeviceTrainBatches(images, train, kwargs(prefetch_factor=prefetch), CPU, 0, resident=False)
    batches.set_epoch(1)
    it = iter(batches)
    next(it)
    assert len(gathered) == min(prefetch + 1, len(batches))


def test_val_batches_are_every_crop_in_order_normalised(split) -> None:
    _, val, _, val_images = split
    batches = list(B.DeviceValBatches(val_images, val, 7, CPU))
    assert [len(labels) for _, labels in batches][:-1] == [7] * (len(batches) - 1)
    torch.testing.assert_close(torch.cat([x for x, _ in batches]), normalize(val_images))
    assert torch.cat([labels for _, labels in batches]).tolist() == val.labels


def test_cuda_keeps_crops_resident_only_when_they_fit(monkeypatch) -> None:
    assert not B.fits_on_device(1, CPU)
    monkeypatch.setattr(B.torch.cuda, "mem_get_info", lambda device=None: (1000, 4000))
    cuda = torch.device("cuda")
    assert B.fits_on_device(500, cuda) and not B.fits_on_device(501, cuda)


def test_num_workers_build_the_cache(split, synth_root: Path, tmp_path: Path, monkeypatch) -> None:
    train, val, _, _ = split
    seen = {}
    real = B.ensure_crop_cache
    monkeypatch.setattr(B, "ensure_crop_cache", lambda *a, **k: seen.update(k) or real(*a, **k))
    dirs = sorted((synth_root / SYNTH_TENANT / "datasets").iterdir())
    _, _, summary = B.build_device_loaders(dirs, train, val, kwargs(num_workers=3), CPU, tmp_path / "c")
    assert seen["num_workers"] == 3 and summary["built"] == [d.name for d in dirs] and summary["resident"]


# ---- the new pipeline trains as well as the old one --------------------------------------------


def no_augmentation(monkeypatch) -> None:
    from torchvision.transforms import v2

    monkeypatch.setattr(data, "train_transform", lambda size=data.INPUT_SIZE: v2.Compose([
        v2.Resize(size, antialias=True), v2.ToImage(), v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(data.IMAGENET_MEAN, data.IMAGENET_STD)]))
    monkeypatch.setattr(B.Augmenter, "__call__", lambda self, images, params, sums=None: normalize(images))


def train_losses(root: Path, cache: Path, pipeline: str, epochs: int) -> list[float]:
    cfg = TrainingConfig(
        tenant_id=TENANT,
        training_kwargs={"num_epochs": epochs, "batch_size": 12, "images_per_player": 2, "num_workers": 0,
                         "seed": 1, "input_pipeline": pipeline},
        model_kwargs={"embedding_dim": 16},
    )
    trainer = make_trainer(root, cache, cfg)
    assert trainer.fit(Hooks()) == "completed"
    return [r["train_loss"] for r in trainer.state.history]


class Hooks:
    def epoch_end(self, *a): ...
    def step_end(self, *a): ...
    def preempted(self, *a): ...


def make_trainer(root: Path, cache: Path, cfg: TrainingConfig) -> Trainer:
    tk = cfg.training_kwargs
    dirs = sorted((root / TENANT / "datasets").iterdir())
    train = data.scan_split(dirs, "train", 2, TENANT)
    val = data.scan_split(dirs, "val", 2, TENANT)
    if tk.input_pipeline == "device":
        loader, val_loader, _ = B.build_device_loaders(dirs, train, val, tk, CPU, cache)
    else:
        loader, val_loader = data.build_train_loader(train, tk, CPU, tk.seed), data.build_val_loader(val, tk, CPU)
    seed_everything(tk.seed)
    return Trainer(build_model(cfg.model_kwargs), cfg, CPU, loader, val_loader)


@pytest.mark.slow
def test_without_augmentation_both_pipelines_train_identically(tmp_path: Path, monkeypatch) -> None:
    root = make_open_set(tmp_path / "data", seed=0)
    no_augmentation(monkeypatch)
    old = train_losses(root, tmp_path / "c", "pil", 1)
    assert train_losses(root, tmp_path / "c", "device", 1) == old  # same batches, same crops, same steps


def best_map(root: Path, cache: Path, pipeline: str, seed: int) -> float:
    cfg = TrainingConfig(
        tenant_id=TENANT,
        training_kwargs={"num_epochs": 5, "batch_size": 12, "images_per_player": 2, "num_workers": 0,
                         "seed": seed, "input_pipeline": pipeline},
        model_kwargs={"embedding_dim": 16},
    )
    trainer = make_trainer(root, cache, cfg)
    assert trainer.fit(Hooks()) == "completed"
    return trainer.state.best_map


#: One run's val mAP on this tiny open set is chaotic: the same seed with the same
#: augmentation parameters through torchvision on PIL and through device_augment (pixels
#: within ~1.4 levels) ends 0.80/0.82, 0.56/0.78, 0.64/0.77 at seeds 1-3. Measured pil/device
#: at seeds 1-8: 0.78/0.82 0.53/0.78 0.77/0.77 0.78/0.72 0.82/0.72 0.46/0.75 0.55/0.55
#: 0.39/0.49, means 0.635/0.699; the device path is at most 0.093 below at any seed. So one
#: seed (two runs: the suite's budget) with that spread as the tolerance; a broken pipeline
#: stays near the untrained ~0.35.
SEED, SPREAD = 3, 0.1


@pytest.mark.slow
def test_training_on_the_new_pipeline_reaches_the_old_val_map(tmp_path: Path) -> None:
    root = make_open_set(tmp_path / "data", seed=0)
    untrained = 0.45  # the open set's random-init val mAP is ~0.35 (tests/trainer/open_set.py)
    old, new = best_map(root, tmp_path / "c", "pil", SEED), best_map(root, tmp_path / "c", "device", SEED)
    assert old > untrained and new > untrained and new >= old - SPREAD, (old, new)
