"""The training augmentations as batched tensor operations on the training device.

Public API::

    PARAMS                                   columns of a parameter table
    draw_params(n, size, generator) -> float32 [n, len(PARAMS)] on the CPU
    augment(images, params) -> float32 [B, 3, H, W], normalised (images: uint8 [B, 3, H, W])
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

How the pixel work is cheap (about three passes over a crop's float pixels, CPU or GPU):

- the colour jitter composes in closed form: with g a pixel's grey level, brightness
  ``f·x``, saturation ``f·x + (1-f)·g`` and contrast ``f·x + (1-f)·mean(g)`` keep the form
  ``a·x + b·g + k·m`` (grey is linear and its weights sum to 1; m is the crop's mean grey
  before any op), so a sample's jitter, in its own random op order, is three numbers, and
  the normalisation folds into them: one matrix product, one multiply-add, one clamp;
- the flip and the affine are then one nearest-neighbour gather: every output pixel reads
  the pixel its inverse affine lands on in a copy of the jittered crop with a one-pixel
  normalised-black border (the border when it lands outside: torchvision's fill=0). Jitter
  before the warp, as torchvision, so the fill stays black and contrast's mean is the
  unwarped crop's;
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
#: Crops per CPU work chunk (under 1 MB of buffers): small enough to stay in cache.
CPU_CHUNK = 8


def step_generator(seed: int, epoch: int, step: int) -> torch.Generator:
    """A CPU generator for one step: independent streams for every (seed, epoch, step)."""
    state = np.random.SeedSequence([int(seed), int(epoch), int(step)]).generate_state(1, np.uint64)[0]
    return torch.Generator().manual_seed(int(state) >> 1)


def draw_params(n: int, size: tuple[int, int], generator: torch.Generator) -> torch.Tensor:
    """Per-sample augmentation parameters (float32 [n, len(PARAMS)], CPU) for crops of ``size``.

    All uniforms come from one draw (columns below), then map to torchvision's parameters.
    """
    H, W = size
    u = torch.rand(n, 14 + 2 * ERASE_TRIES, generator=generator, dtype=torch.float64)
    lerp = lambda col, low, high: u[:, col] * (high - low) + low  # noqa: E731
    p = torch.empty(n, len(PARAMS), dtype=torch.float64)
    p[:, COL["flip"]] = (u[:, 0] < FLIP_P).double()
    p[:, COL["brightness"] : COL["saturation"] + 1] = u[:, 1:4] * (2 * JITTER) + (1 - JITTER)
    p[:, COL["op0"] : COL["op2"] + 1] = u[:, 4:7].argsort(1).double()  # a uniform random order (randperm)
    p[:, COL["angle"]] = lerp(7, -DEGREES, DEGREES)
    p[:, COL["tx"]] = lerp(8, -TRANSLATE * W, TRANSLATE * W).round()
    p[:, COL["ty"]] = lerp(9, -TRANSLATE * H, TRANSLATE * H).round()
    p[:, COL["scale"]] = lerp(10, *SCALE)
    # RandomErasing.make_params: the first of ERASE_TRIES boxes that fits, else no erasing.
    tries = u[:, 14:].view(n, 2, ERASE_TRIES)
    area = H * W * (tries[:, 0] * (ERASE_SCALE[1] - ERASE_SCALE[0]) + ERASE_SCALE[0])
    log_lo, log_hi = math.log(ERASE_RATIO[0]), math.log(ERASE_RATIO[1])
    aspect = (tries[:, 1] * (log_hi - log_lo) + log_lo).exp()
    h = (area * aspect).sqrt().round()
    w = (area / aspect).sqrt().round()
    fits = (h < H) & (w < W)
    first = fits.double().argmax(1, keepdim=True)  # first True (0 when none fits; masked below)
    h, w = h.gather(1, first).squeeze(1), w.gather(1, first).squeeze(1)
    p[:, COL["erase"]] = ((u[:, 11] < ERASE_P) & fits.any(1)).double()
    p[:, COL["erase_i"]] = (u[:, 12] * (H - h + 1)).floor()
    p[:, COL["erase_j"]] = (u[:, 13] * (W - w + 1)).floor()
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


def _jitter_coefficients(p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per sample, the composed jitter ``a·x + b·g + k·m`` of 0..255 values: (a, b, k), each [B].

    ``g`` is a pixel's grey level, ``m`` the crop's mean grey before any op (contrast's
    target is the mean grey of the image as the earlier ops left it: linear in ``m``).
    """
    B = p.shape[0]
    S = float(sum(GRAY))  # the grey of a grey level g is S·g
    a, b, k = (torch.ones(B, device=p.device), torch.zeros(B, device=p.device), torch.zeros(B, device=p.device))
    factors = p[:, COL["brightness"] : COL["saturation"] + 1]
    for r in range(3):
        op = p[:, COL[f"op{r}"]].long()
        f = factors.gather(1, op.unsqueeze(1)).squeeze(1)
        grey_a, grey_k = a + b * S, k * S  # grey of the current image = grey_a·g + grey_k·m
        sat, con = op == SATURATION, op == CONTRAST
        b = torch.where(sat, f * b + (1 - f) * grey_a, f * b)
        k = torch.where(sat, f * k + (1 - f) * grey_k, torch.where(con, f * k + (1 - f) * (grey_a + grey_k), f * k))
        a = f * a
    return a, b, k


