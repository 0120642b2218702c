"""The final model's files: the state_dict, a TorchScript export, and ``final/model.json``.

The state_dict is the primary output; TorchScript is best effort (its error is returned,
and recorded in run.json, not raised). ``model.json`` says how to rebuild and feed the
network: architecture, model_kwargs, input size and normalisation.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from laxai_trainer.config import ModelKwargs
from laxai_trainer.reid.data.loaders import IMAGENET_MEAN, IMAGENET_STD, INPUT_SIZE
from laxai_trainer.reid.models.model import architecture

log = logging.getLogger(__name__)

STATE_DICT = "model.pt"
TORCHSCRIPT = "model.torchscript.pt"


@dataclass(frozen=True)
class ExportedModel:
    state_dict: Path
    torchscript: Path | None  # None when the export failed
    torchscript_error: str | None = None


def export_model(model: torch.nn.Module, folder: Path) -> ExportedModel:
    """Write ``model.pt`` (state_dict) and ``model.torchscript.pt`` into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    state_dict = folder / STATE_DICT
    torch.save(model.state_dict(), state_dict)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # TorchScript is deprecated, still loadable in C++
            torch.jit.script(model).save(str(folder / TORCHSCRIPT))
    except Exception as exc:  # the state_dict above is the primary output
        log.error("TorchScript export failed (the state_dict is saved): %s", exc)
        return ExportedModel(state_dict, None, str(exc))
    return ExportedModel(state_dict, folder / TORCHSCRIPT)


def model_card(
    model_kwargs: ModelKwargs, run_name: str, best_epoch: int, metrics: dict[str, Any] | None, completed_at: str
) -> dict[str, Any]:
    """``final/model.json``: what rebuilds the network and how its input is prepared."""
    return {
        "architecture": architecture(model_kwargs),
        "model_kwargs": model_kwargs.model_dump(mode="json"),
        "input_size": list(INPUT_SIZE),
        "normalization": {"mean": IMAGENET_MEAN, "std": IMAGENET_STD},
        "run_name": run_name,
        "best_epoch": best_epoch or None,
        "metrics": metrics,
        "completed_at": completed_at,
    }
