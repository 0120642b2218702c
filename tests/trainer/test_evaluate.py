"""laxai_trainer.evaluate: retrieval metrics (query excluded), val losses, embedding."""

import pytest
import torch
import torch.nn.functional as F

from laxai_trainer.evaluate import (
    batch_hard_val_loss,
    embed,
    evaluate,
    random_triplet_val_loss,
    retrieval_metrics,
)
from laxai_trainer.losses import batch_hard_triplet_loss


def brute_force(emb, labels, ks=(1, 5, 10)):
    """Reference: one query at a time, gallery = everything else."""
    hits = {k: 0 for k in ks}
    aps = []
    for i in range(len(labels)):
        others = [j for j in range(len(labels)) if j != i]
        d = torch.stack([torch.dist(emb[i], emb[j]) for j in others])
        ranked = [others[j] for j in torch.sort(d, stable=True).indices.tolist()]
        match = [int(labels[j] == labels[i]) for j in ranked]
        if not any(match):
            continue
        for k in ks:
            hits[k] += any(match[:k])
        precisions = [sum(match[: r + 1]) / (r + 1) for r, m in enumerate(match) if m]
        aps.append(sum(precisions) / len(precisions))
    n = len(aps)
    return {**{f"rank{k}": hits[k] / n for k in ks}, "mAP": sum(aps) / n, "queries": n}


def test_perfect_clusters_score_one():
    labels = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2])
    emb = F.one_hot(labels, 3).float() + 0.01 * torch.randn(8, 3)
    m = retrieval_metrics(F.normalize(emb, dim=1), labels)
    assert m["rank1"] == 1.0 and m["mAP"] == pytest.approx(1.0)


def test_query_is_excluded_from_its_own_gallery():
    # Each player's two crops are far apart, nearer to another player: were the query
    # in its gallery at distance 0, rank-1 would be 1.0.
    emb = torch.tensor([[0.0, 0], [10.0, 0], [0.0, 1], [10.0, 1]])
    labels = torch.tensor([0, 0, 1, 1])
    m = retrieval_metrics(emb, labels)
    assert m["rank1"] == 0.0
    assert m["mAP"] == pytest.approx(0.5)  # each query's match ranks 2nd of the 3 others
    assert m == pytest.approx(brute_force(emb, labels))


@pytest.mark.parametrize("chunk", [3, 1024])
def test_metrics_match_brute_force_on_random_embeddings(chunk):
    gen = torch.Generator().manual_seed(3)
    labels = torch.randint(0, 6, (40,), generator=gen)
    emb = F.normalize(torch.randn(40, 8, generator=gen), dim=1)
    assert retrieval_metrics(emb, labels, chunk=chunk) == pytest.approx(brute_force(emb, labels))


def test_queries_without_match_are_skipped():
    emb = torch.randn(5, 4)
    labels = torch.tensor([0, 0, 1, 1, 2])
    assert retrieval_metrics(emb, labels)["queries"] == 4


def test_no_query_with_a_match_is_an_error():
    with pytest.raises(ValueError, match="single image"):
        retrieval_metrics(torch.randn(3, 4), torch.tensor([0, 1, 2]))


def test_recall_at_k_grows_with_k():
    gen = torch.Generator().manual_seed(5)
    labels = torch.arange(30) // 3
    emb = F.normalize(torch.randn(30, 4, generator=gen), dim=1)
    m = retrieval_metrics(emb, labels)
    assert m["rank1"] <= m["rank5"] <= m["rank10"] and m["rank1"] < m["rank10"]


@pytest.mark.parametrize("chunk", [2, 1024])
def test_batch_hard_val_loss_is_the_batch_hard_loss_of_the_whole_split(chunk):
    gen = torch.Generator().manual_seed(4)
    labels = torch.arange(12) // 3
    emb = F.normalize(torch.randn(12, 5, generator=gen), dim=1)
    expected = batch_hard_triplet_loss(emb, labels, 0.4).item()
    assert batch_hard_val_loss(emb, labels, 0.4, chunk=chunk) == pytest.approx(expected, rel=1e-5)


def test_random_val_loss_is_deterministic_and_uses_valid_triplets():
    gen = torch.Generator().manual_seed(6)
    labels = torch.tensor([3, 1, 3, 1, 2, 2, 3, 7])  # 7 has no positive: skipped
    emb = F.normalize(torch.randn(8, 5, generator=gen), dim=1)
    first = random_triplet_val_loss(emb, labels, 0.4)
    assert first == random_triplet_val_loss(emb, labels, 0.4)
    # separated clusters: every drawn triplet satisfies the margin
    clustered = F.one_hot(labels, 8).float()
    assert random_triplet_val_loss(clustered, labels, 0.4) == pytest.approx(0.0, abs=1e-6)
    # collapsed embeddings: every triplet costs exactly the margin
    assert random_triplet_val_loss(torch.ones(8, 5), labels, 0.4) == pytest.approx(0.4, abs=1e-5)


class Toy(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.bn = torch.nn.BatchNorm1d(2)

    def forward(self, x):
        return F.normalize(self.bn(x.flatten(1)[:, :2]), dim=1)


def test_embed_runs_in_eval_mode_and_restores_training_mode():
    model = Toy().train()
    batches = [(torch.randn(4, 1, 1, 2), torch.tensor([0, 0, 1, 1]))]
    before = model.bn.running_mean.clone()
    emb, labels = embed(model, batches, torch.device("cpu"))
    assert torch.equal(model.bn.running_mean, before)  # eval mode: statistics untouched
    assert model.training
    assert emb.shape == (4, 2) and labels.tolist() == [0, 0, 1, 1]


def test_evaluate_picks_the_loss_of_the_mining_mode():
    model = Toy()
    x = torch.randn(6, 1, 1, 2)
    batches = [(x, torch.tensor([0, 0, 1, 1, 2, 2]))]
    hard = evaluate(model, batches, torch.device("cpu"), 0.4, "batch_hard")
    rnd = evaluate(model, batches, torch.device("cpu"), 0.4, "random")
    assert hard.mAP == rnd.mAP
    assert hard.val_loss >= rnd.val_loss  # the hardest triplets cost at least as much
