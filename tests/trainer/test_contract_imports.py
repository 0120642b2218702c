"""The trainer modules the operator and the API import load without torch (the control-plane
image has none). The list is read from their sources, so a new import is checked too."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
IMPORT = re.compile(r"^\s*(?:from (laxai_trainer(?:\.\w+)*) import (\w+)|import (laxai_trainer(?:\.\w+)+))", re.M)
ENTRY_POINTS = ("laxai_operator.cli", "laxai_api.app", "laxai_api.cli", "laxai_api.client_cli")


def contract_modules() -> list[str]:
    found: set[str] = set()
    for path in [*(ROOT / "operator").rglob("*.py"), *(ROOT / "api_shim").rglob("*.py")]:
        for package, name, module in IMPORT.findall(path.read_text()):
            found.add(module or (f"{package}.{name}" if package == "laxai_trainer" else package))
    return sorted(found)


def test_the_operator_and_api_import_the_trainer_contract_without_torch():
    modules = contract_modules()
    assert {"laxai_trainer.config", "laxai_trainer.status", "laxai_trainer.exit_codes"} <= set(modules)
    code = ("import importlib, sys\n"
            f"for name in {[*modules, *ENTRY_POINTS]!r}: importlib.import_module(name)\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'torchvision', 'PIL', 'numpy')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]", done.stdout
