"""Where a new run's weights start from (a resumed run loads its checkpoint instead).

- ``force_pretraining: true`` → ImageNet (torchvision's cache, else a download when
  ``LAXAI_PRETRAINED_DOWNLOAD`` allows); neither → ConfigError naming force_pretraining.
- ``force_pretraining: false`` → the tenant's newest final model whose architecture
  matches (``{tenant}/runs/*/final/model.json``, newest ``completed_at`` first; see
  :mod:`laxai_trainer.run_layout`), else ImageNet when available, else random init.

The choice is returned as an :class:`InitSource` that the job logs, puts in the
status message and in ``run.json``.
"""

from __future__ import annotations

import io
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from laxai_trainer.config import ModelKwargs
from laxai_trainer.errors import ConfigError
from laxai_trainer.reid.models.model import (
    IMAGENET_WEIGHTS,
    ReIDNet,
    apply_imagenet,
    architecture,
    imagenet_cache_path,
    load_imagenet_state,
)
from laxai_trainer.run_layout import RunLayout, read_json, runs_prefix
from laxai_trainer.safe_load import load_tensors

log = logging.getLogger(__name__)

InitKind = Literal["checkpoint", "warm_start", "imagenet", "random"]


@dataclass(frozen=True)
class InitSource:
    kind: InitKind
    uri: str | None = None
    detail: str = ""

    def describe(self) -> str:
        text = {
            "checkpoint": "resumed from checkpoint",
            "warm_start": "warm start from the tenant's latest model",
            "imagenet": "ImageNet-pretrained backbone",
            "random": "random initialisation",
        }[self.kind]
        if self.uri:
            text += f" ({self.uri})"
        return f"{text}; {self.detail}" if self.detail else text

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def previous_models(storage: Any, tenant_id: str) -> list[tuple[str, dict[str, Any]]]:
    """(run name, final/model.json) of the tenant's finished runs, newest first."""
    found = []
    for run_name in storage.list_dirs(runs_prefix(tenant_id)):
        layout = RunLayout(tenant_id, run_name)
        if not (storage.exists(layout.final_meta) and storage.exists(layout.final_model)):
            continue
        try:
            meta = read_json(storage, layout.final_meta)
        except Exception as exc:  # a damaged or foreign file is not a reason to fail
            log.warning("ignoring %s: %s", storage.uri(layout.final_meta), exc)
            continue
        found.append((run_name, meta))
    found.sort(key=lambda item: str(item[1].get("completed_at", "")), reverse=True)
    return found


def try_warm_start(model: ReIDNet, kwargs: ModelKwargs, storage: Any, tenant_id: str) -> InitSource | None:
    """Load the newest compatible final model of the tenant; None when there is none."""
    wanted = architecture(kwargs)
    for run_name, meta in previous_models(storage, tenant_id):
        layout = RunLayout(tenant_id, run_name)
        if meta.get("architecture") != wanted:
            log.info(
                "not warm-starting from run %s: architecture %s differs from %s",
                run_name, meta.get("architecture"), wanted,
            )
            continue
        try:
            state = load_tensors(io.BytesIO(storage.read_bytes(layout.final_model)), storage.uri(layout.final_model))
            model.load_state_dict(state)
        except Exception as exc:
            log.warning("not warm-starting from run %s: %s", run_name, exc)
            continue
        return InitSource("warm_start", storage.uri(layout.final_model), f"run {run_name}")
    return None


def initialise(
    model: ReIDNet,
    kwargs: ModelKwargs,
    force_pretraining: bool,
    storage: Any,
    tenant_id: str,
    allow_download: bool,
) -> InitSource:
    """Load the starting weights into ``model`` and say where they came from."""
    if not force_pretraining:
        warm = try_warm_start(model, kwargs, storage, tenant_id)
        if warm is not None:
            return warm
    state = load_imagenet_state(allow_download)
    if state is not None:
        left = apply_imagenet(model, state)
        return InitSource(
            "imagenet", IMAGENET_WEIGHTS.url, f"{len(left)} tensors without an ImageNet counterpart left random"
        )
    if force_pretraining:
        raise ConfigError(
            "training_kwargs.force_pretraining is true but the ResNet18 ImageNet weights are not in "
            f"torchvision's cache ({imagenet_cache_path()}) and could not be downloaded"
            f"{'' if allow_download else ' (LAXAI_PRETRAINED_DOWNLOAD is off)'}: place "
            f"{Path(imagenet_cache_path()).name} there, allow the download, or set force_pretraining: false"
        )
    return InitSource("random", None, "no previous model of the tenant and no ImageNet weights available")
