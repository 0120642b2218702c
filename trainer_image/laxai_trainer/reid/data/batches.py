"""Training and validation batches from the crop cache, augmented on the training device.

Public API::

    build_device_loaders(dataset_dirs, train_index, val_index, training_kwargs, device,
                         cache_root, on_progress=None) -> (train, val, summary)
    DeviceTrainBatches(images, index, training_kwargs, device, seed, resident=None)
        set_epoch(epoch), len(), iter() -> the same batches as the old loader:
        batch_hard (images [B,3,H,W], labels [B]); random (anchor, positive, negative,
        label, negative_label); tensors on ``device``.
    DeviceValBatches(images, index, batch_size, device, resident=None)
        iter() -> (images, labels) in index order, normalised, on ``device``.
    fits_on_device(nbytes, device) -> bool

Sampling is the old pipeline's (``PKSampler`` / ``SeededBatchSampler`` / the random-mode
triplet picks of ``RandomTripletDataset``): a function of (seed, epoch). The augmentation
parameters of step s of epoch e come from ``step_generator(seed, e, s)``. So a batch is a
function of (seed, epoch, step) alone: a resumed run sees the same batches.

Residency: the split's uint8 crops (28.8 KB each at 120×80) live on the device for the
whole run when they take at most RESIDENT_FRACTION of its free memory: a step is then
a gather on the device, no host-to-device copy. Otherwise they stay in pinned host
memory, and each batch is gathered on the host and copied asynchronously (non_blocking),
``prefetch_factor`` batches ahead of the step that uses them. The epoch's sample
indices go to the device once per epoch; per step only the augmentation coefficients
(B × (24 + H + W) floats, pinned) are copied, so the loop never waits for the host. Each
crop's channel sums (contrast's mean grey) are computed once per run, beside the crops.
"""

from __future__ import annotations

import logging
import random
from collections import deque
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

from laxai_trainer.reid.data.crop_cache import ProgressCallback, ensure_crop_cache, split_images
from laxai_trainer.reid.data.device_augment import (
    Augmenter,
    channel_sums,
    draw_params,
    normalize,
    step_generator,
    to_device,
)
from laxai_trainer.reid.data.loaders import PKSampler, RandomTripletDataset, SeededBatchSampler, SplitIndex

log = logging.getLogger(__name__)

#: The crops stay on the device when they need at most this fraction of its free memory.
RESIDENT_FRACTION = 0.5


def fits_on_device(nbytes: int, device: torch.device) -> bool:
    if device.type != "cuda":
        return False
    free, _ = torch.cuda.mem_get_info(device)
    return nbytes <= RESIDENT_FRACTION * free


