"""ADSH: Asymmetric Deep Supervised Hashing (Jiang and Li, AAAI 2018, arXiv 1707.08325).

Reference code: github.com/jiangqy/ADSH-AAAI2018, by the paper's authors: ``ADSH_pytorch``
(``ADSH_CIFAR_10.py``, ``utils/adsh_loss.py``, ``utils/cnn_model.py``), read with the
MatConvNet version that made the paper's numbers (``ADSH_matlab/process_ADSH.m``,
``ADSH_demo.m``). Facts taken from them:

* Asymmetric: the database codes V in {-1, 1}^(n x q) of the n training items are learned
  directly; a network (the query hash function) gives u = tanh(W^T f(x)) (``head=linear``: one
  Linear(2048, bits) + tanh on ResNet-50 in the PyTorch release) and is trained only on a
  sample Omega of the training items.
* Loss of a batch of sampled items i against every training item j: sum_ij (u_i^T v_j -
  q s_ij)^2 + gamma sum_i ||v_i - u_i||^2, v_i the database code of the item itself, divided by
  (n x batch size). s_ij is the soft similarity: 1 for items sharing a label, -r otherwise,
  r = (positive pairs) / (negative pairs) over Omega x training items, per outer iteration.
* Outer iterations: draw Omega (2,000 items), train the network for 3 epochs over Omega in
  batches of 64 (V fixed), then update V column by column (discrete, exact per column):
  Q = -2 q S^T U - 2 gamma U_bar (U the sampled items' latest outputs, U_bar the n x q matrix
  with U in the rows of Omega and zeros elsewhere), V_k = -sign(2 V_{-k} U_{-k}^T U_k + Q_k).
  V starts at zero (so the first outer iteration only pulls u towards 0).
* gamma = 200, |Omega| = 2,000, 50 outer iterations of 3 epochs (PyTorch defaults; the MATLAB
  demo uses gamma = 100 and 1,000 samples on CIFAR-10, and sign(U) in Q's first term). SGD
  without momentum, lr 1e-3 on every layer, weight decay 5e-4, lr / 10 after outer
  iterations 11, 21, 31 and 41; images resized to 256 and center-cropped to 224 (``augment=none``).

Mapping to hashbench epochs (the runner passes once over every training item an epoch): an
outer iteration is ``epochs_per_iteration`` = 3 hashbench epochs. Omega (``num_samples`` items,
drawn from the run's seed and the iteration number; none: every training item) is fixed during
an iteration; every batch holds items in and out of Omega and only those in Omega enter the
loss, so each sampled item is trained on 3 times per iteration as in the reference, in batches of
about batch x |Omega| / n sampled items (the normaliser keeps n x the whole batch, so an
epoch's updates add up to the reference's over one pass of Omega). The V-step and the next draw
run when the first batch of the iteration's next epoch arrives (the method sees no epoch
boundary; it notices the first item seen twice, :class:`EpochClock`). 50 iterations are 150
epochs; the lr steps every 30 epochs (the reference's first step comes 3 epochs later, at 33).

How the database is encoded: as for every hashbench method, by the network (sign of u) - for
the queries and for the database alike. ADSH's own evaluation uses the learned V as the
database codes (its database is the training set). That alternative is not offered: the runner
encodes the database from features alone, so the method cannot tell which database items are
training items, and in most protocols the database is not the training set (CIFAR-10: 5,000
training items in a 59,000-image database). V only shapes the network's training here.

Multi-label data: s_ij = 1 when the items share a label (the reference's NUS-WIDE script).
Deviations: sign(0) is +1 (the reference's 0 would leave a zero bit in V); the hash layer keeps
PyTorch's initialisation (as the PyTorch release).

DeepHash-pytorch's ``ADSH.py`` (github.com/swuxyj/DeepHash-pytorch, a common point of
comparison) recomputes the soft similarity's r from each batch's labels (r = positive / negative
pairs of the batch x training items); the authors compute r once per outer iteration, over
Omega x training items, as hashbench does.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from hashbench.blocks import CodeMemory, EpochClock, HashLayer, binary_sign, head_param
from hashbench.losses import pairwise_similarity
from hashbench.method import integer, real, register_method


def soft_similarity(similarity: torch.Tensor, ratio: float | torch.Tensor) -> torch.Tensor:
    """ADSH's soft constraint: 1 for similar pairs, -ratio for dissimilar ones."""
    return similarity * (1 + ratio) - ratio


def positive_ratio(similarity: torch.Tensor) -> torch.Tensor:
    """r = similar pairs / dissimilar pairs (dissimilar counted at least once)."""
    return similarity.sum() / (1 - similarity).sum().clamp_min(1)


def adsh_loss(*, codes: torch.Tensor, database: torch.Tensor, similarity: torch.Tensor, targets: torch.Tensor,
              sampled: torch.Tensor, gamma: float, bits: int, normalizer: float) -> dict[str, torch.Tensor]:
    """[sum_i w_i (sum_j (u_i^T v_j - q s_ij)^2 + gamma ||v_i - u_i||^2)] / normalizer, w_i = 1 for
    the batch rows in Omega (``sampled``), 0 for the others; ``targets`` = each row's own v_i."""
    weights = sampled.to(codes.dtype)
    square = (weights[:, None] * (codes @ database.T - bits * similarity).pow(2)).sum() / normalizer
    quantization = (weights[:, None] * (targets - codes).pow(2)).sum() / normalizer
    return {"loss": square + gamma * quantization, "square": square, "quantization": quantization}


