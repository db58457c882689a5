"""DSH: Deep Supervised Hashing for Fast Image Retrieval (Liu, Wang, Shan, Chen, CVPR 2016).

Reference code: github.com/lhmRyan/deep-supervised-hashing-DSH, the authors' Caffe
(``src/caffe/layers/hashing_loss_layer.cpp``, ``CIFAR-10/train_test.prototxt``,
``CIFAR-10/solver.prototxt``, ``CIFAR-10/finetune.prototxt``). Facts taken from the paper
and that code:

* Pairs are all B(B-1)/2 unordered pairs of the batch (i < j). A pair's loss is
  1/2 s D + 1/2 (1 - s) max(m - D, 0) with D = ||u_i - u_j||^2, s = 1 when i and j share a
  label (the layer's multi-label branch: label rows with a positive inner product; its
  single-label branch, equal class ids, is the same on one-hot rows).
* Regulariser alpha * || |u| - 1 ||_1 per item (L1, pushing each output to +/-1).
* Normalisation: the layer's gradient is that of sum_{i<j} pair loss / (B (B - 1)) +
  alpha * sum_i || |u_i| - 1 ||_1 / B, which is the paper's per-pair objective (both items'
  regularisers included) summed over the batch's pairs and divided by B (B - 1). (The value
  the layer prints omits the pair term's 1/2; hashbench reports the objective whose gradient
  the layer applies.)
* m = 2q (``bi_margin`` 24 at 12 bits, 48 at 24 bits), alpha = 0.01 (``tradeoff``; the
  paper's value).
* The hash layer is a plain linear map on the network's last feature, no activation
  (``head=linear``); codes are sign(u).
* SGD lr 1e-3 on every layer (the network is trained from scratch: backbone multiplier 1),
  momentum 0.9, weight decay 0.004, batch 200, 70,000 iterations on the 50,000 CIFAR-10
  training images (280 epochs), lr x0.1 at iterations 60,000 and 65,000 (epochs 240 and 260);
  mirroring only (``augment=flip``).

Deviations: hashbench's step schedule decays at a fixed period, so ``lr_step=240`` makes the
first decay and the second (x0.01 for the last 20 epochs) is not reproduced. The reference's
balanced online pair sampler (``HashingImageData``) is commented out of its prototxt, which
reads plain shuffled batches, as hashbench does.

DeepHash-pytorch's ``DSH.py`` (github.com/swuxyj/DeepHash-pytorch, a common point of
comparison) pairs each batch with a memory of all training outputs, averaged over B x n, and
its regulariser 0.1 * mean(|1 - sign(u)|) has a zero gradient (sign's), so it trains the
pair term alone. hashbench follows the authors' layer: the batch's own pairs i < j (no
memory) and alpha || |u| - 1 ||_1.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from hashbench.blocks import HashLayer, head_param
from hashbench.losses import l1_quantization, pairwise_similarity
from hashbench.method import HashMethod, real, register_method


def dsh_loss(*, codes: torch.Tensor, similarity: torch.Tensor, margin: float, alpha: float
             ) -> dict[str, torch.Tensor]:
    """DSH's contrastive objective over the batch's pairs plus the L1 regulariser (see the
    module docstring for the normalisation)."""
    n = len(codes)
    distance = (codes.unsqueeze(1) - codes.unsqueeze(0)).pow(2).sum(2)
    pair = 0.5 * (similarity * distance + (1 - similarity) * torch.relu(margin - distance))
    upper = torch.triu(torch.ones_like(pair, dtype=torch.bool), diagonal=1)
    contrastive = pair[upper].sum() / max(n * (n - 1), 1)
    regularizer = l1_quantization(codes=codes, normalizer=n)
    return {"loss": contrastive + alpha * regularizer, "contrastive": contrastive, "regularizer": regularizer}


@register_method("dsh")
class DSH(HashMethod):
    """DSH (CVPR 2016): contrastive loss on the batch's pairs with margin 2q + an L1 pull to +/-1."""

    family = "pairwise"
    summary = "DSH (Liu et al., CVPR 2016): contrastive loss on pairs, margin 2q, + alpha || |u| - 1 ||_1"
    paper = "Liu et al., CVPR 2016"
    margin = real(None, 0.0, open_low=True, nullable=True, help="m of the contrastive hinge; none: 2 x bits")
    alpha = real(0.01, 0.0, help="weight of the L1 regulariser || |u| - 1 ||_1")
    head = head_param("linear")
    train_defaults: ClassVar[dict[str, Any]] = {
        "optimizer": "sgd", "lr": 1e-3, "momentum": 0.9, "nesterov": False, "backbone_lr_mult": 1.0,
        "weight_decay": 0.004, "batch_size": 200, "epochs": 280, "scheduler": "step", "lr_step": 240,
        "lr_gamma": 0.1, "augment": "flip",
    }
    # Cached features: at the reference's lr 1e-3 the head is still climbing after 90 epochs (validation
    # curve, benchmarks/validation_curves.py: 1,000 held-out training items of cifar10, 32 bits, seed 0:
    # 36.7 at 30, 40.9 at 90). At lr 1e-2 it is 45.0 at 30, 46.5 at 60 and best at 100 (47.2; 47.1 at
    # 110, 46.6 at 120); lr 5e-2 is noisier and no better (45.8 at 60). So the recipe is lr 1e-2 for 100
    # epochs (the step at 240 is never reached).
    frozen_train_defaults: ClassVar[dict[str, Any]] = {"lr": 0.01, "epochs": 100}
    fidelity = (
        ("pairs i < j of the batch, 1/2 s D + 1/2 (1 - s) max(m - D, 0), D squared Euclidean; alpha || |u| - 1 ||_1; "
         "gradient = (pair sum) / (B (B - 1)) + regulariser / B; m = 2q, alpha = 0.01 (`hashing_loss_layer.cpp`, "
         "`CIFAR-10/*.prototxt`)",
         "same",
         "one lr step at 240 (the second, at 260, is not reproduced); the reference's balanced pair sampler is "
         "commented out of its prototxt"),
        ("DeepHash-pytorch `DSH.py`: batch x memory, regulariser on sign(u) (zero gradient)",
         "in-batch pairs i < j, no memory; alpha || |u| - 1 ||_1",
         "follows the authors' code"),
        ("the reference always fine-tunes",
         "cached features: lr 1e-2, 100 epochs",
         "at the reference's 1e-3 the validation curve (32 bits) was still rising at 90 epochs; at 1e-2 it is best at "
         "100 (47.2)"),
    )

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.margin = 2.0 * self.bits if self.margin is None else self.margin
        self.hash_layer = HashLayer(self.feature_dim, self.bits, head=self.head, tanh=False)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.hash_layer(features)

    def loss(self, output: torch.Tensor, *, labels: torch.Tensor, index: torch.Tensor, step: int
             ) -> dict[str, torch.Tensor]:
        return dsh_loss(codes=output, similarity=pairwise_similarity(labels, labels), margin=self.margin,
                        alpha=self.alpha)
