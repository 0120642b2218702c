"""Decode crops into rows of a uint8 file: the cache build's worker function.

Imports only numpy and Pillow: a build worker needs nothing else (and starts fast where it is spawned).
The resize is the old pipeline's first step (``v2.Resize(size, antialias=True)`` on a PIL
image is Pillow's antialiased bilinear resize), so a cached row is byte-identical to the
image the old path augments.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image


def decode_crop(path: str, size: tuple[int, int]) -> np.ndarray:
    """One crop as uint8 [3, H, W], resized to ``size`` (H, W)."""
    with Image.open(path) as img:
        rgb = img.convert("RGB").resize((size[1], size[0]), Image.BILINEAR)
    return np.asarray(rgb, dtype=np.uint8).transpose(2, 0, 1)


def decode_rows(out_path: str, count: int, size: tuple[int, int], start: int, paths: Sequence[str]) -> int:
    """Decode ``paths`` into rows ``start..`` of the [count, 3, H, W] uint8 file; the rows written."""
    rows = np.memmap(out_path, dtype=np.uint8, mode="r+", shape=(count, 3, *size))
    for offset, path in enumerate(paths):
        rows[start + offset] = decode_crop(path, size)
    rows.flush()
    del rows
    return len(paths)
