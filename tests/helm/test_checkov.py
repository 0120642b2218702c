"""checkov's Kubernetes checks on the rendered chart: nothing fails unless helm/checkov-skips.yaml
says why, and every entry there still fails somewhere (no stale skips)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.helm import tools
from tests.helm.tools import REPO_ROOT
from tests.helm.value_sets import value_sets

SKIPS_FILE = REPO_ROOT / "helm" / "checkov-skips.yaml"


def load_skips() -> dict[str, set[str]]:
    """check id -> the Kind/name resources it may fail on."""
    entries = yaml.safe_load(SKIPS_FILE.read_text())
    out: dict[str, set[str]] = {}
    for entry in entries:
        assert len(entry["reason"].split()) >= 15, f"{entry['id']}: give a specific reason"
        out[entry["id"]] = set(entry["resources"])
    return out


def failed_checks(report: object) -> set[tuple[str, str, str]]:
    """(file, check id, Kind/name) for each failed check in checkov's JSON report."""
    reports = report if isinstance(report, list) else [report]
    out = set()
    for rep in reports:
        for failed in rep["results"]["failed_checks"]:
            kind, *_, name = failed["resource"].split(".")  # Kind.namespace.name or Kind.name
            out.add((Path(failed["file_path"]).name, failed["check_id"], f"{kind}/{name}"))
    return out


@pytest.fixture(scope="session")
def checkov_failures(rendered_sets, tmp_path_factory) -> set[tuple[str, str, str]]:
    try:
        checkov = tools.checkov()
    except tools.ToolUnavailable as exc:
        pytest.skip(f"checkov not available: {exc}")
    folder = tmp_path_factory.mktemp("checkov")
    cmd = [str(checkov), "--framework", "kubernetes", "--skip-download", "--quiet", "--compact",
           "--output", "json"]
    for name in value_sets():
        path = folder / f"{name}.yaml"
        path.write_text(rendered_sets[name].text)
        cmd += ["--file", str(path)]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600,
                            env={"PATH": "/usr/bin:/bin", "HOME": str(folder), "BC_SKIP_MAPPING": "TRUE"})
    # Exit 1 means "some check failed"; anything else is checkov itself failing.
    assert result.returncode in (0, 1), result.stderr[-2000:]
    report = json.loads(result.stdout)
    reports = report if isinstance(report, list) else [report]
    assert all(r["summary"]["parsing_errors"] == 0 for r in reports)
    assert sum(r["summary"]["passed"] for r in reports) > 300  # the checks really ran
    return failed_checks(report)


def test_no_failed_check_without_a_reason(checkov_failures):
    skips = load_skips()
    unexplained = sorted(f for f in checkov_failures if f[2] not in skips.get(f[1], set()))
    assert unexplained == [], "checkov failures not in helm/checkov-skips.yaml:\n" + "\n".join(
        f"  {file}: {check} on {resource}" for file, check, resource in unexplained)


def test_no_stale_skip(checkov_failures):
    seen = {(check, resource) for _, check, resource in checkov_failures}
    stale = sorted((check, r) for check, resources in load_skips().items() for r in resources
                   if (check, r) not in seen)
    assert stale == [], f"skips that no longer fail (remove them from helm/checkov-skips.yaml): {stale}"


def test_full_values_pin_and_pull_as_checkov_wants(checkov_failures):
    """The options the skip reasons point to really clear the checks."""
    full = {(check, resource) for file, check, resource in checkov_failures if file == "full.yaml"}
    for deployment in ("Deployment/laxai-training-operator", "Deployment/laxai-training-api"):
        assert ("CKV_K8S_15", deployment) not in full  # image.pullPolicy: Always
        assert ("CKV_K8S_43", deployment) not in full  # image.digest
