"""Fixtures for trainer tests: a small synthetic dataset and a fake GCS.

- ``synth_root`` (session): a local storage root (Path) holding tenant ``SYNTH_TENANT``
  ("tenant1") with ``SYNTH_FRAMES`` frame datasets; per frame ``SYNTH_PLAYERS`` train and
  ``SYNTH_VAL_PLAYERS`` val players, ``SYNTH_IMAGES`` crops each. Shared: never modify it.
- ``synth_copy``: a private copy of it under tmp_path (Path), for tests that change files.
- ``fake_gcs`` (session): a running fake-gcs-server (``tests.trainer.fake_gcs.FakeGCS``:
  ``.url``, ``.client()``, ``.create_bucket(name)``); skips when the binary cannot run.
- ``gcs_bucket``: a new empty bucket name on it.
- ``gcs_root``: ``"gs://<new bucket>"`` with STORAGE_EMULATOR_HOST pointing at fake-gcs for
  the test (subprocesses inherit it), so ``open_storage(gcs_root)`` just works.
- ``gcs_synth_root``: like ``gcs_root``, with ``synth_root``'s tenant uploaded into it.
"""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import pytest

from tests.trainer.fake_gcs import FakeGCS, FakeGCSUnavailable

SYNTH_TENANT = "tenant1"
SYNTH_FRAMES = 3
SYNTH_PLAYERS = 4
SYNTH_VAL_PLAYERS = 3
SYNTH_IMAGES = 5
SYNTH_SEED = 7


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from laxai_trainer.reid.data.synth import generate

    root = tmp_path_factory.mktemp("synth-root")
    generate(
        root, SYNTH_TENANT, players=SYNTH_PLAYERS, frames=SYNTH_FRAMES, images_per_player=SYNTH_IMAGES,
        val_players=SYNTH_VAL_PLAYERS, seed=SYNTH_SEED,
    )
    return root


@pytest.fixture
def synth_copy(synth_root: Path, tmp_path: Path) -> Path:
    target = tmp_path / "synth-copy"
    shutil.copytree(synth_root, target)
    return target


@pytest.fixture(scope="session")
def fake_gcs():
    try:
        server = FakeGCS()
    except FakeGCSUnavailable as exc:
        pytest.skip(f"fake-gcs-server not available: {exc}")
    yield server
    server.stop()


@pytest.fixture
def gcs_bucket(fake_gcs: FakeGCS) -> str:
    name = f"laxai-test-{uuid.uuid4().hex[:12]}"
    fake_gcs.create_bucket(name)
    return name


@pytest.fixture
def gcs_root(fake_gcs: FakeGCS, gcs_bucket: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", fake_gcs.url)
    return f"gs://{gcs_bucket}"


def upload_tree(local_root: Path, storage, prefix: str = "") -> int:
    """Upload every file under local_root/prefix to the same paths in storage; the file count."""
    base = local_root / prefix if prefix else local_root
    pairs = [(p, p.relative_to(local_root).as_posix()) for p in sorted(base.rglob("*")) if p.is_file()]
    storage.upload_many(pairs)
    return len(pairs)


@pytest.fixture
def gcs_synth_root(gcs_root: str, synth_root: Path) -> str:
    from laxai_trainer.storage import open_storage

    upload_tree(synth_root, open_storage(gcs_root), SYNTH_TENANT)
    return gcs_root
