"""CSQ: Central Similarity Quantization (Yuan et al., CVPR 2020, arXiv 1908.00347).

Reference code: github.com/yuanli2333/Hadamard-Matrix-for-hashing (``train.py``,
``options.py``, README commands). Facts taken from it:

* Hash centers: rows of the Hadamard matrix H_q and of -H_q when the number of classes is
  at most 2q (q a power of 2); otherwise random +/-1 codes with half of the bits -1,
  re-drawn until they are far enough apart (the tutorial notebook; we require a minimum
  distance of q/4, the notebook's acceptance rule being a mean distance near q/2).
* A multi-label item's center is the sign of the mean of its classes' centers, zeros
  filled from one fixed random +/-1 vector.
* Loss = lambda0 * BCE((u+1)/2, (c+1)/2) + lambda1 * pairwise + lambda2 * mean((|u|-1)^2),
  with lambda0 = 1 and lambda1 = 0 in every command of the README.
* lambda2 (``quantization_weight``) is 0.05 for ResNet-50 and, for AlexNet, 0.001 at 16
  and 32 bits and 0.0001 at 64 bits; ``recipe`` picks between them.
* Adam (betas 0.9, 0.999), lr 1e-3 for ResNet (1e-4 for AlexNet), backbone lr x0.01,
  batch 64, 90 epochs, lr x0.7 every 10 epochs.
* The optional pairwise term pairs the first half of the batch with the second half,
  HashNet-style on (10 / q) <u_i, u_j>, positives weighted by ``pairwise_imbalance``.

Choice where the sources differ: the hash layer is Linear + tanh, as in the reference
``network.py``.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from hashbench.losses import center_bce, pairwise_nll, quantization_error
from hashbench.method import HashLayer, HashMethod, pairwise_similarity
from hashbench.models.centers import hadamard_centers, multi_label_centers, random_centers

QUANTIZATION_RECIPES = {
    "resnet": lambda bits: 0.05,
    "alexnet": lambda bits: 0.0001 if bits >= 64 else 0.001,
}


def csq_centers(num_classes: int, bits: int, seed: int = 0) -> torch.Tensor:
    """Hadamard centers when they exist for (classes, bits), else balanced random ones."""
    if bits & (bits - 1) == 0 and num_classes <= 2 * bits:
        return hadamard_centers(num_classes, bits)
    return random_centers(num_classes, bits, max(1, bits // 4), seed=seed)


class CSQ(HashMethod):
    """CSQ (CVPR 2020): pull each code to its class's Hadamard hash center by BCE."""

    name = "csq"
    summary = "CSQ (Yuan et al., CVPR 2020): Hadamard hash centers + BCE + quantization"
    defaults: ClassVar[dict[str, Any]] = {
        "center_weight": 1.0,
        "pairwise_weight": 0.0,
        "pairwise_imbalance": 1.0,
        "quantization_weight": None,  # None: from the recipe
        "recipe": "resnet",
        "center_seed": 0,
    }
    train_defaults: ClassVar[dict[str, Any]] = {
        "optimizer": "adam", "lr": 1e-3, "backbone_lr_mult": 0.01, "weight_decay": 0.0, "batch_size": 64,
        "epochs": 90, "scheduler": "step", "lr_step": 10, "lr_gamma": 0.7,
    }
    frozen_train_defaults: ClassVar[dict[str, Any]] = {"epochs": 30, "lr_step": 10}

    def __init__(self, *, feature_dim: int, bits: int, num_classes: int, num_train: int, center_weight: float,
                 pairwise_weight: float, pairwise_imbalance: float, quantization_weight: float | None, recipe: str,
                 center_seed: int) -> None:
        super().__init__(feature_dim=feature_dim, bits=bits, num_classes=num_classes, num_train=num_train)
        if recipe not in QUANTIZATION_RECIPES:
            raise ValueError(f"recipe must be one of {', '.join(QUANTIZATION_RECIPES)}; got {recipe!r}")
        self.center_weight = center_weight
        self.pairwise_weight = pairwise_weight
        self.pairwise_imbalance = pairwise_imbalance
        self.quantization_weight = (QUANTIZATION_RECIPES[recipe](bits) if quantization_weight is None
                                    else quantization_weight)
        self.hash_layer = HashLayer(feature_dim, bits)
        self.register_buffer("centers", csq_centers(num_classes, bits, center_seed))
        generator = torch.Generator().manual_seed(center_seed)
        self.register_buffer("tie_break", torch.randint(0, 2, (bits,), generator=generator).float() * 2 - 1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.hash_layer(features)

    def targets(self, labels: torch.Tensor) -> torch.Tensor:
        return multi_label_centers(self.centers, labels, seed_codes=self.tie_break.expand(len(labels), -1))

    def loss(self, output: torch.Tensor, *, labels: torch.Tensor, index: torch.Tensor, step: int
             ) -> dict[str, torch.Tensor]:
        terms = {
            "center": center_bce(output, self.targets(labels)),
            "quantization": quantization_error(output),
        }
        total = self.center_weight * terms["center"] + self.quantization_weight * terms["quantization"]
        if self.pairwise_weight > 0:
            half = len(output) // 2
            first, second = output[:half], output[half : 2 * half]
            similarity = pairwise_similarity(labels[:half], labels[half : 2 * half])
            weights = torch.where(similarity > 0, self.pairwise_imbalance, 1.0)
            terms["pairwise"] = pairwise_nll((10 / self.bits) * first @ second.T, similarity, weights)
            total = total + self.pairwise_weight * terms["pairwise"]
        return {"loss": total, **terms}
