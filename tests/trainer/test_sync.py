"""Dataset sync on local roots: selection (frames), progress, caching (GCS: test_gcs.py)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from laxai_trainer import sync as sync_mod
from laxai_trainer.errors import ConfigError, DataError
from laxai_trainer.storage import open_storage
from laxai_trainer.sync import MANIFEST, select_datasets, sync_datasets
from tests.trainer.conftest import SYNTH_FRAMES, SYNTH_TENANT

T = SYNTH_TENANT


def crop_count(dataset_dir: Path) -> int:
    """The dataset's files the sync carries: crops and synth's kits.json (not the manifest)."""
    return sum(1 for p in dataset_dir.rglob("*") if p.is_file() and p.name != MANIFEST)


def add_datasets(root: Path, *ids: str) -> None:
    """More datasets, named so that creation order differs from sorted order."""
    base = root / T / "datasets"
    for dataset_id in ids:
        shutil.copytree(base / "frame_0000", base / dataset_id)


def test_select_datasets_takes_the_first_n_in_sorted_order() -> None:
    ids = ["frame_10", "a", "frame_02", "Z"]
    assert select_datasets(ids, None) == ["Z", "a", "frame_02", "frame_10"]
    assert select_datasets(ids, 2) == ["Z", "a"]
    assert select_datasets(ids, 99) == sorted(ids)
    with pytest.raises(ValueError, match="frames"):
        select_datasets(ids, 0)


def test_local_root_is_read_in_place_with_progress_per_dataset(synth_root: Path, tmp_path: Path) -> None:
    calls = []
    result = sync_datasets(open_storage(synth_root), T, tmp_path / "cache",
                           on_progress=lambda f, p, m: calls.append((f, p, m)))
    assert result.in_place and result.files_downloaded == 0
    assert result.dataset_dirs == [synth_root.resolve() / T / "datasets" / d for d in result.dataset_ids]
    assert not (tmp_path / "cache").exists()
    assert [(f, p) for f, p, _ in calls] == [(SYNTH_FRAMES, i) for i in range(SYNTH_FRAMES + 1)]
    assert "Found 3 datasets of tenant tenant1" in calls[0][2]
    assert result.found == result.selected == result.processed == SYNTH_FRAMES


def test_frames_uses_the_first_n_dataset_ids_deterministically(synth_copy: Path, tmp_path: Path) -> None:
    add_datasets(synth_copy, "zeta", "alpha")
    st = open_storage(synth_copy)
    first = sync_datasets(st, T, tmp_path / "c", frames=2)
    again = sync_datasets(st, T, tmp_path / "c", frames=2)
    assert first.dataset_ids == again.dataset_ids == ["alpha", "frame_0000"]
    assert [p.name for p in first.dataset_dirs] == ["alpha", "frame_0000"]
    assert (first.found, first.selected, first.processed) == (5, 2, 2)
    assert sync_datasets(st, T, tmp_path / "c", frames=4).dataset_ids == ["alpha", "frame_0000", "frame_0001",
                                                                         "frame_0002"]
    assert len(sync_datasets(st, T, tmp_path / "c").dataset_ids) == 5
    assert len(sync_datasets(st, T, tmp_path / "c", frames=50).dataset_ids) == 5


def test_no_datasets_is_a_data_error_naming_tenant_and_root(tmp_path: Path) -> None:
    st = open_storage(tmp_path / "root")
    with pytest.raises(DataError, match=r"tenant 'nobody' has no datasets under /.*/root/nobody/datasets") as err:
        sync_datasets(st, "nobody", tmp_path / "cache")
    assert isinstance(err.value, ConfigError)  # → exit code 3
    (tmp_path / "root" / "empty" / "datasets").mkdir(parents=True)
    with pytest.raises(DataError, match="tenant 'empty'"):
        sync_datasets(st, "empty", tmp_path / "cache")


def test_copy_sync_downloads_once_then_skips_unchanged(synth_copy: Path, tmp_path: Path) -> None:
    st = open_storage(synth_copy)
    cache = tmp_path / "cache"
    first = sync_datasets(st, T, cache, in_place=False)
    total = sum(crop_count(synth_copy / T / "datasets" / d) for d in first.dataset_ids)
    assert not first.in_place
    assert first.dataset_dirs == [cache / T / "datasets" / d for d in first.dataset_ids]
    assert first.files_downloaded == total and first.files_skipped == 0
    # (the datasets only: the session's synth root may also hold runs other tests wrote)
    assert first.bytes_downloaded == sum(p.stat().st_size for p in (synth_copy / T / "datasets").rglob("*") if p.is_file())
    for d in first.dataset_dirs:
        assert crop_count(d) == crop_count(synth_copy / T / "datasets" / d.name)
        manifest = json.loads((d / MANIFEST).read_text())
        assert manifest["source"] == st.uri(f"{T}/datasets")
        assert len(manifest["files"]) == crop_count(d)

    second = sync_datasets(st, T, cache, in_place=False)
    assert (second.files_downloaded, second.files_skipped) == (0, total)
    assert second.bytes_skipped == first.bytes_downloaded


def test_copy_sync_fetches_only_changed_files_and_removes_deleted_ones(synth_copy: Path, tmp_path: Path) -> None:
    st = open_storage(synth_copy)
    cache = tmp_path / "cache"
    sync_datasets(st, T, cache, in_place=False)
    src = synth_copy / T / "datasets" / "frame_0001" / "train" / "player_000"
    changed = src / "crop_001.jpg"
    changed.write_bytes(changed.read_bytes() + b"\0")
    (src / "crop_002.jpg").unlink()
    lost = cache / T / "datasets" / "frame_0002" / "val" / "player_004" / "crop_000.jpg"
    lost.unlink()  # the cached copy vanished: fetched again

    result = sync_datasets(st, T, cache, in_place=False)
    assert result.files_downloaded == 2 and result.files_removed == 1
    cached = cache / T / "datasets" / "frame_0001" / "train" / "player_000"
    assert (cached / "crop_001.jpg").read_bytes() == changed.read_bytes()
    assert not (cached / "crop_002.jpg").exists()
    assert lost.exists()


def test_a_cache_filled_from_another_root_is_not_trusted(synth_root: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    shutil.copytree(synth_root, other)
    cache = tmp_path / "cache"
    first = sync_datasets(open_storage(synth_root), T, cache, in_place=False)
    second = sync_datasets(open_storage(other), T, cache, in_place=False)
    assert second.files_downloaded == first.files_downloaded > 0


def test_downloads_are_batched_but_progress_is_per_dataset(
    synth_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    st = open_storage(synth_root)
    batches = []
    real = type(st).download_many

    def spy(self, pairs, max_workers=16):
        batches.append((len(pairs), max_workers))
        return real(self, pairs, max_workers)

    monkeypatch.setattr(type(st), "download_many", spy)
    monkeypatch.setattr(sync_mod, "BATCH_FILES", 1)  # every dataset fills a batch
    progress = []
    sync_datasets(st, T, tmp_path / "c", in_place=False, max_workers=3,
                  on_progress=lambda f, p, m: progress.append(p))
    assert len(batches) == SYNTH_FRAMES and all(w == 3 for _, w in batches)
    assert progress == list(range(SYNTH_FRAMES + 1))

    batches.clear()
    monkeypatch.setattr(sync_mod, "BATCH_FILES", 10**6)  # one batch for everything
    sync_datasets(st, T, tmp_path / "c2", in_place=False)
    assert len(batches) == 1
