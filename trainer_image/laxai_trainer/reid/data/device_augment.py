"""The training augmentations as batched tensor operations on the training device.

Public API::

    PARAMS                                   columns of a parameter table
    draw_params(n, size, generator) -> float32 [n, len(PARAMS)] on the CPU
    augment(images, params) -> float32 [B, 3, H, W], normalised (images: uint8 [B, 3, H, W])
    normalize(images) -> float32 [B, 3, H, W]   the validation transform of a cached crop
    step_generator(seed, epoch, step) -> torch.Generator

The same augmentations as ``laxai_trainer.data.train_transform`` (torchvision v2 on PIL),
with the same parameter distributions, drawn per sample:

- horizontal flip, p = 0.5;
- colour jitter, brightness / contrast / saturation factors each uniform in [0.8, 1.2],
  applied in a random order per sample (ColorJitter's ``randperm``), clamped to [0, 1]
  after each step; no hue (the jersey hue identifies a player);
- affine: rotation uniform in ±5°, translation ±5 % of W and H rounded to whole pixels,
  scale uniform in [0.95, 1.05], about the image centre, nearest-neighbour, black fill;
- ImageNet normalisation, then random erasing, p = 0.5, area uniform in [2 %, 15 %] of
  the image, log-uniform aspect ratio in [0.3, 3.3], up to 10 tries for a box that fits,
  erased to 0 (the normalised mean colour).

The parameters are drawn on the CPU from a generator seeded by (seed, epoch, step), so a
batch's augmentations are a function of those three alone, identical on every device
type and whatever the number of workers; only the pixel work runs on the device.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from laxai_trainer.reid.data.loaders import IMAGENET_MEAN, IMAGENET_STD

PARAMS = ("flip", "brightness", "contrast", "saturation", "op0", "op1", "op2", "angle", "tx", "ty", "scale",
          "erase", "erase_i", "erase_j", "erase_h", "erase_w")
COL = {name: i for i, name in enumerate(PARAMS)}

FLIP_P = 0.5
JITTER = 0.2  # brightness, contrast, saturation: factor uniform in [1 - JITTER, 1 + JITTER]
DEGREES = 5.0
TRANSLATE = 0.05
SCALE = (0.95, 1.05)
ERASE_P = 0.5
ERASE_SCALE = (0.02, 0.15)
ERASE_RATIO = (0.3, 3.3)
ERASE_TRIES = 10
#: ITU-R 601 luma, as torchvision's rgb_to_grayscale.
GRAY = (0.2989, 0.587, 0.114)
BRIGHTNESS, CONTRAST, SATURATION = 0, 1, 2
#: Crops per CPU work chunk (about 1 MB of float32): small enough to stay in cache.
CPU_CHUNK = 8


def step_generator(seed: int, epoch: int, step: int) -> torch.Generator:
    """A CPU generator for one step: independent streams for every (seed, epoch, step)."""
    state = np.random.SeedSequence([int(seed), int(epoch), int(step)]).generate_state(1, np.uint64)[0]
    return torch.Generator().manual_seed(int(state) >> 1)


def _uniform(n: int, low: float, high: float, gen: torch.Generator) -> torch.Tensor:
    return torch.rand(n, generator=gen, dtype=torch.float64) * (high - low) + low


def draw_params(n: int, size: tuple[int, int], generator: torch.Generator) -> torch.Tensor:
    """Per-sample augmentation parameters (float32 [n, len(PARAMS)], CPU) for crops of ``size``."""
    H, W = size
    g = generator
    p = torch.zeros(n, len(PARAMS), dtype=torch.float64)
    p[:, COL["flip"]] = (torch.rand(n, generator=g, dtype=torch.float64) < FLIP_P).double()
    for name in ("brightness", "contrast", "saturation"):
        p[:, COL[name]] = _uniform(n, 1 - JITTER, 1 + JITTER, g)
    p[:, COL["op0"] : COL["op2"] + 1] = torch.rand(n, 3, generator=g).argsort(1).double()
    p[:, COL["angle"]] = _uniform(n, -DEGREES, DEGREES, g)
    p[:, COL["tx"]] = _uniform(n, -TRANSLATE * W, TRANSLATE * W, g).round()
    p[:, COL["ty"]] = _uniform(n, -TRANSLATE * H, TRANSLATE * H, g).round()
    p[:, COL["scale"]] = _uniform(n, *SCALE, g)
    # RandomErasing.make_params: the first of ERASE_TRIES boxes that fits, else no erasing.
    area = H * W * _uniform(n * ERASE_TRIES, *ERASE_SCALE, g).view(n, ERASE_TRIES)
    aspect = _uniform(n * ERASE_TRIES, math.log(ERASE_RATIO[0]), math.log(ERASE_RATIO[1]), g).exp().view(n, -1)
    h = (area * aspect).sqrt().round()
    w = (area / aspect).sqrt().round()
    fits = (h < H) & (w < W)
    first = fits.double().argmax(1, keepdim=True)  # first True (0 when none fits; masked below)
    h, w = h.gather(1, first).squeeze(1), w.gather(1, first).squeeze(1)
    wanted = torch.rand(n, generator=g, dtype=torch.float64) < ERASE_P
    p[:, COL["erase"]] = (wanted & fits.any(1)).double()
    p[:, COL["erase_i"]] = (torch.rand(n, generator=g, dtype=torch.float64) * (H - h + 1)).floor()
    p[:, COL["erase_j"]] = (torch.rand(n, generator=g, dtype=torch.float64) * (W - w + 1)).floor()
    p[:, COL["erase_h"]], p[:, COL["erase_w"]] = h, w
    return p.float()


def _stats(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    mean = torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1)
    return mean, std


def normalize(images: torch.Tensor) -> torch.Tensor:
    """uint8 [B, 3, H, W] -> float32, scaled to [0, 1] and ImageNet-normalised."""
    mean, std = _stats(images.device)
    return images.to(torch.float32).mul_(1.0 / 255.0).sub_(mean).div_(std)


def _jitter_plan(p: torch.Tensor, dtype: torch.dtype) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Per round r, per sample: (f, weight of the grey image, weight of the mean grey level).

    Each op blends the image with a target by its factor f: x <- f·x + (1 - f)·target,
    the target being black (brightness), the mean grey level (contrast) or the grey
    image (saturation); a sample's round-r op is ``op{r}``.
    """
    B = p.shape[0]
    factors = p[:, COL["brightness"] : COL["saturation"] + 1].to(dtype)
    rounds = []
    for r in range(3):
        op = p[:, COL[f"op{r}"]].long()
        f = factors.gather(1, op.unsqueeze(1)).view(B, 1, 1)
        rounds.append((f, (1.0 - f) * (op == SATURATION).to(dtype).view(B, 1, 1),
                       (1.0 - f) * (op == CONTRAST).to(dtype).view(B, 1, 1)))
    return rounds


