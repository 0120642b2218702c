"""The training augmentations as batched tensor operations on the training device.

Public API::

    PARAMS                                   columns of a parameter table
    draw_params(n, size, generator) -> float32 [n, len(PARAMS)] on the CPU
    Augmenter(size, device)(images, params, sums=None) -> float32 [B, 3, H, W], normalised
        (images: uint8 [B, 3, H, W] on ``device``; params: the host table; sums: channel_sums(images))
    augment(images, params) -> the same, with a one-off Augmenter
    channel_sums(images) -> float32 [.., 3]   per crop, what contrast needs: computable once
    coefficients(params, H, W) -> float32 [B, N_COEF + H + W]   per sample, the pixel work's constants
    to_device(t, device) -> t on device, copied without waiting (pinned for a GPU)
    normalize(images) -> float32 [B, 3, H, W]   the validation transform of a cached crop
    step_generator(seed, epoch, step) -> torch.Generator

The same augmentations as ``laxai_trainer.reid.data.loaders.train_transform`` (torchvision v2 on PIL),
with the same parameter distributions, drawn per sample:

- horizontal flip, p = 0.5;
- colour jitter, brightness / contrast / saturation factors each uniform in [0.8, 1.2],
  applied in a random order per sample (ColorJitter's ``randperm``); no hue (the jersey
  hue identifies a player);
- affine: rotation uniform in ±5°, translation ±5 % of W and H rounded to whole pixels,
  scale uniform in [0.95, 1.05], about the image centre, nearest-neighbour, black fill;
- ImageNet normalisation, then random erasing, p = 0.5, area uniform in [2 %, 15 %] of
  the image, log-uniform aspect ratio in [0.3, 3.3], up to 10 tries for a box that fits,
  erased to 0 (the normalised mean colour).

The parameters are drawn on the CPU from a generator seeded by (seed, epoch, step), so a
batch's augmentations are a function of those three alone, identical on every device
type and whatever the number of workers; only the pixel work runs on the device.

How the pixel work is cheap (per crop: one float conversion, one 3×3 colour product, one
clamp into a bordered copy, one gather; CPU or GPU):

- the parameters' arithmetic (a few hundred numbers a batch) is numpy on the host: each
  sample's constants go to the device as one small table (pinned, without waiting);
- the colour jitter composes in closed form: with g a pixel's grey level, brightness
  ``f·x``, saturation ``f·x + (1-f)·g`` and contrast ``f·x + (1-f)·mean(g)`` keep the form
  ``a·x + b·g + k·m`` (grey is linear and its weights sum to 1; m is the crop's mean grey
  before any op), so a sample's jitter, in its own random op order, is three numbers, and
  the normalisation folds into them: one 3×3 matrix product with a per-sample bias (m comes
  from the crop's channel sums, which the batches keep for the run);
- the flip and the affine are then one nearest-neighbour gather: every output pixel reads
  the pixel its inverse affine lands on in a copy of the jittered crop with a one-pixel
  normalised-black border (the border when it lands outside: torchvision's fill=0). Jitter
  before the warp, as torchvision, so the fill stays black and contrast's mean is the
  unwarped crop's. Random erasing rides on the same gather: the box is rows × columns, so
  adding ``rows·cols·P`` to the source index (P the bordered crop's size) sends exactly the
  erased pixels past the crop, to a 0 kept there;
- on the CPU a batch goes in chunks of CPU_CHUNK crops, with scratch buffers kept from batch
  to batch, and ``laxai-train`` keeps freed host memory in the process
  (:mod:`laxai_trainer.host_memory`): fresh pages would be faulted in every step;
- one clamp to [0, 255] at the end, where torchvision on PIL clamps (and truncates to
  uint8) after each op. They differ where an op pushes a pixel past 0 or 255 and a later
  op of the same sample pulls it back in: on the synthetic crops, with the same parameters,
  0.3 % of the pixels by more than 8 levels, 0.002 % by more than 32; PIL's truncation makes
  its pixels ~1.4 levels darker on average (test_device_augment.py bounds all three). The
  contrast mean likewise ignores earlier ops' clipping (it weighs 1-f ≤ 0.2: under a level).
  Keeping per-op clamps would cost a pass over the pixels per op for that tail.
"""

