"""Training and encoding throughput of the real input pipeline against its upper bound.

The real pipeline is the runner's: uint8 images from the dataset's store, copied to the
device, resized, flipped and normalised there, then backbone + method, backward and
optimizer step. The bound is the same model and optimizer fed a synthetic batch that is
already on the device at the final size. Prints images/s of both and their ratio.

    python benchmarks/train_speed.py --datasets cifar10 --data-root ../shared/data \
        [--image-size 224] [--batch-size 64] [--steps 20] [--device auto]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from hashbench.config import RunConfig
from hashbench.data import ImageTransform, load_dataset
from hashbench.engine.optim import build_optimizer
from hashbench.engine.runner import Encoder, resolve_device
from hashbench.method import create_method
from hashbench.models import build_backbone
from hashbench.registry import METHODS


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="cifar10")
    parser.add_argument("--data-root", type=Path, default=None)
    parser.add_argument("--backbone", default="mobilenet_v2")
    parser.add_argument("--weights", default="IMAGENET1K_V1")
    parser.add_argument("--method", default="csq")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()

    device = resolve_device(args.device)
    data = load_dataset(args.datasets, args.data_root)
    backbone = build_backbone(args.backbone, args.weights)
    method_cls = METHODS.get(args.method)
    config = RunConfig(method=args.method, dataset=args.datasets, bits=64, **method_cls.train_defaults)
    transform = ImageTransform(args.image_size, backbone.mean, backbone.std, config.augment)
    encoder = Encoder(backbone, transform, data.images, frozen=False, device=device, num_workers=4).to(device)
    method = create_method(args.method, feature_dim=backbone.feature_dim, bits=64, num_classes=data.num_classes,
                           num_train=len(data.split.train)).to(device)
    optimizer = build_optimizer(config, method, encoder.backbone)
    labels = data.labels[torch.as_tensor(data.split.train)].to(device)
    method.on_fit_start(labels)
    n_images = args.steps * args.batch_size
    train_index = data.split.train[np.arange(n_images) % len(data.split.train)]

    def train_step(features: torch.Tensor, positions: torch.Tensor) -> None:
        output = method(features)
        index = positions.to(device) % len(labels)
        loss = method.loss(output, labels=labels[index], index=index, step=0)["loss"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    synthetic = torch.randn(args.batch_size, 3, args.image_size, args.image_size, device=device)
    synthetic = synthetic.contiguous(memory_format=torch.channels_last)
    synthetic_positions = torch.arange(args.batch_size)

    def synthetic_features() -> torch.Tensor:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            return encoder.backbone(synthetic).float()

    def real_batches(train: bool):
        generator = torch.Generator().manual_seed(0)
        for inputs, positions in encoder.batches(train_index, batch_size=args.batch_size, shuffle=train,
                                                 generator=generator):
            yield (lambda inputs=inputs: encoder.features(inputs, train=train, generator=generator)), positions

    def synthetic_batches():
        for _ in range(args.steps):
            yield synthetic_features, synthetic_positions

    def images_per_s(batches, train: bool) -> float:
        """Throughput of one pass; ``batches`` yields (a function making the features, positions)."""
        encoder.train(train)
        method.train(train)
        synchronize(device)
        start = time.perf_counter()
        with torch.set_grad_enabled(train):
            for make_features, positions in batches:
                if train:
                    train_step(make_features(), positions)
                else:
                    method.codes(method(make_features()))
        synchronize(device)
        return n_images / (time.perf_counter() - start)

    rows = []
    for phase, train in (("train", True), ("encode", False)):
        images_per_s(synthetic_batches(), train)  # warm-up (kernel selection, allocator)
        rows.append((phase, images_per_s(real_batches(train), train), images_per_s(synthetic_batches(), train)))
    name = torch.cuda.get_device_name() if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"device: {device} ({name}); {args.backbone} {args.weights} at {args.image_size} px, batch "
          f"{args.batch_size}, {args.steps} steps, method {args.method} (augment {config.augment}), "
          f"dataset {args.datasets}")
    print(f"{'phase':<8}{'real img/s':>12}{'synthetic img/s':>17}{'real / synthetic':>18}")
    for phase, real, bound in rows:
        print(f"{phase:<8}{real:>12.1f}{bound:>17.1f}{real / bound:>17.0%}")


if __name__ == "__main__":
    main()
