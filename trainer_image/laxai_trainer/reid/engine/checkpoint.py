"""Checkpoints: everything needed to continue a run exactly where it stopped.

Layout under the run folder ``{tenant}/runs/{run}/``::

    checkpoints/last.pt   every epoch end, and on SIGTERM mid-epoch
    checkpoints/best.pt   model weights of the best epoch (val mAP); kept at the end
                          only with save_intermediate

A checkpoint is written to a local temp file, then uploaded to storage (on a local
root the storage renames it into place; on GCS an object upload is atomic), so a
reader never sees half a checkpoint.

``last.pt`` holds: model, optimizer and scheduler state, the :class:`TrainState`
(epoch, step within the epoch, margin, early-stopping state, per-epoch history, the
partial epoch's running sums, wandb run id) and the RNG states (python, numpy, torch,
CUDA), all as tensors and plain data: checkpoints load with ``weights_only=True``
(:mod:`laxai_trainer.safe_load`), as storage is writable by the tenant. The sampler needs no state of its own: its order is a function of
(seed, epoch), and a mid-epoch resume skips the batches already done.
"""

from __future__ import annotations

import io
import logging
import random
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from laxai_trainer.run_layout import RunLayout, read_json
from laxai_trainer.safe_load import load_tensors
from laxai_trainer.status import significant

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
CHECKPOINT_DIR = "checkpoints"
LAST = "last.pt"
BEST = "best.pt"


@dataclass
class TrainState:
    """The loop's own state besides model/optimizer/scheduler."""

    epoch: int = 0  # epochs fully completed
    step: int = 0  # batches done in epoch ``epoch + 1`` (mid-epoch SIGTERM checkpoint)
    margin: float = 0.0
    best_map: float = -1.0
    best_epoch: int = 0
    best_val_loss: float | None = None
    epochs_without_improvement: int = 0
    stopped_early: bool = False
    history: list[dict[str, Any]] = field(default_factory=list)
    # Running sums of a partially done epoch (restored on a mid-epoch resume).
    partial_loss_sum: float = 0.0
    partial_batches: int = 0
    partial_images: int = 0
    partial_seconds: float = 0.0
    wandb_id: str | None = None
    init_source: dict[str, Any] = field(default_factory=dict)

    def reopen(self) -> None:
        """Continue an early-stopped run asked for more epochs: its early-stopping state is cleared."""
        self.stopped_early, self.epochs_without_improvement = False, 0

    def reset_partial(self) -> None:
        self.step = 0
        self.partial_loss_sum = 0.0
        self.partial_batches = 0
        self.partial_images = 0
        self.partial_seconds = 0.0


def capture_rng() -> dict[str, Any]:
    """The RNG states as tensors and plain data (so a checkpoint loads with weights_only=True)."""
    name, keys, pos, has_gauss, cached_gaussian = np.random.get_state(legacy=True)
    state: dict[str, Any] = {
        "python": random.getstate(),  # (int, tuple of ints, float | None)
        "numpy": {"name": str(name), "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached_gaussian)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    numpy_state = state["numpy"]
    np.random.set_state((
        numpy_state["name"], numpy_state["keys"].numpy().astype(np.uint32), numpy_state["pos"],
        numpy_state["has_gauss"], numpy_state["cached_gaussian"],
    ))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def checkpoint_path(run_prefix: str, name: str = LAST) -> str:
    return f"{run_prefix}/{CHECKPOINT_DIR}/{name}"


def build_payload(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    state: TrainState,
    architecture: dict[str, Any],
    rng: dict[str, Any],
) -> dict[str, Any]:
    return {
        "format": FORMAT_VERSION,
        "architecture": architecture,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "state": asdict(state),
        "rng": rng,
    }


def best_checkpoint(record: dict[str, Any], weights: dict[str, torch.Tensor] | None,
                    architecture: dict[str, Any]) -> dict[str, Any]:
    """``best.pt``: the best epoch's weights and its record."""
    return {"epoch": record["epoch"], "metrics": record, "model": weights, "architecture": architecture}


def save(storage: Any, path: str, payload: dict[str, Any], tmp_dir: Path) -> None:
    """torch.save to a local temp file, then one upload to ``path`` in storage."""
    tmp_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=tmp_dir, suffix=".pt", delete=False) as fh:
        tmp = Path(fh.name)
    try:
        torch.save(payload, tmp)
        storage.upload_file(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    log.debug("checkpoint written to %s", storage.uri(path))


def load(storage: Any, path: str, tmp_dir: Path) -> dict[str, Any] | None:
    """The checkpoint at ``path``, or None when there is none."""
    if not storage.exists(path):
        return None
    tmp_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=tmp_dir, suffix=".pt", delete=False) as fh:
        tmp = Path(fh.name)
    try:
        storage.download_file(path, tmp)
        return load_tensors(tmp, storage.uri(path))
    finally:
        tmp.unlink(missing_ok=True)


def restore(
    payload: dict[str, Any],
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
) -> TrainState:
    """Load model/optimizer/scheduler; returns the loop state (RNG states are the caller's)."""
    if payload.get("format") != FORMAT_VERSION:
        raise ValueError(f"checkpoint format {payload.get('format')} is not {FORMAT_VERSION}")
    model.load_state_dict(payload["model"])
    optimizer.load_state_dict(payload["optimizer"])
    scheduler.load_state_dict(payload["scheduler"])
    return TrainState(**payload["state"])


def state_dict_bytes(state_dict: dict[str, torch.Tensor]) -> bytes:
    buf = io.BytesIO()
    torch.save(state_dict, buf)
    return buf.getvalue()


def load_best_weights(storage: Any, layout: RunLayout, best_epoch: int, best_map: float,
                      tmp_dir: Path) -> dict[str, torch.Tensor] | None:
    """Best-epoch weights of a resumed run: ``best.pt``, else the final model of an earlier
    finish when this very checkpoint history produced it (not an older run's); else None."""
    payload = load(storage, checkpoint_path(layout.prefix, BEST), tmp_dir)
    if payload is not None and payload.get("epoch") == best_epoch:
        return payload["model"]
    if storage.exists(layout.final_meta) and storage.exists(layout.final_model):
        meta = read_json(storage, layout.final_meta)
        # model.json's metrics are reported figures, rounded like every reported metric
        if meta.get("best_epoch") == best_epoch and (meta.get("metrics") or {}).get("mAP") == significant(best_map):
            return load_tensors(io.BytesIO(storage.read_bytes(layout.final_model)), storage.uri(layout.final_model))
    return None