from __future__ import annotations

import math

import numpy as np
import torch

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
#: ITU-R 601 luma as PIL's convert("L"), the grey of ImageEnhance.Color / Contrast (the old path is PIL).
GRAY = (0.299, 0.587, 0.114)
BRIGHTNESS, CONTRAST, SATURATION = 0, 1, 2
#: Crops per CPU work chunk: few enough for its buffers (~9 MB) to stay in the processor cache, enough
#: to spread the per-op overhead (whole pipeline, 2-core dev VM: 8: 40, 16: 38, 32: 42 µs a crop).
CPU_CHUNK = 16


def step_generator(seed: int, epoch: int, step: int) -> torch.Generator:
    """A CPU generator for one step: independent streams for every (seed, epoch, step)."""
    state = np.random.SeedSequence([int(seed), int(epoch), int(step)]).generate_state(1, np.uint64)[0]
    return torch.Generator().manual_seed(int(state) >> 1)


def draw_params(n: int, size: tuple[int, int], generator: torch.Generator) -> torch.Tensor:
    """Per-sample augmentation parameters (float32 [n, len(PARAMS)], CPU) for crops of ``size``.

    All uniforms come from one draw of ``generator`` (columns below), then map to
    torchvision's parameters (in numpy: a few µs where torch's small ops take ~100).
    """
    H, W = size
    u = torch.rand(n, 14 + 2 * ERASE_TRIES, generator=generator, dtype=torch.float64).numpy()
    lerp = lambda col, low, high: u[:, col] * (high - low) + low  # noqa: E731
    p = np.empty((n, len(PARAMS)))
    p[:, COL["flip"]] = u[:, 0] < FLIP_P
    p[:, COL["brightness"] : COL["saturation"] + 1] = u[:, 1:4] * (2 * JITTER) + (1 - JITTER)
    p[:, COL["op0"] : COL["op2"] + 1] = u[:, 4:7].argsort(1)  # a uniform random order (randperm)
    p[:, COL["angle"]] = lerp(7, -DEGREES, DEGREES)
    p[:, COL["tx"]] = np.round(lerp(8, -TRANSLATE * W, TRANSLATE * W))
    p[:, COL["ty"]] = np.round(lerp(9, -TRANSLATE * H, TRANSLATE * H))
    p[:, COL["scale"]] = lerp(10, *SCALE)
    # RandomErasing.make_params: the first of ERASE_TRIES boxes that fits, else no erasing.
    tries = u[:, 14:].reshape(n, 2, ERASE_TRIES)
    area = H * W * (tries[:, 0] * (ERASE_SCALE[1] - ERASE_SCALE[0]) + ERASE_SCALE[0])
    log_lo, log_hi = math.log(ERASE_RATIO[0]), math.log(ERASE_RATIO[1])
    aspect = np.exp(tries[:, 1] * (log_hi - log_lo) + log_lo)
    h = np.round(np.sqrt(area * aspect))
    w = np.round(np.sqrt(area / aspect))
    fits = (h < H) & (w < W)
    first = fits.argmax(1)  # first True (0 when none fits; masked below)
    h, w = h[np.arange(n), first], w[np.arange(n), first]
    p[:, COL["erase"]] = (u[:, 11] < ERASE_P) & fits.any(1)
    p[:, COL["erase_i"]] = np.floor(u[:, 12] * (H - h + 1))
    p[:, COL["erase_j"]] = np.floor(u[:, 13] * (W - w + 1))
    p[:, COL["erase_h"]], p[:, COL["erase_w"]] = h, w
    return torch.from_numpy(p.astype(np.float32))


def _stats(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    mean = torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1)
    return mean, std


