"""Test infrastructure: the Kubernetes API emulator (kube_emulator.py) and its fixtures (fixtures.py)."""
