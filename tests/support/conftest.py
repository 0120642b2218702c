"""The emulator's own tests use its fixtures (the suite registers them in tests/conftest.py)."""

from tests.support.fixtures import kube_api_client, kube_emulator, kube_env  # noqa: F401
