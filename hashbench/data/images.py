"""Image stores and batch iteration.

Two stores cover every dataset:

* :class:`TensorImages` holds a small dataset (digits, CIFAR-10) decoded once as one
  uint8 tensor; batches are slices, moved to the device and transformed there.
* :class:`FileImages` decodes files on demand in DataLoader workers (large list-file
  datasets), resized to a fixed ``load_size`` so batches stack; the device-side
  transform is then the same as for tensors.

Either way a batch reaches the runner as a uint8 ``(B, 3, H, W)`` tensor plus the
positions of its items, and :class:`ImageTransform` does resizing, augmentation and
normalisation on the device in one place.
"""

from __future__ import annotations

import io
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError
from torch.utils.data import DataLoader, Dataset

from hashbench.validation import HashbenchError


class TensorImages:
    """All images in memory as a uint8 ``(N, 3, H, W)`` tensor."""

    def __init__(self, pixels: torch.Tensor) -> None:
        if pixels.dtype != torch.uint8 or pixels.ndim != 4 or pixels.shape[1] != 3:
            raise ValueError(f"expected a uint8 (N, 3, H, W) tensor; got {pixels.dtype} {tuple(pixels.shape)}")
        self.pixels = pixels

    def __len__(self) -> int:
        return self.pixels.shape[0]


def decode_rgb(source: Path | bytes, name: str, size: int | None = None) -> np.ndarray:
    """One image file (a path, or its bytes) as a uint8 (H, W, 3) array, resized to a
    ``size`` square when given; a missing or unreadable file raises a one-line error naming
    ``name``. The one place images are decoded."""
    try:
        with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as img:
            rgb = img.convert("RGB")
            if size is not None:
                rgb = rgb.resize((size, size), Image.BILINEAR)
            return np.asarray(rgb, dtype=np.uint8).copy()
    except FileNotFoundError:
        raise HashbenchError(f"missing image file: {name}") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise HashbenchError(f"corrupt or truncated image: {name} ({err})") from None


def decode_image(path: Path, size: int) -> torch.Tensor:
    """One image file as a uint8 ``(3, size, size)`` tensor."""
    return torch.from_numpy(decode_rgb(path, str(path), size)).permute(2, 0, 1)


#: The side :class:`FileImages` decodes files to unless told otherwise.
LOAD_SIZE = 256


class FileImages(Dataset):
    """Image files decoded on demand, resized to ``load_size`` squares."""

    def __init__(self, paths: Sequence[Path], load_size: int = LOAD_SIZE) -> None:
        self.paths = list(paths)
        self.load_size = load_size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, position: int) -> tuple[torch.Tensor, str]:
        """The image, and an error message instead of raising: an exception raised in a
        DataLoader worker reaches the main process wrapped in a multi-line traceback."""
        try:
            return decode_image(self.paths[position], self.load_size), ""
        except HashbenchError as err:
            return torch.zeros(3, self.load_size, self.load_size, dtype=torch.uint8), str(err)


ImageStore = TensorImages | FileImages


