"""laxai_trainer.losses: batch-hard and plain triplet losses, the margin schedule."""

import pytest
import torch
import torch.nn.functional as F

from laxai_trainer.losses import (
    batch_hard_triplet_loss,
    margin_schedule,
    pairwise_distances,
    triplet_margin_loss,
)


def brute_force_batch_hard(emb, labels, margin):
    losses = []
    for i in range(len(labels)):
        pos = [torch.dist(emb[i], emb[j]) for j in range(len(labels)) if j != i and labels[j] == labels[i]]
        neg = [torch.dist(emb[i], emb[j]) for j in range(len(labels)) if labels[j] != labels[i]]
        if pos and neg:
            losses.append(torch.relu(max(pos) - min(neg) + margin))
    return torch.stack(losses).mean()


def test_pairwise_distances_match_cdist():
    a, b = torch.randn(5, 7), torch.randn(4, 7)
    assert torch.allclose(pairwise_distances(a, b), torch.cdist(a, b), atol=1e-5)


@pytest.mark.parametrize("margin", [0.1, 0.4, 1.0])
def test_batch_hard_equals_brute_force(margin):
    emb = F.normalize(torch.randn(12, 6, generator=torch.Generator().manual_seed(1)), dim=1)
    labels = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3])
    expected = brute_force_batch_hard(emb, labels, margin)
    assert batch_hard_triplet_loss(emb, labels, margin).item() == pytest.approx(expected.item(), rel=1e-5)


def test_batch_hard_ignores_anchors_without_positive():
    emb = F.normalize(torch.randn(5, 4), dim=1)
    labels = torch.tensor([0, 0, 1, 1, 2])  # player 2 has one image
    assert batch_hard_triplet_loss(emb, labels, 0.3).item() == pytest.approx(
        brute_force_batch_hard(emb, labels, 0.3).item(), rel=1e-5
    )


def test_batch_hard_is_zero_for_separated_clusters_and_grows_with_margin():
    emb = torch.tensor([[1.0, 0], [1.0, 0], [0, 1.0], [0, 1.0]])
    labels = torch.tensor([0, 0, 1, 1])
    # d_pos ~ 0, d_neg = sqrt(2): loss is max(0, margin - sqrt(2))
    assert batch_hard_triplet_loss(emb, labels, 0.4).item() == pytest.approx(0.0, abs=1e-5)
    assert batch_hard_triplet_loss(emb, labels, 2.0).item() == pytest.approx(2.0 - 2**0.5, abs=1e-4)


def test_batch_hard_gradient_is_finite_for_identical_embeddings():
    emb = torch.ones(4, 3, requires_grad=True)
    loss = batch_hard_triplet_loss(emb, torch.tensor([0, 0, 1, 1]), 0.5)
    loss.backward()
    assert torch.isfinite(emb.grad).all()


def test_batch_without_any_valid_anchor_gives_zero_with_graph():
    emb = torch.randn(3, 4, requires_grad=True)
    loss = batch_hard_triplet_loss(emb, torch.tensor([0, 0, 0]), 0.5)
    assert loss.item() == 0.0
    loss.backward()


def test_triplet_margin_loss_matches_torch():
    a, p, n = (torch.randn(6, 5, generator=torch.Generator().manual_seed(s)) for s in (1, 2, 3))
    expected = torch.nn.TripletMarginLoss(margin=0.4)(a, p, n)
    assert triplet_margin_loss(a, p, n, 0.4).item() == pytest.approx(expected.item(), rel=1e-4)


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
