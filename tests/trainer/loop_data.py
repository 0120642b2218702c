"""In-memory data for Trainer tests: distinct 'players' as coloured, striped tensors.

Small tensors (40×24) keep the loop tests fast; the 120×80 pipeline is exercised by the
job and CLI tests. Like the real loaders, order and augmentation draw from the global
torch RNG, so the tests see whether checkpoints capture and restore it.
"""

import torch

SIZE = (40, 24)


def make_split(players: int, per_player: int, seed: int, size=SIZE):
    gen = torch.Generator().manual_seed(seed)
    colours = torch.rand(players, 3, 1, 1, generator=gen)
    stripes = torch.rand(players, 1, size[0], 1, generator=gen).round()
    images, labels = [], []
    for p in range(players):
        for _ in range(per_player):
            noise = 0.2 * torch.randn(3, *size, generator=gen)
            images.append(colours[p] + 0.5 * stripes[p] + noise)
            labels.append(p)
    return torch.stack(images), torch.tensor(labels)


class PKLoader:
    """P×K batches in an order drawn from the global RNG at each iter(), with 'augmentation' noise."""

    def __init__(self, images, labels, batch_size=8, k=2, augment=0.05):
        self.images, self.labels = images, labels
        self.batch_size, self.k, self.augment = batch_size, k, augment

    def _batches(self):
        players = self.labels.unique()
        order = players[torch.randperm(len(players))]
        per_batch = self.batch_size // self.k
        out = []
        for start in range(0, len(order) - per_batch + 1, per_batch):
            idx = []
            for p in order[start : start + per_batch]:
                members = (self.labels == p).nonzero().flatten()
                idx += members[torch.randperm(len(members))[: self.k]].tolist()
            out.append(torch.tensor(idx))
        return out

    def __len__(self):
        return len(self.labels.unique()) // (self.batch_size // self.k)

    def __iter__(self):
        for idx in self._batches():
            noise = self.augment * torch.randn(len(idx), *self.images.shape[1:])
            yield self.images[idx] + noise, self.labels[idx]


class TripletLoader:
    """(anchor, positive, negative, label, negative_label) batches drawn from the global RNG
    (the random mode; the same tuple as laxai_trainer.reid.data.loaders.RandomTripletDataset)."""

    def __init__(self, images, labels, batch_size=4, steps=3):
        self.images, self.labels, self.batch_size, self.steps = images, labels, batch_size, steps

    def __len__(self):
        return self.steps

    def __iter__(self):
        n = len(self.labels)
        for _ in range(self.steps):
            a, p, m = [], [], []
            for i in torch.randint(n, (self.batch_size,)).tolist():
                same = (self.labels == self.labels[i]).nonzero().flatten()
                same = same[same != i]
                other = (self.labels != self.labels[i]).nonzero().flatten()
                a.append(i)
                p.append(int(same[torch.randint(len(same), (1,))]))
                m.append(int(other[torch.randint(len(other), (1,))]))
            yield self.images[a], self.images[p], self.images[m], self.labels[a], self.labels[m]


class ValLoader:
    def __init__(self, images, labels, batch_size=16):
        self.images, self.labels, self.batch_size = images, labels, batch_size

    def __iter__(self):
        for s in range(0, len(self.labels), self.batch_size):
            yield self.images[s : s + self.batch_size], self.labels[s : s + self.batch_size]
