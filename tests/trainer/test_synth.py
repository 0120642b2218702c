"""The synthetic dataset generator: layout, determinism, and that players are tellable apart."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from laxai_trainer.synth import generate

T = "tenantS"


def digest(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.md5(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*.jpg"))}


def test_layout_and_counts(tmp_path: Path) -> None:
    summary = generate(tmp_path, T, players=3, frames=2, images_per_player=4, val_players=2,
                       val_images_per_player=3, seed=1)
    base = tmp_path / T / "datasets"
    assert summary.dataset_ids == ["frame_0000", "frame_0001"] == sorted(p.name for p in base.iterdir())
    for dataset in summary.dataset_ids:
        train = sorted(p.name for p in (base / dataset / "train").iterdir())
        val = sorted(p.name for p in (base / dataset / "val").iterdir())
        assert train == ["player_000", "player_001", "player_002"] and val == ["player_003", "player_004"]
        assert all(len(list((base / dataset / "train" / p).glob("*.jpg"))) == 4 for p in train)
        assert all(len(list((base / dataset / "val" / p).glob("*.jpg"))) == 3 for p in val)
    assert summary.players == {"train": 6, "val": 4}
    assert summary.images == 2 * (3 * 4 + 2 * 3) == len(digest(tmp_path))
    assert summary.bytes == sum(p.stat().st_size for p in tmp_path.rglob("*.jpg"))
    assert summary.root == str(tmp_path.resolve())


def test_crops_are_jpegs_about_120x80_and_vary(tmp_path: Path) -> None:
    generate(tmp_path, T, players=2, frames=1, images_per_player=6, val_players=0, seed=3)
    sizes = set()
    for path in tmp_path.rglob("*.jpg"):
        with Image.open(path) as img:
            assert img.format == "JPEG" and img.mode == "RGB"
            w, h = img.size
            sizes.add((h, w))
            assert 120 <= h <= 150 and 70 <= w <= 110
    assert len(sizes) > 3  # scale varies per crop


def test_deterministic_for_a_seed(tmp_path: Path) -> None:
    kwargs = {"players": 2, "frames": 2, "images_per_player": 2, "val_players": 1}
    generate(tmp_path / "a", T, seed=5, **kwargs)
    generate(tmp_path / "b", T, seed=5, **kwargs)
    generate(tmp_path / "c", T, seed=6, **kwargs)
    a, b, c = (digest(tmp_path / x) for x in "abc")
    assert a == b
    assert a.keys() == c.keys() and all(a[k] != c[k] for k in a)


def features(path: Path) -> np.ndarray:
    """A coarse colour layout: what a re-ID model can latch onto first."""
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB").resize((4, 6)), dtype=np.float32).ravel() / 255


def test_players_are_distinct_and_their_crops_vary(tmp_path: Path) -> None:
    generate(tmp_path, T, players=8, frames=1, images_per_player=6, val_players=0, seed=11)
    players = sorted((tmp_path / T / "datasets" / "frame_0000" / "train").iterdir())
    feats = [np.stack([features(p) for p in sorted(player.glob("*.jpg"))]) for player in players]
    x = np.concatenate(feats)
    y = np.repeat(np.arange(len(feats)), [len(f) for f in feats])
    dist = ((x[:, None] - x[None]) ** 2).sum(-1)
    np.fill_diagonal(dist, np.inf)
    nearest_same = (y[dist.argmin(1)] == y).mean()
    assert nearest_same > 0.6, f"1-NN on colour layout only {nearest_same:.2f}: players look alike"
    # …but no crop is a copy of another: pose, scale, light and noise differ
    within = [((f[:, None] - f[None]) ** 2).sum(-1)[np.triu_indices(len(f), 1)].min() for f in feats]
    assert min(within) > 0.05


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [({"players": 0}, "players"), ({"frames": 0}, "frames"), ({"images_per_player": 0}, "images_per_player"),
     ({"val_players": -1}, "val_players"), ({"val_images_per_player": 0}, "val_images_per_player")],
)
def test_bad_arguments_name_the_field(tmp_path: Path, kwargs: dict, field: str) -> None:
    with pytest.raises(ValueError, match=f"^{field} must be"):
        generate(tmp_path, T, **kwargs)
    with pytest.raises(ValueError, match="tenant_id"):
        generate(tmp_path, "a/b")
