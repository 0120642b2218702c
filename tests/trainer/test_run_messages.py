"""laxai_trainer.run_messages: the status messages of a run."""

from laxai_trainer import run_messages as say
from laxai_trainer.status import Metrics


class Loss:
    """A loss whose read is visible (a device tensor's read waits for the device)."""

    reads = 0

    def __float__(self) -> float:
        Loss.reads += 1
        return 0.12345


def test_step_messages_read_the_loss_only_when_they_show_it():
    Loss.reads = 0
    assert say.step_done(2, 5, 3, 10, Loss(), None) == "Epoch 2/5, step 3/10: batch loss 0.1235"
    assert say.step_done(2, 5, 3, None, Loss(), None) == "Epoch 2/5, step 3: batch loss 0.1235"
    assert say.step_done(2, 5, 10, 10, Loss(), "too many workers") == (
        "Epoch 2/5: validating\nWarning: too many workers")
    assert Loss.reads == 2


def test_epoch_message_says_best_and_early_stopping():
    record = {"epoch": 3, "train_loss": 0.5, "mAP": 0.61234, "rank1": 0.7}
    assert say.epoch_done(record, 9, True, True) == (
        "Epoch 3/9: train loss 0.5000, val mAP 0.6123, rank-1 0.700 (best), early stopping")
    assert say.epoch_done(record, 9, False, False).endswith("rank-1 0.700")


def test_stop_messages_tell_a_cancel_from_a_preemption():
    assert say.stopped("epoch 2, step 4", "u", True).startswith("Cancelled on request: checkpoint at epoch 2, step 4")
    assert "a retry resumes from it" in say.stopped("e", "u", False)
    assert say.stopped_before_training(True).startswith("Cancelled on request before training started")
    assert say.stopped_before_training(False).startswith("Stopped (preemption or cancel) before training")


def test_finished_message_names_the_best_epoch_and_the_model():
    metrics = Metrics(rank1=1, rank5=1, rank10=1, mAP=0.5, train_loss=0.1, val_loss=0.2, best_epoch=4,
                      epochs_completed=6, run_uri="u")
    assert say.finished(True, 6, metrics, "m") == "Training stopped early after 6 epochs: best val mAP 0.5000 (epoch 4); model at m"
    assert say.finished(False, 6, None, "m") == "Training completed after 6 epochs: model at m"
    assert say.training_started("cpu", "random init", None) == "Training on cpu from random init"
