"""Split indexing, transforms, samplers and loaders."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import torch
from PIL import Image

from laxai_trainer.config import TrainingKwargs
from laxai_trainer.errors import ConfigError, DataError
from laxai_trainer.reid.data import loaders as data
from tests.trainer.conftest import SYNTH_FRAMES, SYNTH_IMAGES, SYNTH_PLAYERS, SYNTH_TENANT, SYNTH_VAL_PLAYERS

T = SYNTH_TENANT


def dataset_dirs(root: Path) -> list[Path]:
    return sorted((root / T / "datasets").iterdir())


def kwargs(**overrides) -> TrainingKwargs:
    base = {"batch_size": 8, "images_per_player": 2, "num_workers": 0}
    return TrainingKwargs(**{**base, **overrides})


@pytest.fixture(scope="module")
def train_index(synth_root: Path) -> data.SplitIndex:
    return data.scan_split(dataset_dirs(synth_root), "train", 2, T)


# ---- scan_split ----------------------------------------------------------------------------


def test_scan_labels_each_player_of_each_dataset(synth_root: Path, train_index: data.SplitIndex) -> None:
    idx = train_index
    assert len(idx.players) == SYNTH_FRAMES * SYNTH_PLAYERS
    assert len(idx) == SYNTH_FRAMES * SYNTH_PLAYERS * SYNTH_IMAGES
    # the same player id in two frames is two players
    assert idx.players[0] == ("frame_0000", "player_000") and idx.players[SYNTH_PLAYERS] == ("frame_0001", "player_000")
    assert Counter(idx.labels) == {label: SYNTH_IMAGES for label in range(len(idx.players))}
    for s in idx.samples:
        dataset_id, player_id = idx.players[s.label]
        assert Path(s.path).parent.name == player_id and Path(s.path).parents[2].name == dataset_id
        assert idx.dataset_ids[s.dataset_index] == dataset_id
    val = data.scan_split(dataset_dirs(synth_root), "val", 2, T)
    assert len(val.players) == SYNTH_FRAMES * SYNTH_VAL_PLAYERS
    assert idx.summary() == {"split": "train", "datasets": SYNTH_FRAMES, "players": len(idx.players),
                             "images": len(idx), "dropped_players": 0, "dropped_images": 0,
                             "min_images_per_player": 2}


def test_scan_ignores_other_files_and_datasets_without_the_split(synth_copy: Path) -> None:
    dirs = dataset_dirs(synth_copy)
    player = dirs[0] / "train" / "player_000"
    (player / "notes.txt").write_text("x")
    (player / ".hidden.jpg").write_bytes(b"x")
    Image.new("RGB", (8, 12)).save(player / "extra.PNG")
    (dirs[1] / "train").rename(dirs[1] / "elsewhere")
    idx = data.scan_split(dirs, "train", 2, T)
    assert len(idx.players) == (SYNTH_FRAMES - 1) * SYNTH_PLAYERS
    assert sum(1 for s in idx.samples if s.label == 0) == SYNTH_IMAGES + 1


def test_min_images_per_player_drops_players_per_split(synth_copy: Path) -> None:
    dirs = dataset_dirs(synth_copy)
    short = dirs[0] / "train" / "player_001"
    for path in sorted(short.glob("*.jpg"))[2:]:
        path.unlink()  # 2 crops left
    train = data.scan_split(dirs, "train", 3, T)
    assert ("frame_0000", "player_001") not in train.players
    assert train.dropped == [("frame_0000", "player_001", 2)]
    assert len(train.players) == SYNTH_FRAMES * SYNTH_PLAYERS - 1
    assert train.summary()["dropped_images"] == 2
    assert ("frame_0000", "player_001") in data.scan_split(dirs, "train", 2, T).players
    # val is filtered on its own counts: untouched here
    assert data.scan_split(dirs, "val", 3, T).dropped == []


def test_too_few_players_is_a_data_error_naming_tenant_split_and_counts(synth_root: Path) -> None:
    with pytest.raises(DataError) as err:
        data.scan_split(dataset_dirs(synth_root), "val", SYNTH_IMAGES + 1, T)
    message = str(err.value)
    assert "tenant 'tenant1'" in message and "split 'val'" in message
    assert f"0 player(s) with at least {SYNTH_IMAGES + 1} crops" in message
    assert f"{SYNTH_FRAMES * SYNTH_VAL_PLAYERS} player(s) dropped" in message
    assert isinstance(err.value, ConfigError)
    with pytest.raises(DataError, match="split 'train': 0 player"):
        data.scan_split([], "train", 2, T)


def test_one_player_left_is_an_error(tmp_path: Path) -> None:
    for player, crops in (("p1", 3), ("p2", 1)):
        folder = tmp_path / "frame_a" / "val" / player
        folder.mkdir(parents=True)
        for k in range(crops):
            Image.new("RGB", (8, 12)).save(folder / f"{k}.jpg")
    with pytest.raises(DataError, match=r"tenant 'x', split 'val': 1 player\(s\) .* 1 player\(s\) dropped for having fewer, 3 crops kept"):
        data.scan_split([tmp_path / "frame_a"], "val", 2, "x")
    with pytest.raises(ValueError, match="split must be"):
        data.scan_split([tmp_path / "frame_a"], "test", 2, "x")


# ---- transforms ----------------------------------------------------------------------------


@pytest.mark.parametrize("size", [(120, 80), (150, 97), (40, 30)])
def test_transforms_output_3x120x80_normalised(size: tuple[int, int]) -> None:
    img = Image.new("RGB", (size[1], size[0]), (124, 116, 104))  # ≈ ImageNet mean colour
    for transform in (data.train_transform(), data.val_transform()):
        out = transform(img)
        assert out.shape == (3, 120, 80) and out.dtype == torch.float32
    assert data.val_transform()(img).abs().max() < 0.05  # mean colour normalises to ~0


def test_val_transform_is_deterministic_and_train_augments(train_index: data.SplitIndex) -> None:
    img = data.load_image(train_index.samples[0].path)
    val = data.val_transform()
    assert torch.equal(val(img), val(img))
    train = data.train_transform()
    outs = [train(img) for _ in range(4)]
    assert all(not torch.equal(outs[0], o) for o in outs[1:])
    assert not torch.equal(outs[0], val(img))
    # an item seed fixes the augmentation and leaves the caller's RNG alone
    torch.manual_seed(3)
    state = torch.get_rng_state()
    assert torch.equal(data._apply(train, img, 11), data._apply(train, img, 11))
    assert torch.equal(torch.get_rng_state(), state)
    assert not torch.equal(data._apply(train, img, 11), data._apply(train, img, 12))


# ---- samplers ------------------------------------------------------------------------------


def test_pk_sampler_batches_are_p_players_by_k_crops() -> None:
    labels = [p for p in range(10) for _ in range(6)]
    sampler = data.PKSampler(labels, P=4, K=3, seed=0)
    n = len(sampler)
    batches = list(sampler)
    assert len(batches) == n == 60 // 12  # images / batch
    for batch in batches:
        counts = Counter(labels[i] for i, _ in batch)
        assert len(batch) == 12 and len(counts) == 4 and set(counts.values()) == {3}
        assert len({seed for _, seed in batch}) == 12


def test_pk_sampler_draws_with_replacement_for_short_players() -> None:
    labels = [0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 3, 3, 3, 3]
    sampler = data.PKSampler(labels, P=2, K=4, seed=1)
    for epoch in range(5):
        sampler.set_epoch(epoch)
        for batch in sampler:
            counts = Counter(labels[i] for i, _ in batch)
            assert set(counts.values()) == {4} and len(counts) == 2
    # player 2 (one crop) appears with its single crop repeated K times
    sampler.set_epoch(0)
    seen = [i for b in sampler for i, _ in b if labels[i] == 2]
    assert set(seen) <= {10}


def test_pk_sampler_epochs_use_each_crop_once_on_average() -> None:
    counts = [2, 3, 5, 6, 7, 9, 10, 13, 4, 6, 2, 11]
    labels = [p for p, n in enumerate(counts) for _ in range(n)]
    sampler = data.PKSampler(labels, P=4, K=4, seed=0)
    sizes = []
    for epoch in range(30):
        sampler.set_epoch(epoch)
        sizes.append(len(sampler) * 16)
    assert abs(sum(sizes) / len(sizes) - len(labels)) < 0.15 * len(labels)


def test_pk_sampler_is_a_function_of_seed_and_epoch() -> None:
    labels = [p for p in range(8) for _ in range(5)]

    def epoch(seed: int, e: int) -> list:
        s = data.PKSampler(labels, P=4, K=2, seed=seed)
        s.set_epoch(e)
        return list(s)

    assert epoch(0, 1) == epoch(0, 1)
    assert epoch(0, 1) != epoch(0, 2)
    assert epoch(0, 1) != epoch(1, 1)
    s = data.PKSampler(labels, P=4, K=2, seed=0)
    assert list(s) != list(s)  # without set_epoch each pass is a new epoch


def test_pk_sampler_lowers_p_when_players_are_few() -> None:
    sampler = data.PKSampler([0, 0, 1, 1, 2, 2], P=8, K=2, seed=0)
    assert sampler.P == 3
    with pytest.raises(DataError, match="2 players"):
        data.PKSampler([0, 0, 0], P=2, K=2)


def test_seeded_batch_sampler_covers_every_index_once() -> None:
    s = data.SeededBatchSampler(10, 4, seed=5)
    batches = list(s)
    assert [len(b) for b in batches] == [4, 4, 2]
    assert sorted(i for b in batches for i, _ in b) == list(range(10))


# ---- loaders -------------------------------------------------------------------------------


@pytest.mark.parametrize(("batch_size", "k"), [(8, 2), (12, 4), (9, 3)])
def test_train_batches_are_p_by_k_from_batch_size_and_images_per_player(
    train_index: data.SplitIndex, batch_size: int, k: int
) -> None:
    loader = data.build_train_loader(train_index, kwargs(batch_size=batch_size, images_per_player=k), "cpu", 0)
    assert (loader.batch_sampler.P, loader.batch_sampler.K) == (batch_size // k, k)
    images, labels = next(iter(loader))
    assert images.shape == (batch_size, 3, 120, 80)
    counts = Counter(labels.tolist())
    assert len(counts) == batch_size // k and set(counts.values()) == {k}


def test_num_workers_and_prefetch_factor_reach_the_loader(train_index: data.SplitIndex) -> None:
    loader = data.build_train_loader(train_index, kwargs(num_workers=2, prefetch_factor=5), "cpu", 0)
    assert (loader.num_workers, loader.prefetch_factor, loader.persistent_workers) == (2, 5, True)
    assert loader.pin_memory is False
    val = data.build_val_loader(train_index, kwargs(num_workers=2, prefetch_factor=7), "cpu")
    assert (val.num_workers, val.prefetch_factor, val.persistent_workers) == (2, 7, True)
    inline = data.build_train_loader(train_index, kwargs(num_workers=0, prefetch_factor=5), "cpu", 0)
    assert (inline.num_workers, inline.prefetch_factor, inline.persistent_workers) == (0, None, False)
    assert data.build_val_loader(train_index, kwargs(), torch.device("cuda")).pin_memory is True


def test_batches_are_identical_with_and_without_workers(train_index: data.SplitIndex) -> None:
    """Order and augmentation depend on (seed, epoch) only: workers or a resume change nothing."""

    def first_batches(workers: int, epoch: int) -> list:
        loader = data.build_train_loader(train_index, kwargs(num_workers=workers), "cpu", seed=9)
        loader.batch_sampler.set_epoch(epoch)
        it = iter(loader)
        return [next(it) for _ in range(2)]

    inline, workers = first_batches(0, 3), first_batches(2, 3)
    for (a_img, a_lab), (b_img, b_lab) in zip(inline, workers, strict=True):
        assert torch.equal(a_lab, b_lab) and torch.equal(a_img, b_img)
    other_epoch = first_batches(0, 4)
    assert not torch.equal(inline[0][0], other_epoch[0][0])


def test_random_triplet_loader_yields_anchor_positive_negative(train_index: data.SplitIndex) -> None:
    loader = data.build_train_loader(train_index, kwargs(triplet_mining="random", batch_size=6), "cpu", 0)
    assert isinstance(loader.dataset, data.RandomTripletDataset)
    assert len(loader) == -(-len(train_index) // 6)
    anchor, positive, negative, label, negative_label = next(iter(loader))
    assert anchor.shape == positive.shape == negative.shape == (6, 3, 120, 80)
    assert (label != negative_label).all()


def test_random_triplets_pick_negatives_from_the_same_frame(train_index: data.SplitIndex) -> None:
    import random

    ds = data.RandomTripletDataset(train_index, data.val_transform())
    rng = random.Random(0)
    for anchor in range(0, len(train_index), 3):
        positive, negative = ds.pick(anchor, rng)
        a, p, n = (train_index.samples[i] for i in (anchor, positive, negative))
        assert p.label == a.label and positive != anchor
        assert n.label != a.label and n.dataset_index == a.dataset_index
    # a frame with a single player: negatives come from another frame
    single = data.SplitIndex(T, "train", [data.Sample("a", 0, 0), data.Sample("b", 0, 0),
                                          data.Sample("c", 1, 1), data.Sample("d", 1, 1)],
                             [("f0", "p0"), ("f1", "p0")], ["f0", "f1"])
    ds = data.RandomTripletDataset(single, data.val_transform())
    for _ in range(5):
        positive, negative = ds.pick(0, rng)
        assert positive == 1 and single.samples[negative].label == 1


def test_val_loader_visits_every_crop_once_in_order(train_index: data.SplitIndex) -> None:
    loader = data.build_val_loader(train_index, kwargs(batch_size=16), "cpu")
    labels = torch.cat([b[1] for b in loader]).tolist()
    assert labels == train_index.labels
    first = next(iter(loader))[0]
    assert torch.equal(first, next(iter(loader))[0])
