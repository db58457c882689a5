"""HashNet: Deep Learning to Hash by Continuation (Cao, Long, Wang, Yu, ICCV 2017).

Reference code: github.com/thuml/HashNet (``pytorch/src``). Facts taken from the paper
and that code:

* Weighted pairwise cross-entropy on alpha * <h_i, h_j> with alpha = 10 / bits; a pair's
  loss is log(1 + e^(alpha <h_i, h_j>)) - s_ij alpha <h_i, h_j>, computed with a stable
  softplus (the reference switches to the linear asymptote above 15, which is the same
  function up to rounding).
* Positive pairs weigh |S| / |S1| and negative pairs |S| / |S0| (the paper's weights;
  |S1|, |S0| counted in the batch); all B x B pairs of the batch take part, as in the
  reference ``mm(outputs, outputs.T)``.
* Activation tanh(beta z) with beta = (1 + 0.005 t)^0.5, recomputed every 200
  iterations t (continuation; init 1, gamma 0.005, power 0.5, step 200).
* SGD (momentum 0.9, Nesterov, weight decay 5e-4), base lr 3e-4 for the backbone and x10
  for the hash layer, lr x0.5 every 2,000 of 10,000 iterations, batch 36. Iterations map
  to epochs here: on 5,000 training images at batch 36 that is 72 epochs with a step every
  14 epochs; the head lr is 3e-3 and the backbone multiplier 0.1.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from hashbench.losses import pairwise_nll
from hashbench.method import HashMethod, pairwise_similarity


def continuation_beta(step: int, *, gamma: float = 0.005, power: float = 0.5, every: int = 200) -> float:
    return (1 + gamma * (step // every * every)) ** power


def hashnet_loss(codes: torch.Tensor, labels: torch.Tensor, alpha: float) -> torch.Tensor:
    """Weighted pairwise cross-entropy over all pairs of the batch."""
    similarity = pairwise_similarity(labels, labels)
    total = similarity.numel()
    positives = similarity.sum()
    negatives = total - positives
    weights = torch.where(similarity > 0, total / positives.clamp_min(1), total / negatives.clamp_min(1))
    return pairwise_nll(alpha * codes @ codes.T, similarity, weights)


class HashNet(HashMethod):
    """HashNet (ICCV 2017): balanced pairwise cross-entropy with a tanh(beta z) continuation."""

    name = "hashnet"
    summary = "HashNet (Cao et al., ICCV 2017): weighted pairwise cross-entropy + tanh continuation"
    defaults: ClassVar[dict[str, Any]] = {"alpha": None, "beta_gamma": 0.005, "beta_power": 0.5, "beta_every": 200}
    train_defaults: ClassVar[dict[str, Any]] = {
        "optimizer": "sgd", "lr": 3e-3, "momentum": 0.9, "nesterov": True, "backbone_lr_mult": 0.1,
        "weight_decay": 5e-4, "batch_size": 36, "epochs": 72, "scheduler": "step", "lr_step": 14, "lr_gamma": 0.5,
    }
    frozen_train_defaults: ClassVar[dict[str, Any]] = {"epochs": 30, "lr_step": 10}

    def __init__(self, *, feature_dim: int, bits: int, num_classes: int, num_train: int, alpha: float | None,
                 beta_gamma: float, beta_power: float, beta_every: int) -> None:
        super().__init__(feature_dim=feature_dim, bits=bits, num_classes=num_classes, num_train=num_train)
        self.alpha = 10 / bits if alpha is None else alpha
        self.schedule = {"gamma": beta_gamma, "power": beta_power, "every": beta_every}
        self.hash_layer = nn.Linear(feature_dim, bits)
        self.register_buffer("beta", torch.tensor(1.0))

    def on_step_start(self, step: int) -> None:
        self.beta.fill_(continuation_beta(step, **self.schedule))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.beta * self.hash_layer(features))

    def loss(self, output: torch.Tensor, *, labels: torch.Tensor, index: torch.Tensor, step: int
             ) -> dict[str, torch.Tensor]:
        pairwise = hashnet_loss(output, labels, self.alpha)
        return {"loss": pairwise, "pairwise": pairwise, "beta": self.beta.detach().clone()}

