"""Building blocks several methods share: hash heads, binarisation, code memories, base
classes of method families and the closed-form solvers.

A method file imports what it needs from here (and loss terms from
:mod:`hashbench.losses`); no method imports another method.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from hashbench.losses import classification_loss, pairwise_similarity
from hashbench.method import HashMethod, Param, choice
from hashbench.validation import HashbenchError

#: The hash-head architectures every method offers through its ``head`` hyperparameter.
HEADS = ("linear", "mlp")


def head_param(default: str = "linear") -> Param:
    """The ``head`` hyperparameter (the default is the method's reference head)."""
    return choice(default, HEADS, help="layers before the last hash layer: linear (none) or mlp "
                                       "(CSQ's reference d-d-d trunk); the default is the reference's")


def head_trunk(kind: str, feature_dim: int, *, dropout: float = 0.5) -> nn.Module:
    """The layers between the backbone feature and a method's last hash layer.

    ``linear``: none. ``mlp``: CSQ's reference trunk, Linear(d, d) - ReLU - Dropout -
    Linear(d, d) - ReLU, d the feature width, so every method can be compared at equal
    capacity. The width stays d, so the last layer is always Linear(d, bits).
    """
    if kind == "linear":
        return nn.Identity()
    if kind == "mlp":
        return nn.Sequential(nn.Linear(feature_dim, feature_dim), nn.ReLU(inplace=True), nn.Dropout(dropout),
                             nn.Linear(feature_dim, feature_dim), nn.ReLU(inplace=True))
    raise ValueError(f"head must be one of {', '.join(HEADS)}; got {kind!r}")


class HashLayer(nn.Sequential):
    """A hash head: the ``head`` trunk, a linear map to ``bits`` dimensions, optionally tanh.
    ``init_std`` draws the last layer's weights from N(0, init_std^2) with a zero bias (as
    HashNet and OrthoHash do); None keeps PyTorch's default initialisation."""

    def __init__(self, feature_dim: int, bits: int, *, head: str = "linear", tanh: bool = True,
                 bias: bool = True, init_std: float | None = None) -> None:
        last = nn.Linear(feature_dim, bits, bias=bias)
        if init_std is not None:
            nn.init.normal_(last.weight, 0.0, init_std)
            if bias:
                nn.init.zeros_(last.bias)
        layers: list[nn.Module] = [head_trunk(head, feature_dim), last]
        if tanh:
            layers.append(nn.Tanh())
        super().__init__(*layers)


def binary_sign(values: torch.Tensor) -> torch.Tensor:
    """+1 where values >= 0, else -1: a sign with no zero bits (ties go up, as the runner's
    ``>= 0`` binarisation and ITQ's ``UX(Z>=0) = 1``)."""
    return torch.where(values >= 0, 1.0, -1.0).to(values.dtype)


class CodeMemory(HashMethod):
    """Base of methods that pair each batch with a memory of every training item's latest
    code (DPSH's scheme): ``memory`` (num_train, bits) and ``memory_labels``."""

    def init_memory(self) -> None:
        self.register_buffer("memory", torch.zeros(self.num_train, self.bits))
        self.register_buffer("memory_labels", torch.zeros(self.num_train, self.num_classes))

    def on_fit_start(self, train_labels: torch.Tensor) -> None:
        self.memory_labels.copy_(train_labels)

    def remember(self, codes: torch.Tensor, index: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Write the batch's detached codes; return its similarities to every training item."""
        self.memory[index] = codes.detach()
        return pairwise_similarity(labels, self.memory_labels)


class EpochClock(nn.Module):
    """Tells a method when the runner has started a new pass over the training set.

    Within an epoch the runner yields every training item at most once, and the first batch
    of the next epoch holds at least one item of the last (only a remainder smaller than a
    batch is dropped), so an item seen twice marks the boundary. Buffers, so a resumed run
    keeps counting."""

    def __init__(self, num_train: int) -> None:
        super().__init__()
        self.register_buffer("seen", torch.zeros(num_train, dtype=torch.bool))
        self.register_buffer("epoch", torch.zeros((), dtype=torch.long))

    def tick(self, index: torch.Tensor) -> bool:
        """Record a batch; True when it starts a new epoch (never for the first batch)."""
        new_epoch = bool(self.seen[index].any())
        if new_epoch:
            self.seen.zero_()
            self.epoch += 1
        self.seen[index] = True
        return new_epoch


#: How a classifier on the codes treats multi-label data (:func:`hashbench.losses.classification_loss`).
MULTI_LABEL_LOSSES = ("bce", "softmax")


@dataclass
class ClassifierOutput:
    """Continuous codes (their sign is the binary code) and the class logits computed on them."""

    codes: torch.Tensor
    logits: torch.Tensor


class CodeClassifier(HashMethod):
    """The classification family's common part: a Linear(bits, classes) classifier on the
    codes and the dataset's multi-label flag (set once from the training labels)."""

    family = "classification"
    multi_label_loss = choice("softmax", MULTI_LABEL_LOSSES, help="loss on multi-label data")
    #: Whether the classifier has a bias (GreedyHash's reference has none).
    classifier_bias: ClassVar[bool] = True

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.classifier = nn.Linear(self.bits, self.num_classes, bias=self.classifier_bias)
        self.register_buffer("multi_label", torch.tensor(False))

    def on_fit_start(self, train_labels: torch.Tensor) -> None:
        self.multi_label.fill_(bool((train_labels.sum(1) > 1).any()))

    def codes(self, output: ClassifierOutput) -> torch.Tensor:
        return output.codes

    def classification(self, output: ClassifierOutput, labels: torch.Tensor) -> torch.Tensor:
        return classification_loss(logits=output.logits, labels=labels, multi_label=bool(self.multi_label),
                                   multi_label_loss=self.multi_label_loss)


@dataclass
class FeatureCodes:
    """A hash layer's continuous output and the features it saw (the loss's targets)."""

    codes: torch.Tensor
    features: torch.Tensor


class FeatureSimilarityHash(HashMethod):
    """The label-free methods whose codes regress the similarities of fixed features (Bi-half,
    GreedyHash-U): a hash layer on the feature, the feature kept, detached, for the loss."""

    family = "unsupervised"
    supervised = False
    head = head_param("linear")

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.hash_layer = HashLayer(self.feature_dim, self.bits, head=self.head, tanh=False)

    def forward(self, features: torch.Tensor) -> FeatureCodes:
        return FeatureCodes(codes=self.hash_layer(features), features=features.detach())

    def codes(self, output: FeatureCodes) -> torch.Tensor:
        return output.codes


class ShallowHash(HashMethod):
    """A closed-form method on fixed features: no trainable parameters, state in buffers."""

    family = "shallow"
    supervised = False
    train_defaults: ClassVar[dict[str, Any]] = {"frozen_backbone": True, "epochs": 1}
    dataset_defaults: ClassVar[dict[str, dict[str, Any]]] = {"digits": {"backbone": "raw"}}

    def check_width(self, features: torch.Tensor) -> None:
        if self.bits > features.shape[1]:
            raise HashbenchError(f"{self.name} projects on principal directions: bits must be at most the feature "
                                 f"width {features.shape[1]}; got {self.bits}")


def ridge(inputs: torch.Tensor, targets: torch.Tensor, lam: float) -> torch.Tensor:
    """(X^T X + lam I)^-1 X^T Y: SDH's G-step and F-step (the authors' ``RRC``), DSDH's W-step."""
    gram = inputs.T @ inputs + lam * torch.eye(inputs.shape[1], dtype=inputs.dtype, device=inputs.device)
    return torch.linalg.solve(gram, inputs.T @ targets)


def dcc_bit_update(codes: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor, k: int) -> torch.Tensor:
    """The closed-form update of bit ``k`` of every item: sgn(Q[:, k] - B_{-k} W_{-k} w_k^T)."""
    others = codes @ (weights @ weights[k]) - codes[:, k] * weights[k].dot(weights[k])
    return binary_sign(targets[:, k] - others)


def dcc_b_step(codes: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor, sweeps: int) -> torch.Tensor:
    """Discrete cyclic coordinate descent (SDH's B-step, DSDH's) on ||Y - B W||^2 + nu ||B - F||^2,
    given Q = Y W^T + nu F as ``targets``: up to ``sweeps`` passes over the bits."""
    codes = codes.clone()
    for _ in range(sweeps):
        previous = codes.clone()
        for k in range(codes.shape[1]):
            codes[:, k] = dcc_bit_update(codes, targets, weights, k)
        if torch.linalg.norm(codes - previous) < 1e-6 * torch.linalg.norm(previous):
            break
    return codes
