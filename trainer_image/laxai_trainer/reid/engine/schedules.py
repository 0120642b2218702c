"""Per-epoch and per-step schedules of the loop: LR warm-up and the triplet margin."""

from __future__ import annotations


def warmup_factor(epoch: int, step: int, steps: int | None, warmup_epochs: int) -> float:
    """Learning-rate multiplier of training step ``step`` (1-based) of ``epoch`` (1-based).

    Linear warm-up from 1/(warmup steps) to 1 over the first ``warmup_epochs`` epochs
    (Goyal et al., 2017), per step when the epoch length is known, else per epoch; 1 after.
    """
    if epoch > warmup_epochs:
        return 1.0
    if not steps:
        return epoch / warmup_epochs
    return ((epoch - 1) * steps + min(step, steps)) / (warmup_epochs * steps)


def margin_schedule(margin: float, rate: float, epoch: int, current: float, threshold: float) -> float:
    """The margin to train epoch ``epoch`` (0-based) with.

    The scheduled value is ``margin · rate^epoch``; it replaces ``current`` only when
    it differs by more than ``threshold``, so the margin moves in visible steps
    rather than a little every epoch.
    """
    if epoch < 0:
        raise ValueError(f"epoch must be >= 0, got {epoch}")
    scheduled = margin * rate**epoch
    return scheduled if abs(scheduled - current) > threshold else current
