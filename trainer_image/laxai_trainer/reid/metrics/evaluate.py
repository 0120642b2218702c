"""Validation: embed the val split once, then retrieval metrics and val loss.

Every val image is a query against all *other* val images (the query is excluded
from its own gallery); a gallery image is a match when it has the same player
label. Recall@k is the fraction of queries with a match among the k nearest
(CMC rank-k); AP averages precision at each match's rank; mAP is the mean AP.
Embeddings are float32 (the trainer embeds without autocast), and a gallery image at the
same distance as another ranks after it when it is a non-match and the other a match
(ties count against the query), so the metrics do not depend on the order of the scan.
Distances are computed in chunks of queries so memory stays O(chunk × N).

Trustworthy numbers:

- Embeddings are computed in float32 on every device (no autocast here, whatever the
  training precision), so CPU and GPU runs score the same model the same way.
- Ties are pessimistic: among gallery images at the same distance, wrong matches rank
  before right ones. A collapsed model (all embeddings equal) scores the chance level
  it deserves, not what the scan order of the files happens to give.
- Same-kit metrics: with kit info (``kits.json`` per dataset, {player_id: kit id}), the
  queries whose nearest wrong match wears the query's kit (a teammate) are scored again
  on their own: ``same_kit_rank1`` and ``same_kit_mAP``. Without kit info they are None.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import asdict, dataclass

import torch

from laxai_trainer.reid.data.kits import NO_KIT
from laxai_trainer.reid.losses.triplet import hardest_pairs, pairwise_distances

KS = (1, 5, 10)
#: Queries per distance chunk: 1024 × N floats stays small for any realistic val split.
CHUNK = 1024
#: Fixed seed of the random-mode val triplets: the same triplets every epoch.
VAL_TRIPLET_SEED = 0

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EvalResult:
    rank1: float
    rank5: float
    rank10: float
    mAP: float
    val_loss: float
    queries: int
    same_kit_rank1: float | None = None
    same_kit_mAP: float | None = None
    same_kit_queries: int = 0

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


@torch.no_grad()
def embed(
    model: torch.nn.Module,
    batches: Iterable,
    device: torch.device,
    channels_last: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Embeddings (computed in float32, on CPU) and labels of every (images, labels, ...) batch."""
    was_training = model.training
    model.eval()
    embs, labels = [], []
    try:
        for batch in batches:
            images, batch_labels = batch[0], batch[1]
            images = images.to(device, non_blocking=True)
            if channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, enabled=False):  # float32 even inside a caller's autocast
                out = model(images.float())
            embs.append(out.float().cpu())
            labels.append(torch.as_tensor(batch_labels).cpu())
    finally:
        model.train(was_training)
    if not embs:
        raise ValueError("the validation split produced no images")
    return torch.cat(embs), torch.cat(labels).long()


def pessimistic_order(dist: torch.Tensor, match: torch.Tensor) -> torch.Tensor:
    """Gallery order per query row: ascending distance, wrong matches first among equal distances."""
    first = torch.sort(match.to(torch.uint8), dim=1, stable=True).indices  # wrong matches first
    then = torch.sort(dist.gather(1, first), dim=1, stable=True).indices
    return first.gather(1, then)


def _score(match: torch.Tensor, n_match: torch.Tensor, ks: tuple[int, ...]) -> tuple[dict[int, float], float]:
    """Hits at each k and the AP sum of ranked match rows (each with at least one match)."""
    hits = {k: float((match[:, :k].sum(1) > 0).sum()) for k in ks}
    ranks = torch.arange(1, match.shape[1] + 1, dtype=torch.float32)
    precision_at_hit = match.cumsum(1) / ranks * match
    return hits, float((precision_at_hit.sum(1) / n_match).sum())


def retrieval_metrics(
    embeddings: torch.Tensor,
    labels: torch.Tensor,
    ks: tuple[int, ...] = KS,
    chunk: int = CHUNK,
    kits: torch.Tensor | None = None,
) -> dict[str, float | int | None]:
    """Recall@k for each k and mAP, each query against all other images (ties pessimistic).

    Queries without any match in the gallery (a player with one image) are skipped;
    ``queries`` says how many counted. ``kits`` (a kit id per image, NO_KIT when unknown)
    adds ``same_kit_rank1``/``same_kit_mAP`` over the queries whose nearest wrong match
    has the query's kit (None when there is none), and ``same_kit_queries``.
    """
    embeddings = embeddings.float()
    n = len(labels)
    hits = {k: 0.0 for k in ks}
    ap_sum, counted = 0.0, 0
    kit_hits, kit_ap, kit_counted = 0.0, 0.0, 0
    for start in range(0, n, chunk):
        q = slice(start, min(start + chunk, n))
        dist = pairwise_distances(embeddings[q], embeddings)
        rows = torch.arange(dist.shape[0])
        dist[rows, rows + start] = float("inf")  # the query itself is not in its gallery
        same = labels.unsqueeze(0) == labels[q].unsqueeze(1)
        same[rows, rows + start] = False
        order = pessimistic_order(dist, same)[:, : n - 1]
        match = same.gather(1, order).float()
        n_match = match.sum(1)
        has = n_match > 0
        if not bool(has.any()):
            continue
        counted += int(has.sum())
        chunk_hits, chunk_ap = _score(match[has], n_match[has], ks)
        ap_sum += chunk_ap
        for k in ks:
            hits[k] += chunk_hits[k]
        if kits is not None:
            nearest_wrong = order.gather(1, (match == 0).to(torch.uint8).argmax(1, keepdim=True)).squeeze(1)
            query_kit = kits[q]
            hard = has & (query_kit != NO_KIT) & (kits[nearest_wrong] == query_kit) & (match == 0).any(1)
            if bool(hard.any()):
                kit_counted += int(hard.sum())
                h, ap = _score(match[hard], n_match[hard], (1,))
                kit_hits += h[1]
                kit_ap += ap
    if counted == 0:
        raise ValueError("no validation query has a match: every val player has a single image")
    result: dict[str, float | int | None] = {f"rank{k}": hits[k] / counted for k in ks}
    result["mAP"] = ap_sum / counted
    result["queries"] = counted
    if kits is not None:
        result["same_kit_rank1"] = kit_hits / kit_counted if kit_counted else None
        result["same_kit_mAP"] = kit_ap / kit_counted if kit_counted else None
        result["same_kit_queries"] = kit_counted
    return result