def normalize(images: torch.Tensor) -> torch.Tensor:
    """uint8 [B, 3, H, W] -> float32, scaled to [0, 1] and ImageNet-normalised."""
    mean, std = _stats(images.device)
    return images.to(torch.float32).mul_(1.0 / 255.0).sub_(mean).div_(std)


def _jitter_coefficients(p: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per sample, the composed jitter ``a·x + b·g + k·m`` of 0..255 values: (a, b, k), each [B].

    ``g`` is a pixel's grey level, ``m`` the crop's mean grey before any op (contrast's
    target is the mean grey of the image as the earlier ops left it: linear in ``m``).
    """
    B = p.shape[0]
    S = float(sum(GRAY))  # the grey of a grey level g is S·g
    a, b, k = np.ones(B), np.zeros(B), np.zeros(B)
    factors = p[:, COL["brightness"] : COL["saturation"] + 1]
    for r in range(3):
        op = p[:, COL[f"op{r}"]].astype(np.int64)
        f = factors[np.arange(B), op]
        grey_a, grey_k = a + b * S, k * S  # grey of the current image = grey_a·g + grey_k·m
        sat, con = op == SATURATION, op == CONTRAST
        b = np.where(sat, f * b + (1 - f) * grey_a, f * b)
        k = np.where(sat, f * k + (1 - f) * grey_k, np.where(con, f * k + (1 - f) * (grey_a + grey_k), f * k))
        a = f * a
    return a, b, k


#: Columns of the per-sample coefficient table (:func:`coefficients`); the erase rows and
#: columns follow, H + W of them.
COLOUR = slice(0, 9)  # 3×3, row-major: normalised output channel <- 0..255 input channels
MEAN = slice(9, 18)  # 3×3: normalised output channel <- the crop's channel sums (contrast's mean grey)
SOURCE = slice(18, 24)  # source x = A·u + B·v + C, y = D·u + E·v + F (see coefficients)
N_COEF = 24

#: Per channel c, 0..255 -> normalised is GAIN[c]·v + OFFSET[c]; HIGH is 255 normalised.
GAIN = np.array([1.0 / (255.0 * s) for s in IMAGENET_STD])
OFFSET = np.array([-mu / s for mu, s in zip(IMAGENET_MEAN, IMAGENET_STD, strict=True)])
HIGH = 255.0 * GAIN + OFFSET


def coefficients(params: torch.Tensor, H: int, W: int) -> torch.Tensor:
    """The per-sample constants of the pixel work: float32 [B, N_COEF + H + W] on the host.

    Colour: output channel c of a pixel x (0..255 per channel) is
    ``Σ_d COLOUR[c, d]·x_d + Σ_d MEAN[c, d]·S_d + OFFSET[c]``, with S_d the crop's sum of
    channel d: the jitter ``a·x + b·g + k·m`` (g the pixel's grey, m the crop's mean grey)
    times the normalisation's gain.

    Geometry: output pixel (x, y) has centre (u, v) = (x + ½ - W/2, y + ½ - H/2) about the
    image centre; the inverse of out = s·R(θ)·in + t is in = R(-θ)·(out - t)/s, and the
    flip (applied before the affine) mirrors the source: x_src = W/2 - u_src. Source
    coordinates are in the crop with a one-pixel border (+1).

    Erasing: the erased pixels are rows × columns of a box, so the last H + W columns are
    the box's rows (as the bordered crop's size P = (H+2)·(W+2), else 0) and its columns
    (1, else 0): their product is P exactly on the box.
    """
    p = params.detach().cpu().double().numpy()
    B = p.shape[0]
    a, b, k = _jitter_coefficients(p)
    luma = np.array(GRAY)
    colour = GAIN.reshape(1, 3, 1) * (a.reshape(B, 1, 1) * np.eye(3) + b.reshape(B, 1, 1) * luma.reshape(1, 1, 3))
    mean = (k.reshape(B, 1, 1) * GAIN.reshape(1, 3, 1)) * (luma / (H * W)).reshape(1, 1, 3)
    theta = np.radians(p[:, COL["angle"]])
    cos, sin = np.cos(theta), np.sin(theta)
    s, tx, ty = p[:, COL["scale"]], p[:, COL["tx"]], p[:, COL["ty"]]
    sign = 1.0 - 2.0 * p[:, COL["flip"]]
    source = np.stack([sign * cos / s, sign * sin / s, W / 2 + 1 - sign * (cos * tx + sin * ty) / s,
                       -sin / s, cos / s, H / 2 + 1 + (sin * tx - cos * ty) / s], 1)
    col = lambda name: p[:, COL[name], None]  # noqa: E731
    rows, cols = np.arange(H), np.arange(W)
    erase_rows = (col("erase") > 0) & (rows >= col("erase_i")) & (rows < col("erase_i") + col("erase_h"))
    erase_cols = (cols >= col("erase_j")) & (cols < col("erase_j") + col("erase_w"))
    table = np.concatenate([colour.reshape(B, 9), mean.reshape(B, 9), source,
                            erase_rows * float((H + 2) * (W + 2)), erase_cols], 1)
    return torch.from_numpy(table.astype(np.float32))


def to_device(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A host tensor on ``device`` without waiting for it: pinned first when it goes to a GPU
    (a copy from pageable memory would wait for the GPU's queue)."""
    if device.type == "cuda":
        t = t.pin_memory()
    return t.to(device, non_blocking=True)


