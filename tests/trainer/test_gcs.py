"""GCS storage and dataset sync against the real fake-gcs-server on loopback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from laxai_trainer.errors import DataError
from laxai_trainer.reid.data import loaders as data
from laxai_trainer.reid.data.synth import generate
from laxai_trainer.storage import GCSStorage, StorageError, open_storage
from laxai_trainer.sync import MANIFEST, sync_datasets
from tests.trainer.conftest import SYNTH_FRAMES, SYNTH_TENANT, upload_tree

T = SYNTH_TENANT


def local_crops(root: Path) -> dict[str, bytes]:
    base = root / T / "datasets"
    # crops and synth's kits.json: every dataset file the sync carries (not its manifest)
    return {p.relative_to(base).as_posix(): p.read_bytes() for p in sorted(base.rglob("*"))
            if p.is_file() and p.name != MANIFEST}


def test_env_emulator_host_and_injected_client_reach_the_same_bucket(gcs_root: str, fake_gcs) -> None:
    from_env = open_storage(gcs_root)
    injected = open_storage(f"{gcs_root}/p", client=fake_gcs.client())
    by_endpoint = open_storage(f"{gcs_root}/p", endpoint=fake_gcs.url)
    assert isinstance(from_env, GCSStorage)
    injected.write_bytes("x.txt", b"1")
    assert from_env.read_bytes("p/x.txt") == b"1"
    assert by_endpoint.read_bytes("x.txt") == b"1"


def test_run_outputs_write_read_list_exists_delete(gcs_root: str, tmp_path: Path) -> None:
    st = open_storage(f"{gcs_root}/prefix")
    run = f"{T}/runs/r1"
    st.write_bytes(f"{run}/metrics.json", json.dumps({"mAP": 0.5}).encode())
    src = tmp_path / "last.pt"
    src.write_bytes(b"checkpoint-bytes")
    st.upload_file(src, f"{run}/checkpoints/last.pt")
    st.write_bytes(f"{T}/runs/r2/config.json", b"{}")

    assert json.loads(st.read_bytes(f"{run}/metrics.json")) == {"mAP": 0.5}
    assert st.exists(f"{run}/checkpoints/last.pt") and not st.exists(f"{run}/checkpoints")
    assert not st.exists(f"{run}/nothing.json")
    assert st.list_dirs(f"{T}/runs") == ["r1", "r2"]
    assert st.list_dirs(run) == ["checkpoints"]
    files = st.list_files(run)
    assert [f.path for f in files] == [f"{run}/checkpoints/last.pt", f"{run}/metrics.json"]
    assert files[0].size == len(b"checkpoint-bytes") and files[0].checksum.startswith("md5:")
    assert files[0].updated is not None
    assert st.uri(f"{run}/metrics.json") == f"{gcs_root}/prefix/{run}/metrics.json"
    # the prefix is the root: nothing above it is seen
    assert open_storage(gcs_root).list_dirs() == ["prefix"]

    st.download_file(f"{run}/checkpoints/last.pt", tmp_path / "dl" / "last.pt")
    assert (tmp_path / "dl" / "last.pt").read_bytes() == b"checkpoint-bytes"
    st.write_bytes(f"{run}/metrics.json", b"{}")  # overwrite
    assert st.read_bytes(f"{run}/metrics.json") == b"{}"
    st.delete(f"{run}/metrics.json")
    st.delete(f"{run}/metrics.json")  # absent: no error
    assert not st.exists(f"{run}/metrics.json")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        st.read_bytes(f"{run}/metrics.json")
    with pytest.raises(FileNotFoundError):
        st.download_file(f"{run}/metrics.json", tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_failed_downloads_raise_naming_the_path_and_leave_no_partial_files(gcs_root: str, tmp_path: Path) -> None:
    st = open_storage(gcs_root)
    st.write_bytes("a/ok.jpg", b"ok")
    with pytest.raises(StorageError, match="1 download.*a/missing.jpg"):
        st.download_many([("a/ok.jpg", tmp_path / "ok.jpg"), ("a/missing.jpg", tmp_path / "missing.jpg")])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ok.jpg"]


def test_sync_downloads_with_transfer_manager_then_skips_cached_files(
    gcs_synth_root: str, synth_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from google.cloud.storage import transfer_manager

    calls = []
    real = transfer_manager.download_many

    def spy(pairs, **kwargs):
        calls.append((len(pairs), kwargs["max_workers"], kwargs["worker_type"]))
        return real(pairs, **kwargs)

    monkeypatch.setattr(transfer_manager, "download_many", spy)
    st = open_storage(gcs_synth_root)
    cache = tmp_path / "cache"
    progress = []
    result = sync_datasets(st, T, cache, max_workers=4, on_progress=lambda f, p, m: progress.append((f, p)))

    expected = local_crops(synth_root)
    assert local_crops(cache) == expected  # every crop, byte for byte
    assert result.dataset_dirs == [cache / T / "datasets" / d for d in result.dataset_ids]
    assert (result.found, result.processed, result.files_downloaded) == (SYNTH_FRAMES, SYNTH_FRAMES, len(expected))
    assert result.bytes_downloaded == sum(len(b) for b in expected.values()) and not result.in_place
    assert progress == [(SYNTH_FRAMES, i) for i in range(SYNTH_FRAMES + 1)]
    assert calls == [(len(expected), 4, transfer_manager.THREAD)]

    calls.clear()
    again = sync_datasets(st, T, cache)
    assert (again.files_downloaded, again.bytes_downloaded, again.files_skipped) == (0, 0, len(expected))
    assert calls == []  # nothing to fetch: transfer_manager not even called


def test_sync_fetches_only_the_changed_file(gcs_synth_root: str, tmp_path: Path) -> None:
    st = open_storage(gcs_synth_root)
    cache = tmp_path / "cache"
    first = sync_datasets(st, T, cache)
    changed = f"{T}/datasets/frame_0001/val/player_005/crop_002.jpg"
    st.write_bytes(changed, b"new bytes, same name")
    st.delete(f"{T}/datasets/frame_0002/train/player_000/crop_000.jpg")

    result = sync_datasets(st, T, cache)
    assert result.files_downloaded == 1 and result.bytes_downloaded == len(b"new bytes, same name")
    assert result.files_skipped == first.files_downloaded - 2 and result.files_removed == 1
    assert (cache / changed).read_bytes() == b"new bytes, same name"
    assert not (cache / T / "datasets" / "frame_0002" / "train" / "player_000" / "crop_000.jpg").exists()
    manifest = json.loads((cache / T / "datasets" / "frame_0001" / MANIFEST).read_text())
    assert manifest["files"]["val/player_005/crop_002.jpg"]["size"] == len(b"new bytes, same name")


def test_frames_selects_datasets_on_gcs_too(gcs_synth_root: str, tmp_path: Path) -> None:
    st = open_storage(gcs_synth_root)
    one = sync_datasets(st, T, tmp_path / "c", frames=1)  # one of three: listed per dataset
    assert one.dataset_ids == ["frame_0000"] and (one.found, one.selected) == (SYNTH_FRAMES, 1)
    assert sorted(p.name for p in (tmp_path / "c" / T / "datasets").iterdir()) == ["frame_0000"]
    two = sync_datasets(st, T, tmp_path / "c", frames=2)  # two of three: one listing
    assert two.dataset_ids == ["frame_0000", "frame_0001"]
    assert two.files_skipped == one.files_downloaded and two.files_downloaded == one.files_downloaded


def test_missing_tenant_on_gcs_is_a_data_error(gcs_root: str, tmp_path: Path) -> None:
    with pytest.raises(DataError, match=f"tenant 'ghost' has no datasets under {gcs_root}/ghost/datasets"):
        sync_datasets(open_storage(gcs_root), "ghost", tmp_path)


def test_synced_crops_feed_the_loaders(gcs_synth_root: str, tmp_path: Path) -> None:
    result = sync_datasets(open_storage(gcs_synth_root), T, tmp_path / "cache")
    index = data.scan_split(result.dataset_dirs, "train", 2, T)
    assert all(s.path.startswith(str(tmp_path / "cache")) for s in index.samples)
    from laxai_trainer.config import TrainingKwargs

    loader = data.build_train_loader(index, TrainingKwargs(batch_size=8, images_per_player=2, num_workers=0), "cpu", 0)
    images, labels = next(iter(loader))
    assert images.shape == (8, 3, 120, 80)


def test_synth_writes_straight_to_a_bucket(gcs_root: str, tmp_path: Path) -> None:
    summary = generate(gcs_root, "synth-t", players=2, frames=2, images_per_player=2, val_players=1, seed=0)
    st = open_storage(gcs_root)
    assert summary.root == gcs_root
    assert st.list_dirs("synth-t/datasets") == ["frame_0000", "frame_0001"]
    assert summary.images == 2 * 3 * 2
    assert len(st.list_files("synth-t")) == summary.images + 2  # and one kits.json per frame
    generate(tmp_path, "synth-t", players=2, frames=2, images_per_player=2, val_players=1, seed=0)
    assert st.read_bytes("synth-t/datasets/frame_0001/val/player_002/crop_001.jpg") == (
        tmp_path / "synth-t/datasets/frame_0001/val/player_002/crop_001.jpg").read_bytes()


def test_upload_tree_helper_counts_files(gcs_root: str, synth_root: Path) -> None:
    st = open_storage(gcs_root)
    n = upload_tree(synth_root, st, f"{T}/datasets/frame_0000")
    assert n == len(st.list_files(f"{T}/datasets/frame_0000")) > 0
