"""Where a run's outputs live in storage: ``{tenant}/runs/{run}/``.

::

    config.json                  the resolved TrainingConfig
    run.json                     run metadata: init source, device, data, timings, outcome
    metrics.json                 per-epoch metrics and the final (best-epoch) ones
    checkpoints/last.pt          full training state, every epoch (resume)
    checkpoints/best.pt          best-epoch weights (kept with save_intermediate)
    intermediate/epoch_NNNN.json per-epoch metrics (save_intermediate)
    final/model.pt               state_dict of the best epoch
    final/model.torchscript.pt   the same model as TorchScript (torch.jit.load, no Python code needed)
    final/model.json             architecture, input size, normalisation, metrics, completed_at
    logs/trainer.log             the trainer's log (uploaded every epoch and at exit)
    wandb/                       offline wandb run files (when wandb ran offline)
    archive/<started_at>/        an earlier run's outputs, moved here when a new job started
                                 the name over (resume_from_checkpoint: false)

Warm starts look for ``{tenant}/runs/*/final/model.json`` and take the newest
compatible one (``completed_at``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

ARCHIVE_DIR = "archive"


def runs_prefix(tenant_id: str) -> str:
    return f"{tenant_id}/runs"


@dataclass(frozen=True)
class RunLayout:
    tenant_id: str
    run_name: str

    @property
    def prefix(self) -> str:
        return f"{runs_prefix(self.tenant_id)}/{self.run_name}"

    def path(self, *parts: str) -> str:
        return "/".join((self.prefix, *parts))

    @property
    def config(self) -> str:
        return self.path("config.json")

    @property
    def run_meta(self) -> str:
        return self.path("run.json")

    @property
    def metrics(self) -> str:
        return self.path("metrics.json")

    @property
    def final_model(self) -> str:
        return self.path("final", "model.pt")

    @property
    def final_torchscript(self) -> str:
        return self.path("final", "model.torchscript.pt")

    @property
    def final_meta(self) -> str:
        return self.path("final", "model.json")

    @property
    def log(self) -> str:
        return self.path("logs", "trainer.log")

    def intermediate(self, epoch: int) -> str:
        return self.path("intermediate", f"epoch_{epoch:04d}.json")

    def wandb(self, relative: str) -> str:
        return self.path("wandb", relative)

    def archive(self, stamp: str) -> str:
        return self.path(ARCHIVE_DIR, stamp)


def final_meta_path(tenant_id: str, run_name: str) -> str:
    return RunLayout(tenant_id, run_name).final_meta


def write_json(storage: Any, path: str, obj: Any) -> None:
    storage.write_bytes(path, (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode())


def read_json(storage: Any, path: str) -> Any:
    return json.loads(storage.read_bytes(path))


def read_meta(storage: Any, layout: RunLayout) -> dict[str, Any] | None:
    """The run's run.json, or None when the run folder has none (or an unreadable one)."""
    if not storage.exists(layout.run_meta):
        return None
    try:
        meta = read_json(storage, layout.run_meta)
    except ValueError:
        return None
    return meta if isinstance(meta, dict) else None


def nothing_left(epochs_done: int, stopped_early: bool, previous_num_epochs: int | None, num_epochs: int) -> bool:
    """Whether continuing a run that trained ``epochs_done`` epochs would train none.

    An early stop ends a run's request: it is continued only when asked for more epochs
    than that run was (its early-stopping state is then cleared).
    """
    if epochs_done >= num_epochs:
        return True
    return stopped_early and num_epochs <= (previous_num_epochs or epochs_done)


def nothing_left_message(run_name: str, epochs_done: int, num_epochs: int) -> str:
    return (
        f"run '{run_name}' already finished ({epochs_done} epochs trained) and resume_from_checkpoint "
        f"would continue it with num_epochs {num_epochs}: nothing left to train. Raise "
        "training_kwargs.num_epochs to train it further, choose another custom_name, or set "
        "resume_from_checkpoint: false to start over (its outputs are archived under "
        f"runs/{run_name}/{ARCHIVE_DIR}/)"
    )


def meta_nothing_left(meta: dict[str, Any] | None, num_epochs: int) -> bool:
    """nothing_left() from a run.json (which the trainer updates every epoch)."""
    if not meta:
        return False
    return nothing_left(int(meta.get("epochs_completed") or 0), bool(meta.get("stopped_early")),
                        meta.get("num_epochs"), num_epochs)
