"""A small storage interface over the storage root: GCS buckets and local folders alike.

Public API::

    open_storage(root: str, *, client=None, endpoint: str | None = None) -> Storage
        root: "gs://BUCKET[/prefix]", "file:///abs/path" or a plain (relative or absolute) path.
        client: a google.cloud.storage.Client to use (tests inject one); endpoint: a custom
        GCS endpoint such as "http://127.0.0.1:4443" (fake-gcs-server), used with anonymous
        credentials. Without either, GCS uses Application Default Credentials (Workload
        Identity in the pod); the STORAGE_EMULATOR_HOST environment variable, when set,
        points the default client at an emulator (google-cloud-storage honours it and then
        uses anonymous credentials).
        Raises ConfigError for an unusable root (unknown scheme, no bucket, no credentials).

    FileInfo(path, size, checksum, updated)   path relative to the root, '/'-separated;
        checksum "md5:<base64>" (or "crc32c:<base64>") on GCS, "stat:<size>:<mtime_ns>" locally.

    Storage methods (paths are relative to the root, '/'-separated, no '..'):
        list_files(prefix="") -> list[FileInfo]   every file below the folder `prefix`, sorted
        list_dirs(prefix="") -> list[str]         names of the immediate sub-folders, sorted
        exists(path) -> bool                      a file (object) is at `path`
        read_bytes(path) -> bytes                 FileNotFoundError when absent
        write_bytes(path, data)                   atomic (temp + rename locally; GCS uploads are)
        upload_file(local, path)                  atomic, like write_bytes
        download_file(path, local)                atomic on the local side; FileNotFoundError
        download_many(pairs, max_workers=16)      [(path, local)], concurrent on GCS (transfer_manager)
        upload_many(pairs, max_workers=16)        [(local, path)], concurrent on GCS (transfer_manager)
        delete(path)                              no error when absent
        move(source, target)                      rename (local) or server-side copy + delete (GCS)
        uri(path="") -> str                       "gs://bucket/prefix/path" or "/abs/path"
        local_path(path="") -> Path | None        the local file for local roots, None on GCS

This module imports neither torch nor google-cloud-storage at import time: the API
imports it, and GCS is loaded only when a gs:// root is opened.
"""

from __future__ import annotations

import mimetypes
import os
import shutil
import uuid
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from laxai_trainer.errors import ConfigError, TrainerError

#: Temporary files of atomic local writes start with this; listings skip them.
TMP_MARK = ".laxai-tmp-"
#: Default concurrency of download_many / upload_many on GCS.
DEFAULT_WORKERS = 16


class StorageError(TrainerError):
    """A storage operation failed (retryable: exit code 1)."""


@dataclass(frozen=True)
class FileInfo:
    path: str
    size: int
    checksum: str
    updated: datetime | None = None


def clean_path(path: str) -> str:
    """Normalise a relative storage path; reject anything that could leave the root."""
    parts = [p for p in str(path).replace("\\", "/").split("/") if p]
    for part in parts:
        if part in (".", ".."):
            raise ValueError(f"storage path {path!r}: '.' and '..' segments are not allowed")
    return "/".join(parts)


def join(*parts: str) -> str:
    return clean_path("/".join(p for p in parts if p))


