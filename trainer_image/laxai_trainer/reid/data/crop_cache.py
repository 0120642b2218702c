"""Decoded-crop cache: every crop of a dataset decoded and resized once, then memory-mapped.

Public API::

    ensure_crop_cache(dataset_dirs, cache_root, size=INPUT_SIZE, num_workers=0,
                      on_progress=None) -> CacheResult
        CacheResult: datasets [DatasetCrops] in dataset_dirs order, built (dataset ids
        decoded this time), reused (ids whose cache was valid), seconds.
    DatasetCrops: dataset_dir, files (paths relative to it), images (uint8 tensor
        [N, 3, H, W], a copy-on-write memory map of the file), row(path) -> int.
    split_images(index, crops) -> uint8 tensor [len(index), 3, H, W] in sample order.
    dataset_key(dataset_dir) -> str

Layout: ``{cache_root}/{dataset_id}/crops-{H}x{W}.u8`` (raw uint8 rows, C-contiguous
[N, 3, H, W]) and ``index-{H}x{W}.json`` (format, key, size, files). The index is written
last and atomically, so a half-built file is never used.

Keyed by the dataset manifest: the key hashes the sync manifest (``.laxai-sync.json``:
size + checksum of every file) when the folder has one, else (a local root read in place)
the size and mtime of every crop, plus the folder path and the cache format. A dataset
whose key changed is rebuilt; the others are reused as they are.

The stored size is the model input itself (120×80, 28.8 KB a crop): the old pipeline
resizes first and then augments at that size with black fill outside the image, so the
same size keeps the augmentations identical; a margin would change what they see.

Built in parallel: ``num_workers`` worker processes decode chunks of crops straight into
the file (0 decodes in this process); a progress line is logged per chunk batch and
``on_progress(done, total, message)`` is called.
"""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from laxai_trainer.reid.data.decode import decode_rows
from laxai_trainer.reid.data.loaders import INPUT_SIZE, SPLITS, SplitIndex, _images_in
from laxai_trainer.storage import atomic_write
from laxai_trainer.sync import MANIFEST

log = logging.getLogger(__name__)

FORMAT = 1
#: Crops per worker task: large enough to amortise the task, small enough for progress.
CHUNK = 256
#: Least seconds between two progress lines of one build.
PROGRESS_SECONDS = 5.0

ProgressCallback = Callable[[int, int, str], None]


@dataclass
class DatasetCrops:
    dataset_dir: Path
    files: list[str]
    images: torch.Tensor
    _rows: dict[str, int] = field(default_factory=dict, repr=False)

    def row(self, path: str | os.PathLike) -> int:
        if not self._rows:
            self._rows = {f: i for i, f in enumerate(self.files)}
        rel = Path(path).relative_to(self.dataset_dir).as_posix()
        try:
            return self._rows[rel]
        except KeyError:
            raise KeyError(f"{rel} is not in the crop cache of {self.dataset_dir}") from None


@dataclass
class CacheResult:
    datasets: list[DatasetCrops]
    built: list[str]
    reused: list[str]
    seconds: float

    def as_dict(self) -> dict[str, object]:
        return {"built": self.built, "reused": self.reused, "seconds": self.seconds,
                "images": sum(len(d.files) for d in self.datasets)}


