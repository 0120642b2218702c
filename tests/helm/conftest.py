"""Fixtures of the chart tests: the helm binary and the chart rendered once per values set."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helm import tools
from tests.helm.chart import Rendered, render
from tests.helm.value_sets import value_sets


@pytest.fixture(scope="session")
def helm_bin() -> Path:
    try:
        return tools.helm()
    except tools.ToolUnavailable as exc:
        pytest.skip(f"helm binary not available: {exc}")


@pytest.fixture(scope="session")
def rendered_sets(helm_bin: Path) -> dict[str, Rendered]:
    """Each values set of tests.helm.value_sets rendered once (with the CRD)."""
    return {name: render(helm_bin, values) for name, values in value_sets().items()}


@pytest.fixture(scope="session")
def default(rendered_sets: dict[str, Rendered]) -> Rendered:
    return rendered_sets["default"]


@pytest.fixture(scope="session")
def full(rendered_sets: dict[str, Rendered]) -> Rendered:
    return rendered_sets["full"]


@pytest.fixture(scope="session")
def kind_e2e(rendered_sets: dict[str, Rendered]) -> Rendered:
    return rendered_sets["kind-e2e"]