def channel_sums(images: torch.Tensor) -> torch.Tensor:
    """Per uint8 crop [.., 3, H, W], its channel sums (float32 [.., 3]; exact below 2**24,
    65,000 pixels): what contrast's mean grey needs, computable once per crop."""
    return images.sum((-2, -1), dtype=torch.float32)


class Augmenter:
    """Augments uint8 batches of one crop size on one device, reusing its scratch buffers
    from batch to batch (on the CPU, fresh large allocations fault their pages in again).

    On the CPU a batch goes through in chunks of CPU_CHUNK crops, whose buffers stay in
    the processor's caches; on other devices a batch is one chunk.
    """

    def __init__(self, size: tuple[int, int], device: torch.device | str) -> None:
        self.H, self.W = (int(v) for v in size)
        self.device = torch.device(device)
        H, W = self.H, self.W
        self.P = (H + 2) * (W + 2)
        self.low, self.high = OFFSET.tolist(), HIGH.tolist()
        self.offset = torch.tensor(self.low, dtype=torch.float32, device=self.device).view(1, 3, 1)
        self.u = torch.arange(W, device=self.device, dtype=torch.float32).add_(0.5 - W / 2).view(1, 1, W)
        self.v = torch.arange(H, device=self.device, dtype=torch.float32).add_(0.5 - H / 2).view(1, H, 1)
        self.scratch: dict[int, _Scratch] = {}

    def _scratch(self, b: int) -> _Scratch:
        if b not in self.scratch:  # the chunk size, and a batch's remainder
            self.scratch[b] = _Scratch(b, self.H, self.W, self.offset)
        return self.scratch[b]

    def __call__(self, images: torch.Tensor, params: torch.Tensor, sums: torch.Tensor | None = None) -> torch.Tensor:
        """Augment a uint8 batch [B, 3, H, W] with per-sample ``params`` (the host table of
        :func:`draw_params`: the coefficients are computed on the host, then copied without waiting).

        ``sums``: the crops' :func:`channel_sums` where the caller keeps them, else computed here.
        """
        _check(images)
        B, _, H, W = images.shape
        if (H, W) != (self.H, self.W):
            raise ValueError(f"augment: this Augmenter is for {self.H}x{self.W} crops, got {H}x{W}")
        coef = to_device(coefficients(params, H, W), images.device)
        out = torch.empty(images.shape, dtype=torch.float32, device=images.device)
        A, Bx, C, D, E, F = (coef[:, i].view(B, 1, 1) for i in range(SOURCE.start, SOURCE.stop))
        sums = channel_sums(images) if sums is None else sums
        bias = torch.baddbmm(self.offset, coef[:, MEAN].view(B, 3, 3), sums.view(B, 3, 1))
        per_crop = (images, out, bias, coef[:, COLOUR].view(B, 3, 3),
                    A * self.u, torch.addcmul(C, Bx, self.v), D * self.u, torch.addcmul(F, E, self.v),
                    coef[:, N_COEF : N_COEF + H].view(B, H, 1), coef[:, N_COEF + H :].view(B, 1, W))
        chunk = B if images.device.type != "cpu" else CPU_CHUNK
        for start in range(0, B, chunk):
            rows = slice(start, start + chunk)
            self._chunk(*(t[rows] for t in per_crop))
        return out

    def _chunk(self, images: torch.Tensor, out: torch.Tensor, bias: torch.Tensor, colour: torch.Tensor,
               x_u: torch.Tensor, x_v: torch.Tensor, y_u: torch.Tensor, y_v: torch.Tensor,
               erase_rows: torch.Tensor, erase_cols: torch.Tensor) -> None:
        """Jitter, normalise and clamp ``images`` into the bordered scratch, then warp and erase into ``out``.

        Jitter before the affine, as torchvision: the fill stays black, the contrast mean is
        the unwarped crop's. The source index: nearest neighbour is the source pixel that
        contains the point (floor, as PIL's NEAREST); a point outside the crop reads the
        border; an erased pixel reads the 0 after the crop.
        """
        s, (H, W) = self._scratch(images.shape[0]), (self.H, self.W)
        s.x4.copy_(images)
        torch.baddbmm(bias, colour, s.x, out=s.y)
        for c in range(3):
            torch.clamp(s.y_channels[c], self.low[c], self.high[c], out=s.inner_channels[c])
        torch.add(x_u, x_v, out=s.src_x).clamp_(0, W + 1).floor_()
        torch.add(y_u, y_v, out=s.src_y).clamp_(0, H + 1).floor_()
        s.src_x.add_(s.src_y, alpha=W + 2).addcmul_(erase_rows, erase_cols).clamp_(max=self.P)  # below 2**24: exact
        s.index32.copy_(s.src_x)
        s.index.copy_(s.index32)  # int32 first: float -> int64 directly is slower
        torch.gather(s.bordered, 2, s.index3, out=out.view(s.index3.shape))


