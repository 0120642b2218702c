"""laxai_trainer.reid.engine.trainer: the loop's hyperparameters, determinism and exact resume.

Runs the real Trainer on small in-memory tensors (tests/trainer/loop_data.py); the
full pipeline on 120×80 crops from storage is in test_job.py and test_cli.py.
"""

import io
import threading

import pytest
import torch

from laxai_trainer.config import TrainingConfig
from laxai_trainer.reid.engine.trainer import Trainer, seed_everything
from laxai_trainer.reid.metrics.evaluate import EvalResult
from laxai_trainer.reid.models.model import build_model
from tests.trainer.loop_data import PKLoader, TripletLoader, ValLoader, make_split

PLAYERS = 8
TRAIN = make_split(players=PLAYERS, per_player=4, seed=1)
VAL = make_split(players=4, per_player=3, seed=2)


def config(**training_kwargs):
    # The seed's learning-rate tests: no warm-up (warmup_epochs is tested in test_trainer_recipe.py).
    base = {"batch_size": 8, "images_per_player": 2, "num_workers": 0, "num_epochs": 2, "warmup_epochs": 0}
    base.update(training_kwargs)
    return TrainingConfig(
        tenant_id="t", training_kwargs=base, model_kwargs={"embedding_dim": 8, "dropout_rate": 0.1}
    )


class NoHooks:
    def __init__(self, stop_after_step=None, stop=None):
        self.records, self.stop_after_step, self.stop, self.preempted_at = [], stop_after_step, stop, None

    def epoch_end(self, trainer, record, improved):
        self.records.append(record)

    def step_end(self, trainer, epoch, step, steps, loss):
        if self.stop_after_step == (epoch, step):
            self.stop.set()

    def preempted(self, trainer):
        self.preempted_at = (trainer.state.epoch, trainer.state.step)


def make_trainer(cfg, stop=None, mining=None):
    seed_everything(cfg.training_kwargs.seed)
    model = build_model(cfg.model_kwargs)
    if cfg.training_kwargs.triplet_mining == "random":
        train = TripletLoader(*TRAIN, batch_size=4, steps=2)
    else:
        train = PKLoader(*TRAIN, batch_size=cfg.training_kwargs.batch_size, k=cfg.training_kwargs.images_per_player)
    return Trainer(model, cfg, torch.device("cpu"), train, ValLoader(*VAL), stop, num_classes=PLAYERS)


def result(mAP, loss=0.3):
    return EvalResult(rank1=mAP, rank5=mAP, rank10=mAP, mAP=mAP, val_loss=loss, queries=12)


def roundtrip(payload):
    buf = io.BytesIO()
    torch.save(payload, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)  # what the trainer saves loads safely


def weights(trainer):
    return {k: v.clone() for k, v in trainer.model.state_dict().items()}


