"""Shared test configuration. Area-specific fixtures live in each folder's conftest."""

import os

# Tests must never reach the network for weights or data, nor log to wandb's servers.
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("TORCH_HOME", os.path.join(os.path.dirname(__file__), "..", ".cache", "torch-empty"))

# The Kubernetes API emulator's fixtures (kube_emulator, kube_env, kube_api_client) for every folder.
pytest_plugins = ["tests.support.fixtures"]
