"""Device augmentations: the old torchvision pipeline's distributions, deterministic per (seed, epoch, step)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from laxai_trainer.reid.data import device_augment as da
from laxai_trainer.reid.data import loaders as data
from laxai_trainer.reid.data.crop_cache import ensure_crop_cache, split_images
from laxai_trainer.reid.data.loaders import IMAGENET_MEAN, IMAGENET_STD, INPUT_SIZE, train_transform
from tests.trainer.conftest import SYNTH_TENANT
from tests.trainer.reid.data import torchvision_reference

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


def ks_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """Two-sample Kolmogorov-Smirnov statistic: the largest gap between the empirical CDFs."""
    a, b = a.double().sort().values, b.double().sort().values
    at = torch.cat([a, b])
    cdf_a = torch.searchsorted(a, at, right=True).double() / len(a)
    cdf_b = torch.searchsorted(b, at, right=True).double() / len(b)
    return float((cdf_a - cdf_b).abs().max())


#: n = m = 3000: a KS distance above 0.05 rejects "same distribution" at p < 0.001.
KS_N, KS_MAX = 3000, 0.05


def test_parameters_follow_torchvisions_own_draws() -> None:
    """draw_params against the v2 transforms' make_params, parameter by parameter (two-sample KS)."""
    from torchvision.transforms import v2

    torch.manual_seed(0)
    img = Image.new("RGB", (W, H))
    affine = v2.RandomAffine(degrees=5, translate=(0.05, 0.05), scale=(0.95, 1.05))
    jitter = v2.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2)
    erasing = v2.RandomErasing(p=0.5, scale=(0.02, 0.15), value=0)
    tensor = torch.zeros(3, H, W)
    ref: dict[str, list[float]] = {k: [] for k in ("angle", "tx", "ty", "scale", "brightness", "order", "erase_h",
                                                   "erase_w", "erase_i", "erase_j", "area")}
    for _ in range(KS_N):
        a = affine.make_params([img])
        ref["angle"].append(a["angle"])
        ref["tx"].append(a["translate"][0])
        ref["ty"].append(a["translate"][1])
        ref["scale"].append(a["scale"])
        j = jitter.make_params([img])
        ref["brightness"].append(j["brightness_factor"])
        ref["order"].append(float("".join(str(int(i)) for i in j["fn_idx"] if int(i) < 3)))
        e = erasing.make_params([tensor])
        if e["v"] is not None:
            for k in ("h", "w", "i", "j"):
                ref[f"erase_{k}"].append(e[k])
            ref["area"].append(e["h"] * e["w"])
    p = da.draw_params(KS_N, (H, W), da.step_generator(0, 1, 0))
    ours = {name: p[:, da.COL[name]] for name in ("angle", "tx", "ty", "scale", "brightness")}
    ours["order"] = torch.tensor([float("".join(str(int(v)) for v in row)) for row in p[:, da.COL["op0"]:
                                                                                      da.COL["op2"] + 1]])
    boxes = p[p[:, da.COL["erase"]] > 0]
    for k in ("h", "w", "i", "j"):
        ours[f"erase_{k}"] = boxes[:, da.COL[f"erase_{k}"]]
    ours["area"] = ours["erase_h"] * ours["erase_w"]
    distances = {k: ks_distance(ours[k], torch.tensor(v)) for k, v in ref.items()}
    assert max(distances.values()) < KS_MAX, distances
    assert abs(len(boxes) / KS_N - 0.5) < 0.03  # erasing's p (make_params itself always draws a box)


# ---- the old ops on the same parameters -------------------------------------------------------


@pytest.fixture(scope="module")
def synth_crops(synth_root, tmp_path_factory) -> torch.Tensor:
    """Real-looking crops (synthetic players, kits, field) from the crop cache."""
    dirs = sorted((synth_root / SYNTH_TENANT / "datasets").iterdir())
    index = data.scan_split(dirs, "train", 2, SYNTH_TENANT)
    return split_images(index, ensure_crop_cache(dirs, tmp_path_factory.mktemp("crops")).datasets)[:96]


def levels(new: torch.Tensor, old: torch.Tensor) -> torch.Tensor:
    """Per pixel, new minus old in 0..255 levels (undoing the normalisation's scale)."""
    return (new - old) * torch.tensor(IMAGENET_STD).view(1, 3, 1, 1) * 255


