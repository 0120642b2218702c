"""The training device from ``LAXAI_DEVICE`` (auto, cuda, cpu)."""

from __future__ import annotations

import torch

from laxai_trainer.errors import ConfigError


def pick_device(name: str) -> torch.device:
    """``cuda`` when asked or (``auto``) present; asking for CUDA without one is a config error."""
    if name == "cuda" or (name == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise ConfigError("LAXAI_DEVICE is cuda but no CUDA device is available")
        return torch.device("cuda")
    return torch.device("cpu")