class Storage(ABC):
    """Files under one root; see the module docstring for the contract of each method."""

    @abstractmethod
    def list_files(self, prefix: str = "") -> list[FileInfo]: ...

    @abstractmethod
    def list_dirs(self, prefix: str = "") -> list[str]: ...

    @abstractmethod
    def exists(self, path: str) -> bool: ...

    @abstractmethod
    def read_bytes(self, path: str) -> bytes: ...

    @abstractmethod
    def write_bytes(self, path: str, data: bytes) -> None: ...

    @abstractmethod
    def upload_file(self, local: str | os.PathLike, path: str) -> None: ...

    @abstractmethod
    def download_file(self, path: str, local: str | os.PathLike) -> None: ...

    @abstractmethod
    def delete(self, path: str) -> None: ...

    @abstractmethod
    def uri(self, path: str = "") -> str: ...

    @abstractmethod
    def move(self, source: str, target: str) -> None:
        """Rename one file; the target is replaced."""

    def local_path(self, path: str = "") -> Path | None:
        """The file behind `path` when the root is a local folder, else None."""
        return None


    def download_many(
        self, pairs: Sequence[tuple[str, str | os.PathLike]], max_workers: int = DEFAULT_WORKERS
    ) -> None:
        for path, local in pairs:
            self.download_file(path, local)

    def upload_many(
        self, pairs: Sequence[tuple[str | os.PathLike, str]], max_workers: int = DEFAULT_WORKERS
    ) -> None:
        for local, path in pairs:
            self.upload_file(local, path)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.uri()!r})"


def _tmp_sibling(target: Path) -> Path:
    return target.with_name(f"{TMP_MARK}{uuid.uuid4().hex}-{target.name}")


def atomic_write(target: Path, data: bytes) -> None:
    """Write `data` to a temp file next to `target`, fsync, then rename over it."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_sibling(target)
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_copy(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_sibling(target)
    try:
        shutil.copyfile(source, tmp)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


class LocalStorage(Storage):
    """A local folder. Checksums are a cheap stat fingerprint (size and mtime), not a hash."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root).expanduser().resolve()

    def _path(self, path: str) -> Path:
        rel = clean_path(path)
        return self.root / rel if rel else self.root

    def local_path(self, path: str = "") -> Path:
        return self._path(path)

    def list_files(self, prefix: str = "") -> list[FileInfo]:
        base = self._path(prefix)
        out: list[FileInfo] = []
        if not base.is_dir():
            return out
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames[:] = [d for d in dirnames if not d.startswith(TMP_MARK)]
            for name in filenames:
                if name.startswith(TMP_MARK):
                    continue
                full = Path(dirpath) / name
                try:
                    st = full.stat()
                except FileNotFoundError:  # removed while listing
                    continue
                out.append(
                    FileInfo(
                        path=full.relative_to(self.root).as_posix(),
                        size=st.st_size,
                        checksum=f"stat:{st.st_size}:{st.st_mtime_ns}",
                        updated=datetime.fromtimestamp(st.st_mtime, UTC),
                    )
                )
        out.sort(key=lambda f: f.path)
        return out

    def list_dirs(self, prefix: str = "") -> list[str]:
        base = self._path(prefix)
        if not base.is_dir():
            return []
        return sorted(e.name for e in os.scandir(base) if e.is_dir() and not e.name.startswith(TMP_MARK))

    def exists(self, path: str) -> bool:
        return self._path(path).is_file()

    def read_bytes(self, path: str) -> bytes:
        return self._path(path).read_bytes()

    def write_bytes(self, path: str, data: bytes) -> None:
        atomic_write(self._path(path), bytes(data))

    def upload_file(self, local: str | os.PathLike, path: str) -> None:
        atomic_copy(Path(local), self._path(path))

    def download_file(self, path: str, local: str | os.PathLike) -> None:
        source = self._path(path)
        if not source.is_file():
            raise FileNotFoundError(f"{self.uri(path)} does not exist")
        atomic_copy(source, Path(local))

    def delete(self, path: str) -> None:
        self._path(path).unlink(missing_ok=True)

    def move(self, source: str, target: str) -> None:
        dest = self._path(target)
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(self._path(source), dest)

    def uri(self, path: str = "") -> str:
        # A plain path (one can paste it into ls); open_storage accepts it as a root too.
        return str(self._path(path))


