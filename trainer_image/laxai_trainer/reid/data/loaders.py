"""Crops on local disk → indexed splits, transforms, samplers and DataLoaders.

Public API::

    INPUT_SIZE = (120, 80)                      model input, H x W
    IMAGENET_MEAN, IMAGENET_STD                 normalisation

    scan_split(dataset_dirs, split, min_images_per_player, tenant_id) -> SplitIndex
        dataset_dirs: local dataset folders (SyncResult.dataset_dirs); split "train"|"val".
        Raises DataError (naming tenant, split and counts) when fewer than 2 players remain.
    SplitIndex: tenant_id, split, samples [Sample(path, label, dataset_index)], players
        [(dataset_id, player_id)] indexed by label, dataset_ids, dropped [(dataset_id,
        player_id, n_crops)], min_images_per_player; labels (list[int]), summary() -> dict.

    train_transform() / val_transform()         PIL image -> float tensor 3x120x80
    ReIDDataset(index, transform)               item -> (image, label)
    RandomTripletDataset(index, transform)      item -> (anchor, positive, negative, label, negative_label)
    PKSampler(labels, P, K, seed)               batch sampler: P players x K crops per batch
    SeededBatchSampler(n, batch_size, seed)     batch sampler: shuffled anchors (random-triplet mode)

    build_train_loader(index, training_kwargs, device, seed) -> DataLoader
        batch_hard: ReIDDataset + PKSampler (K = images_per_player, P = batch_size // K),
        batches (images [B,3,120,80], labels [B]); random: RandomTripletDataset with
        batch_size triplets per batch, batches (anchor, positive, negative, label, neg_label).
    build_val_loader(index, training_kwargs, device) -> DataLoader
        deterministic order and transform, batches (images, labels).

Identity: LaxAI's dataset folders are per extracted frame and player ids come from that
frame's tracking, so a player is (dataset_id, player_id); the same player id in two
datasets is two players. ``min_images_per_player`` is applied per split.

Reproducibility: the batch samplers draw each epoch from (seed, epoch) alone
(``set_epoch``; the trainer calls it) and hand every item its own random seed, which
seeds the augmentation of that item. So the batches and augmentations of an epoch are
the same whatever ``num_workers``/``persistent_workers`` are, and a run resumed at
epoch N sees exactly what the uninterrupted run saw.
"""

from __future__ import annotations

import logging
import os
import random
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, Sampler
from torchvision.transforms import v2

from laxai_trainer.errors import DataError

log = logging.getLogger(__name__)

INPUT_SIZE = (120, 80)  # H x W
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png"})
SPLITS = ("train", "val")


# ---- index ---------------------------------------------------------------------------------


class Sample(NamedTuple):
    path: str
    label: int
    dataset_index: int


@dataclass
class SplitIndex:
    tenant_id: str
    split: str
    samples: list[Sample]
    players: list[tuple[str, str]]
    dataset_ids: list[str]
    dropped: list[tuple[str, str, int]] = field(default_factory=list)
    min_images_per_player: int = 2

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def labels(self) -> list[int]:
        return [s.label for s in self.samples]

    def summary(self) -> dict[str, Any]:
        return {
            "split": self.split,
            "datasets": len(self.dataset_ids),
            "players": len(self.players),
            "images": len(self.samples),
            "dropped_players": len(self.dropped),
            "dropped_images": sum(n for *_, n in self.dropped),
            "min_images_per_player": self.min_images_per_player,
        }


def _images_in(folder: Path) -> list[str]:
    return sorted(
        e.path
        for e in os.scandir(folder)
        if e.is_file() and not e.name.startswith(".") and os.path.splitext(e.name)[1].lower() in IMAGE_EXTENSIONS
    )


