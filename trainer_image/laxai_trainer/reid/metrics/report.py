"""The reported metrics of a run, from the loop's per-epoch history.

The status and ``metrics.json`` report the best epoch's validation metrics (val mAP picks
it) with the last epoch's train loss; ``metrics.json`` also keeps every epoch.
"""

from __future__ import annotations

from typing import Any

from laxai_trainer.reid.engine.checkpoint import TrainState
from laxai_trainer.status import Metrics


def best_metrics(state: TrainState, run_uri: str, model_uri: str | None = None) -> Metrics | None:
    """The status Metrics: best epoch's validation metrics, last epoch's train loss."""
    if not state.history:
        return None
    best = next((r for r in state.history if r["epoch"] == state.best_epoch), state.history[-1])
    return Metrics(
        rank1=best["rank1"],
        rank5=best["rank5"],
        rank10=best["rank10"],
        mAP=best["mAP"],
        train_loss=state.history[-1]["train_loss"],
        val_loss=best["val_loss"],
        same_kit_rank1=best.get("same_kit_rank1"),
        same_kit_mAP=best.get("same_kit_mAP"),
        best_epoch=best["epoch"],
        epochs_completed=state.epoch,
        model_uri=model_uri,
        run_uri=run_uri,
    )


def metrics_document(state: TrainState, final: Metrics | None) -> dict[str, Any]:
    """metrics.json: every epoch, and the final (best-epoch) metrics once the run ended."""
    return {
        "epochs": state.history,
        "best_epoch": state.best_epoch or None,
        "stopped_early": state.stopped_early,
        "final": None if final is None else final.model_dump(mode="json", exclude={"run_uri", "model_uri"}),
    }


def summary(metrics: Metrics | None) -> dict[str, Any]:
    """The final metrics without the run's URIs (the wandb run summary)."""
    if metrics is None:
        return {}
    return {k: v for k, v in metrics.model_dump().items() if k not in ("model_uri", "run_uri")}
