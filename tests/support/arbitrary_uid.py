"""Run a subprocess as a uid with no passwd entry, as OpenShift's restricted policy runs pods.

The tests run as root, so the child can drop to such a uid before it executes. When this
machine's Python is not readable by other users (e.g. a pyenv under a 0700 /root), only the
*real* uid is changed and the effective uid stays 0 so the interpreter can load: ``getuid()``,
which is what ``getpass.getuser()`` and every passwd lookup use, still names a uid without an
entry, so the failure under test is the same.
"""

from __future__ import annotations

import functools
import os
import pathlib
import pwd
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable

import pytest

UID = 54321
#: Variables getpass.getuser() reads before it falls back to the passwd database.
LOGIN_VARIABLES = ("LOGNAME", "USER", "LNAME", "USERNAME")


def require_root_and_unknown_uid() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to start a process under another uid")
    try:
        pwd.getpwuid(UID)
    except KeyError:
        return
    pytest.skip(f"uid {UID} has a passwd entry on this machine")


def _drop(uid: int, effective: int) -> None:
    os.setgroups([])
    os.setresgid(uid, effective, effective)
    os.setresuid(uid, effective, effective)


@functools.cache
def _fully_unprivileged_works() -> bool:
    try:
        probe = subprocess.run([sys.executable, "-c", "import getpass, json"], capture_output=True,
                               preexec_fn=lambda: _drop(UID, UID), check=False)
    except PermissionError:  # the interpreter itself is not executable by other users
        return False
    return probe.returncode == 0


def preexec() -> Callable[[], None]:
    """preexec_fn for subprocess: become UID (real and effective when the interpreter allows it)."""
    effective = UID if _fully_unprivileged_works() else 0
    return lambda: _drop(UID, effective)


def environment(base: dict[str, str], workdir: pathlib.Path) -> dict[str, str]:
    """``base`` without login variables, with HOME in a directory UID can write."""
    env = {k: v for k, v in base.items() if k not in LOGIN_VARIABLES}
    env["HOME"] = str(workdir)
    return env


def shared_dir() -> pathlib.Path:
    """A fresh directory the child can read and write (removed by the caller)."""
    path = pathlib.Path(tempfile.mkdtemp(prefix="laxai-uid-"))
    os.chown(path, UID, UID)
    return path


def readable_copy(path: pathlib.Path, into: pathlib.Path) -> pathlib.Path:
    target = into / path.name
    shutil.copy(path, target)
    os.chown(target, UID, UID)
    return target