def batch_hard_val_loss(embeddings: torch.Tensor, labels: torch.Tensor, margin: float, chunk: int = CHUNK) -> float:
    """Batch-hard triplet loss with the whole val split as one batch."""
    total, counted = 0.0, 0
    n = len(labels)
    for start in range(0, n, chunk):
        q = slice(start, min(start + chunk, n))
        dist = pairwise_distances(embeddings[q], embeddings)
        rows = torch.arange(dist.shape[0])
        self_mask = torch.zeros_like(dist, dtype=torch.bool)
        self_mask[rows, rows + start] = True
        d_pos, d_neg, valid = hardest_pairs(dist, labels[q], labels, self_mask)
        total += float(torch.relu(d_pos[valid] - d_neg[valid] + margin).sum())
        counted += int(valid.sum())
    return total / max(counted, 1)


def random_triplet_val_loss(embeddings: torch.Tensor, labels: torch.Tensor, margin: float) -> float:
    """Triplet loss of one (positive, negative) per anchor, drawn with a fixed seed.

    The random mode's training loss estimates the same quantity with fresh draws.
    Vectorised: images are grouped by label, a positive is another member of the
    anchor's group, a negative any image outside it.
    """
    gen = torch.Generator().manual_seed(VAL_TRIPLET_SEED)
    order = torch.argsort(labels, stable=True)
    sorted_labels = labels[order]
    _, counts = torch.unique_consecutive(sorted_labels, return_counts=True)
    starts = torch.cumsum(counts, 0) - counts
    size = torch.repeat_interleave(counts, counts)  # group size of each sorted image
    start = torch.repeat_interleave(starts, counts)
    n = len(labels)
    valid = (size > 1) & (size < n)
    if not bool(valid.any()):
        return 0.0
    pos_in_group = torch.arange(n) - start
    r = torch.rand(n, generator=gen)
    # another member of the group: shift by 1..size-1 positions, cyclically
    shift = 1 + (r * (size - 1).clamp_min(1)).long().clamp_max((size - 2).clamp_min(0))
    positive = start + (pos_in_group + shift) % size
    # any image outside the group: draw among n - size, skip over the group
    u = (torch.rand(n, generator=gen) * (n - size).clamp_min(1)).long().clamp_max((n - size - 1).clamp_min(0))
    negative = torch.where(u < start, u, u + size)
    emb = embeddings[order]
    anchor, positive, negative = emb[valid], emb[positive[valid]], emb[negative[valid]]
    d_pos = (anchor - positive).norm(dim=1)
    d_neg = (anchor - negative).norm(dim=1)
    return float(torch.relu(d_pos - d_neg + margin).mean())


def evaluate_embeddings(
    embeddings: torch.Tensor,
    labels: torch.Tensor,
    margin: float,
    triplet_mining: str,
    kits: torch.Tensor | None = None,
) -> EvalResult:
    """Metrics and val loss of precomputed embeddings (loss as in the training mode)."""
    embeddings = embeddings.float()
    metrics = retrieval_metrics(embeddings, labels, kits=kits)
    if triplet_mining == "random":
        loss = random_triplet_val_loss(embeddings, labels, margin)
    else:
        loss = batch_hard_val_loss(embeddings, labels, margin)
    return EvalResult(
        rank1=float(metrics["rank1"]),
        rank5=float(metrics["rank5"]),
        rank10=float(metrics["rank10"]),
        mAP=float(metrics["mAP"]),
        val_loss=loss,
        queries=int(metrics["queries"]),
        same_kit_rank1=metrics.get("same_kit_rank1"),
        same_kit_mAP=metrics.get("same_kit_mAP"),
        same_kit_queries=int(metrics.get("same_kit_queries") or 0),
    )


def evaluate(
    model: torch.nn.Module,
    batches: Iterable,
    device: torch.device,
    margin: float,
    triplet_mining: str,
    channels_last: bool = False,
    kits: torch.Tensor | None = None,
) -> EvalResult:
    """Embed the val split with ``model`` (eval mode, float32) and score it."""
    embeddings, labels = embed(model, batches, device, channels_last)
    return evaluate_embeddings(embeddings, labels, margin, triplet_mining, kits)
