"""Storage roots and the local storage implementation (GCS: test_gcs.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from laxai_trainer import storage as storage_mod
from laxai_trainer.errors import ConfigError
from laxai_trainer.storage import TMP_MARK, GCSStorage, LocalStorage, clean_path, open_storage


class FakeClient:
    """Just enough of google.cloud.storage.Client for GCSStorage's constructor."""

    def bucket(self, name: str) -> str:
        return f"bucket:{name}"


def test_plain_path_and_file_uri_open_local_storage(tmp_path: Path) -> None:
    for root in (str(tmp_path), tmp_path.as_uri(), f"file://localhost{tmp_path}"):
        st = open_storage(root)
        assert isinstance(st, LocalStorage)
        assert st.root == tmp_path.resolve()
        assert st.uri("a/b.jpg") == str(tmp_path / "a" / "b.jpg")  # a plain path, not file://


def test_relative_path_resolves_against_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert open_storage("data/root").local_path() == tmp_path / "data" / "root"


def test_gs_root_with_prefix_and_injected_client() -> None:
    st = open_storage("gs://my-bucket/some/prefix/", client=FakeClient())
    assert isinstance(st, GCSStorage)
    assert st.bucket_name == "my-bucket" and st.prefix == "some/prefix"
    assert st.uri() == "gs://my-bucket/some/prefix"
    assert st.uri("t/runs/x/metrics.json") == "gs://my-bucket/some/prefix/t/runs/x/metrics.json"
    assert open_storage("gs://b", client=FakeClient()).uri("k") == "gs://b/k"
    assert st.local_path("x") is None


@pytest.mark.parametrize(
    ("root", "fragment"),
    [("s3://bucket/x", "unsupported scheme 's3'"), ("gs://", "bucket name"), ("  ", "empty"),
     ("file://otherhost/x", "must be local")],
)
def test_bad_roots_are_config_errors_naming_the_root(root: str, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        open_storage(root, client=FakeClient())


def test_gcs_without_credentials_is_a_config_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("google.cloud.storage")
    for var in ("STORAGE_EMULATOR_HOST", "GOOGLE_APPLICATION_CREDENTIALS", "GOOGLE_CLOUD_PROJECT"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path))  # no gcloud ADC file
    monkeypatch.setenv("NO_GCE_CHECK", "True")  # no metadata server probe
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(ConfigError, match="no Google credentials"):
        open_storage("gs://some-bucket")


@pytest.mark.parametrize("bad", ["../x", "a/../../b", "a/./b"])
def test_paths_cannot_leave_the_root(tmp_path: Path, bad: str) -> None:
    with pytest.raises(ValueError, match="not allowed"):
        open_storage(tmp_path).write_bytes(bad, b"x")
    assert clean_path("/a//b/") == "a/b"


def test_local_read_write_list_exists_delete(tmp_path: Path) -> None:
    st = open_storage(tmp_path)
    st.write_bytes("t/runs/r1/metrics.json", b"{}")
    st.write_bytes("t/runs/r1/checkpoints/last.pt", b"12345")
    st.write_bytes("t/runs/r2/config.json", b"[]")
    assert st.exists("t/runs/r1/metrics.json")
    assert not st.exists("t/runs/r1")  # a folder is not a file
    assert not st.exists("t/runs/r1/missing.json")
    assert st.read_bytes("t/runs/r1/checkpoints/last.pt") == b"12345"
    assert st.list_dirs("t/runs") == ["r1", "r2"]
    assert st.list_dirs("nothing/here") == []
    files = st.list_files("t/runs/r1")
    assert [f.path for f in files] == ["t/runs/r1/checkpoints/last.pt", "t/runs/r1/metrics.json"]
    assert files[0].size == 5 and files[0].checksum.startswith("stat:5:") and files[0].updated is not None
    assert [f.path for f in st.list_files()] == [
        "t/runs/r1/checkpoints/last.pt", "t/runs/r1/metrics.json", "t/runs/r2/config.json"]
    st.delete("t/runs/r2/config.json")
    st.delete("t/runs/r2/config.json")  # absent: no error
    assert not st.exists("t/runs/r2/config.json")
    with pytest.raises(FileNotFoundError):
        st.read_bytes("t/runs/r2/config.json")


def test_local_upload_download_round_trip(tmp_path: Path) -> None:
    st = open_storage(tmp_path / "root")
    src = tmp_path / "model.pt"
    src.write_bytes(b"weights")
    st.upload_file(src, "t/runs/r/final/model.pt")
    st.download_file("t/runs/r/final/model.pt", tmp_path / "out" / "m.pt")
    assert (tmp_path / "out" / "m.pt").read_bytes() == b"weights"
    with pytest.raises(FileNotFoundError, match="does not exist"):
        st.download_file("t/none.pt", tmp_path / "none.pt")
    st.upload_many([(src, "a/1"), (src, "a/2")])
    st.download_many([("a/1", tmp_path / "d1"), ("a/2", tmp_path / "d2")])
    assert (tmp_path / "d1").read_bytes() == (tmp_path / "d2").read_bytes() == b"weights"


def test_checksum_changes_when_the_file_changes(tmp_path: Path) -> None:
    st = open_storage(tmp_path)
    st.write_bytes("f.jpg", b"aaaa")
    before = st.list_files()[0].checksum
    st.write_bytes("f.jpg", b"aaaa")  # same size, new mtime
    path = tmp_path / "f.jpg"
    os.utime(path, ns=(1, 1))
    assert st.list_files()[0].checksum != before


def test_write_is_atomic_and_leaves_no_temp_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    st = open_storage(tmp_path)
    st.write_bytes("a/state.json", b"old")

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(storage_mod.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        st.write_bytes("a/state.json", b"new")
    monkeypatch.undo()
    assert st.read_bytes("a/state.json") == b"old"
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["state.json"]


def test_listings_skip_in_flight_temp_files(tmp_path: Path) -> None:
    st = open_storage(tmp_path)
    st.write_bytes("d/x.jpg", b"x")
    (tmp_path / "d" / f"{TMP_MARK}123-y.jpg").write_bytes(b"partial")
    (tmp_path / f"{TMP_MARK}dir").mkdir()
    assert [f.path for f in st.list_files()] == ["d/x.jpg"]
    assert st.list_dirs() == ["d"]
