"""laxai_trainer.reid.engine.device: LAXAI_DEVICE."""

import pytest
import torch

from laxai_trainer.errors import ConfigError
from laxai_trainer.reid.engine.device import pick_device


def test_cpu_is_cpu_and_auto_takes_cuda_when_present():
    assert pick_device("cpu") == torch.device("cpu")
    assert pick_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")


def test_cuda_without_a_cuda_device_is_a_config_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="LAXAI_DEVICE is cuda"):
        pick_device("cuda")
    assert pick_device("auto") == torch.device("cpu")