def test_geometry_moves_pixels_as_torchvision_on_pil(synth_crops: torch.Tensor) -> None:
    p = da.draw_params(len(synth_crops), (H, W), da.step_generator(0, 1, 0))
    p[:, [da.COL["brightness"], da.COL["contrast"], da.COL["saturation"]]] = 1.0
    diff = levels(da.augment(synth_crops, p), torchvision_reference.augment(synth_crops, p)).abs()
    # flip, rotation, scale, translation, black fill, erasing: the same source pixel everywhere
    # but where the source point falls within float rounding of a pixel edge
    assert float((diff > 0.5).float().mean()) < 0.002


def test_the_same_parameters_give_torchvisions_pixels(synth_crops: torch.Tensor) -> None:
    """Full augmentation against torchvision on PIL, on the same draw.

    PIL works in uint8 and truncates after each of the three jitter ops (the old pixels are
    ~1.4 levels darker on average); the device's single clamp differs from PIL's per-op
    clamps where an op pushes a pixel out of 0..255 and a later op pulls it back: measured
    0.3 % of pixels by more than 8 levels, 0.002 % by more than 32.
    """
    p = da.draw_params(len(synth_crops), (H, W), da.step_generator(0, 1, 0))
    diff = levels(da.augment(synth_crops, p), torchvision_reference.augment(synth_crops, p))
    assert 0.0 < float(diff.mean()) < 2.0  # PIL's truncation
    assert float(diff.abs().mean()) < 2.0
    assert float((diff.abs() > 8).float().mean()) < 0.01
    assert float((diff.abs() > 32).float().mean()) < 0.001


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


def test_erasing_wins_over_the_black_fill(crops: torch.Tensor) -> None:
    """torchvision erases after the affine: an erased box over the fill is 0, not black."""
    p = identity_params(12)
    p[:, da.COL["tx"]] = 10  # columns 0..9 are fill
    p[:, da.COL["erase"]] = 1
    p[:, da.COL["erase_i"] : da.COL["erase_w"] + 1] = torch.tensor([0.0, 0.0, 20.0, 30.0])
    out = da.augment(crops, p)
    assert bool((out[:, :, :20, :30] == 0).all())
    black = da.normalize(torch.zeros(1, 3, 1, 1, dtype=torch.uint8))
    torch.testing.assert_close(out[:, :, 20:, :10], black.expand(12, 3, H - 20, 10), atol=1e-6, rtol=0)


def test_an_augmenter_gives_the_same_pixels_batch_after_batch(crops: torch.Tensor) -> None:
    """Its scratch (the border set once) is reused across batches and chunk sizes: nothing carries over."""
    aug = da.Augmenter((H, W), "cpu")
    big = torch.cat([crops, crops.flip(0)])  # 24 crops: a whole CPU chunk and a remainder
    p = da.draw_params(24, (H, W), da.step_generator(0, 1, 0))
    p[::2, da.COL["erase"]] = 1.0
    first = aug(big, p)
    aug(crops, da.draw_params(12, (H, W), da.step_generator(0, 1, 1)))  # another batch in between
    assert torch.equal(aug(big, p), first)
    for i in range(24):  # each crop as a batch of its own, in a fresh Augmenter
        torch.testing.assert_close(first[i : i + 1], da.augment(big[i : i + 1], p[i : i + 1]), atol=1e-5, rtol=0)


def test_channel_sums_passed_in_are_the_contrast_mean(crops: torch.Tensor) -> None:
    aug = da.Augmenter((H, W), "cpu")
    p = identity_params(12)
    p[:, da.COL["contrast"]] = 0.8  # contrast pulls each pixel towards the crop's mean grey
    own = aug(crops, p)
    assert torch.equal(aug(crops, p, da.channel_sums(crops)), own)
    assert not torch.allclose(aug(crops, p, torch.zeros(12, 3)), own)  # the sums given are the ones used


def test_an_augmenter_is_for_one_crop_size(crops: torch.Tensor) -> None:
    with pytest.raises(ValueError, match="120x80"):
        da.Augmenter((H, W), "cpu")(crops[:, :, :60], identity_params(12))


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