class _Store:
    """A split's uint8 crops: on the device (resident), or on the host (pinned when feeding CUDA)."""

    def __init__(self, images: torch.Tensor, device: torch.device, resident: bool | None, prefetch: int) -> None:
        self.device = device
        nbytes = images.numel() * images.element_size()
        if resident is None:  # on the CPU, host memory is the device's own
            resident = device.type == "cpu" or fits_on_device(nbytes, device)
        self.resident = bool(resident)
        self.pinned = not self.resident and device.type == "cuda"
        if self.resident:
            self.images = images.to(device)
        else:
            self.images = images.pin_memory() if self.pinned else images
        self.prefetch = max(1, int(prefetch))
        where = ("in host memory" if device.type == "cpu" else f"resident on {device}") if self.resident else (
            "in pinned host memory, copied per batch")
        log.info("%d crops (%.1f MB) %s", images.shape[0], nbytes / 1e6, where)

    def epoch_indices(self, indices: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """The epoch's index tensors on the device: one copy, before the first step."""
        if not indices:
            return []
        return list(to_device(torch.cat(list(indices)), self.device).split([len(i) for i in indices]))

    def batches(self, indices: Sequence[torch.Tensor], on_device: Sequence[torch.Tensor]) -> Iterator[torch.Tensor]:
        """The uint8 crops of each step's indices (host and device copies), on the device."""
        if self.resident:
            for idx in on_device:
                yield self.images.index_select(0, idx)
            return
        staged: deque[torch.Tensor] = deque()
        for idx in indices:
            buf = torch.empty((len(idx), *self.images.shape[1:]), dtype=torch.uint8, pin_memory=self.pinned)
            torch.index_select(self.images, 0, idx, out=buf)
            staged.append(buf.to(self.device, non_blocking=True))
            if len(staged) > self.prefetch:
                yield staged.popleft()
        while staged:
            yield staged.popleft()


class DeviceTrainBatches:
    """The training batches of a split (see the module docstring)."""

    def __init__(
        self,
        images: torch.Tensor,
        index: SplitIndex,
        training_kwargs: Any,
        device: torch.device | str,
        seed: int,
        resident: bool | None = None,
    ) -> None:
        tk = training_kwargs
        self.device = torch.device(device)
        self.seed = int(seed)
        self.mode = tk.triplet_mining
        self.size = (int(images.shape[2]), int(images.shape[3]))
        self.store = _Store(images, self.device, resident, tk.prefetch_factor)
        self.augment = Augmenter(self.size, self.device)
        self.sums = channel_sums(self.store.images).to(self.device)  # once per run
        self.labels = torch.tensor(index.labels, dtype=torch.long)
        self.labels_on_device = self.labels.to(self.device)
        if self.mode == "random":
            self.triplets = RandomTripletDataset(index, None)
            self.sampler: Any = SeededBatchSampler(len(index), tk.batch_size, seed)
        else:
            K = tk.images_per_player
            self.sampler = PKSampler(index.labels, tk.batch_size // K, K, seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
        self.sampler.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.sampler.batches())

    def _indices(self) -> list[torch.Tensor]:
        """Per step, the sample indices to gather (random mode: anchors, positives, negatives)."""
        self.sampler.set_epoch(self.epoch)
        out = []
        for batch in self.sampler.batches():
            if self.mode == "random":
                picks = [self.triplets.pick(i, random.Random(item_seed)) for i, item_seed in batch]
                anchors = [i for i, _ in batch]
                out.append(torch.tensor(anchors + [p for p, _ in picks] + [n for _, n in picks]))
            else:
                out.append(torch.tensor([i for i, _ in batch]))
        return out

    def _params(self, step: int, n: int) -> torch.Tensor:
        """Step ``step``'s parameter table, on the host (the Augmenter copies its coefficients over)."""
        return draw_params(n, self.size, step_generator(self.seed, self.epoch, step))

    def __iter__(self) -> Iterator[tuple[torch.Tensor, ...]]:
        indices = self._indices()
        on_device = self.store.epoch_indices(indices)
        crops_of = self.store.batches(indices, on_device)
        for step, (idx, crops) in enumerate(zip(on_device, crops_of, strict=True)):
            images = self.augment(crops, self._params(step, len(idx)), self.sums[idx])
            labels = self.labels_on_device[idx]
            if self.mode == "random":
                a, p, n = images.chunk(3)
                la, _, ln = labels.chunk(3)
                yield a, p, n, la, ln
            else:
                yield images, labels


class DeviceValBatches:
    """Validation crops in index order, normalised (no augmentation), ``batch_size`` at a time."""

    def __init__(
        self, images: torch.Tensor, index: SplitIndex, batch_size: int, device: torch.device | str,
        resident: bool | None = None, prefetch: int = 2,
    ) -> None:
        self.device = torch.device(device)
        self.store = _Store(images, self.device, resident, prefetch)
        self.labels = torch.tensor(index.labels, dtype=torch.long)
        self.batch_size = int(batch_size)

    def __len__(self) -> int:
        return -(-len(self.labels) // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        indices = list(torch.arange(len(self.labels)).split(self.batch_size))
        on_device = self.store.epoch_indices(indices)
        for idx, crops in zip(indices, self.store.batches(indices, on_device), strict=True):
            yield normalize(crops), self.labels[idx]


def build_device_loaders(
    dataset_dirs: Sequence[str | Path],
    train_index: SplitIndex,
    val_index: SplitIndex,
    training_kwargs: Any,
    device: torch.device | str,
    cache_root: str | Path,
    on_progress: ProgressCallback | None = None,
) -> tuple[DeviceTrainBatches, DeviceValBatches, dict[str, Any]]:
    """Crop cache (built where missing or stale, ``num_workers`` processes), then both batch sources."""
    tk = training_kwargs
    cache = ensure_crop_cache(dataset_dirs, cache_root, num_workers=tk.num_workers, on_progress=on_progress)
    train = DeviceTrainBatches(split_images(train_index, cache.datasets), train_index, tk, device, tk.seed)
    val = DeviceValBatches(split_images(val_index, cache.datasets), val_index, tk.batch_size, device,
                           prefetch=tk.prefetch_factor)
    summary = cache.as_dict()
    summary["resident"] = train.store.resident
    return train, val, summary