def _jitter_(x: torch.Tensor, rounds: list[tuple[torch.Tensor, ...]], rows: slice) -> torch.Tensor:
    """The three blend rounds in place on 0..255 values, clamped after each (as torchvision).

    The grey image is one matrix product per round, the blend one fused multiply-add
    broadcast over the channels.
    """
    B, C, H, W = x.shape
    flat = x.view(B, C, H * W)
    luma = torch.tensor(GRAY, dtype=x.dtype, device=x.device).view(1, 1, 3)
    for f, w_gray, w_mean in rounds:
        gray = torch.matmul(luma, flat)  # [B, 1, H·W]
        target = torch.addcmul(w_mean[rows] * gray.mean(dim=2, keepdim=True), gray, w_gray[rows])
        torch.addcmul(target, flat, f[rows], out=flat).clamp_(0.0, 255.0)
    return x


def _grid(p: torch.Tensor, H: int, W: int, dtype: torch.dtype) -> torch.Tensor:
    """Sampling grid [B, H, W, 2] of flip + rotation / translation / scale about the centre.

    For grid_sample (align_corners=False) pixel x sits at xn = (2x + 1)/W - 1. The inverse
    of out = s·R(θ)·in + t is in = R(-θ)·(out - t)/s, and a flip negates the source x; in
    normalised coordinates that is an affine map, separable into a row and a column term.
    """
    B = p.shape[0]
    theta = p[:, COL["angle"]].to(dtype) * (math.pi / 180.0)
    cos, sin = theta.cos(), theta.sin()
    s = p[:, COL["scale"]].to(dtype)
    tx, ty = p[:, COL["tx"]].to(dtype), p[:, COL["ty"]].to(dtype)
    sign = 1.0 - 2.0 * p[:, COL["flip"]].to(dtype)
    xn = (torch.arange(W, device=p.device, dtype=dtype) * 2 + 1) / W - 1
    yn = (torch.arange(H, device=p.device, dtype=dtype) * 2 + 1) / H - 1
    col = lambda v: v.view(B, 1)  # noqa: E731
    grid = torch.empty(B, H, W, 2, device=p.device, dtype=dtype)
    gx_x = col(sign * cos / s) * xn
    gx_y = col(sign * sin / s * (H / W)) * yn + col(-sign * (cos * tx + sin * ty) / (s * W / 2))
    torch.add(gx_x.unsqueeze(1), gx_y.unsqueeze(2), out=grid[..., 0])
    gy_x = col(-sin / s * (W / H)) * xn
    gy_y = col(cos / s) * yn + col((sin * tx - cos * ty) / (s * H / 2))
    torch.add(gy_x.unsqueeze(1), gy_y.unsqueeze(2), out=grid[..., 1])
    return grid