def scan_split(
    dataset_dirs: Sequence[str | os.PathLike], split: str, min_images_per_player: int, tenant_id: str
) -> SplitIndex:
    """Index ``{dataset}/{split}/{player_id}/*.jpg`` over the datasets, in a deterministic order."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    dirs = [Path(d) for d in dataset_dirs]
    samples: list[Sample] = []
    players: list[tuple[str, str]] = []
    dropped: list[tuple[str, str, int]] = []
    for dataset_index, dataset_dir in enumerate(dirs):
        split_dir = dataset_dir / split
        if not split_dir.is_dir():
            continue
        for player_dir in sorted(p for p in split_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
            files = _images_in(player_dir)
            if len(files) < min_images_per_player:
                dropped.append((dataset_dir.name, player_dir.name, len(files)))
                continue
            label = len(players)
            players.append((dataset_dir.name, player_dir.name))
            samples.extend(Sample(f, label, dataset_index) for f in files)
    index = SplitIndex(
        tenant_id, split, samples, players, [d.name for d in dirs], dropped, min_images_per_player
    )
    if dropped:
        log.info(
            "tenant %s, %s split: dropped %d players with fewer than %d crops (min_images_per_player)",
            tenant_id, split, len(dropped), min_images_per_player,
        )
    if len(players) < 2:
        raise DataError(
            f"tenant {tenant_id!r}, split {split!r}: {len(players)} player(s) with at least "
            f"{min_images_per_player} crops (min_images_per_player) in {len(dirs)} dataset(s); "
            f"{len(dropped)} player(s) dropped for having fewer, {len(samples)} crops kept; "
            "at least 2 players are needed"
        )
    return index


# ---- transforms ----------------------------------------------------------------------------


def train_transform(size: tuple[int, int] = INPUT_SIZE) -> v2.Compose:
    """Augmentations of a crop: flip, colour jitter, small rotation/translation, erasing.

    The geometric and colour steps run on the PIL image (several times faster than on
    tensors for crops this small). No hue jitter: the jersey hue is what tells players
    apart; brightness, contrast and saturation cover lighting and camera differences.
    """
    return v2.Compose(
        [
            v2.Resize(size, antialias=True),
            v2.RandomHorizontalFlip(p=0.5),
            v2.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2),
            v2.RandomAffine(degrees=5, translate=(0.05, 0.05), scale=(0.95, 1.05)),
            v2.ToImage(),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(IMAGENET_MEAN, IMAGENET_STD),
            v2.RandomErasing(p=0.5, scale=(0.02, 0.15), value=0),
        ]
    )


def val_transform(size: tuple[int, int] = INPUT_SIZE) -> v2.Compose:
    """Resize and normalise only: deterministic."""
    return v2.Compose(
        [
            v2.ToImage(),
            v2.Resize(size, antialias=True),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )


def load_image(path: str) -> Image.Image:
    with Image.open(path) as img:
        return img.convert("RGB")


def _split_key(key: Any) -> tuple[int, int | None]:
    """An item key is an index, or (index, seed) from the seeded samplers."""
    if isinstance(key, tuple | list):
        return int(key[0]), int(key[1])
    return int(key), None


def _apply(transform: Any, image: Image.Image, seed: int | None) -> torch.Tensor:
    if seed is None:
        return transform(image)
    # The item's own seed drives its augmentation; the caller's RNG is left untouched.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return transform(image)


# ---- datasets ------------------------------------------------------------------------------


class ReIDDataset(Dataset):
    """Crops of one split: item -> (image tensor, label)."""

    def __init__(self, index: SplitIndex, transform: Any) -> None:
        self.samples = list(index.samples)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, key: Any) -> tuple[torch.Tensor, int]:
        i, seed = _split_key(key)
        sample = self.samples[i]
        return _apply(self.transform, load_image(sample.path), seed), sample.label


class RandomTripletDataset(Dataset):
    """Item i is an (anchor, positive, negative) triplet anchored on sample i, as in LaxAI's loop.

    The positive is another crop of the anchor's player; the negative a crop of another
    player of the same dataset (frame) when it has one — the hardest realistic confusion —
    else of any other player. item -> (anchor, positive, negative, label, negative_label).
    """

    def __init__(self, index: SplitIndex, transform: Any) -> None:
        self.samples = list(index.samples)
        self.transform = transform
        by_label: dict[int, list[int]] = defaultdict(list)
        labels_by_dataset: dict[int, set[int]] = defaultdict(set)
        for i, s in enumerate(self.samples):
            by_label[s.label].append(i)
            labels_by_dataset[s.dataset_index].add(s.label)
        self.by_label = dict(by_label)
        self.all_labels = sorted(by_label)
        self.labels_by_dataset = {d: sorted(ls) for d, ls in labels_by_dataset.items()}
        if len(self.all_labels) < 2:
            raise DataError(f"random triplets need at least 2 players, the {index.split} split has {len(self.all_labels)}")

    def __len__(self) -> int:
        return len(self.samples)

    def pick(self, anchor: int, rng: random.Random) -> tuple[int, int]:
        """(positive, negative) sample indices for an anchor."""
        a = self.samples[anchor]
        mates = [i for i in self.by_label[a.label] if i != anchor] or [anchor]
        positive = rng.choice(mates)
        others = [lab for lab in self.labels_by_dataset[a.dataset_index] if lab != a.label]
        if not others:
            others = [lab for lab in self.all_labels if lab != a.label]
        negative = rng.choice(self.by_label[rng.choice(others)])
        return positive, negative

    def __getitem__(self, key: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int, int]:
        anchor, seed = _split_key(key)
        rng = random.Random(seed) if seed is not None else random.Random(torch.randint(2**62, ()).item())
        positive, negative = self.pick(anchor, rng)
        images = [
            _apply(self.transform, load_image(self.samples[i].path), rng.getrandbits(63))
            for i in (anchor, positive, negative)
        ]
        return images[0], images[1], images[2], self.samples[anchor].label, self.samples[negative].label


# ---- samplers ------------------------------------------------------------------------------


class _EpochSampler(Sampler):
    """A batch sampler whose epoch is a pure function of (seed, epoch)."""

    def __init__(self, seed: int) -> None:
        self.seed = int(seed)
        self.epoch = 0
        self._cache: tuple[int, list[list[tuple[int, int]]]] | None = None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def _rng(self) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.epoch])

    def _draw(self, rng: np.random.Generator) -> list[list[int]]:
        raise NotImplementedError

    def batches(self) -> list[list[tuple[int, int]]]:
        """This epoch's batches of (index, item seed)."""
        if self._cache is None or self._cache[0] != self.epoch:
            rng = self._rng()
            drawn = self._draw(rng)
            seeds = rng.integers(0, 2**63 - 1, size=sum(len(b) for b in drawn), dtype=np.int64).tolist()
            it = iter(seeds)
            self._cache = (self.epoch, [[(int(i), next(it)) for i in batch] for batch in drawn])
        return self._cache[1]

    def __len__(self) -> int:
        return len(self.batches())

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        batches = self.batches()
        # Without set_epoch calls, each pass is a new epoch; the trainer sets it explicitly.
        self.epoch += 1
        yield from batches


