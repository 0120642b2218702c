"""laxai_trainer.reid.engine.trainer: the recipe options (identity loss, label smoothing, BN-neck,
warm-up, triplet variant) each change what the loop does."""

import pytest
import torch

from laxai_trainer.config import TrainingConfig
from laxai_trainer.reid.engine.trainer import Trainer, seed_everything
from laxai_trainer.reid.models.model import build_model
from tests.trainer.loop_data import PKLoader, TripletLoader, ValLoader
from tests.trainer.reid.engine.test_trainer import TRAIN, VAL, NoHooks, result, roundtrip

PLAYERS = int(TRAIN[1].max()) + 1


def config(model_kwargs=None, **training_kwargs):
    base = {"batch_size": 8, "images_per_player": 2, "num_workers": 0, "num_epochs": 2}
    base.update(training_kwargs)
    return TrainingConfig(tenant_id="t", training_kwargs=base,
                          model_kwargs={"embedding_dim": 8, "dropout_rate": 0.0, **(model_kwargs or {})})


def trainer_for(cfg, seed=0):
    seed_everything(seed)
    tk = cfg.training_kwargs
    if tk.triplet_mining == "random":
        train = TripletLoader(*TRAIN, batch_size=4, steps=2)
    else:
        train = PKLoader(*TRAIN, batch_size=tk.batch_size, k=tk.images_per_player)
    return Trainer(build_model(cfg.model_kwargs), cfg, torch.device("cpu"), train, ValLoader(*VAL),
                   num_classes=PLAYERS)


def batch_loss(trainer, margin=0.4):
    torch.manual_seed(1)
    batch = next(iter(trainer.train_loader))
    with torch.no_grad():
        return trainer._loss(batch, margin)[0].item()


@pytest.mark.parametrize("mining", ["batch_hard", "random"])
def test_id_loss_weight_adds_a_weighted_identity_loss(mining):
    losses = {w: batch_loss(trainer_for(config(triplet_mining=mining, id_loss_weight=w))) for w in (0.0, 1.0, 2.0)}
    # cross-entropy over 8 players starts near ln 8 ≈ 2.08: the weight scales that term
    assert losses[1.0] - losses[0.0] > 1.0
    assert losses[2.0] - losses[0.0] == pytest.approx(2 * (losses[1.0] - losses[0.0]), rel=1e-4)


def test_id_loss_trains_a_classifier_over_the_training_players():
    trainer = trainer_for(config(id_loss_weight=1.0))
    assert trainer.id_head.out_features == PLAYERS
    assert any(p is trainer.id_head.weight for g in trainer.optimizer.param_groups for p in g["params"])
    before = trainer.id_head.weight.detach().clone()
    trainer.fit(NoHooks())
    assert not torch.equal(before, trainer.id_head.weight.detach())
    with pytest.raises(ValueError, match="num_classes"):
        Trainer(build_model(trainer.config.model_kwargs), trainer.config, torch.device("cpu"), [], [])


def test_id_head_is_in_the_checkpoint_and_restored():
    cfg = config(id_loss_weight=1.0, num_epochs=1)
    trainer = trainer_for(cfg)
    trainer.fit(NoHooks())
    payload = roundtrip(trainer.checkpoint_payload())
    fresh = trainer_for(cfg, seed=5)
    assert not torch.equal(fresh.id_head.weight, trainer.id_head.weight)
    fresh.load_checkpoint(payload)
    assert torch.equal(fresh.id_head.weight, trainer.id_head.weight)


def test_label_smoothing_changes_the_identity_loss():
    plain, smooth = (batch_loss(trainer_for(config(id_loss_weight=1.0, label_smoothing=s))) for s in (0.0, 0.3))
    assert plain != pytest.approx(smooth, abs=1e-4)
    # without the identity loss the smoothing has nothing to act on
    off = {"id_loss_weight": 0.0, "model_kwargs": {"bnneck": False}}
    assert batch_loss(trainer_for(config(label_smoothing=0.0, **off))) == batch_loss(
        trainer_for(config(label_smoothing=0.3, **off)))


