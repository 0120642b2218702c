"""laxai_trainer.reid.metrics.report: the best epoch's metrics, metrics.json."""

from laxai_trainer.reid.engine.checkpoint import TrainState
from laxai_trainer.reid.metrics.report import best_metrics, metrics_document, summary


def record(epoch: int, m: float, loss: float, **extra) -> dict:
    return {"epoch": epoch, "rank1": m, "rank5": m, "rank10": m, "mAP": m, "train_loss": loss, "val_loss": loss,
            **extra}


def test_best_metrics_are_the_best_epochs_with_the_last_train_loss():
    state = TrainState(epoch=3, best_epoch=2, history=[record(1, 0.2, 0.9), record(2, 0.5, 0.7, same_kit_mAP=0.4),
                                                       record(3, 0.4, 0.6)])
    metrics = best_metrics(state, "file:///r", "file:///r/final/model.pt")
    assert (metrics.best_epoch, metrics.mAP, metrics.val_loss, metrics.train_loss) == (2, 0.5, 0.7, 0.6)
    assert (metrics.same_kit_mAP, metrics.same_kit_rank1, metrics.epochs_completed) == (0.4, None, 3)
    assert metrics.model_uri == "file:///r/final/model.pt" and metrics.run_uri == "file:///r"


def test_no_epoch_yet_is_no_metrics_and_an_unknown_best_epoch_is_the_last():
    assert best_metrics(TrainState(), "u") is None
    assert best_metrics(TrainState(epoch=1, history=[record(1, 0.3, 1.0)]), "u").best_epoch == 1


def test_metrics_document_and_summary_leave_the_uris_out():
    state = TrainState(epoch=1, best_epoch=1, stopped_early=True, history=[record(1, 0.3, 1.0)])
    assert metrics_document(state, None) == {"epochs": state.history, "best_epoch": 1, "stopped_early": True,
                                             "final": None}
    final = best_metrics(state, "u", "m")
    doc = metrics_document(state, final)["final"]
    assert doc["mAP"] == 0.3 and "run_uri" not in doc and "model_uri" not in doc
    assert summary(final) == {k: v for k, v in final.model_dump().items() if k not in ("run_uri", "model_uri")}
    assert summary(None) == {}
