"""laxai_trainer.reid.engine.checkpoint: contents, atomic writes through storage, RNG capture."""

import random

import numpy as np
import pytest
import torch

from laxai_trainer.reid.engine import checkpoint as ckpt
from laxai_trainer.storage import open_storage


@pytest.fixture
def storage(tmp_path):
    return open_storage(tmp_path / "root")


def small_parts():
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="max")
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    sched.step(0.5)
    return model, opt, sched


def test_payload_holds_everything_needed_to_resume(storage, tmp_path):
    model, opt, sched = small_parts()
    state = ckpt.TrainState(epoch=3, margin=0.36, best_map=0.7, best_epoch=2, epochs_without_improvement=1,
                            history=[{"epoch": 1}], wandb_id="w1")
    payload = ckpt.build_payload(model, opt, sched, state, {"arch": 1}, ckpt.capture_rng())
    path = ckpt.checkpoint_path("t/runs/r")
    ckpt.save(storage, path, payload, tmp_path / "tmp")
    assert path == "t/runs/r/checkpoints/last.pt" and storage.exists(path)
    assert list((tmp_path / "tmp").iterdir()) == []  # temp file removed
    loaded = ckpt.load(storage, path, tmp_path / "tmp")
    assert set(loaded) == {"format", "architecture", "model", "optimizer", "scheduler", "state", "rng"}
    assert set(loaded["rng"]) >= {"python", "numpy", "torch"}
    model2, opt2, sched2 = torch.nn.Linear(3, 2), None, None
    opt2 = torch.optim.Adam(model2.parameters(), lr=1.0)
    sched2 = torch.optim.lr_scheduler.ReduceLROnPlateau(opt2, mode="max")
    restored = ckpt.restore(loaded, model2, opt2, sched2)
    assert restored == state
    assert torch.equal(model2.weight, model.weight)
    assert opt2.state_dict()["state"][0]["exp_avg"].equal(opt.state_dict()["state"][0]["exp_avg"])
    assert opt2.param_groups[0]["lr"] == 1e-3 and sched2.best == sched.best


def test_missing_checkpoint_loads_as_none(storage, tmp_path):
    assert ckpt.load(storage, "t/runs/r/checkpoints/last.pt", tmp_path) is None


def test_rewriting_replaces_the_checkpoint_whole(storage, tmp_path):
    path = ckpt.checkpoint_path("t/runs/r")
    for epoch in (1, 2):
        ckpt.save(storage, path, {"format": 1, "state": {"epoch": epoch}}, tmp_path)
    assert ckpt.load(storage, path, tmp_path)["state"]["epoch"] == 2
    folder = storage.local_path("t/runs/r/checkpoints")
    assert [p.name for p in folder.iterdir()] == ["last.pt"]


def test_rng_capture_and_restore_covers_python_numpy_torch():
    state = ckpt.capture_rng()
    first = (random.random(), np.random.rand(), torch.rand(1).item())
    ckpt.restore_rng(state)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == first


def test_unknown_format_is_refused():
    model, opt, sched = small_parts()
    with pytest.raises(ValueError, match="format"):
        ckpt.restore({"format": 99}, model, opt, sched)


def test_reset_partial_clears_the_mid_epoch_sums():
    state = ckpt.TrainState(step=3, partial_loss_sum=1.0, partial_batches=3, partial_images=24, partial_seconds=2.0)
    state.reset_partial()
    assert (state.step, state.partial_batches, state.partial_images) == (0, 0, 0)


def test_best_weights_come_from_best_pt_else_only_this_historys_final_model(storage, tmp_path):
    from laxai_trainer.run_layout import RunLayout, write_json
    from laxai_trainer.status import significant

    layout = RunLayout("t1", "r")
    weights = {"w": torch.arange(3.0)}
    best = ckpt.best_checkpoint({"epoch": 4}, weights, {"arch": 1})
    ckpt.save(storage, ckpt.checkpoint_path(layout.prefix, ckpt.BEST), best, tmp_path)
    assert torch.equal(ckpt.load_best_weights(storage, layout, 4, 0.5, tmp_path)["w"], weights["w"])
    assert ckpt.load_best_weights(storage, layout, 5, 0.5, tmp_path) is None  # best.pt is another epoch's
    storage.write_bytes(layout.final_model, ckpt.state_dict_bytes({"w": torch.ones(2)}))
    write_json(storage, layout.final_meta, {"best_epoch": 5, "metrics": {"mAP": significant(0.123456789)}})
    assert torch.equal(ckpt.load_best_weights(storage, layout, 5, 0.123456789, tmp_path)["w"], torch.ones(2))
    assert ckpt.load_best_weights(storage, layout, 5, 0.2, tmp_path) is None  # an older run's final model


def test_reopen_clears_the_early_stop():
    state = ckpt.TrainState(epoch=3, stopped_early=True, epochs_without_improvement=2)
    state.reopen()
    assert (state.stopped_early, state.epochs_without_improvement, state.epoch) == (False, 0, 3)
