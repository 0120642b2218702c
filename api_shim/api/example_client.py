"""Compatibility path documented by the seed API (``src/api/example_client.py``).

The client lives in :mod:`laxai_api.client`; this module re-exports it.
"""

from laxai_api.client import LaxAIClient, LaxAIClientSync, LaxAIError

__all__ = ["LaxAIClient", "LaxAIClientSync", "LaxAIError"]