def test_triplet_loss_soft_margin_is_softplus_and_keeps_the_margin():
    hard = batch_loss(trainer_for(config(triplet_loss="hard_margin")), margin=0.0)
    soft = batch_loss(trainer_for(config(triplet_loss="soft_margin")), margin=0.0)
    soft_margin = batch_loss(trainer_for(config(triplet_loss="soft_margin")), margin=1.0)
    assert soft > hard  # softplus(x) > relu(x)
    assert soft_margin > soft


def test_bnneck_puts_the_triplet_loss_before_and_the_output_after_the_neck():
    trainer = trainer_for(config(model_kwargs={"bnneck": True}))
    model = trainer.model
    assert isinstance(model.neck, torch.nn.BatchNorm1d)
    torch.manual_seed(1)
    images = next(iter(trainer.train_loader))[0]
    model.train()
    triplet_emb, _ = model.forward_train(images)
    model.neck.running_mean.fill_(0.3)
    model.eval()
    with torch.no_grad():
        pre = torch.nn.functional.normalize(model.embedding(model.features(images)), dim=1)
        assert torch.allclose(model(images), torch.nn.functional.normalize(model.neck(model.embedding(
            model.features(images))), dim=1))
        assert not torch.allclose(model(images), pre, atol=1e-3)  # inference: after the neck
    model.train()
    assert triplet_emb.shape == (len(images), 8)
    # training: the triplet side does not see the neck (its running stats changed nothing)
    with torch.no_grad():
        again, _ = model.forward_train(images)
    assert torch.allclose(again, triplet_emb, atol=1e-6)


def test_warmup_ramps_the_learning_rate_per_step_then_holds_it():
    cfg = config(learning_rate=1e-2, warmup_epochs=2, num_epochs=3, lr_scheduler_patience=0)
    trainer = trainer_for(cfg)
    steps = len(trainer.train_loader)
    seen = []
    original = trainer._loss

    def spy(batch, margin):
        seen.append(trainer.lr)
        return original(batch, margin)

    trainer._loss = spy
    trainer.validate = lambda: result(0.5)  # flat mAP: ReduceLROnPlateau would cut at once
    trainer.fit(NoHooks())
    assert seen[0] == pytest.approx(1e-2 / (2 * steps))
    assert seen[steps - 1] == pytest.approx(1e-2 / 2)
    assert seen[2 * steps - 1] == pytest.approx(1e-2)
    assert seen[: 2 * steps] == sorted(seen[: 2 * steps])
    # The plateau counter starts after the warm-up: had it counted epoch 2 (flat mAP,
    # patience 0), epoch 3 would train at half the rate; epoch 3 only sets its baseline.
    assert seen[2 * steps] == pytest.approx(1e-2)
    assert trainer.lr == pytest.approx(1e-2)


def test_without_warmup_the_first_step_uses_the_full_learning_rate():
    trainer = trainer_for(config(learning_rate=1e-2, num_epochs=1, warmup_epochs=0))
    seen = []
    original = trainer._loss
    trainer._loss = lambda batch, margin: (seen.append(trainer.lr), original(batch, margin))[1]
    trainer.fit(NoHooks())
    assert seen[0] == 1e-2


def test_resume_onto_another_player_count_is_a_config_error():
    from laxai_trainer.errors import ConfigError

    cfg = config(id_loss_weight=1.0, num_epochs=1)
    payload = roundtrip(trainer_for(cfg).checkpoint_payload())
    other = Trainer(build_model(cfg.model_kwargs), cfg, torch.device("cpu"), [], [], num_classes=PLAYERS + 1)
    with pytest.raises(ConfigError, match="resume_from_checkpoint"):
        other.load_checkpoint(payload)
