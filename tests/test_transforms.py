"""The device-side image transform: each augmentation recipe, seeded, and a plain resize at test time."""

from __future__ import annotations

import pytest
import torch

from hashbench.data.images import AUGMENTATIONS, ImageTransform

MEAN, STD = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)


def images(n: int = 8, size: int = 32) -> torch.Tensor:
    return (torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(0)) * 255).to(torch.uint8)


@pytest.mark.parametrize("augment", AUGMENTATIONS)
def test_recipe_shapes_seeding_and_test_time(augment):
    transform = ImageTransform(48, MEAN, STD, augment)
    x = images()
    first = transform(x, train=True, generator=torch.Generator().manual_seed(1))
    again = transform(x, train=True, generator=torch.Generator().manual_seed(1))
    assert first.shape == (8, 3, 48, 48) and torch.equal(first, again)
    plain = ImageTransform(48, MEAN, STD, "none")
    assert torch.equal(transform(x, train=False), plain(x, train=True))  # test time: resize only
    changed = not torch.allclose(first, plain(x, train=False))
    assert changed == (augment != "none")


def test_none_is_normalise_then_resize():
    x = images(2, 48)
    out = ImageTransform(48, MEAN, STD, "none")(x, train=True)
    expected = (x.float() / 255 - torch.tensor(MEAN)[:, None, None]) / torch.tensor(STD)[:, None, None]
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)


def test_flip_mirrors_some_images_exactly():
    x = images(16, 48)
    plain = ImageTransform(48, MEAN, STD, "none")(x, train=False)
    out = ImageTransform(48, MEAN, STD, "flip")(x, train=True, generator=torch.Generator().manual_seed(3))
    flipped = [torch.equal(out[i], plain[i].flip(-1)) for i in range(16)]
    kept = [torch.equal(out[i], plain[i]) for i in range(16)]
    assert all(f or k for f, k in zip(flipped, kept, strict=True)) and any(flipped) and any(kept)


def test_random_crop_is_a_zoom_of_the_image():
    """A constant image stays constant under any crop; a crop of a gradient covers less
    than the whole range (it is a zoom, not a resize)."""
    flat = torch.full((4, 3, 32, 32), 128, dtype=torch.uint8)
    out = ImageTransform(32, MEAN, STD, "crop_flip")(flat, train=True, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(out, out[:, :, :1, :1].expand_as(out))
    ramp = torch.linspace(0, 255, 32).round().to(torch.uint8).expand(4, 3, 32, 32).contiguous()
    crop = ImageTransform(32, MEAN, STD, "random_crop_flip")(ramp, train=True,
                                                             generator=torch.Generator().manual_seed(0))
    full = ImageTransform(32, MEAN, STD, "none")(ramp, train=False)
    span = crop[:, 0].amax((1, 2)) - crop[:, 0].amin((1, 2))
    assert (span < (full[:, 0].amax((1, 2)) - full[:, 0].amin((1, 2))) * 0.95).all()


def test_jitter_stays_within_five_percent():
    x = images(6, 32)
    plain = ImageTransform(32, (0, 0, 0), (1, 1, 1), "none")(x, train=False)
    out = ImageTransform(32, (0, 0, 0), (1, 1, 1), "flip_jitter")(x, train=True,
                                                                   generator=torch.Generator().manual_seed(0))
    assert (out.mean((1, 2, 3)) / plain.mean((1, 2, 3)) - 1).abs().max() < 0.06