class PKSampler(_EpochSampler):
    """Batches of P players x K crops (batch-hard mining needs positives and negatives in a batch).

    Each epoch every player's n crops are shuffled and cut into n/K groups of K, the
    fraction rounded up or down at random in proportion (so on average each crop is used
    once per epoch); a player gets at least one group, and a short group is topped up with
    repeats of that player's crops (sampling with replacement). Batches take one group from
    each of P distinct players, players with more groups left being likelier picks, until
    fewer than P players have groups left. An epoch is therefore about len(labels) / (P*K)
    batches. With fewer than P players, P is lowered to the number of players.
    """

    def __init__(self, labels: Sequence[int], P: int, K: int, seed: int = 0) -> None:
        super().__init__(seed)
        if K < 1 or P < 1:
            raise ValueError(f"PKSampler needs P >= 1 and K >= 1, got P={P}, K={K}")
        by_label: dict[int, list[int]] = defaultdict(list)
        for i, label in enumerate(labels):
            by_label[int(label)].append(i)
        self.by_label = {lab: np.asarray(ix) for lab, ix in sorted(by_label.items())}
        if len(self.by_label) < 2:
            raise DataError(f"PKSampler needs at least 2 players, got {len(self.by_label)}")
        if P > len(self.by_label):
            log.warning("batch wants %d players but the split has %d: using %d per batch", P, len(self.by_label),
                        len(self.by_label))
            P = len(self.by_label)
        self.P, self.K = P, K

    def _draw(self, rng: np.random.Generator) -> list[list[int]]:
        groups: dict[int, list[np.ndarray]] = {}
        for label, idx in self.by_label.items():
            # stochastic rounding: an epoch covers every crop once on average
            whole, frac = divmod(len(idx) / self.K, 1.0)
            n_groups = max(1, int(whole) + int(rng.random() < frac))
            order = rng.permutation(idx)
            if n_groups * self.K > len(order):  # top up with repeats of the player's own crops
                extra = rng.choice(idx, size=n_groups * self.K - len(order), replace=True)
                order = np.concatenate([order, extra])
            groups[label] = [order[g * self.K : (g + 1) * self.K] for g in range(n_groups)]
        batches = []
        available = [lab for lab, gs in groups.items() if gs]
        while len(available) >= self.P:
            # players with more groups left are likelier picks, so few groups are left unused
            left = np.array([len(groups[lab]) for lab in available], dtype=np.float64)
            chosen = rng.choice(len(available), size=self.P, replace=False, p=left / left.sum())
            batch: list[int] = []
            for c in sorted(chosen):
                batch.extend(groups[available[c]].pop().tolist())
            batches.append(batch)
            available = [lab for lab in available if groups[lab]]
        return batches


