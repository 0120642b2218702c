"""The run's input pipeline from its local dataset folders and ``training_kwargs``.

:func:`build_loaders` indexes the train and val splits, checks that val holds out its
players, reads the kit info of the same-kit metrics, then builds the loaders of
``input_pipeline``: ``device`` (crop cache, batches augmented on the training device:
:mod:`laxai_trainer.reid.data.batches`) or ``pil`` (DataLoaders that decode and augment
each crop: :mod:`laxai_trainer.reid.data.loaders`).
"""

from __future__ import annotations

import signal
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from laxai_trainer.reid.data import loaders as pil
from laxai_trainer.reid.data.crop_cache import ProgressCallback
from laxai_trainer.reid.data.kits import kit_per_image, warn_shared_players


@dataclass
class Loaders:
    train: Any
    val: Any
    #: run.json's ``data``: datasets, per-split counts, the crop cache's (device pipeline).
    summary: dict[str, Any]
    #: Kit id per val image (same-kit metrics); None without kit info.
    val_kits: torch.Tensor | None

    @property
    def num_classes(self) -> int:
        """Training players (the identity classifier's size)."""
        return int(self.summary["train"]["players"])


def build_loaders(
    dataset_dirs: Sequence[Path],
    training_kwargs: Any,
    tenant_id: str,
    device: torch.device,
    crop_cache_dir: Path,
    on_progress: ProgressCallback | None = None,
) -> Loaders:
    """Both splits' loaders; ``crop_cache_dir`` holds the tenant's decoded crops (device pipeline)."""
    tk = training_kwargs
    train_index = pil.scan_split(dataset_dirs, "train", tk.min_images_per_player, tenant_id)
    val_index = pil.scan_split(dataset_dirs, "val", tk.min_images_per_player, tenant_id)
    warn_shared_players(train_index, val_index)
    summary: dict[str, Any] = {
        "datasets": [p.name for p in dataset_dirs],
        "train": train_index.summary(),
        "val": val_index.summary(),
    }
    val_kits = kit_per_image(val_index, dataset_dirs)
    if tk.input_pipeline == "device":
        from laxai_trainer.reid.data.batches import build_device_loaders

        train, val, summary["crop_cache"] = build_device_loaders(
            dataset_dirs, train_index, val_index, tk, device, crop_cache_dir, on_progress
        )
        return Loaders(train, val, summary, val_kits)
    train = pil.build_train_loader(train_index, tk, device, tk.seed)
    val = pil.build_val_loader(val_index, tk, device)
    for loader in (train, val):
        ignore_sigterm_in_workers(loader)
    return Loaders(train, val, summary, val_kits)


def ignore_sigterm_in_workers(loader: Any) -> None:
    """DataLoader workers share the trainer's process group: a group SIGTERM must not kill
    them mid-step (the trainer finishes the step, checkpoints, then ends them itself)."""
    if getattr(loader, "num_workers", 0) <= 0:
        return
    previous = loader.worker_init_fn
    loader.worker_init_fn = _WorkerInit(previous)


class _WorkerInit:
    """Picklable worker_init_fn: ignore SIGTERM, then the loader's own init."""

    def __init__(self, previous: Any) -> None:
        self.previous = previous

    def __call__(self, worker_id: int) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if self.previous is not None:
            self.previous(worker_id)
