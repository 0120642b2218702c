"""Crop cache: the old resize byte for byte, memory-mapped, rebuilt only where the manifest changed."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms import v2

from laxai_trainer.reid.data import crop_cache
from laxai_trainer.reid.data import loaders as data
from laxai_trainer.reid.data.crop_cache import ensure_crop_cache, split_images
from laxai_trainer.storage import open_storage
from laxai_trainer.sync import sync_datasets
from tests.trainer.conftest import SYNTH_FRAMES, SYNTH_TENANT

T = SYNTH_TENANT


def dirs_of(root: Path) -> list[Path]:
    return sorted((root / T / "datasets").iterdir())


def test_rows_are_the_old_pipelines_resized_crops(synth_root: Path, tmp_path: Path) -> None:
    dirs = dirs_of(synth_root)
    cache = ensure_crop_cache(dirs, tmp_path / "crops")
    for split in data.SPLITS:
        index = data.scan_split(dirs, split, 2, T)
        images = split_images(index, cache.datasets)
        assert images.shape == (len(index), 3, *data.INPUT_SIZE) and images.dtype == torch.uint8
        for i in (0, len(index) // 2, len(index) - 1):
            ref = np.asarray(v2.Resize(data.INPUT_SIZE, antialias=True)(data.load_image(index.samples[i].path)))
            assert np.array_equal(images[i].numpy(), ref.transpose(2, 0, 1))


def test_loading_is_a_memory_map_not_a_decode(synth_root: Path, tmp_path: Path, monkeypatch) -> None:
    dirs = dirs_of(synth_root)
    first = ensure_crop_cache(dirs, tmp_path / "crops")
    assert first.built == [d.name for d in dirs] and first.reused == []
    monkeypatch.setattr(crop_cache, "decode_rows", lambda *a: pytest.fail("decoded again"))
    monkeypatch.setattr(Image, "open", lambda *a, **k: pytest.fail("opened an image"))
    again = ensure_crop_cache(dirs, tmp_path / "crops")
    assert again.built == [] and again.reused == [d.name for d in dirs]
    for a, b in zip(first.datasets, again.datasets, strict=True):
        assert torch.equal(a.images, b.images)
    maps = Path("/proc/self/maps")
    if maps.exists():  # Linux: the cache files are mapped into this process
        mapped = maps.read_text()
        assert all(str(next((tmp_path / "crops" / d.name).glob("crops-*.u8"))) in mapped for d in dirs)


def test_parallel_build_writes_the_same_bytes_and_reports_progress(synth_root: Path, tmp_path: Path) -> None:
    dirs = dirs_of(synth_root)
    serial = ensure_crop_cache(dirs, tmp_path / "serial", num_workers=0)
    reports: list[tuple[int, int, str]] = []
    crop_cache.CHUNK, chunk = 16, crop_cache.CHUNK  # several tasks per dataset
    try:
        parallel = ensure_crop_cache(dirs, tmp_path / "parallel", num_workers=2,
                                     on_progress=lambda done, total, msg: reports.append((done, total, msg)))
    finally:
        crop_cache.CHUNK = chunk
    for a, b in zip(serial.datasets, parallel.datasets, strict=True):
        assert a.files == b.files and torch.equal(a.images, b.images)
    total = sum(len(d.files) for d in serial.datasets)
    assert reports and reports[-1][:2] == (total, total) and "crops decoded" in reports[-1][2]


def test_an_in_place_dataset_rebuilds_only_when_its_crops_change(synth_copy: Path, tmp_path: Path) -> None:
    dirs = dirs_of(synth_copy)
    ensure_crop_cache(dirs, tmp_path / "crops")
    crop = next((dirs[1] / "train").iterdir()) / "crop_000.jpg"
    Image.new("RGB", (80, 120), (255, 0, 0)).save(crop)
    again = ensure_crop_cache(dirs, tmp_path / "crops")
    assert again.built == [dirs[1].name] and again.reused == [dirs[0].name, dirs[2].name]
    row = again.datasets[1].images[again.datasets[1].row(crop)]
    assert row[0].float().mean() > 250 and row[1].float().mean() < 5  # the new, red crop


def test_a_synced_dataset_rebuilds_exactly_when_its_manifest_changes(synth_copy: Path, tmp_path: Path) -> None:
    storage = open_storage(synth_copy)
    synced = sync_datasets(storage, T, tmp_path / "datasets", in_place=False)
    dirs = list(synced.dataset_dirs)
    assert len(dirs) == SYNTH_FRAMES and all((d / ".laxai-sync.json").is_file() for d in dirs)
    ensure_crop_cache(dirs, tmp_path / "crops")
    # a new crop in storage for frame 2: its re-synced manifest changes, the others' do not
    player = next((synth_copy / T / "datasets" / dirs[2].name / "val").iterdir())
    Image.new("RGB", (80, 120), (0, 0, 255)).save(player / "crop_999.jpg")
    sync_datasets(storage, T, tmp_path / "datasets", in_place=False)
    again = ensure_crop_cache(dirs, tmp_path / "crops")
    assert again.built == [dirs[2].name] and again.reused == [dirs[0].name, dirs[1].name]
    assert again.datasets[2].row(dirs[2] / "val" / player.name / "crop_999.jpg") >= 0
    # the manifest, not the files' mtimes, keys a synced dataset
    touched = next((dirs[0] / "train").iterdir()) / "crop_000.jpg"
    touched.touch()
    assert ensure_crop_cache(dirs, tmp_path / "crops").built == []


def test_a_half_built_cache_is_not_used(synth_root: Path, tmp_path: Path) -> None:
    dirs = dirs_of(synth_root)[:1]
    cache = ensure_crop_cache(dirs, tmp_path / "crops")
    data_file = next((tmp_path / "crops" / dirs[0].name).glob("crops-*.u8"))
    with open(data_file, "r+b") as fh:
        fh.truncate(data_file.stat().st_size // 2)
    assert ensure_crop_cache(dirs, tmp_path / "crops").built == [dirs[0].name]
    index = json.loads(next((tmp_path / "crops" / dirs[0].name).glob("index-*.json")).read_text())
    assert index["files"] == cache.datasets[0].files and index["size"] == list(data.INPUT_SIZE)


def test_a_crop_missing_from_the_cache_is_a_clear_error(synth_root: Path, tmp_path: Path) -> None:
    dirs = dirs_of(synth_root)
    cache = ensure_crop_cache(dirs, tmp_path / "crops")
    with pytest.raises(KeyError, match="not in the crop cache"):
        cache.datasets[0].row(dirs[0] / "train" / "nobody" / "x.jpg")