def crop_files(dataset_dir: Path) -> list[str]:
    """Every crop ``scan_split`` can see, relative to the dataset folder, in a fixed order."""
    files: list[str] = []
    for split in SPLITS:
        split_dir = dataset_dir / split
        if not split_dir.is_dir():
            continue
        for player_dir in sorted(p for p in split_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
            files.extend(Path(f).relative_to(dataset_dir).as_posix() for f in _images_in(player_dir))
    return files


def dataset_key(dataset_dir: str | os.PathLike, files: Sequence[str] | None = None) -> str:
    """What the cache of a dataset depends on: its sync manifest, else its crops' sizes and mtimes."""
    folder = Path(dataset_dir)
    digest = hashlib.sha256(f"laxai-crops/{FORMAT}\0{folder.resolve()}\0".encode())
    manifest = folder / MANIFEST
    if manifest.is_file():
        digest.update(manifest.read_bytes())
    else:
        for rel in files if files is not None else crop_files(folder):
            st = (folder / rel).stat()
            digest.update(f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def _paths(cache_root: Path, dataset_dir: Path, size: tuple[int, int]) -> tuple[Path, Path]:
    folder = cache_root / dataset_dir.name
    tag = f"{size[0]}x{size[1]}"
    return folder / f"crops-{tag}.u8", folder / f"index-{tag}.json"


def _open(data_path: Path, dataset_dir: Path, files: list[str], size: tuple[int, int]) -> DatasetCrops:
    shape = (len(files), 3, *size)
    if not files:
        return DatasetCrops(dataset_dir, files, torch.empty(shape, dtype=torch.uint8))
    # Copy-on-write map: pages are read on first touch, never decoded, never written back.
    rows = np.memmap(data_path, dtype=np.uint8, mode="c", shape=shape)
    return DatasetCrops(dataset_dir, files, torch.from_numpy(rows))


def _valid_index(index_path: Path, data_path: Path, key: str, size: tuple[int, int]) -> list[str] | None:
    try:
        doc = json.loads(index_path.read_text())
    except (FileNotFoundError, ValueError):
        return None
    if doc.get("format") != FORMAT or doc.get("key") != key or doc.get("size") != list(size):
        return None
    files = doc.get("files")
    if not isinstance(files, list):
        return None
    expected = len(files) * 3 * size[0] * size[1]
    if files and (not data_path.is_file() or data_path.stat().st_size != expected):
        return None
    return files


class _Progress:
    def __init__(self, total: int, on_progress: ProgressCallback | None) -> None:
        self.total, self.done, self.on_progress = total, 0, on_progress
        self.started = self.last = time.perf_counter()

    def add(self, n: int, dataset_id: str, final: bool = False) -> None:
        self.done += n
        now = time.perf_counter()
        if not final and now - self.last < PROGRESS_SECONDS:
            return
        self.last = now
        rate = self.done / max(now - self.started, 1e-9)
        message = f"Crop cache: {self.done}/{self.total} crops decoded ({rate:.0f}/s), dataset {dataset_id}"
        log.info("%s", message)
        if self.on_progress is not None:
            self.on_progress(self.done, self.total, message)


def _build(
    jobs: list[tuple[Path, list[str], Path]], size: tuple[int, int], num_workers: int, progress: _Progress
) -> None:
    """Decode each (dataset_dir, files, tmp_path) into its tmp file, chunks in parallel."""
    tasks = []
    for dataset_dir, files, tmp in jobs:
        tmp.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as fh:
            fh.truncate(len(files) * 3 * size[0] * size[1])
        for start in range(0, len(files), CHUNK):
            chunk = [str(dataset_dir / f) for f in files[start : start + CHUNK]]
            tasks.append((str(tmp), len(files), size, start, chunk, dataset_dir.name))
    if num_workers <= 0 or len(tasks) <= 1:
        for out, count, sz, start, chunk, dataset_id in tasks:
            progress.add(decode_rows(out, count, sz, start, chunk), dataset_id)
        return
    # fork where there is one (as DataLoader workers on Linux): no re-import of the caller's
    # __main__; the workers run decode.py only (numpy and Pillow, no torch calls).
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
    with ProcessPoolExecutor(max_workers=min(num_workers, len(tasks)), mp_context=context) as pool:
        futures = [(pool.submit(decode_rows, *task[:5]), task[5]) for task in tasks]
        for future, dataset_id in futures:
            progress.add(future.result(), dataset_id)


def ensure_crop_cache(
    dataset_dirs: Sequence[str | os.PathLike],
    cache_root: str | os.PathLike,
    size: tuple[int, int] = INPUT_SIZE,
    num_workers: int = 0,
    on_progress: ProgressCallback | None = None,
) -> CacheResult:
    """The crop cache of every dataset, (re)building only those whose key changed."""
    started = time.perf_counter()
    root = Path(cache_root)
    size = (int(size[0]), int(size[1]))
    plans = []
    for d in dataset_dirs:
        dataset_dir = Path(d)
        files = crop_files(dataset_dir)
        key = dataset_key(dataset_dir, files)
        data_path, index_path = _paths(root, dataset_dir, size)
        cached = _valid_index(index_path, data_path, key, size)
        plans.append((dataset_dir, files, key, data_path, index_path, cached == files))
    todo = [p for p in plans if not p[5]]
    progress = _Progress(sum(len(p[1]) for p in todo), on_progress)
    tmp_of = {p[3]: p[3].with_name(f".{p[3].name}.tmp-{os.getpid()}") for p in todo}
    try:
        _build([(p[0], p[1], tmp_of[p[3]]) for p in todo], size, num_workers, progress)
        for _dataset_dir, files, key, data_path, index_path, _ in todo:
            os.replace(tmp_of[data_path], data_path)
            doc = {"format": FORMAT, "key": key, "size": list(size), "files": files}
            atomic_write(index_path, (json.dumps(doc) + "\n").encode())
    finally:
        for tmp in tmp_of.values():
            tmp.unlink(missing_ok=True)
    if todo:
        progress.add(0, todo[-1][0].name, final=True)
    result = CacheResult(
        [_open(p[3], p[0], p[1], size) for p in plans],
        built=[p[0].name for p in todo],
        reused=[p[0].name for p in plans if p[5]],
        seconds=time.perf_counter() - started,
    )
    log.info("crop cache in %s: %d datasets built, %d reused, %.1fs", root, len(result.built),
             len(result.reused), result.seconds)
    return result


def split_images(index: SplitIndex, crops: Sequence[DatasetCrops]) -> torch.Tensor:
    """The uint8 crops of a split, in its sample order (one gather per dataset)."""
    first = crops[0].images if crops else torch.empty(0, 3, *INPUT_SIZE, dtype=torch.uint8)
    out = torch.empty((len(index), *first.shape[1:]), dtype=torch.uint8)
    by_dataset: dict[int, tuple[list[int], list[int]]] = {}
    for position, sample in enumerate(index.samples):
        positions, rows = by_dataset.setdefault(sample.dataset_index, ([], []))
        positions.append(position)
        rows.append(crops[sample.dataset_index].row(sample.path))
    for dataset_index, (positions, rows) in by_dataset.items():
        out[torch.tensor(positions)] = crops[dataset_index].images[torch.tensor(rows)]
    return out
