"""laxai_trainer.reid.engine.schedules: the margin schedule and the LR warm-up."""

import pytest

from laxai_trainer.reid.engine.schedules import margin_schedule, warmup_factor


def test_margin_schedule_applies_decay_beyond_threshold():
    # epoch 0: the base margin
    assert margin_schedule(0.4, 0.9, 0, current=0.4, threshold=0.01) == pytest.approx(0.4)
    # epoch 1: 0.36 differs from 0.4 by 0.04 > 0.01 -> applied
    assert margin_schedule(0.4, 0.9, 1, current=0.4, threshold=0.01) == pytest.approx(0.36)
    # epoch 3: 0.2916 is margin*rate^epoch, not a compound of the current value
    assert margin_schedule(0.4, 0.9, 3, current=0.36, threshold=0.01) == pytest.approx(0.4 * 0.9**3)


def test_margin_schedule_keeps_current_within_threshold():
    # 0.4*0.99 = 0.396: a change of 0.004 <= 0.01 is not applied
    assert margin_schedule(0.4, 0.99, 1, current=0.4, threshold=0.01) == 0.4
    # after 2 epochs 0.392 (change 0.008) still not; after 3, 0.388 (change 0.012) is
    assert margin_schedule(0.4, 0.99, 2, current=0.4, threshold=0.01) == 0.4
    assert margin_schedule(0.4, 0.99, 3, current=0.4, threshold=0.01) == pytest.approx(0.4 * 0.99**3)


def test_margin_schedule_rate_one_never_changes():
    assert all(margin_schedule(0.4, 1.0, e, 0.4, 0.0) == 0.4 for e in range(10))


def test_margin_schedule_rejects_negative_epoch():
    with pytest.raises(ValueError):
        margin_schedule(0.4, 0.9, -1, 0.4, 0.01)


def test_warmup_factor_is_linear_per_step_then_one():
    assert warmup_factor(1, 1, 4, 2) == pytest.approx(1 / 8)
    assert warmup_factor(2, 4, 4, 2) == 1.0
    assert warmup_factor(3, 1, 4, 2) == 1.0
    assert warmup_factor(1, 7, None, 2) == 0.5  # unknown epoch length: per epoch