def _erase_mask(p: torch.Tensor, H: int, W: int) -> torch.Tensor:
    rows = torch.arange(H, device=p.device, dtype=p.dtype).view(1, H)
    cols = torch.arange(W, device=p.device, dtype=p.dtype).view(1, W)
    i, j = p[:, COL["erase_i"] : COL["erase_i"] + 1], p[:, COL["erase_j"] : COL["erase_j"] + 1]
    h, w = p[:, COL["erase_h"] : COL["erase_h"] + 1], p[:, COL["erase_w"] : COL["erase_w"] + 1]
    in_rows = (rows >= i) & (rows < i + h) & (p[:, COL["erase"] : COL["erase"] + 1] > 0)
    in_cols = (cols >= j) & (cols < j + w)
    return (in_rows.unsqueeze(2) & in_cols.unsqueeze(1)).unsqueeze(1)


def _normalize(x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """0..255 values -> ImageNet-normalised, into ``out``."""
    for c in range(3):  # per channel: scalar operands are the fast path of elementwise kernels
        torch.add(x[:, c], -255.0 * IMAGENET_MEAN[c], out=out[:, c]).mul_(1.0 / (255.0 * IMAGENET_STD[c]))
    return out


def _augment(images: torch.Tensor, rounds: list, grid: torch.Tensor, rows: slice, out: torch.Tensor) -> None:
    x = _jitter_(images.to(torch.float32), rounds, rows)
    x = F.grid_sample(x, grid[rows], mode="nearest", padding_mode="zeros", align_corners=False)
    _normalize(x, out)


def augment(images: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
    """Augment a uint8 batch [B, 3, H, W] with per-sample ``params`` (on the images' device).

    On the CPU the batch goes through in chunks of CPU_CHUNK crops, whose buffers stay in
    the processor's cache (the same arithmetic; several times faster than whole batches).
    """
    if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"augment wants uint8 [B, 3, H, W], got {images.dtype} {list(images.shape)}")
    p = params.to(images.device, non_blocking=True)
    B, _, H, W = images.shape
    out = torch.empty(images.shape, dtype=torch.float32, device=images.device)
    rounds, grid = _jitter_plan(p, torch.float32), _grid(p, H, W, torch.float32)
    if images.device.type != "cpu":
        _augment(images, rounds, grid, slice(None), out)
        return out.masked_fill_(_erase_mask(p, H, W), 0.0)
    for start in range(0, B, CPU_CHUNK):
        rows = slice(start, start + CPU_CHUNK)
        _augment(images[rows], rounds, grid, rows, out[rows])
    # On the CPU a slice per erased crop beats a full-size mask (p is a host tensor here).
    for b in torch.nonzero(p[:, COL["erase"]] > 0).flatten().tolist():
        i, j, h, w = (int(v) for v in p[b, COL["erase_i"] : COL["erase_w"] + 1].tolist())
        out[b, :, i : i + h, j : j + w] = 0.0
    return out