def _affine_terms(p: torch.Tensor, H: int, W: int) -> tuple[torch.Tensor, ...]:
    """Source x and y of every output pixel as column + row terms: ([B, 1, W], [B, H, 1]) twice.

    Output pixel (x, y) has centre (u, v) = (x + ½ - W/2, y + ½ - H/2) about the image
    centre; the inverse of out = s·R(θ)·in + t is in = R(-θ)·(out - t)/s, and the flip
    (applied before the affine) mirrors the source: x_src = W/2 - u_src. Coordinates are
    in the crop with a one-pixel border (+1).
    """
    B = p.shape[0]
    dev, f32 = p.device, torch.float32
    theta = p[:, COL["angle"]] * (math.pi / 180.0)
    cos, sin = theta.cos(), theta.sin()
    s = p[:, COL["scale"]]
    tx, ty = p[:, COL["tx"]], p[:, COL["ty"]]
    sign = 1.0 - 2.0 * p[:, COL["flip"]]
    u = torch.arange(W, device=dev, dtype=f32).add_(0.5 - W / 2).view(1, 1, W)
    v = torch.arange(H, device=dev, dtype=f32).add_(0.5 - H / 2).view(1, H, 1)
    col = lambda t: t.view(B, 1, 1)  # noqa: E731
    return (col(sign * cos / s) * u, col(sign * sin / s) * v + col(W / 2 + 1 - sign * (cos * tx + sin * ty) / s),
            col(-sin / s) * u, col(cos / s) * v + col(H / 2 + 1 + (sin * tx - cos * ty) / s))


def _source_index(terms: tuple[torch.Tensor, ...], rows: slice, H: int, W: int, xy: torch.Tensor,
                  out: torch.Tensor) -> torch.Tensor:
    """Into ``out`` (int64 [b, 1, H·W]): per output pixel, its source in the zero-bordered (H+2)×(W+2) crop.

    Nearest neighbour is the source pixel that contains the point (floor, as PIL's NEAREST);
    a point outside the crop reads the border. ``xy``: float32 scratch [2, b, H, W].
    """
    x_u, x_v, y_u, y_v = (t[rows] for t in terms)
    b = x_u.shape[0]
    x, y = xy[0, :b], xy[1, :b]
    torch.add(x_u, x_v, out=x).floor_().clamp_(0, W + 1)
    torch.add(y_u, y_v, out=y).floor_().clamp_(0, H + 1)
    out = out[:b]
    out.view(b, H, W).copy_(x.add_(y, alpha=W + 2))
    return out


