"""Sync a tenant's frame datasets from storage to a local cache before training.

Public API::

    sync_datasets(storage, tenant_id, cache_dir, frames=None, on_progress=None,
                  max_workers=16, in_place=None) -> SyncResult

    on_progress(found: int, processed: int, message: str)  called once with processed=0
        when the datasets are listed, then once per dataset as it is ready.

    SyncResult: tenant_id, source (URI of {tenant}/datasets), dataset_ids, dataset_dirs
        (local folders, in dataset-id order), found (datasets in storage), selected,
        processed, files_downloaded, bytes_downloaded, files_skipped, bytes_skipped,
        files_removed, in_place, seconds; as_dict() for run metadata.

Which datasets: ``{tenant}/datasets/*/`` are listed and sorted by id (plain string
order); ``frames=N`` takes the first N, so the same storage always gives the same
choice (None: all). ``found`` counts every dataset in storage, ``processed`` the
selected ones synced so far.

Where they land: ``{cache_dir}/{tenant}/datasets/{dataset_id}/...``, mirroring storage.
Each dataset folder keeps a manifest (``.laxai-sync.json``: source URI, size and
checksum of every file); a file whose size and checksum match the manifest, and whose
cached copy still has that size, is skipped; files no longer in storage are removed
from the cache. GCS downloads run concurrently through google-cloud-storage's
``transfer_manager`` (threads; see ``GCSStorage.download_many``), batched over several
datasets at a time so small datasets still keep every worker busy.

Local roots are read in place by default (``in_place=None``): nothing is copied, and
the dataset folders returned are the storage folders themselves — a local root is
already local files, so a copy would only double the disk use. ``in_place=False``
copies them through the same manifest logic (tests use it); GCS roots are always copied.

A per-tenant lock file in the cache serialises concurrent syncs of one tenant (several
local jobs sharing a cache).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from laxai_trainer.errors import DataError
from laxai_trainer.storage import DEFAULT_WORKERS, TMP_MARK, FileInfo, Storage, atomic_write

log = logging.getLogger(__name__)

MANIFEST = ".laxai-sync.json"
LOCK = ".laxai-sync.lock"
#: Downloads are submitted to transfer_manager in batches of at least this many files
#: (whole datasets), so progress is reported per dataset without idling workers.
BATCH_FILES = 512

ProgressCallback = Callable[[int, int, str], None]


def datasets_prefix(tenant_id: str) -> str:
    return f"{tenant_id}/datasets"


@dataclass
class SyncResult:
    tenant_id: str
    source: str
    dataset_ids: list[str] = field(default_factory=list)
    dataset_dirs: list[Path] = field(default_factory=list)
    found: int = 0
    selected: int = 0
    processed: int = 0
    files_downloaded: int = 0
    bytes_downloaded: int = 0
    files_skipped: int = 0
    bytes_skipped: int = 0
    files_removed: int = 0
    in_place: bool = False
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["dataset_dirs"] = [str(p) for p in self.dataset_dirs]
        return out


def select_datasets(dataset_ids: list[str], frames: int | None) -> list[str]:
    """The first `frames` ids in sorted order (all when None): deterministic."""
    ordered = sorted(dataset_ids)
    if frames is None:
        return ordered
    if frames < 1:
        raise ValueError(f"frames must be at least 1, got {frames}")
    return ordered[:frames]


@dataclass
class _Plan:
    dataset_id: str
    local_dir: Path
    remote: list[FileInfo]  # paths relative to the dataset folder
    download: list[FileInfo]
    stale: list[Path]
    skipped_bytes: int


def _read_manifest(local_dir: Path, source: str) -> dict[str, dict[str, Any]]:
    try:
        doc = json.loads((local_dir / MANIFEST).read_text())
    except (FileNotFoundError, ValueError):
        return {}
    if doc.get("source") != source:  # another storage root cached here: trust nothing
        return {}
    files = doc.get("files")
    return files if isinstance(files, dict) else {}


def _write_manifest(local_dir: Path, source: str, files: list[FileInfo]) -> None:
    doc = {"source": source, "files": {f.path: {"size": f.size, "checksum": f.checksum} for f in files}}
    atomic_write(local_dir / MANIFEST, (json.dumps(doc, sort_keys=True) + "\n").encode())


def _local_files(local_dir: Path) -> Iterator[Path]:
    if not local_dir.is_dir():
        return
    for dirpath, _, filenames in os.walk(local_dir):
        for name in filenames:
            if name == MANIFEST or name.startswith(TMP_MARK):
                continue
            yield Path(dirpath) / name


def plan_dataset(dataset_id: str, local_dir: Path, source: str, remote: list[FileInfo]) -> _Plan:
    """What to download (new or changed files) and remove (gone from storage) for one dataset."""
    manifest = _read_manifest(local_dir, source)
    download, skipped_bytes = [], 0
    for f in remote:
        known = manifest.get(f.path)
        cached = local_dir / f.path
        unchanged = known == {"size": f.size, "checksum": f.checksum}
        if unchanged and cached.is_file() and cached.stat().st_size == f.size:
            skipped_bytes += f.size
        else:
            download.append(f)
    wanted = {f.path for f in remote}
    stale = [p for p in _local_files(local_dir) if p.relative_to(local_dir).as_posix() not in wanted]
    return _Plan(dataset_id, local_dir, remote, download, stale, skipped_bytes)


@contextlib.contextmanager
def _tenant_lock(folder: Path) -> Iterator[None]:
    folder.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock, syncs of one tenant must not overlap
        yield
        return
    with open(folder / LOCK, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _list_remote(storage: Storage, prefix: str, chosen: list[str], all_ids: int) -> dict[str, list[FileInfo]]:
    """Files of each chosen dataset, paths relative to the dataset folder.

    Most of the tenant's datasets: one listing of the whole prefix (pages of 1000 objects)
    beats one request per dataset; a few of many: one listing per dataset.
    """
    by_id: dict[str, list[FileInfo]] = {d: [] for d in chosen}
    if 2 * len(chosen) >= all_ids:
        for f in storage.list_files(prefix):
            dataset_id, _, rest = f.path[len(prefix) + 1 :].partition("/")
            if rest and dataset_id in by_id:
                by_id[dataset_id].append(FileInfo(rest, f.size, f.checksum, f.updated))
    else:
        for dataset_id in chosen:
            base = f"{prefix}/{dataset_id}"
            by_id[dataset_id] = [
                FileInfo(f.path[len(base) + 1 :], f.size, f.checksum, f.updated) for f in storage.list_files(base)
            ]
    return by_id


def sync_datasets(
    storage: Storage,
    tenant_id: str,
    cache_dir: str | os.PathLike,
    frames: int | None = None,
    on_progress: ProgressCallback | None = None,
    max_workers: int = DEFAULT_WORKERS,
    in_place: bool | None = None,
) -> SyncResult:
    """Make the tenant's selected datasets available as local folders; see the module doc."""
    started = time.perf_counter()
    prefix = datasets_prefix(tenant_id)
    source = storage.uri(prefix)
    report = on_progress or (lambda found, processed, message: None)

    all_ids = storage.list_dirs(prefix)
    if not all_ids:
        raise DataError(
            f"tenant {tenant_id!r} has no datasets under {source} "
            f"(expected {source}/{{dataset_id}}/{{train|val}}/{{player_id}}/*.jpg)"
        )
    chosen = select_datasets(all_ids, frames)
    result = SyncResult(tenant_id, source, dataset_ids=chosen, found=len(all_ids), selected=len(chosen))
    scope = f"{len(chosen)} of {len(all_ids)}" if len(chosen) < len(all_ids) else f"all {len(all_ids)}"
    log.info("tenant %s: %d datasets in %s, using %s (frames=%s)", tenant_id, len(all_ids), source, scope, frames)
    report(result.found, 0, f"Found {len(all_ids)} datasets of tenant {tenant_id}, using {scope}")

    local_root = storage.local_path(prefix)
    result.in_place = local_root is not None if in_place is None else bool(in_place and local_root is not None)
    if result.in_place:
        for dataset_id in chosen:
            result.dataset_dirs.append(local_root / dataset_id)
            result.processed += 1
            report(result.found, result.processed, f"Dataset {dataset_id} read in place ({result.processed}/{len(chosen)})")
        result.seconds = time.perf_counter() - started
        return result

    tenant_cache = Path(cache_dir) / tenant_id
    with _tenant_lock(tenant_cache):
        remote = _list_remote(storage, prefix, chosen, len(all_ids))
        plans = [plan_dataset(d, tenant_cache / "datasets" / d, source, remote[d]) for d in chosen]
        result.dataset_dirs = [p.local_dir for p in plans]
        batch: list[_Plan] = []
        for plan in plans:
            batch.append(plan)
            if sum(len(p.download) for p in batch) >= BATCH_FILES:
                _flush(storage, prefix, batch, result, report, max_workers)
                batch = []
        _flush(storage, prefix, batch, result, report, max_workers)

    result.seconds = time.perf_counter() - started
    log.info(
        "tenant %s: synced %d datasets in %.1fs: %d files (%d bytes) downloaded, %d cached, %d removed",
        tenant_id, result.processed, result.seconds, result.files_downloaded, result.bytes_downloaded,
        result.files_skipped, result.files_removed,
    )
    return result


def _flush(
    storage: Storage, prefix: str, batch: list[_Plan], result: SyncResult, report: ProgressCallback, max_workers: int
) -> None:
    if not batch:
        return
    pairs = [(f"{prefix}/{p.dataset_id}/{f.path}", p.local_dir / f.path) for p in batch for f in p.download]
    storage.download_many(pairs, max_workers=max_workers)
    for plan in batch:
        for stale in plan.stale:
            stale.unlink(missing_ok=True)
        plan.local_dir.mkdir(parents=True, exist_ok=True)
        _write_manifest(plan.local_dir, result.source, plan.remote)
        got = sum(f.size for f in plan.download)
        result.files_downloaded += len(plan.download)
        result.bytes_downloaded += got
        result.files_skipped += len(plan.remote) - len(plan.download)
        result.bytes_skipped += plan.skipped_bytes
        result.files_removed += len(plan.stale)
        result.processed += 1
        report(
            result.found,
            result.processed,
            f"Dataset {plan.dataset_id} synced ({result.processed}/{result.selected}): "
            f"{len(plan.download)} files downloaded, {len(plan.remote) - len(plan.download)} cached",
        )
