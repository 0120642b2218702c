"""Synthetic lacrosse player crops in the real storage layout, for demos, tests and benchmarks.

Public API::

    generate(out_root, tenant_id, *, players=8, frames=3, images_per_player=6,
             val_players=4, val_images_per_player=None, seed=0, quality=90,
             max_workers=16, mode="match") -> SynthSummary

    out_root: any storage root (a folder path, file:///..., gs://BUCKET[/prefix]).
    Writes {out_root}/{tenant_id}/datasets/{dataset_id}/{train|val}/{player_id}/crop_NNN.jpg
    for `frames` datasets (ids frame_0000, frame_0001, ...), each with `players` train
    players and `val_players` val players (val identities are distinct from train ones),
    `images_per_player` crops each (`val_images_per_player` in val, default the same).
    plus {dataset_id}/kits.json in match mode.
    Existing files with the same names are overwritten; nothing else is touched.
    SynthSummary: root, tenant_id, dataset_ids, players {"train": n, "val": n} (totals over
    frames), images, bytes, seconds; as_dict().

Each (frame, player) is one identity, as in the trainer (``laxai_trainer.reid.data.loaders``).

``mode="match"`` (default) looks like a game: each frame has two teams (``home``,
``away``, alternating over the players, so train and val both hold both) whose jersey,
sleeves, stripe, helmet, shorts and socks are shared, so teammates differ only by
number, skin tone, build, height and stick. Crops add what detector crops of a game
have: another player behind or in front of the target, head or feet cut off, low
detail (far away), motion blur, a colour cast and a shadow. Each dataset gets a
``kits.json`` ({player_id: kit}) so evaluation can single out same-kit confusions;
real datasets have none and need none.

``mode="random-kits"`` is the original generator: every player has its own random
jersey colour (sometimes with contrasting sleeves or a stripe), number, helmet,
shorts, socks and stick colours; crops vary pose, scale, light and noise only.

Both vary per crop the pose (legs, arms, stick angle, facing), scale and position,
the lighting, the grass background (mowing stripes, a field line, noise) and JPEG
quality, so augmentation-invariant features separate the players and pixel copies
do not. Crops are about 120x80 up to ~150x100 (H x W), like real detector crops; the
trainer resizes them. Deterministic for a seed.
"""

from __future__ import annotations

import colorsys
import io
import json
import os
import tempfile
import time
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from laxai_trainer.reid.data.kits import KITS_FILE
from laxai_trainer.storage import DEFAULT_WORKERS, open_storage

BASE_SIZE = (120, 80)  # H x W


@dataclass
class SynthSummary:
    root: str
    tenant_id: str
    dataset_ids: list[str] = field(default_factory=list)
    players: dict[str, int] = field(default_factory=lambda: {"train": 0, "val": 0})
    images: int = 0
    bytes: int = 0
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Player:
    jersey: tuple[int, int, int]
    sleeves: tuple[int, int, int]
    stripe: tuple[int, int, int] | None
    number: int
    number_colour: tuple[int, int, int]
    helmet: tuple[int, int, int]
    shorts: tuple[int, int, int]
    socks: tuple[int, int, int]
    stick: tuple[int, int, int]
    skin: tuple[int, int, int]
    build: float  # torso width factor
    height: float  # figure height factor
    gloves: tuple[int, int, int] | None = None  # None: the helmet colour
    kit: str = ""  # the team kit in match mode ("" in random-kits mode)


def _rgb(h: float, s: float, v: float) -> tuple[int, int, int]:
    r, g, b = colorsys.hsv_to_rgb(h % 1.0, min(max(s, 0), 1), min(max(v, 0), 1))
    return int(r * 255), int(g * 255), int(b * 255)


def _contrast(c: tuple[int, int, int]) -> tuple[int, int, int]:
    luminance = 0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2]
    return (20, 20, 20) if luminance > 140 else (245, 245, 245)