class GCSStorage(Storage):
    """A GCS bucket (and optional prefix) through google-cloud-storage."""

    def __init__(self, bucket: str, prefix: str = "", *, client: Any = None, endpoint: str | None = None) -> None:
        if not bucket:
            raise ConfigError("storage root: a gs:// root needs a bucket name (gs://BUCKET[/prefix])")
        self.bucket_name = bucket
        self.prefix = clean_path(prefix)
        self.client = client if client is not None else make_client(endpoint)
        self.bucket = self.client.bucket(bucket)

    def _name(self, path: str) -> str:
        return join(self.prefix, path)

    def _folder(self, prefix: str) -> str:
        name = self._name(prefix)
        return f"{name}/" if name else ""

    def _relative(self, name: str) -> str:
        return name[len(self.prefix) + 1 :] if self.prefix else name

    def list_files(self, prefix: str = "") -> list[FileInfo]:
        out = []
        for blob in self.client.list_blobs(self.bucket_name, prefix=self._folder(prefix)):
            if blob.name.endswith("/"):  # a "folder" placeholder object, not a file
                continue
            checksum = f"md5:{blob.md5_hash}" if blob.md5_hash else f"crc32c:{blob.crc32c}"
            out.append(FileInfo(self._relative(blob.name), int(blob.size or 0), checksum, blob.updated))
        out.sort(key=lambda f: f.path)
        return out

    def list_dirs(self, prefix: str = "") -> list[str]:
        folder = self._folder(prefix)
        iterator = self.client.list_blobs(self.bucket_name, prefix=folder, delimiter="/")
        for _ in iterator.pages:  # prefixes are collected while the pages are read
            pass
        return sorted(p[len(folder) :].rstrip("/") for p in iterator.prefixes)

    def exists(self, path: str) -> bool:
        return bool(self.bucket.blob(self._name(path)).exists())

    def read_bytes(self, path: str) -> bytes:
        from google.api_core.exceptions import NotFound

        try:
            return self.bucket.blob(self._name(path)).download_as_bytes()
        except NotFound as exc:
            raise FileNotFoundError(f"{self.uri(path)} does not exist") from exc

    def _write_retry(self) -> Any:
        # Uploads without a generation precondition are not retried by default; ours are
        # idempotent (the same bytes to the same name), so retry transient errors.
        from google.cloud.storage.retry import DEFAULT_RETRY

        return DEFAULT_RETRY

    def write_bytes(self, path: str, data: bytes) -> None:
        blob = self.bucket.blob(self._name(path))
        blob.upload_from_string(bytes(data), content_type=_content_type(path), retry=self._write_retry())

    def upload_file(self, local: str | os.PathLike, path: str) -> None:
        blob = self.bucket.blob(self._name(path))
        blob.upload_from_filename(str(local), content_type=_content_type(path), retry=self._write_retry())

    def download_file(self, path: str, local: str | os.PathLike) -> None:
        from google.api_core.exceptions import NotFound

        target = Path(local)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = _tmp_sibling(target)
        try:
            self.bucket.blob(self._name(path)).download_to_filename(str(tmp))
            os.replace(tmp, target)
        except NotFound as exc:
            raise FileNotFoundError(f"{self.uri(path)} does not exist") from exc
        finally:
            tmp.unlink(missing_ok=True)

    def download_many(
        self, pairs: Sequence[tuple[str, str | os.PathLike]], max_workers: int = DEFAULT_WORKERS
    ) -> None:
        """Concurrent downloads with transfer_manager (threads: small files are I/O bound).

        Each file lands in a temp sibling and is renamed into place only when complete, so
        an interrupted sync never leaves a truncated crop behind.
        """
        from google.cloud.storage import transfer_manager

        jobs = []
        for path, local in pairs:
            target = Path(local)
            target.parent.mkdir(parents=True, exist_ok=True)
            jobs.append((path, target, _tmp_sibling(target)))
        if not jobs:
            return
        results = transfer_manager.download_many(
            [(self.bucket.blob(self._name(path)), str(tmp)) for path, _, tmp in jobs],
            max_workers=max_workers,
            worker_type=transfer_manager.THREAD,
            raise_exception=False,
        )
        failures = []
        for (path, target, tmp), result in zip(jobs, results, strict=True):
            if isinstance(result, BaseException):
                failures.append((path, result))
                tmp.unlink(missing_ok=True)
            else:
                os.replace(tmp, target)
        _raise_failures("download", failures, self)

    def upload_many(
        self, pairs: Sequence[tuple[str | os.PathLike, str]], max_workers: int = DEFAULT_WORKERS
    ) -> None:
        from google.cloud.storage import transfer_manager

        pairs = list(pairs)
        if not pairs:
            return
        results = transfer_manager.upload_many(
            [(str(local), self.bucket.blob(self._name(path))) for local, path in pairs],
            max_workers=max_workers,
            worker_type=transfer_manager.THREAD,
            raise_exception=False,
            upload_kwargs={"retry": self._write_retry()},
        )
        failures = [(path, r) for (_, path), r in zip(pairs, results, strict=True) if isinstance(r, BaseException)]
        _raise_failures("upload", failures, self)

    def delete(self, path: str) -> None:
        from google.api_core.exceptions import NotFound

        try:
            self.bucket.blob(self._name(path)).delete()
        except NotFound:
            pass

    def move(self, source: str, target: str) -> None:
        # A server-side copy (no bytes through this pod), then the source goes.
        blob = self.bucket.blob(self._name(source))
        self.bucket.copy_blob(blob, self.bucket, self._name(target), retry=self._write_retry())
        blob.delete()

    def uri(self, path: str = "") -> str:
        name = self._name(path)
        return f"gs://{self.bucket_name}/{name}" if name else f"gs://{self.bucket_name}"