class _Scratch:
    """An Augmenter's buffers for chunks of ``b`` crops, with the views a chunk uses.

    ``bordered``: [b, 3, P + 1], a crop with a one-pixel border of normalised black
    (torchvision's fill=0), then one 0 (the erase value, the normalised mean colour); set
    once: chunks write only the inside.
    """

    def __init__(self, b: int, H: int, W: int, offset: torch.Tensor) -> None:
        dev, P = offset.device, (H + 2) * (W + 2)
        self.x = torch.empty(b, 3, H * W, device=dev)
        self.x4 = self.x.view(b, 3, H, W)
        self.y = torch.empty(b, 3, H * W, device=dev)
        self.y_channels = self.y.view(b, 3, H, W).unbind(1)
        self.bordered = torch.cat([offset.expand(b, 3, P), torch.zeros(b, 3, 1, device=dev)], 2)
        self.inner_channels = self.bordered[:, :, :P].view(b, 3, H + 2, W + 2)[:, :, 1 : H + 1, 1 : W + 1].unbind(1)
        self.src_x, self.src_y = torch.empty(2, b, H, W, device=dev).unbind(0)
        self.index32 = torch.empty(b, H, W, dtype=torch.int32, device=dev)
        index = torch.empty(b, 1, H * W, dtype=torch.long, device=dev)
        self.index = index.view(b, H, W)
        self.index3 = index.expand(b, 3, H * W)


def augment(images: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
    """Augment a uint8 batch [B, 3, H, W] with per-sample ``params`` (a one-off :class:`Augmenter`)."""
    _check(images)
    return Augmenter((images.shape[2], images.shape[3]), images.device)(images, params)


def _check(images: torch.Tensor) -> None:
    if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"augment wants uint8 [B, 3, H, W], got {images.dtype} {list(images.shape)}")
