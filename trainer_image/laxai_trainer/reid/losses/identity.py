"""Identity (classification) loss over the training players, beside the triplet loss."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def identity_loss(logits: torch.Tensor, labels: torch.Tensor, label_smoothing: float) -> torch.Tensor:
    """Cross-entropy over the training identities, with label smoothing (Szegedy et al., 2016)."""
    return F.cross_entropy(logits.float(), labels, label_smoothing=label_smoothing)
