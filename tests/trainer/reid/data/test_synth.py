"""The synthetic dataset generator: layout, determinism, match mode (shared kits) and the
random-kits mode, and that players are tellable apart."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from laxai_trainer.reid.data.synth import generate, make_match_players, render_game_crop

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


def test_random_kits_players_are_distinct_and_their_crops_vary(tmp_path: Path) -> None:
    generate(tmp_path, T, players=8, frames=1, images_per_player=6, val_players=0, seed=11, mode="random-kits")
    assert not (tmp_path / T / "datasets" / "frame_0000" / "kits.json").exists()
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


def test_match_mode_writes_two_kits_alternating_over_train_and_val(tmp_path: Path) -> None:
    generate(tmp_path, T, players=4, frames=2, images_per_player=2, val_players=3, seed=2)
    for frame in ("frame_0000", "frame_0001"):
        kits = json.loads((tmp_path / T / "datasets" / frame / "kits.json").read_text())
        assert kits == {f"player_{p:03d}": ("home", "away")[p % 2] for p in range(7)}


def test_match_mode_teammates_share_a_kit_and_differ_in_the_rest() -> None:
    players = make_match_players(10, np.random.default_rng(0))
    kit_fields = ("jersey", "sleeves", "stripe", "helmet", "shorts", "socks", "number_colour", "gloves")
    for kit in ("home", "away"):
        team = [p for p in players if p.kit == kit]
        assert len(team) == 5
        assert all(getattr(p, f) == getattr(team[0], f) for p in team for f in kit_fields)
        assert len({p.number for p in team}) == 5  # numbers are distinct within a team
        assert len({(p.skin, p.stick, round(p.build, 3)) for p in team}) == 5
    home, away = players[0], players[1]
    assert home.jersey != away.jersey


def colour_1nn(root: Path) -> tuple[float, float]:
    """1-NN on the colour layout: how often it finds the same player, and the same kit."""
    base = root / T / "datasets" / "frame_0000"
    kits = json.loads((base / "kits.json").read_text()) if (base / "kits.json").exists() else None
    players = sorted((base / "train").iterdir())
    feats = [np.stack([features(p) for p in sorted(player.glob("*.jpg"))]) for player in players]
    x = np.concatenate(feats)
    y = np.repeat(np.arange(len(feats)), [len(f) for f in feats])
    dist = ((x[:, None] - x[None]) ** 2).sum(-1)
    np.fill_diagonal(dist, np.inf)
    nearest = dist.argmin(1)
    same_player = float((y[nearest] == y).mean())
    if kits is None:
        return same_player, float("nan")
    kit = np.array([kits[players[i].name] for i in y])
    return same_player, float((kit[nearest] == kit).mean())


def test_match_mode_is_harder_than_random_kits_for_colour_alone(tmp_path: Path) -> None:
    kwargs = {"players": 8, "frames": 1, "images_per_player": 6, "val_players": 0, "seed": 11}
    generate(tmp_path / "r", T, mode="random-kits", **kwargs)
    generate(tmp_path / "m", T, **kwargs)
    random_player, _ = colour_1nn(tmp_path / "r")
    match_player, match_kit = colour_1nn(tmp_path / "m")
    # colour finds the team, not the player: teammates look alike
    assert match_kit > 0.8
    assert match_player < random_player - 0.2


def test_match_mode_crops_are_sometimes_occluded_by_another_player() -> None:
    players = make_match_players(4, np.random.default_rng(1))
    grass = np.array([60.0, 120.0, 50.0], dtype=np.float32)
    alone = [render_game_crop(players[0], [], grass, np.random.default_rng(k)) for k in range(40)]
    crowded = [render_game_crop(players[0], players[1:], grass, np.random.default_rng(k)) for k in range(40)]
    differs = sum(np.asarray(a).shape != np.asarray(c).shape or not np.array_equal(np.asarray(a), np.asarray(c))
                  for a, c in zip(alone, crowded, strict=True))
    assert 5 < differs < 40  # another player in some crops, not all


def test_unknown_mode_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="^mode must be one of"):
        generate(tmp_path, T, mode="other")


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
