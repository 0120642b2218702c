"""Triplet losses: batch-hard over P×K batches, plain over given triplets; hard or soft margin.

Embeddings are L2-normalised, distances Euclidean (as ``nn.TripletMarginLoss``
in the original LaxAI loop), so a margin is comparable across both modes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

# sqrt'(0) is infinite: keep distances of identical embeddings differentiable.
_EPS = 1e-12


def pairwise_distances(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Euclidean distance matrix between the rows of ``a`` and ``b``."""
    a, b = a.float(), b.float()
    sq = (a * a).sum(1, keepdim=True) - 2.0 * a @ b.T + (b * b).sum(1).unsqueeze(0)
    return sq.clamp_min(_EPS).sqrt()


def hardest_pairs(
    dist: torch.Tensor, labels_q: torch.Tensor, labels_g: torch.Tensor, self_mask: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per query row: hardest positive distance, hardest negative distance, and whether both exist.

    ``self_mask`` marks (query, gallery) pairs that are the same image (excluded).
    """
    same = labels_q.unsqueeze(1) == labels_g.unsqueeze(0)
    pos = same if self_mask is None else same & ~self_mask
    neg = ~same
    inf = torch.finfo(dist.dtype).max
    hardest_pos = torch.where(pos, dist, torch.zeros_like(dist)).amax(1)
    hardest_neg = torch.where(neg, dist, torch.full_like(dist, inf)).amin(1)
    valid = pos.any(1) & neg.any(1)
    return hardest_pos, hardest_neg, valid


def triplet_terms(d_pos: torch.Tensor, d_neg: torch.Tensor, margin: float, kind: str = "hard_margin") -> torch.Tensor:
    """Per-pair triplet loss of distance pairs.

    ``hard_margin``: relu(d_pos - d_neg + margin), the classic hinge. ``soft_margin``:
    softplus(d_pos - d_neg + margin) (Hermans et al., 2017, with the margin as an offset):
    no hinge, so triplets already satisfied keep pulling a little instead of giving zero
    gradient.
    """
    if kind == "hard_margin":
        return F.relu(d_pos - d_neg + margin)
    if kind == "soft_margin":
        return F.softplus(d_pos - d_neg + margin)
    raise ValueError(f"triplet_loss must be hard_margin or soft_margin, got {kind!r}")


def triplet_term(d_pos: torch.Tensor, d_neg: torch.Tensor, margin: float, kind: str = "hard_margin") -> torch.Tensor:
    """Mean triplet loss of distance pairs (see :func:`triplet_terms`)."""
    return triplet_terms(d_pos, d_neg, margin, kind).mean()


def batch_hard_triplet_loss(
    embeddings: torch.Tensor, labels: torch.Tensor, margin: float, kind: str = "hard_margin"
) -> torch.Tensor:
    """Batch-hard triplet loss (Hermans et al., 2017) over one P×K batch.

    Each image is embedded once; every image is an anchor with its farthest
    positive and nearest negative in the batch. Anchors without a positive or a
    negative in the batch are ignored; a batch with none gives a zero loss that
    still carries a gradient graph.
    """
    dist = pairwise_distances(embeddings, embeddings)
    eye = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    d_pos, d_neg, valid = hardest_pairs(dist, labels, labels, eye)
    # A masked mean rather than d_pos[valid]: boolean indexing would wait for the device.
    per_anchor = triplet_terms(d_pos, d_neg, margin, kind) * valid
    return per_anchor.sum() / valid.sum().clamp_min(1)


def triplet_margin_loss(
    anchor: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor, margin: float, kind: str = "hard_margin"
) -> torch.Tensor:
    """Plain triplet loss over given (anchor, positive, negative) embeddings (random mode)."""
    d_pos = (anchor.float() - positive.float()).pow(2).sum(1).clamp_min(_EPS).sqrt()
    d_neg = (anchor.float() - negative.float()).pow(2).sum(1).clamp_min(_EPS).sqrt()
    return triplet_term(d_pos, d_neg, margin, kind)
