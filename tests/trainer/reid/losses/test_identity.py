"""laxai_trainer.reid.losses.identity: cross-entropy with label smoothing."""

import pytest
import torch
import torch.nn.functional as F

from laxai_trainer.reid.losses.identity import identity_loss


def test_identity_loss_is_cross_entropy_with_label_smoothing():
    logits = torch.tensor([[4.0, 0.0, 0.0], [0.0, 3.0, 0.0]])
    labels = torch.tensor([0, 1])
    assert identity_loss(logits, labels, 0.0).item() == pytest.approx(F.cross_entropy(logits, labels).item())
    smooth = identity_loss(logits, labels, 0.2).item()
    assert smooth == pytest.approx(F.cross_entropy(logits, labels, label_smoothing=0.2).item())
    assert smooth > identity_loss(logits, labels, 0.0).item()  # confident right answers pay for smoothing