class _Plan:
    """A batch's per-sample coefficients and constants, computed once for all its chunks.

    Normalisation folds into the jitter: channel c's value v in 0..255 becomes
    gain_c·v + offset_c (gain_c = 1/(255·std_c), offset_c = -mean_c/std_c), so the clamp
    to [0, 255] is one to [offset_c, 255·gain_c + offset_c].
    """

    def __init__(self, p: torch.Tensor, H: int, W: int) -> None:
        dev = p.device
        B = p.shape[0]
        self.H, self.W = H, W
        a, b, k = _jitter_coefficients(p)
        luma = torch.tensor(GRAY, device=dev)
        self.mean_grey = luma / (H * W)  # of a crop's channel sums
        gain = [1.0 / (255.0 * s) for s in IMAGENET_STD]
        offset = [-mu / s for mu, s in zip(IMAGENET_MEAN, IMAGENET_STD, strict=True)]
        self.lo, self.hi = offset, [255.0 * g + o for g, o in zip(gain, offset, strict=True)]
        self.offset = torch.tensor(offset, device=dev).view(1, 3)
        gain_t = torch.tensor(gain, device=dev)
        self.scale = (a.view(B, 1) * gain_t).view(B, 3, 1, 1)  # of x_c
        self.grey = b.view(B, 1, 1) * gain_t.view(1, 3, 1) * luma.view(1, 1, 3)  # of (R, G, B)
        self.mean = k.view(B, 1) * gain_t  # of the crop's mean grey
        self.terms = _affine_terms(p, H, W)

    def buffers(self, b: int, device: torch.device) -> dict[str, torch.Tensor]:
        """Scratch for chunks of ``b`` crops, allocated once a batch (fresh large allocations fault pages).

        ``bordered``: float32 [b, 3, H+2, W+2] whose border is normalised black (torchvision's fill=0).
        """
        H, W = self.H, self.W
        return {
            "x": torch.empty(b, 3, H * W, device=device),
            "bordered": self.offset.view(1, 3, 1, 1).expand(b, 3, H + 2, W + 2).contiguous(),
            "xy": torch.empty(2, b, H, W, device=device),
            "index": torch.empty(b, 1, H * W, dtype=torch.long, device=device),
        }

    def run(self, images: torch.Tensor, rows: slice, scratch: dict[str, torch.Tensor], out: torch.Tensor) -> None:
        """Jitter, normalise and clamp ``images`` (rows ``rows``) into the bordered scratch, then warp into ``out``.

        Jitter before the affine, as torchvision: the fill stays black, the contrast mean is
        the unwarped crop's.
        """
        b, _, H, W = images.shape
        HW = H * W
        x = scratch["x"][:b]
        x.view(b, 3, H, W).copy_(images)
        m = x.sum(2).mv(self.mean_grey).view(b, 1)  # mean grey
        bias = torch.addcmul(self.offset, self.mean[rows], m).view(b, 3, 1)
        y = out.view(b, 3, HW)
        torch.baddbmm(bias, self.grey[rows], x, out=y)  # the grey and constant terms, in ``out`` for now
        buf = scratch["bordered"][:b]
        inner = buf[:, :, 1 : H + 1, 1 : W + 1]
        torch.addcmul(y.view(b, 3, H, W), x.view(b, 3, H, W), self.scale[rows], out=inner)
        for c in range(3):
            inner[:, c].clamp_(self.lo[c], self.hi[c])
        index = _source_index(self.terms, rows, H, W, scratch["xy"], scratch["index"])
        torch.gather(buf.view(b, 3, -1), 2, index.expand(b, 3, HW), out=y)


def _erase_mask(p: torch.Tensor, H: int, W: int) -> torch.Tensor:
    rows = torch.arange(H, device=p.device, dtype=p.dtype).view(1, H)
    cols = torch.arange(W, device=p.device, dtype=p.dtype).view(1, W)
    i, j = p[:, COL["erase_i"] : COL["erase_i"] + 1], p[:, COL["erase_j"] : COL["erase_j"] + 1]
    h, w = p[:, COL["erase_h"] : COL["erase_h"] + 1], p[:, COL["erase_w"] : COL["erase_w"] + 1]
    in_rows = (rows >= i) & (rows < i + h) & (p[:, COL["erase"] : COL["erase"] + 1] > 0)
    in_cols = (cols >= j) & (cols < j + w)
    return (in_rows.unsqueeze(2) & in_cols.unsqueeze(1)).unsqueeze(1)


def augment(images: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
    """Augment a uint8 batch [B, 3, H, W] with per-sample ``params`` (on the images' device).

    On the CPU the batch goes through in chunks of CPU_CHUNK crops, whose buffers stay in
    the processor's cache (the same arithmetic; several times faster than whole batches).
    """
    if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"augment wants uint8 [B, 3, H, W], got {images.dtype} {list(images.shape)}")
    p = params.to(images.device, torch.float32, non_blocking=True)
    B, _, H, W = images.shape
    out = torch.empty(images.shape, dtype=torch.float32, device=images.device)
    plan = _Plan(p, H, W)
    chunk = B if images.device.type != "cpu" else CPU_CHUNK
    scratch = plan.buffers(min(chunk, B), images.device)
    for start in range(0, B, chunk):
        rows = slice(start, start + chunk)
        plan.run(images[rows], rows, scratch, out[rows])
    if images.device.type != "cpu":
        return out.masked_fill_(_erase_mask(p, H, W), 0.0)
    # On the CPU a slice per erased crop beats a full-size mask (p is a host tensor here).
    for b in torch.nonzero(p[:, COL["erase"]] > 0).flatten().tolist():
        i, j, h, w = (int(v) for v in p[b, COL["erase_i"] : COL["erase_w"] + 1].tolist())
        out[b, :, i : i + h, j : j + w] = 0.0
    return out