def iterate_batches(
    store: ImageStore | torch.Tensor,
    indices: np.ndarray,
    *,
    batch_size: int,
    device: torch.device,
    shuffle: bool = False,
    generator: torch.Generator | None = None,
    num_workers: int = 0,
    drop_last: bool = False,
    shard: tuple[int, int] = (0, 1),
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield ``(rows on device, positions into indices)`` batches of an image store (uint8
    images) or of a tensor of rows (cached features).

    ``positions`` index into ``indices`` (i.e. they are 0..len(indices)-1), which is what
    methods with a per-sample memory need. The order is a function of ``generator`` alone,
    so a run resumed at an epoch boundary sees exactly the batches it would have seen.
    ``shard=(rank, world_size)`` keeps every world_size-th item of each batch, from rank.
    """
    order = torch.randperm(len(indices), generator=generator) if shuffle else torch.arange(len(indices))
    stop = len(order) - (len(order) % batch_size if drop_last else 0)
    rank, size = shard
    batches = [order[start : start + batch_size][rank::size] for start in range(0, stop, batch_size)]
    non_blocking = device.type == "cuda"
    if isinstance(store, (TensorImages, torch.Tensor)):
        rows = store.pixels if isinstance(store, TensorImages) else store
        index_tensor = torch.as_tensor(indices)
        for positions in batches:
            yield rows[index_tensor[positions]].to(device, non_blocking=non_blocking), positions
        return
    loader = DataLoader(store, batch_sampler=[[int(indices[p]) for p in positions] for positions in batches],
                        num_workers=num_workers, pin_memory=non_blocking)
    for positions, (images, errors) in zip(batches, loader, strict=True):
        if any(errors):
            raise HashbenchError(next(e for e in errors if e))
        yield images.to(device, non_blocking=non_blocking), positions


#: Train-time augmentation recipes (each method declares its reference's in ``train_defaults``):
#: ``none`` (resize only: DPSH), ``flip``, ``flip_jitter`` (flip, brightness and contrast
#: x U(0.95, 1.05): OrthoHash on CIFAR-10), ``crop_flip`` (random resized crop, area
#: U(0.08, 1) of the image, aspect ratio log-uniform in [3/4, 4/3], then flip: HashNet, CSQ,
#: OrthoHash on ImageNet-100) and ``random_crop_flip`` (a random 224/256 square crop, then
#: flip: OrthoHash on NUS-WIDE).
AUGMENTATIONS = ("none", "flip", "flip_jitter", "crop_flip", "random_crop_flip")
JITTER = 0.05
CROP_SCALE = (0.08, 1.0)
CROP_RATIO = (3 / 4, 4 / 3)
RANDOM_CROP_FRACTION = 224 / 256


def _uniform(n: int, low: float, high: float, generator: torch.Generator | None) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=generator)


def _crop_boxes(n: int, augment: str, generator: torch.Generator | None) -> tuple[torch.Tensor, ...]:
    """Per image: crop width and height as fractions of the image, and the crop's centre in
    [-1, 1] coordinates (torchvision's RandomResizedCrop rule, in continuous units: ten
    draws, the first that fits, else the whole image)."""
    if augment == "random_crop_flip":
        size = torch.full((n,), RANDOM_CROP_FRACTION)
        width, height = size, size
    else:
        attempts = 10
        area = _uniform(n * attempts, *CROP_SCALE, generator).view(n, attempts)
        log_ratio = _uniform(n * attempts, *np.log(CROP_RATIO), generator).view(n, attempts)
        ratio = log_ratio.exp()
        w, h = (area * ratio).sqrt(), (area / ratio).sqrt()
        fits = (w <= 1) & (h <= 1)
        first = torch.where(fits.any(1), fits.float().argmax(1), torch.full((n,), -1))
        pick = first.clamp_min(0)[:, None]
        width = torch.where(first >= 0, w.gather(1, pick)[:, 0], torch.ones(n))
        height = torch.where(first >= 0, h.gather(1, pick)[:, 0], torch.ones(n))
    centre_x = (1 - width) * _uniform(n, -1, 1, generator)
    centre_y = (1 - height) * _uniform(n, -1, 1, generator)
    return width, height, centre_x, centre_y


@dataclass(frozen=True)
class ImageTransform:
    """uint8 batch -> normalised float batch at ``image_size``, with the train-time
    ``augment`` recipe (:data:`AUGMENTATIONS`); at test time always a plain resize.

    Resizing happens on the device, after the copy, because the stored images are small
    (32 px for CIFAR-10) and the backbone's input is large (224 px): copying the small
    image and resizing there moves 49x less data. Crops are done by one affine resampling
    (``grid_sample``) per batch, crop, flip and resize together.
    """

    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    augment: str = "flip"

    def __call__(self, images: torch.Tensor, *, train: bool, generator: torch.Generator | None = None) -> torch.Tensor:
        n = images.shape[0]
        augment = self.augment if train else "none"
        scale = torch.tensor([1 / (255 * s) for s in self.std], device=images.device)[None, :, None, None]
        shift = torch.tensor([m / s for m, s in zip(self.mean, self.std, strict=True)],
                             device=images.device)[None, :, None, None]
        if augment == "flip_jitter":  # in pixel space, before normalising, as torchvision's ColorJitter
            x = images.float() / 255
            brightness = _uniform(n, 1 - JITTER, 1 + JITTER, generator).to(x.device)[:, None, None, None]
            contrast = _uniform(n, 1 - JITTER, 1 + JITTER, generator).to(x.device)[:, None, None, None]
            x = (x * brightness).clamp(0, 1)
            gray = (0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]).mean((1, 2))[:, None, None, None]
            x = (contrast * x + (1 - contrast) * gray).clamp(0, 1) * 255
        else:
            x = images.float()
        # Normalising (and flipping) commute with bilinear resizing (a linear map that keeps
        # constants), so both happen at the stored size: 16x fewer pixels for CIFAR-10 at 128 px.
        x = x * scale - shift
        flip = torch.rand(n, generator=generator) < 0.5 if augment != "none" else torch.zeros(n, dtype=torch.bool)
        if augment in ("crop_flip", "random_crop_flip"):
            width, height, centre_x, centre_y = _crop_boxes(n, augment, generator)
            theta = torch.zeros(n, 2, 3)
            theta[:, 0, 0] = torch.where(flip, -width, width)
            theta[:, 0, 2] = centre_x
            theta[:, 1, 1] = height
            theta[:, 1, 2] = centre_y
            grid = F.affine_grid(theta.to(x.device), [n, 3, self.image_size, self.image_size], align_corners=False)
            return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
        if flip.any():
            x = torch.where(flip.to(x.device)[:, None, None, None], x.flip(-1), x)
        if x.shape[-1] != self.image_size or x.shape[-2] != self.image_size:
            x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False,
                              antialias=x.shape[-1] > self.image_size)
        return x
