"""OrthoHash: One Loss for All (Hoe, Ng, Zhang, Chan, Chan, Song, NeurIPS 2021, arXiv 2109.14449).

Reference code: github.com/kamwoh/orthohash (``main.py``, ``functions/loss/orthohash.py``,
``scripts/train_hashing.py``). Facts taken from it:

* Hash layer: Linear without bias, then BatchNorm1d (code balance).
* A fixed codebook of +/-1 codes, one per class: Bernoulli(0.5) by default ("B"), sign of
  a Gaussian ("N"), or a greedy search for a large minimum distance ("O": normalised
  distance threshold from 0.61 down by 0.01 after 10,000 rejections).
* logits_k = s * (cos(u, c_k) - m * y_k), s = 8, m = 0.2 (the README's CIFAR-10 command
  uses m = 0.3); single-label: cross-entropy; multi-label: the margin on every positive
  and soft targets y / |y| ("label_smoothing"), not the first label alone.
* Quantization term 1 - cos(u, sign(u)) weighted by ``quantization_weight`` (0: off).
* Adam (lr 1e-4, weight decay 5e-4) over all parameters (backbone included at the same
  lr), batch 256, 100 epochs, lr x0.1 after 80% of the epochs.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from hashbench.method import HashMethod
from hashbench.models.centers import greedy_codebook

CODEBOOKS = ("bernoulli", "gaussian", "greedy")


def orthohash_codebook(kind: str, num_classes: int, bits: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    if kind == "bernoulli":
        return torch.bernoulli(torch.full((num_classes, bits), 0.5), generator=generator) * 2 - 1
    if kind == "gaussian":
        return torch.randn(num_classes, bits, generator=generator).sign()
    if kind == "greedy":
        return greedy_codebook(num_classes, bits, seed=seed)
    raise ValueError(f"codebook must be one of {', '.join(CODEBOOKS)}; got {kind!r}")


def orthohash_loss(codes: torch.Tensor, codebook: torch.Tensor, labels: torch.Tensor, *, scale: float,
                   margin: float, quantization_weight: float) -> dict[str, torch.Tensor]:
    """Cosine-margin cross-entropy against the codebook (soft targets for multi-label rows)."""
    cosine = F.normalize(codes, dim=1) @ F.normalize(codebook, dim=1).T
    logits = scale * (cosine - margin * labels)
    targets = labels / labels.sum(1, keepdim=True).clamp_min(1)
    ce = -(targets * F.log_softmax(logits, dim=1)).sum(1).mean()
    quantization = (1 - F.cosine_similarity(codes, codes.detach().sign(), dim=1)).mean()
    return {"loss": ce + quantization_weight * quantization, "ce": ce, "quantization": quantization}


class OrthoHash(HashMethod):
    """OrthoHash (NeurIPS 2021): one cosine-margin cross-entropy against orthogonal codes."""

    name = "orthohash"
    summary = "OrthoHash (Hoe et al., NeurIPS 2021): cosine-margin CE against a +/-1 codebook"
    defaults: ClassVar[dict[str, Any]] = {"scale": 8.0, "margin": 0.2, "codebook": "bernoulli",
                                          "quantization_weight": 0.0, "codebook_seed": 0}
    train_defaults: ClassVar[dict[str, Any]] = {
        "optimizer": "adam", "lr": 1e-4, "backbone_lr_mult": 1.0, "weight_decay": 5e-4, "batch_size": 256,
        "epochs": 100, "scheduler": "step", "lr_step": 80, "lr_gamma": 0.1,
    }
    frozen_train_defaults: ClassVar[dict[str, Any]] = {"lr": 1e-3, "epochs": 30, "lr_step": 24, "batch_size": 128}

    def __init__(self, *, feature_dim: int, bits: int, num_classes: int, num_train: int, scale: float, margin: float,
                 codebook: str, quantization_weight: float, codebook_seed: int) -> None:
        super().__init__(feature_dim=feature_dim, bits=bits, num_classes=num_classes, num_train=num_train)
        self.scale = scale
        self.margin = margin
        self.quantization_weight = quantization_weight
        self.hash_layer = nn.Sequential(nn.Linear(feature_dim, bits, bias=False), nn.BatchNorm1d(bits))
        self.register_buffer("codebook", orthohash_codebook(codebook, num_classes, bits, codebook_seed))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.hash_layer(features)

    def loss(self, output: torch.Tensor, *, labels: torch.Tensor, index: torch.Tensor, step: int
             ) -> dict[str, torch.Tensor]:
        return orthohash_loss(output, self.codebook, labels, scale=self.scale, margin=self.margin,
                              quantization_weight=self.quantization_weight)