def make_players(n: int, rng: np.random.Generator) -> list[Player]:
    """n visually distinct players: hues spread around the wheel, distinct numbers."""
    hues = (np.arange(n) / max(n, 1) + rng.uniform(0, 1)) % 1.0
    rng.shuffle(hues)
    numbers = rng.choice(100, size=n, replace=n > 100)
    out = []
    for i in range(n):
        h = float(hues[i])
        jersey = _rgb(h, rng.uniform(0.55, 1.0), rng.uniform(0.45, 1.0))
        if rng.random() < 0.12:  # white / dark kits exist too
            g = int(rng.choice([235, 40]))
            jersey = (g, g, g)
        sleeves = jersey if rng.random() < 0.6 else _rgb(h + 0.5, rng.uniform(0.3, 1), rng.uniform(0.4, 1))
        stripe = _rgb(h + rng.uniform(0.25, 0.75), 0.8, 0.9) if rng.random() < 0.35 else None
        out.append(
            Player(
                jersey=jersey,
                sleeves=sleeves,
                stripe=stripe,
                number=int(numbers[i]),
                number_colour=_contrast(jersey),
                helmet=_rgb(rng.uniform(0, 1), rng.uniform(0, 0.9), rng.uniform(0.2, 1.0)),
                shorts=_rgb(rng.uniform(0, 1), rng.uniform(0, 0.9), rng.uniform(0.15, 0.95)),
                socks=_rgb(rng.uniform(0, 1), rng.uniform(0, 0.8), rng.uniform(0.3, 1.0)),
                stick=_rgb(rng.uniform(0, 1), rng.uniform(0, 0.6), rng.uniform(0.2, 1.0)),
                skin=SKINS[int(rng.integers(len(SKINS)))],
                build=float(rng.uniform(0.8, 1.25)),
                height=float(rng.uniform(0.88, 1.0)),
            )
        )
    return out


#: Skin tones, from light to dark.
SKINS = [(241, 194, 160), (224, 172, 105), (198, 134, 66), (141, 85, 36), (92, 58, 30)]
#: Stick shaft colours: sticks are the players' own, from a few common finishes.
STICKS = [(20, 20, 20), (235, 235, 235), (200, 170, 60), (170, 30, 30), (40, 60, 160), (120, 120, 120),
          (30, 120, 60), (230, 120, 20)]
#: Generation modes: two teams with shared kits per frame (default), or a random kit per player.
MODES = ("match", "random-kits")
KITS = ("home", "away")


def _team_kit(hue: float, rng: np.random.Generator) -> dict[str, Any]:
    """One team's shared kit: jersey, sleeves, stripe, helmet, shorts, socks, gloves."""
    jersey = _rgb(hue, rng.uniform(0.6, 1.0), rng.uniform(0.5, 1.0))
    if rng.random() < 0.25:  # white or dark kits are common
        g = int(rng.choice([235, 35]))
        jersey = (g, g, g)
    return {
        "jersey": jersey,
        "sleeves": jersey if rng.random() < 0.6 else _rgb(hue + 0.5, rng.uniform(0.3, 1), rng.uniform(0.4, 1)),
        "stripe": _rgb(hue + rng.uniform(0.25, 0.75), 0.8, 0.9) if rng.random() < 0.5 else None,
        "number_colour": _contrast(jersey),
        "helmet": _rgb(hue + rng.uniform(-0.05, 0.05), rng.uniform(0, 0.9), rng.uniform(0.2, 1.0)),
        "shorts": _rgb(hue + rng.uniform(-0.1, 0.1), rng.uniform(0, 0.9), rng.uniform(0.15, 0.95)),
        "socks": _rgb(hue + rng.uniform(-0.1, 0.1), rng.uniform(0, 0.8), rng.uniform(0.3, 1.0)),
        "gloves": _rgb(rng.uniform(0, 1), rng.uniform(0, 0.6), rng.uniform(0.2, 1.0)),
    }


