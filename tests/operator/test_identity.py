"""The operator runs under a uid with no passwd entry (OpenShift restricted): issue 10 item 8."""

from __future__ import annotations

import getpass
import os
import shutil
import subprocess
import sys

import pytest

from laxai_operator import identity
from tests.operator.conftest import JOBS, NS, make_tj
from tests.support import arbitrary_uid


def _no_passwd(*_args):
    raise KeyError("getpwuid(): uid not found: 54321")


def test_login_name_falls_back_to_the_uid(monkeypatch):
    for name in arbitrary_uid.LOGIN_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr("pwd.getpwuid", _no_passwd)
    with pytest.raises(KeyError):
        getpass.getuser()  # what kopf calls on its own
    assert identity.login_name() == str(os.getuid())
    monkeypatch.delenv("POD_ID", raising=False)
    assert identity.peering_identity().startswith(f"{os.getuid()}@")
    monkeypatch.setenv("POD_ID", "laxai-operator-7d9f")
    assert identity.peering_identity() == "laxai-operator-7d9f"


@pytest.mark.slow
def test_operator_reconciles_under_a_uid_without_passwd_entry(kube_emulator):
    arbitrary_uid.require_root_and_unknown_uid()
    emu = kube_emulator
    work = arbitrary_uid.shared_dir()
    try:
        kubeconfig = arbitrary_uid.readable_copy(emu.kubeconfig_path, work)
        env = arbitrary_uid.environment(os.environ, work) | {"KUBECONFIG": str(kubeconfig),
                                                             "LAXAI_WATCH_NAMESPACES": NS}
        env.pop("POD_ID", None)
        make_tj(emu, "uid-run")
        proc = subprocess.Popen([sys.executable, "-m", "laxai_operator.cli", "run"], env=env, cwd=work,
                                preexec_fn=arbitrary_uid.preexec(), stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
        try:
            emu.wait_for(lambda: emu.get(JOBS, NS, "tj-uid-run") or proc.poll() is not None, timeout=40,
                         message="the operator's Job, or its exit")
        finally:
            proc.terminate()
            out, _ = proc.communicate(timeout=30)
        assert "getpwuid" not in out, out[-2000:]
        assert emu.get(JOBS, NS, "tj-uid-run") is not None, out[-2000:]
    finally:
        shutil.rmtree(work, ignore_errors=True)
