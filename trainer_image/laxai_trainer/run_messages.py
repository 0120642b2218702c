"""The status messages of a run (``progress.message``): pure functions of what happened.

Torch-free: a step's loss is anything ``float()`` reads (a 0-d device tensor is read, and
waited for, only when a message shows it).
"""

from __future__ import annotations

from typing import Any

from laxai_trainer.status import Metrics


def _warned(message: str, warning: str | None) -> str:
    """The workers warning on every report that has it: the reason a run is slow."""
    return message + (f"\nWarning: {warning}" if warning else "")


def training_started(device: str, source: str, warning: str | None) -> str:
    return _warned(f"Training on {device} from {source}", warning)


def step_done(epoch: int, total: int, step: int, steps: int | None, loss: Any, warning: str | None) -> str:
    """A mid-epoch report; the epoch's last step says that validation follows."""
    if steps is not None and step >= steps:
        message = f"Epoch {epoch}/{total}: validating"
    else:
        of = f"/{steps}" if steps else ""
        message = f"Epoch {epoch}/{total}, step {step}{of}: batch loss {float(loss):.4f}"
    return _warned(message, warning)


def epoch_done(record: dict[str, Any], total: int, improved: bool, stopped_early: bool) -> str:
    return (
        f"Epoch {record['epoch']}/{total}: train loss {record['train_loss']:.4f}, "
        f"val mAP {record['mAP']:.4f}, rank-1 {record['rank1']:.3f}"
        + (" (best)" if improved else "")
        + (", early stopping" if stopped_early else "")
    )


def stopped(where: str, checkpoint_uri: str, cancel: bool) -> str:
    """A stop request honoured with a checkpoint at ``where`` (epoch and step)."""
    if cancel:
        return (f"Cancelled on request: checkpoint at {where} saved to {checkpoint_uri}; "
                "resubmitting with the same custom_name resumes from it")
    return (f"Stopped (preemption or cancel): checkpoint at {where} saved to {checkpoint_uri}; "
            "a retry resumes from it")


def stopped_before_training(cancel: bool) -> str:
    what = "Cancelled on request" if cancel else "Stopped (preemption or cancel)"
    return f"{what} before training started: no checkpoint; a rerun starts from the beginning"


def finished(early_stopped: bool, epochs: int, metrics: Metrics | None, model_uri: str) -> str:
    return (
        f"Training {'stopped early' if early_stopped else 'completed'} after {epochs} epochs: "
        + (f"best val mAP {metrics.mAP:.4f} (epoch {metrics.best_epoch}); " if metrics else "")
        + f"model at {model_uri}"
    )
