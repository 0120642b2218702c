"""laxai_trainer.reid.metrics.evaluate: retrieval metrics (query excluded), val losses, embedding."""

import pytest
import torch
import torch.nn.functional as F

from laxai_trainer.reid.losses.triplet import batch_hard_triplet_loss
from laxai_trainer.reid.metrics.evaluate import (
    batch_hard_val_loss,
    embed,
    evaluate,
    random_triplet_val_loss,
    retrieval_metrics,
)


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


# ---- ties, float32, same-kit metrics, held-out check -------------------------------------


def test_ties_count_against_the_model_whatever_the_order():
    # All embeddings equal: every gallery image ties. Scan order would put player 0's
    # second crop first for query 0 (rank-1 1.0 for half the queries); pessimistic: 0.
    emb = torch.ones(6, 4)
    for labels in (torch.tensor([0, 0, 1, 1, 2, 2]), torch.tensor([0, 1, 2, 0, 1, 2])):
        m = retrieval_metrics(emb, labels)
        assert m["rank1"] == 0.0
        assert m["mAP"] == pytest.approx(0.2)  # the one match ranks last of 5


def test_ties_are_broken_only_among_equal_distances():
    emb = torch.tensor([[0.0, 0], [0.0, 0], [1.0, 0], [3.0, 0]])
    labels = torch.tensor([0, 1, 0, 1])
    # query 0: label-1 crop at distance 0 beats the match at 1 anyway; query 2: match at 1 vs 1 (tie)
    m = retrieval_metrics(emb, labels, ks=(1,))
    assert m["rank1"] == 0.0


def test_embeddings_are_float32_even_inside_a_bf16_autocast():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 6))
    images = torch.randn(8, 3, 2, 2)
    with torch.no_grad():
        reference = model(images)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        emb, _ = embed(model, [(images, torch.zeros(8))], torch.device("cpu"))
    assert emb.dtype == torch.float32
    assert torch.allclose(emb, reference, atol=1e-6)


def test_trainer_validation_is_float32_whatever_the_training_precision():
    from laxai_trainer.config import TrainingConfig
    from laxai_trainer.reid.engine.trainer import Trainer
    from laxai_trainer.reid.metrics.evaluate import evaluate_embeddings
    from laxai_trainer.reid.models.model import build_model
    from tests.trainer.loop_data import ValLoader, make_split

    torch.manual_seed(0)
    cfg = TrainingConfig(tenant_id="t", training_kwargs={"batch_size": 8, "images_per_player": 2},
                         model_kwargs={"embedding_dim": 8})
    val = make_split(players=4, per_player=3, seed=2)
    trainer = Trainer(build_model(cfg.model_kwargs), cfg, torch.device("cpu"), [], ValLoader(*val), num_classes=4)
    trainer.amp = torch.bfloat16  # as on CUDA: training under bf16 autocast
    trainer.model.eval()
    with torch.no_grad():
        reference = evaluate_embeddings(trainer.model(val[0]), val[1], trainer.state.margin, "batch_hard")
    got = trainer.validate()
    assert got.mAP == pytest.approx(reference.mAP, abs=1e-6)
    assert got.val_loss == pytest.approx(reference.val_loss, abs=1e-6)


def brute_force_same_kit(emb, labels, kits):
    """Reference: queries whose nearest wrong match has their kit, scored alone."""
    hits, aps = 0, []
    for i in range(len(labels)):
        others = [j for j in range(len(labels)) if j != i]
        d = [float(torch.dist(emb[i], emb[j])) for j in others]
        ranked = [others[j] for j in sorted(range(len(others)), key=lambda j: (d[j], labels[others[j]] == labels[i]))]
        match = [int(labels[j] == labels[i]) for j in ranked]
        wrong = [j for j in ranked if labels[j] != labels[i]]
        if not any(match) or not wrong or kits[wrong[0]] != kits[i]:
            continue
        hits += match[0]
        precisions = [sum(match[: r + 1]) / (r + 1) for r, m in enumerate(match) if m]
        aps.append(sum(precisions) / len(precisions))
    return hits / len(aps), sum(aps) / len(aps), len(aps)


@pytest.mark.parametrize("chunk", [5, 1024])
def test_same_kit_metrics_score_queries_whose_nearest_wrong_match_is_a_teammate(chunk):
    gen = torch.Generator().manual_seed(4)
    labels = torch.arange(36) // 3  # 12 players, 3 crops
    kits = (labels % 2).clone()
    kits[labels == 11] = -1  # a player without kit info is never a same-kit query
    emb = F.normalize(torch.randn(36, 4, generator=gen) + 0.8 * F.one_hot(kits.clamp_min(0), 4), dim=1)
    m = retrieval_metrics(emb, labels, chunk=chunk, kits=kits)
    rank1, mAP, n = brute_force_same_kit(emb, labels.tolist(), kits.tolist())
    assert 0 < m["same_kit_queries"] == n < m["queries"]
    assert m["same_kit_rank1"] == pytest.approx(rank1) and m["same_kit_mAP"] == pytest.approx(mAP)
    assert "same_kit_rank1" not in retrieval_metrics(emb, labels)


def test_same_kit_metrics_are_none_when_no_query_confuses_a_teammate():
    emb = torch.tensor([[0.0, 0], [0.0, 0.1], [5.0, 0], [5.0, 0.1]])
    labels = torch.tensor([0, 0, 1, 1])
    m = retrieval_metrics(emb, labels, kits=torch.tensor([0, 0, 1, 1]))
    assert m["same_kit_queries"] == 0 and m["same_kit_rank1"] is None and m["same_kit_mAP"] is None