def make_match_players(n: int, rng: np.random.Generator) -> list[Player]:
    """n players of two teams, alternating home/away: kits shared within a team.

    Teammates differ only in what real teammates differ in: number (distinct within a
    team), skin tone, build and height, and stick colour.
    """
    hue = rng.uniform(0, 1)
    kits = {name: _team_kit(hue + offset, rng) for name, offset in zip(KITS, (0.0, rng.uniform(0.3, 0.7)), strict=True)}
    numbers = {name: rng.choice(100, size=(n + 1) // 2, replace=n > 200) for name in KITS}
    out = []
    for i in range(n):
        name = KITS[i % 2]
        out.append(
            Player(
                **kits[name],
                number=int(numbers[name][i // 2]),
                stick=STICKS[int(rng.integers(len(STICKS)))],
                skin=SKINS[int(rng.integers(len(SKINS)))],
                build=float(rng.uniform(0.8, 1.25)),
                height=float(rng.uniform(0.85, 1.0)),
                kit=name,
            )
        )
    return out


@lru_cache(maxsize=64)
def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except Exception:  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def _background(h: int, w: int, grass: np.ndarray, rng: np.random.Generator) -> Image.Image:
    """Grass with mowing stripes, maybe a white field line."""
    base = np.clip(grass * rng.uniform(0.85, 1.15), 0, 255)
    period = rng.uniform(15, 40)
    phase = rng.uniform(0, period)
    rows = ((np.arange(h) + phase) // (period / 2)) % 2
    shade = 1.0 + 0.08 * (rows[:, None, None] - 0.5)
    img = np.broadcast_to(base, (h, w, 3)) * shade
    img = np.broadcast_to(img, (h, w, 3)).copy()
    if rng.random() < 0.3:
        y = int(rng.integers(0, h))
        img[max(0, y - 1) : y + 2] = (235, 235, 230)
    return Image.fromarray(img.astype(np.uint8))


def _draw_player(img: Image.Image, player: Player, cx: float, top: float, fh: float, facing: int,
                 rng: np.random.Generator, number_p: float = 0.85) -> None:
    """Draw `player` in a random pose, figure `fh` pixels tall from `top`, centred at `cx`."""
    d = ImageDraw.Draw(img)
    u = fh / 100.0  # one body unit

    def pt(x: float, y: float) -> tuple[float, float]:
        return cx + facing * x * u, top + y * u

    lw = max(2, int(round(5 * u)))
    bw = player.build
    # legs (behind the shorts), with a stride
    stride = rng.uniform(-14, 14)
    for side, swing in ((-1, stride), (1, -stride)):
        hip = pt(side * 6 * bw, 58)
        knee = pt(side * 7 * bw + swing * 0.5, 78)
        foot = pt(side * 7 * bw + swing, 97)
        d.line([hip, knee], fill=player.shorts if swing else player.skin, width=lw + 1)
        d.line([knee, foot], fill=player.socks, width=lw)
        d.ellipse([foot[0] - 1.2 * lw, foot[1] - 0.6 * lw, foot[0] + 1.2 * lw, foot[1] + 0.6 * lw], fill=(25, 25, 25))
    # shorts
    d.polygon([pt(-11 * bw, 46), pt(11 * bw, 46), pt(12 * bw, 62), pt(-12 * bw, 62)], fill=player.shorts)
    # torso
    torso = [pt(-14 * bw, 17), pt(14 * bw, 17), pt(11 * bw, 48), pt(-11 * bw, 48)]
    d.polygon(torso, fill=player.jersey)
    if player.stripe is not None:
        d.polygon([pt(-13 * bw, 26), pt(13 * bw, 26), pt(13 * bw, 30), pt(-13 * bw, 30)], fill=player.stripe)
    # number (front or back: the same digits), skipped when the player turns sideways
    if rng.random() < number_p:
        size = max(8, int(round(15 * u * rng.uniform(0.9, 1.1))))
        d.text(pt(0, 35), str(player.number), fill=player.number_colour, font=_font(size), anchor="mm")
    # arms to the hands (gloves) holding the stick
    hands_y = rng.uniform(28, 45)
    hands = [pt(rng.uniform(8, 16), hands_y), pt(rng.uniform(16, 26), hands_y - rng.uniform(2, 10))]
    for shoulder, hand in zip((pt(-13 * bw, 20), pt(13 * bw, 20)), hands, strict=True):
        d.line([shoulder, hand], fill=player.sleeves, width=lw)
        d.ellipse([hand[0] - lw, hand[1] - lw, hand[0] + lw, hand[1] + lw], fill=player.gloves or player.helmet)
    # stick: a shaft through the hands, a head at the end
    angle = np.deg2rad(rng.uniform(-75, 35))
    sx, sy = np.cos(angle), np.sin(angle)
    start = pt(8 - 10 * sx, hands_y - 10 * sy)
    end = pt(20 + 42 * sx, hands_y - 42 * sy)
    d.line([start, end], fill=player.stick, width=max(1, lw // 2))
    r = 5 * u
    d.ellipse([end[0] - r, end[1] - 1.4 * r, end[0] + r, end[1] + 1.4 * r], outline=(240, 240, 240), width=max(1, lw // 3))
    # head: skin showing under the helmet, then the helmet with a face mask
    head = pt(0, 9)
    hr = 8 * u
    d.ellipse([head[0] - hr, head[1] - 0.6 * hr, head[0] + 0.9 * hr, head[1] + 1.25 * hr], fill=player.skin)
    d.ellipse([head[0] - hr, head[1] - hr, head[0] + hr, head[1] + 0.8 * hr], fill=player.helmet)
    mask = pt(4.5, 10)
    d.rectangle([mask[0] - 0.45 * hr, mask[1] - 0.35 * hr, mask[0] + 0.45 * hr, mask[1] + 0.55 * hr],
                outline=(200, 200, 200), width=1)


def _finish(img: Image.Image, rng: np.random.Generator, light: tuple[float, float], cast: bool = False) -> Image.Image:
    """Lighting (brightness in `light`; with `cast` a colour cast and a shadow gradient), then noise."""
    pixels = np.asarray(img, dtype=np.float32) * rng.uniform(*light)
    if cast:
        pixels *= rng.uniform(0.9, 1.1, 3)
        h, w = pixels.shape[:2]
        direction = rng.normal(size=2)
        ramp = (np.arange(h)[:, None] * direction[0] / h + np.arange(w)[None] * direction[1] / w)
        pixels *= (1.0 + rng.uniform(0, 0.25) * (ramp - ramp.mean()))[:, :, None]
    pixels += rng.normal(0, rng.uniform(2, 9), pixels.shape)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def render_crop(player: Player, grass: np.ndarray, rng: np.random.Generator) -> Image.Image:
    """One crop of `player` alone (random-kits mode): random pose, scale, position, light, noise."""
    scale = rng.uniform(1.0, 1.25)
    h = int(round(BASE_SIZE[0] * scale))
    w = int(round(BASE_SIZE[1] * scale * rng.uniform(0.92, 1.08)))
    img = _background(h, w, grass, rng)
    fh = h * player.height * rng.uniform(0.82, 0.95)  # figure height in pixels
    top = rng.uniform(0.02, 0.98 * h - fh) if 0.98 * h > fh + 0.02 else 0.0
    cx = w / 2 + rng.uniform(-0.08, 0.08) * w
    _draw_player(img, player, cx, top, fh, 1 if rng.random() < 0.5 else -1, rng)
    if rng.random() < 0.3:
        img = img.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 0.9)))
    return _finish(img, rng, (0.75, 1.2))


#: 5x5 kernels of a short linear motion (horizontal, diagonal): running players and panning cameras.
_MOTION = [
    ImageFilter.Kernel((5, 5), [1 if r == 2 else 0 for r in range(5) for _ in range(5)], scale=5),
    ImageFilter.Kernel((5, 5), [1 if r == c else 0 for r in range(5) for c in range(5)], scale=5),
]


def render_game_crop(player: Player, others: list[Player], grass: np.ndarray, rng: np.random.Generator) -> Image.Image:
    """One detector-like crop of `player` in a game (match mode).

    Beyond `render_crop`: another player (`others`: the frame's roster) may stand behind or
    in front of the target, partly covering it; the box may cut off head or feet (a partial
    crop); the player may be far away (rendered small, then upscaled: low detail), blurred
    by motion, and lit by a colour cast and a shadow gradient.
    """
    scale = rng.uniform(1.0, 1.25)
    h = int(round(BASE_SIZE[0] * scale))
    w = int(round(BASE_SIZE[1] * scale * rng.uniform(0.92, 1.08)))
    img = _background(h, w, grass, rng)
    fh = h * player.height * rng.uniform(0.82, 0.95)
    if rng.random() < 0.2:  # partial crop: the box cuts off the head or the feet
        top = rng.choice([-1.0, 1.0]) * rng.uniform(0.08, 0.22) * fh + (h - fh) / 2
    else:
        top = rng.uniform(0.02, 0.98 * h - fh) if 0.98 * h > fh + 0.02 else 0.0
    cx = w / 2 + rng.uniform(-0.08, 0.08) * w
    # Where another player would stand, drawn for every crop so the rest of the crop does
    # not depend on whether the frame has other players.
    occludes, pick, in_front = rng.random() < 0.35, int(rng.integers(1 << 30)), rng.random() < 0.5
    side = 1 if rng.random() < 0.5 else -1
    ofh, ocx = fh * rng.uniform(0.85, 1.15), cx + side * rng.uniform(0.45, 0.8) * w
    otop = top + rng.uniform(-0.1, 0.1) * fh
    occluder = others[pick % len(others)] if others and occludes else None
    occluder_rng = np.random.default_rng(pick)  # its pose

    if occluder is not None and not in_front:
        _draw_player(img, occluder, ocx, otop, ofh, -side, occluder_rng)
    _draw_player(img, player, cx, top, fh, 1 if rng.random() < 0.5 else -1, rng, number_p=0.75)
    if occluder is not None and in_front:
        _draw_player(img, occluder, ocx, otop, ofh, -side, occluder_rng)
    if rng.random() < 0.3:  # far from the camera: fewer pixels on the player
        f = rng.uniform(0.4, 0.7)
        img = img.resize((max(8, int(w * f)), max(8, int(h * f))), Image.BILINEAR).resize((w, h), Image.BILINEAR)
    if rng.random() < 0.3:
        img = img.filter(_MOTION[int(rng.integers(len(_MOTION)))])
    elif rng.random() < 0.3:
        img = img.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 0.9)))
    return _finish(img, rng, (0.6, 1.3), cast=True)


def _encode(img: Image.Image, quality: int) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def _check(name: str, value: int, minimum: int) -> None:
    if not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def generate(
    out_root: str | os.PathLike,
    tenant_id: str,
    *,
    players: int = 8,
    frames: int = 3,
    images_per_player: int = 6,
    val_players: int = 4,
    val_images_per_player: int | None = None,
    seed: int = 0,
    quality: int = 90,
    max_workers: int = DEFAULT_WORKERS,
    mode: str = "match",
) -> SynthSummary:
    """Write a synthetic dataset for `tenant_id` under `out_root`; see the module docstring."""
    _check("players", players, 1)
    _check("frames", frames, 1)
    _check("images_per_player", images_per_player, 1)
    _check("val_players", val_players, 0)
    val_images = images_per_player if val_images_per_player is None else val_images_per_player
    _check("val_images_per_player", val_images, 1)
    _check("quality", quality, 1)
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if not tenant_id or "/" in tenant_id:
        raise ValueError(f"tenant_id must be one path segment, got {tenant_id!r}")

    started = time.perf_counter()
    storage = open_storage(out_root)
    summary = SynthSummary(storage.uri(), tenant_id)
    local = storage.local_path()
    staging = None if local is not None else tempfile.TemporaryDirectory(prefix="laxai-synth-")
    base = local if local is not None else Path(staging.name)
    written: list[str] = []
    try:
        for f in range(frames):
            dataset_id = f"frame_{f:04d}"
            summary.dataset_ids.append(dataset_id)
            frame_rng = np.random.default_rng([seed, f])
            grass = np.array(_rgb(frame_rng.uniform(0.22, 0.36), frame_rng.uniform(0.35, 0.7),
                                  frame_rng.uniform(0.35, 0.7)), dtype=np.float32)
            match = mode == "match"
            roster = (make_match_players if match else make_players)(players + val_players, frame_rng)
            if match:
                kits = base / tenant_id / "datasets" / dataset_id / KITS_FILE
                kits.parent.mkdir(parents=True, exist_ok=True)
                kits.write_text(json.dumps({f"player_{p:03d}": pl.kit for p, pl in enumerate(roster)}, indent=1))
                written.append(kits.relative_to(base).as_posix())
            for p, player in enumerate(roster):
                split, count = ("train", images_per_player) if p < players else ("val", val_images)
                summary.players[split] += 1
                folder = base / tenant_id / "datasets" / dataset_id / split / f"player_{p:03d}"
                folder.mkdir(parents=True, exist_ok=True)
                for k in range(count):
                    rng = np.random.default_rng([seed, f, p, k])
                    img = render_game_crop(player, roster[:p] + roster[p + 1 :], grass, rng) if match else render_crop(player, grass, rng)
                    data = _encode(img, int(quality - rng.integers(0, 15)))
                    path = folder / f"crop_{k:03d}.jpg"
                    path.write_bytes(data)
                    written.append(path.relative_to(base).as_posix())
                    summary.images += 1
                    summary.bytes += len(data)
        if staging is not None:
            storage.upload_many([(base / rel, rel) for rel in written], max_workers=max_workers)
    finally:
        if staging is not None:
            staging.cleanup()
    summary.seconds = time.perf_counter() - started
    return summary
