"""DPSH: Deep Pairwise-Supervised Hashing (Li, Wang, Kang, IJCAI 2016).

Reference code: github.com/jiangqy/DPSH-pytorch (``DPSH_CIFAR_10.py``, by the paper's
authors). Facts taken from it:

* theta_ij = 1/2 u_i^T u_j; s_ij = 1 when i and j share a label; the likelihood term
  sum(log(1 + e^theta) - s * theta) uses a stable log(1 + e^x) (softplus here).
* Each batch is paired with a memory U of the outputs of all training images; U is
  updated with the batch's (detached) outputs every batch, before the loss is computed.
* Both terms are summed and divided by (number of training images x batch size):
  loss = [sum_ij nll(theta_ij) + eta * sum_i ||b_i - u_i||^2] / (n * B), b = sign(u).
* eta = 10 for CIFAR-10 (50 for NUS-WIDE); SGD, lr 0.05, weight decay 1e-5, batch 128,
  150 epochs, lr x0.1 every 50 epochs; the hash layer is a plain linear map (no tanh).

``pairs="batch"`` pairs the batch with itself instead of the memory (then the
normaliser is B x B).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from hashbench.method import HashMethod, pairwise_similarity


def dpsh_loss(codes: torch.Tensor, memory: torch.Tensor, similarity: torch.Tensor, eta: float
              ) -> dict[str, torch.Tensor]:
    """DPSH's objective for a batch against ``memory`` (see the module docstring)."""
    theta = 0.5 * codes @ memory.T
    normaliser = similarity.numel()
    likelihood = (torch.nn.functional.softplus(theta) - similarity * theta).sum() / normaliser
    quantization = (codes.detach().sign() - codes).pow(2).sum() / normaliser
    return {"loss": likelihood + eta * quantization, "likelihood": likelihood, "quantization": quantization}


class DPSH(HashMethod):
    """DPSH (IJCAI 2016): pairwise likelihood against a memory of all training codes."""

    name = "dpsh"
    summary = "DPSH (Li et al., IJCAI 2016): pairwise likelihood on inner products + quantization"
    defaults: ClassVar[dict[str, Any]] = {"eta": 10.0, "pairs": "memory"}
    train_defaults: ClassVar[dict[str, Any]] = {
        "optimizer": "sgd", "lr": 0.05, "momentum": 0.0, "backbone_lr_mult": 1.0, "weight_decay": 1e-5,
        "batch_size": 128, "epochs": 150, "scheduler": "step", "lr_step": 50, "lr_gamma": 0.1,
    }
    frozen_train_defaults: ClassVar[dict[str, Any]] = {"epochs": 30, "lr_step": 20}

    def __init__(self, *, feature_dim: int, bits: int, num_classes: int, num_train: int, eta: float,
                 pairs: str) -> None:
        super().__init__(feature_dim=feature_dim, bits=bits, num_classes=num_classes, num_train=num_train)
        if pairs not in ("memory", "batch"):
            raise ValueError(f"pairs must be memory or batch; got {pairs!r}")
        self.eta = eta
        self.pairs = pairs
        self.hash_layer = nn.Linear(feature_dim, bits)
        self.register_buffer("memory", torch.zeros(num_train, bits))
        self.register_buffer("memory_labels", torch.zeros(num_train, num_classes))

    def on_fit_start(self, train_labels: torch.Tensor) -> None:
        self.memory_labels.copy_(train_labels)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.hash_layer(features)

    def loss(self, output: torch.Tensor, *, labels: torch.Tensor, index: torch.Tensor, step: int
             ) -> dict[str, torch.Tensor]:
        if self.pairs == "batch":
            return dpsh_loss(output, output, pairwise_similarity(labels, labels), self.eta)
        self.memory[index] = output.detach()
        return dpsh_loss(output, self.memory, pairwise_similarity(labels, self.memory_labels), self.eta)