class SeededBatchSampler(_EpochSampler):
    """All indices shuffled per epoch, in batches of `batch_size` (the last may be smaller)."""

    def __init__(self, n: int, batch_size: int, seed: int = 0) -> None:
        super().__init__(seed)
        if n < 1 or batch_size < 1:
            raise ValueError(f"SeededBatchSampler needs n >= 1 and batch_size >= 1, got {n}, {batch_size}")
        self.n, self.batch_size = n, batch_size

    def _draw(self, rng: np.random.Generator) -> list[list[int]]:
        order = rng.permutation(self.n).tolist()
        return [order[i : i + self.batch_size] for i in range(0, self.n, self.batch_size)]


# ---- loaders -------------------------------------------------------------------------------


def _seed_worker(worker_id: int) -> None:
    # torch seeds each worker from the loader's generator; numpy and random follow it.
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def _loader_options(training_kwargs: Any, device: torch.device | str, seed: int) -> dict[str, Any]:
    workers = int(training_kwargs.num_workers)
    options: dict[str, Any] = {
        "num_workers": workers,
        "pin_memory": torch.device(device).type == "cuda",
        "generator": torch.Generator().manual_seed(int(seed)),
    }
    if workers > 0:
        options.update(
            prefetch_factor=int(training_kwargs.prefetch_factor),
            persistent_workers=True,
            worker_init_fn=_seed_worker,
        )
    return options


def build_train_loader(
    index: SplitIndex, training_kwargs: Any, device: torch.device | str, seed: int
) -> DataLoader:
    """The training loader for ``training_kwargs.triplet_mining`` (see the module docstring)."""
    tk = training_kwargs
    if tk.triplet_mining == "random":
        dataset: Dataset = RandomTripletDataset(index, train_transform())
        sampler: _EpochSampler = SeededBatchSampler(len(dataset), tk.batch_size, seed)
    else:
        K = tk.images_per_player
        dataset = ReIDDataset(index, train_transform())
        sampler = PKSampler(index.labels, tk.batch_size // K, K, seed)
    return DataLoader(dataset, batch_sampler=sampler, **_loader_options(tk, device, seed))


def build_val_loader(index: SplitIndex, training_kwargs: Any, device: torch.device | str, seed: int = 0) -> DataLoader:
    """Validation crops in index order, val transform, batches of ``batch_size``."""
    tk = training_kwargs
    return DataLoader(
        ReIDDataset(index, val_transform()),
        batch_size=tk.batch_size,
        shuffle=False,
        drop_last=False,
        **_loader_options(tk, device, seed),
    )
