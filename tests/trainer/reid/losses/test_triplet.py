"""laxai_trainer.reid.losses.triplet: batch-hard and plain triplet losses."""

import pytest
import torch
import torch.nn.functional as F

from laxai_trainer.reid.losses.triplet import (
    batch_hard_triplet_loss,
    pairwise_distances,
    triplet_margin_loss,
    triplet_term,
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


def test_triplet_term_hard_is_a_hinge_and_soft_a_softplus():
    d_pos, d_neg = torch.tensor([0.1, 0.9]), torch.tensor([0.8, 0.2])
    assert triplet_term(d_pos, d_neg, 0.2).item() == pytest.approx((0.0 + 0.9) / 2)
    soft = triplet_term(d_pos, d_neg, 0.2, "soft_margin").item()
    assert soft == pytest.approx(float(F.softplus(torch.tensor([-0.5, 0.9])).mean()))
    with pytest.raises(ValueError, match="triplet_loss"):
        triplet_term(d_pos, d_neg, 0.2, "other")


def test_batch_hard_and_random_losses_take_the_variant():
    gen = torch.Generator().manual_seed(0)
    emb = F.normalize(torch.randn(8, 4, generator=gen), dim=1)
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    hard, soft = (batch_hard_triplet_loss(emb, labels, 0.3, k).item() for k in ("hard_margin", "soft_margin"))
    assert soft > hard
    a, p, n = emb[:3], emb[3:6], emb[5:8]
    assert triplet_margin_loss(a, p, n, 0.3, "soft_margin").item() > triplet_margin_loss(a, p, n, 0.3).item()