def adsh_v_step(*, database: torch.Tensor, codes: torch.Tensor, similarity: torch.Tensor, sampled: torch.Tensor,
                gamma: float, bits: int) -> torch.Tensor:
    """One pass over the bits of V (n, q), each column the exact minimiser of
    ||U V^T - q S||^2 + gamma ||V_Omega - U||^2 given the others; U (m, q) the outputs of the
    sampled items (rows ``sampled`` of the training set), S (m, n) their soft similarities."""
    spread = torch.zeros_like(database)
    spread[sampled] = codes
    q = -2 * bits * similarity.T @ codes - 2 * gamma * spread
    gram = codes.T @ codes
    database = database.clone()
    for k in range(database.shape[1]):
        coupling = database @ gram[:, k] - database[:, k] * gram[k, k]  # V_{-k} U_{-k}^T U_k
        database[:, k] = binary_sign(-(2 * coupling + q[:, k]))
    return database


@register_method("adsh")
class ADSH(CodeMemory):
    """ADSH (AAAI 2018): a query network fitted to directly learned discrete database codes."""

    family = "pairwise"
    summary = "ADSH (Jiang and Li, AAAI 2018): asymmetric: query net fitted to discretely learned database codes"
    paper = "Jiang & Li, AAAI 2018"
    gamma = real(200.0, 0.0, help="weight of ||v_i - u_i||^2")
    num_samples = integer(2000, 1, nullable=True, help="items sampled per outer iteration (Omega); "
                                                      "none: every training item")
    epochs_per_iteration = integer(3, 1, help="hashbench epochs in one outer iteration (the reference's "
                                              "epochs over Omega)")
    head = head_param("linear")
    train_defaults: ClassVar[dict[str, Any]] = {
        "optimizer": "sgd", "lr": 1e-3, "momentum": 0.0, "backbone_lr_mult": 1.0, "weight_decay": 5e-4,
        "batch_size": 64, "epochs": 150, "scheduler": "step", "lr_step": 30, "lr_gamma": 0.1, "augment": "none",
    }
    frozen_train_defaults: ClassVar[dict[str, Any]] = {"epochs": 30}
    fidelity = (
        ("asymmetric: database codes V learned by column-wise discrete steps, network on 2,000 sampled items for 3 "
         "epochs an outer iteration, soft similarity -r for negatives, gamma 200 (`ADSH_pytorch/ADSH_CIFAR_10.py`, "
         "`utils/adsh_loss.py`)",
         "same, one outer iteration = 3 hashbench epochs",
         "the database is encoded by the network, not by V (the runner's database is not the training set)"),
        ("DeepHash-pytorch `ADSH.py`: r of the soft similarity recomputed per batch",
         "r once per outer iteration, over the sample x training items",
         "follows the authors' code"),
        ("the reference always fine-tunes",
         "cached features: 30 epochs",
         "validation curve (32 bits): 56.0 at 30; best 56.5 from 55"),
    )

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.num_samples = self.num_train if self.num_samples is None else min(self.num_samples, self.num_train)
        self.hash_layer = HashLayer(self.feature_dim, self.bits, head=self.head)
        self.init_memory()
        self.register_buffer("database", torch.zeros(self.num_train, self.bits))
        self.register_buffer("sampled", torch.zeros(self.num_train, dtype=torch.bool))
        self.register_buffer("ratio", torch.zeros(()))
        self.clock = EpochClock(self.num_train)

    def on_fit_start(self, train_labels: torch.Tensor) -> None:
        super().on_fit_start(train_labels)
        self.draw_sample(0)

    def draw_sample(self, iteration: int) -> None:
        """Omega of an outer iteration (from the run's seed and the iteration) and its ratio r."""
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + iteration)
        chosen = torch.randperm(self.num_train, generator=generator)[: self.num_samples].to(self.sampled.device)
        self.sampled.zero_()
        self.sampled[chosen] = True
        labels = self.memory_labels
        self.ratio.copy_(positive_ratio(pairwise_similarity(labels[self.sampled], labels)))

    def update_database(self) -> None:
        """The V-step of the iteration that just ended, from its items' latest outputs."""
        omega = self.sampled.nonzero().squeeze(1)
        labels = self.memory_labels
        similarity = soft_similarity(pairwise_similarity(labels[omega], labels), self.ratio)
        self.database.copy_(adsh_v_step(database=self.database, codes=self.memory[omega], similarity=similarity,
                                        sampled=omega, gamma=self.gamma, bits=self.bits))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.hash_layer(features)

    def loss(self, output: torch.Tensor, *, labels: torch.Tensor, index: torch.Tensor, step: int
             ) -> dict[str, torch.Tensor]:
        if self.clock.tick(index) and int(self.clock.epoch) % self.epochs_per_iteration == 0:
            self.update_database()
            self.draw_sample(int(self.clock.epoch) // self.epochs_per_iteration)
        similarity = soft_similarity(self.remember(output, index, labels), self.ratio)
        return adsh_loss(codes=output, database=self.database, similarity=similarity, targets=self.database[index],
                         sampled=self.sampled[index], gamma=self.gamma, bits=self.bits,
                         normalizer=len(output) * self.num_train)