def _raise_failures(what: str, failures: list[tuple[str, BaseException]], storage: Storage) -> None:
    if not failures:
        return
    path, first = failures[0]
    raise StorageError(
        f"{len(failures)} {what}(s) failed under {storage.uri()}; first: {path}: {type(first).__name__}: {first}"
    ) from first


def _content_type(path: str) -> str:
    return mimetypes.guess_type(path)[0] or "application/octet-stream"


def make_client(endpoint: str | None = None) -> Any:
    """A google-cloud-storage client: `endpoint` with anonymous credentials, else ADC.

    The project is never needed (we only touch objects in a named bucket), so none is
    looked up; STORAGE_EMULATOR_HOST, when set, is honoured by the library itself.
    """
    from google.auth.exceptions import DefaultCredentialsError
    from google.cloud import storage

    try:
        if endpoint:
            return storage.Client(
                project=None,
                client_options={"api_endpoint": endpoint},
                use_auth_w_custom_endpoint=False,
            )
        return storage.Client(project=None)
    except DefaultCredentialsError as exc:
        raise ConfigError(
            "storage root is on GCS but no Google credentials were found (Application Default "
            f"Credentials / Workload Identity): {exc}"
        ) from exc


def open_storage(root: str | os.PathLike, *, client: Any = None, endpoint: str | None = None) -> Storage:
    """The storage behind `root`: gs://BUCKET[/prefix], file:///abs/path or a plain path."""
    text = os.fspath(root).strip()
    if not text:
        raise ConfigError("storage root is empty: use gs://BUCKET[/prefix], file:///path or a folder path")
    if "://" not in text:
        return LocalStorage(text)
    parsed = urlparse(text)
    if parsed.scheme == "gs":
        return GCSStorage(parsed.netloc, parsed.path, client=client, endpoint=endpoint)
    if parsed.scheme == "file":
        if parsed.netloc not in ("", "localhost"):
            raise ConfigError(f"storage root {text!r}: file:// roots must be local (file:///abs/path)")
        return LocalStorage(unquote(parsed.path))
    raise ConfigError(
        f"storage root {text!r}: unsupported scheme {parsed.scheme!r}; use gs://BUCKET[/prefix], "
        "file:///path or a folder path"
    )
