"""The method API: what a hashing method is, as the runner sees it.

A method is a ``torch.nn.Module`` that sits on top of the backbone's features. It

* builds its hash head(s) in ``__init__(*, feature_dim, bits, num_classes, num_train, **hparams)``
  and keeps any state it needs (hash centers, a code memory) as buffers, so checkpoints and
  DDP carry it;
* maps features to continuous codes in ``forward`` (a tensor, or any object when it has
  several branches) and says which tensor gives the codes in ``codes``; the runner
  binarises that with ``>= 0``;
* computes its loss in ``loss(output, *, labels, index, step)`` and returns named terms with
  the weighted total under ``"loss"``, so every term is logged from the first step;
* declares its hyperparameters in ``defaults`` (passed to ``__init__``) and the optimizer
  settings of its reference code in ``train_defaults`` (keys of :class:`TrainConfig`).

Labels always arrive as multi-hot float rows, so single- and multi-label data share one
code path; ``index`` holds the training-set positions of the batch (for code memories).
The runner owns everything else: data, devices, precision, the loop, checkpoints,
evaluation and records.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn


class HashMethod(nn.Module):
    """Base class of every hashing method (see the module docstring for the contract)."""

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    defaults: ClassVar[dict[str, Any]] = {}
    train_defaults: ClassVar[dict[str, Any]] = {}

    def __init__(self, *, feature_dim: int, bits: int, num_classes: int, num_train: int) -> None:
        super().__init__()
        self.feature_dim = feature_dim
        self.bits = bits
        self.num_classes = num_classes
        self.num_train = num_train

    # -- lifecycle hooks (no-ops by default) -------------------------------------------
    def on_fit_start(self, train_labels: torch.Tensor) -> None:
        """Called once before training with the multi-hot labels of the whole train set."""

    def on_step_start(self, step: int) -> None:
        """Called before each optimisation step (0-based, counted over the whole run)."""

    # -- the contract ------------------------------------------------------------------
    def forward(self, features: torch.Tensor) -> Any:
        raise NotImplementedError

    def loss(self, output: Any, *, labels: torch.Tensor, index: torch.Tensor, step: int) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def codes(self, output: Any) -> torch.Tensor:
        """Continuous codes whose sign is the binary code (default: the output itself)."""
        return output


class HashLayer(nn.Sequential):
    """The usual hash head: a linear map to ``bits`` dimensions, optionally squashed by tanh."""

    def __init__(self, feature_dim: int, bits: int, *, tanh: bool = True, bias: bool = True) -> None:
        layers: list[nn.Module] = [nn.Linear(feature_dim, bits, bias=bias)]
        if tanh:
            layers.append(nn.Tanh())
        super().__init__(*layers)


def pairwise_similarity(labels_a: torch.Tensor, labels_b: torch.Tensor) -> torch.Tensor:
    """s_ij = 1 when rows i and j share at least one label (multi-hot inputs)."""
    return (labels_a @ labels_b.T > 0).to(labels_a.dtype)
