"""The old pipeline's augmentation ops (torchvision v2 functionals on PIL), driven by device_augment's parameters.

``train_transform`` draws its parameters inside each v2 transform and then calls these
functionals; here the parameters come from a ``draw_params`` row instead, so the old ops
and the device ops can be compared on exactly the same draw.
"""

from __future__ import annotations

import torch
from PIL import Image
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from laxai_trainer.reid.data.device_augment import COL
from laxai_trainer.reid.data.loaders import IMAGENET_MEAN, IMAGENET_STD

JITTER_OPS = (TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation)


def augment_one(crop: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """One uint8 [3, H, W] crop as train_transform() would augment it with parameters ``p``."""
    img = Image.fromarray(crop.permute(1, 2, 0).contiguous().numpy())
    if p[COL["flip"]] > 0:
        img = TF.horizontal_flip(img)
    for r in range(3):  # ColorJitter: its fn_idx order
        op = int(p[COL[f"op{r}"]])
        img = JITTER_OPS[op](img, float(p[COL["brightness"] + op]))
    img = TF.affine(img, angle=float(p[COL["angle"]]), translate=[int(p[COL["tx"]]), int(p[COL["ty"]])],
                    scale=float(p[COL["scale"]]), shear=[0.0, 0.0], interpolation=InterpolationMode.NEAREST, fill=0)
    t = TF.normalize(TF.to_dtype(TF.to_image(img), torch.float32, scale=True), IMAGENET_MEAN, IMAGENET_STD)
    if p[COL["erase"]] > 0:
        i, j, h, w = (int(v) for v in p[COL["erase_i"] : COL["erase_w"] + 1])
        t = TF.erase(t, i, j, h, w, torch.tensor(0.0))
    return t


def augment(images: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
    """``device_augment.augment``'s contract, computed crop by crop with the old ops."""
    return torch.stack([augment_one(c, p) for c, p in zip(images.cpu(), params.cpu(), strict=True)]).to(images.device)