def assert_same_weights(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


@pytest.fixture(scope="module")
def straight():
    """Three epochs without interruption: the reference for the resume tests."""
    trainer = make_trainer(config(num_epochs=3))
    hooks = NoHooks()
    assert trainer.fit(hooks) == "completed"
    return trainer, hooks


def test_each_epoch_records_the_documented_metrics(straight):
    trainer, hooks = straight
    assert [r["epoch"] for r in hooks.records] == [1, 2, 3]
    keys = {"train_loss", "val_loss", "rank1", "rank5", "rank10", "mAP", "lr", "margin", "images_per_second"}
    assert keys <= hooks.records[0].keys()
    assert all(r["images_per_second"] > 0 and r["train_images"] == 16 for r in hooks.records)
    assert trainer.state.history == hooks.records


def test_adam_gets_learning_rate_and_weight_decay():
    trainer = make_trainer(config(learning_rate=3e-4, weight_decay=0.02))
    assert isinstance(trainer.optimizer, torch.optim.Adam)
    group = trainer.optimizer.param_groups[0]
    assert group["lr"] == 3e-4 and group["weight_decay"] == 0.02


@pytest.mark.parametrize("lr", [1e-3, 1e-2])
def test_learning_rate_sets_the_step_size(lr):
    # Adam's first step moves each parameter by about lr (m / sqrt(v) = ±1).
    trainer = make_trainer(config(learning_rate=lr, weight_decay=0.0, num_epochs=1))
    before = trainer.model.embedding.weight.detach().clone()
    batch = next(iter(trainer.train_loader))
    loss, _ = trainer._loss(batch, 0.4)
    loss.backward()
    trainer.optimizer.step()
    moved = (trainer.model.embedding.weight.detach() - before).abs().max().item()
    assert moved == pytest.approx(lr, rel=0.05)


def test_weight_decay_pulls_weights_towards_zero():
    norms = {}
    for wd in (0.0, 1.0):
        trainer = make_trainer(config(learning_rate=1e-3, weight_decay=wd))
        trainer.model.embedding.weight.data.fill_(0.5)  # large, positive: decay dominates the gradient
        batch = next(iter(trainer.train_loader))
        loss, _ = trainer._loss(batch, 0.4)
        loss.backward()
        trainer.optimizer.step()
        norms[wd] = trainer.model.embedding.weight.detach().mean().item()
    assert norms[1.0] < norms[0.0]


def test_margin_is_the_loss_margin():
    trainer = make_trainer(config())
    batch = next(iter(trainer.train_loader))
    with torch.no_grad():
        small, _ = trainer._loss(batch, 0.05)
        large, _ = trainer._loss(batch, 2.0)
    # with margin 2 every triplet is active: the loss exceeds the margin difference
    assert large.item() > small.item() + 1.0


def test_margin_decays_per_schedule_across_epochs():
    trainer = make_trainer(config(num_epochs=3, margin=0.4, margin_decay_rate=0.5, margin_change_threshold=0.25))
    for epoch in (1, 2, 3):
        assert trainer.train_epoch(epoch, NoHooks())
        trainer.end_epoch(epoch, result(0.5 + epoch / 10))
    # 0.2 is within 0.25 of 0.4 (kept); 0.1 is 0.3 away (applied)
    assert [r["margin"] for r in trainer.state.history] == pytest.approx([0.4, 0.4, 0.1])


def test_lr_scheduler_reduces_on_plateau_down_to_min_lr():
    cfg = config(learning_rate=1e-3, lr_scheduler_patience=1, lr_scheduler_factor=0.5, lr_scheduler_min_lr=3e-4)
    trainer = make_trainer(cfg)
    lrs = []
    for epoch, mAP in enumerate([0.5, 0.4, 0.4, 0.4, 0.4, 0.4, 0.4], start=1):
        trainer.end_epoch(epoch, result(mAP))
        lrs.append(trainer.lr)
    # patience 1: the 2nd epoch without gain reduces; then the floor
    assert lrs == pytest.approx([1e-3, 1e-3, 5e-4, 5e-4, 3e-4, 3e-4, 3e-4])


def test_lr_scheduler_patience_delays_the_reduction():
    trainer = make_trainer(config(learning_rate=1e-3, lr_scheduler_patience=3, lr_scheduler_factor=0.1))
    lrs = []
    for epoch, mAP in enumerate([0.5, 0.4, 0.4, 0.4, 0.4], start=1):
        trainer.end_epoch(epoch, result(mAP))
        lrs.append(trainer.lr)
    assert lrs == pytest.approx([1e-3, 1e-3, 1e-3, 1e-3, 1e-4])


def test_early_stopping_after_patience_epochs_without_map_gain():
    trainer = make_trainer(config(early_stopping_patience=2))
    for epoch, mAP in enumerate([0.5, 0.6, 0.55], start=1):
        trainer.end_epoch(epoch, result(mAP))
        assert not trainer.state.stopped_early
    trainer.end_epoch(4, result(0.58))
    assert trainer.state.stopped_early and trainer.state.best_epoch == 2


def test_early_stopping_ends_fit(monkeypatch):
    trainer = make_trainer(config(num_epochs=10, early_stopping_patience=1))
    maps = iter([0.5, 0.4, 0.9])
    monkeypatch.setattr(trainer, "validate", lambda: result(next(maps)))
    hooks = NoHooks()
    assert trainer.fit(hooks) == "early_stopped"
    assert len(hooks.records) == 2  # epoch 2 brought no gain: stop, epoch 3 never runs


def test_best_val_loss_and_best_weights_follow_the_best_epoch():
    trainer = make_trainer(config())
    trainer.end_epoch(1, result(0.5, loss=0.4))
    best = {k: v.clone() for k, v in trainer.best_weights.items()}
    trainer.model.embedding.weight.data.add_(1.0)
    trainer.end_epoch(2, result(0.3, loss=0.2))
    assert trainer.state.best_val_loss == 0.2 and trainer.state.best_epoch == 1
    assert torch.equal(trainer.best_model().embedding.weight, best["embedding.weight"])


def test_random_mining_embeds_triplets():
    trainer = make_trainer(config(triplet_mining="random", num_epochs=1))
    hooks = NoHooks()
    trainer.fit(hooks)
    # 2 steps of 4 triplets, 3 images each
    assert hooks.records[0]["train_images"] == 24
    assert trainer.state.history[0]["val_loss"] >= 0


def test_seed_makes_runs_repeatable_and_distinct(straight):
    reference, _ = straight
    again = make_trainer(config(num_epochs=1))
    again.fit(NoHooks())
    other = make_trainer(config(num_epochs=1, seed=7))
    other.fit(NoHooks())
    assert again.state.history[0] == {**reference.state.history[0], **_timing(again.state.history[0])}
    assert other.state.history[0]["train_loss"] != reference.state.history[0]["train_loss"]


def _timing(record):
    return {k: record[k] for k in ("images_per_second", "train_seconds", "epoch_seconds")}


def test_resume_at_epoch_boundary_is_identical(straight):
    reference, _ = straight
    first = make_trainer(config(num_epochs=1))
    first.fit(NoHooks())
    payload = roundtrip(first.checkpoint_payload())
    torch.manual_seed(999)  # whatever ran in between must not matter
    resumed = make_trainer(config(num_epochs=3, seed=5))  # different init: the checkpoint overrides it
    resumed.load_checkpoint(payload)
    resumed.fit(NoHooks())
    assert_same_weights(weights(resumed), weights(reference))
    for ours, theirs in zip(resumed.state.history, reference.state.history, strict=True):
        assert ours == {**theirs, **_timing(ours)}


def test_stop_mid_epoch_checkpoints_and_resumes_identically(straight):
    reference, _ = straight
    stop = threading.Event()
    first = make_trainer(config(num_epochs=3), stop=stop)
    hooks = NoHooks(stop_after_step=(2, 1), stop=stop)
    assert first.fit(hooks) == "preempted"
    assert hooks.preempted_at == (1, 1)  # epoch 1 done, one step of epoch 2
    payload = roundtrip(first.checkpoint_payload())
    assert payload["state"]["step"] == 1 and "epoch_start_rng" in payload
    torch.manual_seed(123)
    resumed = make_trainer(config(num_epochs=3))
    resumed.load_checkpoint(payload)
    assert resumed.fit(NoHooks()) == "completed"
    assert_same_weights(weights(resumed), weights(reference))
    assert [r["train_loss"] for r in resumed.state.history] == [r["train_loss"] for r in reference.state.history]


def test_resume_refuses_a_different_architecture():
    from laxai_trainer.errors import ConfigError

    trainer = make_trainer(config())
    payload = trainer.checkpoint_payload()
    other = TrainingConfig(tenant_id="t", training_kwargs={"batch_size": 8, "images_per_player": 2},
                           model_kwargs={"embedding_dim": 16})
    with pytest.raises(ConfigError, match="embedding_dim"):
        Trainer(build_model(other.model_kwargs), other, torch.device("cpu"), [], [],
                num_classes=PLAYERS).load_checkpoint(payload)
