"""Device augmentations: the old torchvision pipeline's distributions, deterministic per (seed, epoch, step)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from laxai_trainer.reid.data import device_augment as da
from laxai_trainer.reid.data.loaders import IMAGENET_MEAN, IMAGENET_STD, INPUT_SIZE, train_transform

H, W = INPUT_SIZE
N = 300  # crops per distribution; ~2.9 % standard error on a rate of 0.5


def old(images: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """The old path: each uint8 crop through train_transform() on a PIL image."""
    torch.manual_seed(seed)
    t = train_transform()
    return torch.stack([t(Image.fromarray(img.permute(1, 2, 0).numpy())) for img in images])


def new(images: torch.Tensor, seed: int = 0) -> torch.Tensor:
    return da.augment(images, da.draw_params(len(images), (H, W), da.step_generator(seed, 1, 0)))


def halves() -> torch.Tensor:
    """Left half white, right half black: a flip swaps which half is brighter."""
    img = torch.zeros(N, 3, H, W, dtype=torch.uint8)
    img[..., : W // 2] = 255
    return img


def grey(level: int = 128) -> torch.Tensor:
    return torch.full((N, 3, H, W), level, dtype=torch.uint8)


def unnormalize(x: torch.Tensor) -> torch.Tensor:
    return x * torch.tensor(IMAGENET_STD).view(1, 3, 1, 1) + torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)


def identity_params(n: int) -> torch.Tensor:
    p = torch.zeros(n, len(da.PARAMS))
    p[:, [da.COL["brightness"], da.COL["contrast"], da.COL["saturation"], da.COL["scale"]]] = 1.0
    p[:, [da.COL["op0"], da.COL["op1"], da.COL["op2"]]] = torch.tensor([0.0, 1.0, 2.0])
    return p


def flip_rate(out: torch.Tensor) -> float:
    return float((out[..., W // 2 :].mean((1, 2, 3)) > out[..., : W // 2].mean((1, 2, 3))).float().mean())


def brightness(out: torch.Tensor) -> torch.Tensor:
    """Per crop, the factor on a grey crop: the median pixel (borders and erasing are minorities)."""
    return unnormalize(out)[:, 1].flatten(1).median(1).values * 255 / 128


def erased_fraction(out: torch.Tensor) -> torch.Tensor:
    """Per crop, the fraction of pixels erased to 0 in all channels (nothing else is 0 there)."""
    return (out == 0).all(1).flatten(1).float().mean(1)


# ---- the same distributions as the old pipeline -----------------------------------------------


@pytest.fixture(scope="module")
def grey_old() -> torch.Tensor:
    return old(grey())


@pytest.fixture(scope="module")
def grey_new() -> torch.Tensor:
    return new(grey())


def test_flip_rate_matches_the_old_pipeline() -> None:
    rate_old, rate_new = flip_rate(old(halves())), flip_rate(new(halves()))
    assert 0.4 < rate_new < 0.6 and 0.4 < rate_old < 0.6
    assert abs(rate_new - rate_old) < 0.12


def test_brightness_range_matches_the_old_pipeline(grey_old: torch.Tensor, grey_new: torch.Tensor) -> None:
    b_old, b_new = brightness(grey_old), brightness(grey_new)
    for b in (b_old, b_new):  # factor uniform in [0.8, 1.2]; contrast and saturation leave grey alone
        assert 0.78 < float(b.min()) < 0.83 and 1.17 < float(b.max()) < 1.22
        assert abs(float(b.mean()) - 1.0) < 0.02
    assert abs(float(b_old.std()) - float(b_new.std())) < 0.02  # uniform: 0.4 / sqrt(12) = 0.115


def test_erased_area_matches_the_old_pipeline(grey_old: torch.Tensor, grey_new: torch.Tensor) -> None:
    f_old, f_new = erased_fraction(grey_old), erased_fraction(grey_new)
    for f in (f_old, f_new):
        erased = f[f > 0]
        assert 0.4 < len(erased) / N < 0.6  # p = 0.5
        assert 0.015 < float(erased.min()) and float(erased.max()) < 0.16  # scale (0.02, 0.15), rounded boxes
        assert abs(float(erased.mean()) - 0.085) < 0.012
    assert abs(float(f_old[f_old > 0].mean()) - float(f_new[f_new > 0].mean())) < 0.015


def test_parameter_ranges_are_the_old_transforms() -> None:
    p = da.draw_params(4000, (H, W), da.step_generator(0, 1, 0))
    c = da.COL
    assert p[:, c["angle"]].abs().max() <= 5 and p[:, c["angle"]].abs().max() > 4.9
    assert set(p[:, c["tx"]].unique().tolist()) == set(range(-4, 5))  # round(U(-0.05 W, 0.05 W))
    assert set(p[:, c["ty"]].unique().tolist()) == set(range(-6, 7))
    assert 0.95 <= float(p[:, c["scale"]].min()) and float(p[:, c["scale"]].max()) <= 1.05
    orders = {tuple(row) for row in p[:, c["op0"] : c["op2"] + 1].long().tolist()}
    assert len(orders) == 6  # every order of brightness, contrast, saturation
    e = p[p[:, c["erase"]] > 0]
    assert bool(((e[:, c["erase_i"]] + e[:, c["erase_h"]]) <= H).all())
    assert bool(((e[:, c["erase_j"]] + e[:, c["erase_w"]]) <= W).all())


# ---- exact behaviour of each op ---------------------------------------------------------------


@pytest.fixture(scope="module")
def crops() -> torch.Tensor:
    return torch.randint(0, 256, (12, 3, H, W), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)


def test_identity_parameters_only_normalise(crops: torch.Tensor) -> None:
    torch.testing.assert_close(da.augment(crops, identity_params(12)), da.normalize(crops), atol=1e-5, rtol=0)


def test_flip_and_translation_move_pixels_exactly(crops: torch.Tensor) -> None:
    p = identity_params(12)
    p[:, da.COL["flip"]] = 1
    torch.testing.assert_close(da.augment(crops, p), da.normalize(crops.flip(-1)), atol=1e-5, rtol=0)
    p = identity_params(12)
    p[:, da.COL["tx"]], p[:, da.COL["ty"]] = 3, -2
    out, ref = da.augment(crops, p), da.normalize(crops)
    torch.testing.assert_close(out[:, :, : H - 2, 3:], ref[:, :, 2:, : W - 3], atol=1e-5, rtol=0)
    black = da.normalize(torch.zeros(1, 3, 1, 1, dtype=torch.uint8))
    assert torch.allclose(out[:, :, :, :3], black.expand(12, 3, H, 3))  # black fill, as fill=0


def test_colour_ops_match_torchvision_on_tensors(crops: torch.Tensor) -> None:
    from torchvision.transforms.v2 import functional as TF

    x = crops.float() / 255
    for op, fn in ((0, TF.adjust_brightness), (1, TF.adjust_contrast), (2, TF.adjust_saturation)):
        p = identity_params(12)
        p[:, da.COL["brightness"] + op] = 1.17
        p[:, [da.COL["op0"], da.COL["op1"], da.COL["op2"]]] = torch.tensor([float(op), float((op + 1) % 3),
                                                                            float((op + 2) % 3)])
        ref = torch.stack([fn(img, 1.17) for img in x])
        mean, std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
        torch.testing.assert_close(da.augment(crops, p), (ref - mean) / std, atol=1e-4, rtol=0)


def test_erasing_zeroes_exactly_the_drawn_box(crops: torch.Tensor) -> None:
    p = identity_params(12)
    p[:, da.COL["erase"]] = 1
    p[:, da.COL["erase_i"] : da.COL["erase_w"] + 1] = torch.tensor([10.0, 5.0, 20.0, 30.0])
    out = da.augment(crops, p)
    assert bool((out[:, :, 10:30, 5:35] == 0).all())
    mask = torch.ones(H, W, dtype=torch.bool)
    mask[10:30, 5:35] = False
    torch.testing.assert_close(out[:, :, mask], da.normalize(crops)[:, :, mask], atol=1e-5, rtol=0)


# ---- determinism ------------------------------------------------------------------------------


def test_a_batch_is_a_function_of_seed_epoch_and_step(crops: torch.Tensor) -> None:
    def run(seed: int, epoch: int, step: int) -> torch.Tensor:
        return da.augment(crops, da.draw_params(12, (H, W), da.step_generator(seed, epoch, step)))

    first = run(1, 2, 3)
    torch.manual_seed(99)  # the global RNG plays no part
    assert torch.equal(first, run(1, 2, 3))
    for other in ((2, 2, 3), (1, 3, 3), (1, 2, 4)):
        assert not torch.equal(first, run(*other))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_gives_the_cpu_result(crops: torch.Tensor) -> None:
    p = da.draw_params(12, (H, W), da.step_generator(0, 1, 0))
    cpu, gpu = da.augment(crops, p), da.augment(crops.cuda(), p).cpu()
    # the same parameters; pixels may differ only where float rounding moves a nearest-neighbour pick
    assert float((cpu - gpu).abs().gt(1e-3).float().mean()) < 1e-3


def test_augment_rejects_float_input() -> None:
    with pytest.raises(ValueError, match="uint8"):
        da.augment(torch.zeros(1, 3, H, W), identity_params(1))


def test_normalize_is_the_old_val_transform_on_the_same_pixels(crops: torch.Tensor) -> None:
    from laxai_trainer.reid.data.loaders import val_transform

    ref = torch.stack([val_transform()(Image.fromarray(np.ascontiguousarray(c.permute(1, 2, 0).numpy())))
                       for c in crops])
    torch.testing.assert_close(da.normalize(crops), ref, atol=1e-5, rtol=0)
