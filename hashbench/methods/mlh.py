"""MLH: Mutual Learning for Hashing (Ma, Li, Weng, arXiv 2510.07703, 2025).

What the paper states, implemented as stated:

* One backbone, two branches producing continuous codes u in (-1, 1)^q; b = sign(u).
* Center branch (strong): class hash centers h_i in {-1, 1}^q at a minimum Hamming
  distance d given by the Gilbert-Varshamov bound for c classes and q bits;
  P_ji = softmax_i(sqrt(q) cos(u_j, h_i)) and
  L_C = -(1/N) sum_j sum_i [y_ji log P_ji + (1 - y_ji) log(1 - P_ji)].
* Pairwise branch (weak): DPSH-style likelihood on inner products, s_ij = [y_i^T y_j > 0].
* Mutual loss L_M: cosine-based, between the two branches' codes.
* Mixture-of-Hash-Experts (MoH): experts shared by both branches, one gate per branch;
  each expert produces continuous hash codes; a branch's code is its gate's mixture.
* Total lambda1 L_C + lambda2 L_P + lambda3 L_M with (4, 1, 1) the reported best.

What the paper leaves open, and what we chose (each a hyperparameter, ``--set key=value``):

* ``num_experts`` = 4: small enough to train on cached features on a CPU, large enough for
  the two gates to specialise.
* ``gate`` = softmax over experts of a linear map of the backbone feature; ``top_k`` = 0
  keeps it dense (k > 0 keeps the k largest weights, renormalised): dense gates give both
  branches gradients into every expert, which is what lets them interact.
* Experts output tanh(W_e x + c_e), so every expert's code is in (-1, 1) and so is any
  convex mixture of them, as the paper requires of u.
* ``mutual`` = "detached": L_M = mean(1 - cos(u_c, sg(u_p))) + mean(1 - cos(u_p, sg(u_c))),
  each branch pulled toward the other's detached code as in deep mutual learning;
  "joint" uses mean(1 - cos(u_c, u_p)) without stop-gradients. Under ``schedule=joint`` the
  two give identical gradients (the gradient of 1 - cos(u_c, sg(u_p)) with respect to u_c
  is that of 1 - cos(u_c, u_p), and likewise for u_p); only the logged value differs (x2).
  They differ under ``schedule=alternate``: with "detached" the active step's mutual term
  moves only the active branch's code, with "joint" its gradient also reaches the shared
  experts through the inactive branch's code.
* ``schedule`` = "joint": one optimiser step on the total per batch (with detached targets
  this is the simultaneous form of the iterative mutual learning); "alternate" updates the
  center side (L_C + its half of L_M) on even steps and the pairwise side on odd steps.
  The inactive branch's own parameters (its gate, or its branch head) do not move at all
  on that step (``inactive_parameters``: no gradient, so no optimizer state moves them);
  the shared experts, the ``head`` trunk and the backbone move on every step.
* ``centers``: Hadamard rows when q is a power of 2, c <= 2q and their distance q/2 meets
  the GV distance (it always does then), else greedy random codes at distance >= d.
* ``test_branch`` = "center": the strong branch gives the codes at test time.
* ``pairwise_scale`` = 0.5 (DPSH's theta = u^T u / 2); pairs are the batch's own
  (the paper calls L_P "DPSH-style" without a memory).
* ``quantization_weight`` = 0: L_C depends on u only through its direction, so a
  (|u| - 1)^2 term (``hashbench.losses.quantization_error``, as in CSQ) is offered but off.
* ``head`` = linear: the experts read the backbone feature; ``mlp`` puts the shared
  two-layer trunk of the equal-capacity comparison in front of experts and gates.

Training recipe: the paper builds its center branch on CSQ, so we use CSQ's reference
recipe (Adam, lr 1e-3, backbone x0.01, batch 64, lr x0.7 every 10 epochs).

Variants for the ablation table: ``mlh-center`` and ``mlh-pairwise`` (one branch, its own
loss), ``mlh-no-moh`` (two plain hash layers with mutual learning), ``mlh-moe`` (Fig. 3a:
each branch its own experts producing hidden features, mixed, then a hash layer) and
``mlh-moh-unshared`` (Fig. 3c: each branch its own experts, each expert still a hash map).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from hashbench.blocks import HashLayer, head_param, head_trunk
from hashbench.losses import pairwise_likelihood, pairwise_similarity, quantization_error
from hashbench.method import HashMethod, choice, integer, real, register_method
from hashbench.models.centers import gilbert_varshamov_distance, hadamard_centers, random_centers

ARCHITECTURES = ("moh", "moe", "moh-unshared", "plain")
BRANCHES = ("both", "center", "pairwise")


def mlh_centers(num_classes: int, bits: int, seed: int = 0) -> torch.Tensor:
    distance = gilbert_varshamov_distance(num_classes, bits)
    if bits & (bits - 1) == 0 and num_classes <= 2 * bits and bits // 2 >= distance:
        return hadamard_centers(num_classes, bits)
    return random_centers(num_classes, bits, distance, seed=seed, balanced=False)


def center_loss(codes: torch.Tensor, centers: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """L_C: per-class binary cross-entropy on the softmax over sqrt(q)-scaled cosines.
    log(1 - P_i) is computed as logsumexp over the other classes minus the full logsumexp."""
    bits = codes.shape[1]
    logits = math.sqrt(bits) * F.normalize(codes, dim=1) @ F.normalize(centers, dim=1).T
    log_norm = torch.logsumexp(logits, dim=1, keepdim=True)
    log_p = logits - log_norm
    eye = torch.eye(logits.shape[1], dtype=torch.bool, device=logits.device)
    others = logits[:, None, :].masked_fill(eye[None], float("-inf"))  # (N, C, C): row i without class i
    log_not_p = torch.logsumexp(others, dim=2) - log_norm
    return -(labels * log_p + (1 - labels) * log_not_p).sum(1).mean()


def pairwise_loss(codes: torch.Tensor, labels: torch.Tensor, scale: float) -> torch.Tensor:
    """L_P: DPSH-style likelihood over the batch's pairs, theta = scale * u_i^T u_j."""
    return pairwise_likelihood(theta=scale * codes @ codes.T, similarity=pairwise_similarity(labels, labels))


def mutual_loss(center_codes: torch.Tensor, pairwise_codes: torch.Tensor, *, detached: bool
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """L_M as (the center side's term, the pairwise side's term): with ``detached`` each
    branch toward the other's stop-gradient code; else the one joint term, on both sides."""
    if not detached:
        joint = (1 - F.cosine_similarity(center_codes, pairwise_codes, dim=1)).mean()
        return joint, joint
    to_pairwise = (1 - F.cosine_similarity(center_codes, pairwise_codes.detach(), dim=1)).mean()
    to_center = (1 - F.cosine_similarity(pairwise_codes, center_codes.detach(), dim=1)).mean()
    return to_pairwise, to_center


class Gate(nn.Module):
    """Softmax weights over experts from the backbone feature, optionally top-k sparse."""

    def __init__(self, feature_dim: int, num_experts: int, top_k: int) -> None:
        super().__init__()
        self.linear = nn.Linear(feature_dim, num_experts)
        self.top_k = top_k

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        logits = self.linear(features)
        if 0 < self.top_k < logits.shape[1]:
            kth = logits.topk(self.top_k, dim=1).values[:, -1:]
            logits = logits.masked_fill(logits < kth, float("-inf"))
        return logits.softmax(dim=1)


class HashExperts(nn.Module):
    """E experts, each a linear map followed by tanh (a hash expert) or ReLU (a feature expert)."""

    def __init__(self, in_dim: int, out_dim: int, num_experts: int, activation: str = "tanh") -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(num_experts, in_dim, out_dim))
        self.bias = nn.Parameter(torch.zeros(num_experts, out_dim))
        bound = 1 / math.sqrt(in_dim)
        nn.init.uniform_(self.weight, -bound, bound)
        self.activation = torch.tanh if activation == "tanh" else F.relu

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """(N, in) -> (N, E, out)."""
        return self.activation(torch.einsum("ni,eio->neo", features, self.weight) + self.bias)


def mix(gate_weights: torch.Tensor, expert_outputs: torch.Tensor) -> torch.Tensor:
    return torch.einsum("ne,neo->no", gate_weights, expert_outputs)


@dataclass
class MLHOutput:
    center: torch.Tensor | None
    pairwise: torch.Tensor | None
    gates: dict[str, torch.Tensor]


class Branch(nn.Module):
    """One branch's hash function for the architectures that do not share experts."""

    def __init__(self, architecture: str, feature_dim: int, bits: int, num_experts: int, top_k: int,
                 hidden_dim: int) -> None:
        super().__init__()
        self.architecture = architecture
        if architecture == "plain":
            self.head = HashLayer(feature_dim, bits)
            return
        self.gate = Gate(feature_dim, num_experts, top_k)
        if architecture == "moe":
            self.experts = HashExperts(feature_dim, hidden_dim, num_experts, activation="relu")
            self.head = HashLayer(hidden_dim, bits)
        else:  # moh-unshared
            self.experts = HashExperts(feature_dim, bits, num_experts)

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self.architecture == "plain":
            return self.head(features), None
        weights = self.gate(features)
        mixed = mix(weights, self.experts(features))
        return (self.head(mixed) if self.architecture == "moe" else mixed), weights


@register_method("mlh")
class MLH(HashMethod):
    """MLH (2025): center branch + pairwise branch + shared Mixture-of-Hash-Experts + mutual loss."""

    family = "mutual"
    summary = "MLH (Ma et al., 2025): center + pairwise branches, shared hash experts, mutual loss"
    paper = "Ma et al., arXiv 2510.07703"
    architecture: ClassVar[str] = "moh"
    branches: ClassVar[str] = "both"
    lambda_center = real(4.0, 0.0)
    lambda_pairwise = real(1.0, 0.0)
    lambda_mutual = real(1.0, 0.0)
    quantization_weight = real(0.0, 0.0)
    num_experts = integer(4, 1, 64)
    top_k = integer(0, 0, 64)
    hidden_dim = integer(512, 1)
    mutual = choice("detached", ("detached", "joint"))
    schedule = choice("joint", ("joint", "alternate"))
    test_branch = choice("center", ("center", "pairwise"))
    pairwise_scale = real(0.5, 0.0, open_low=True)
    center_seed = integer(0, 0)
    head = head_param("linear")
    train_defaults: ClassVar[dict[str, Any]] = {
        "optimizer": "adam", "lr": 1e-3, "backbone_lr_mult": 0.01, "weight_decay": 0.0, "batch_size": 64,
        "epochs": 90, "scheduler": "step", "lr_step": 10, "lr_gamma": 0.7, "augment": "crop_flip",
    }
    frozen_train_defaults: ClassVar[dict[str, Any]] = {"epochs": 30, "lr_step": 10}
    fidelity = (
        ("two branches, MoH, L_C / L_P / cosine L_M, lambda (4, 1, 1) (the paper; no code published)",
         "as stated",
         "every open choice (experts, gate, stop-gradients, schedule, centers, recipe = CSQ's) is in "
         "`hashbench/methods/mlh.py`'s docstring and a `--set` key"),
        ("no code published",
         "cached features: 30 epochs, lr step 10",
         "validation curve flat from 20 to 60 epochs"),
    )

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if self.branches != "both":
            self.test_branch = self.branches
        self.weights = {"center": self.lambda_center, "pairwise": self.lambda_pairwise, "mutual": self.lambda_mutual,
                        "quantization": self.quantization_weight}
        names = ["center", "pairwise"] if self.branches == "both" else [self.branches]
        self.trunk = head_trunk(self.head, self.feature_dim)
        if self.architecture == "moh":
            self.experts = HashExperts(self.feature_dim, self.bits, self.num_experts)
            self.gates = nn.ModuleDict({n: Gate(self.feature_dim, self.num_experts, self.top_k) for n in names})
        else:
            self.branch = nn.ModuleDict({n: Branch(self.architecture, self.feature_dim, self.bits, self.num_experts,
                                                   self.top_k, self.hidden_dim) for n in names})
        self.register_buffer("centers", mlh_centers(self.num_classes, self.bits, self.center_seed))

    def forward(self, features: torch.Tensor) -> MLHOutput:
        features = self.trunk(features)
        codes: dict[str, torch.Tensor] = {}
        gates: dict[str, torch.Tensor] = {}
        if self.architecture == "moh":
            expert_codes = self.experts(features)
            for name, gate in self.gates.items():
                gates[name] = gate(features)
                codes[name] = mix(gates[name], expert_codes)
        else:
            for name, branch in self.branch.items():
                codes[name], weights = branch(features)
                if weights is not None:
                    gates[name] = weights
        return MLHOutput(center=codes.get("center"), pairwise=codes.get("pairwise"), gates=gates)

    def codes(self, output: MLHOutput) -> torch.Tensor:
        return output.center if self.test_branch == "center" else output.pairwise

    def _alternating(self) -> bool:
        return self.schedule == "alternate" and self.branches == "both"

    @staticmethod
    def active_side(step: int) -> str:
        return "center" if step % 2 == 0 else "pairwise"

    def inactive_parameters(self, step: int) -> list[nn.Parameter]:
        if not self._alternating():
            return []
        inactive = "pairwise" if self.active_side(step) == "center" else "center"
        owner = self.gates if self.architecture == "moh" else self.branch
        return list(owner[inactive].parameters())

    def loss(self, output: MLHOutput, *, labels: torch.Tensor, index: torch.Tensor, step: int
             ) -> dict[str, torch.Tensor]:
        terms: dict[str, torch.Tensor] = {}
        sides: dict[str, list[torch.Tensor]] = {"center": [], "pairwise": []}
        if output.center is not None:
            terms["center"] = center_loss(output.center, self.centers, labels)
            sides["center"].append(self.weights["center"] * terms["center"])
        if output.pairwise is not None:
            terms["pairwise"] = pairwise_loss(output.pairwise, labels, self.pairwise_scale)
            sides["pairwise"].append(self.weights["pairwise"] * terms["pairwise"])
        if output.center is not None and output.pairwise is not None:
            detached = self.mutual == "detached"
            center_term, pairwise_term = mutual_loss(output.center, output.pairwise, detached=detached)
            terms["mutual"] = center_term + pairwise_term if detached else center_term
            sides["center"].append(self.weights["mutual"] * center_term)
            sides["pairwise"].append(self.weights["mutual"] * pairwise_term)
        codes = [c for c in (output.center, output.pairwise) if c is not None]
        terms["quantization"] = sum(quantization_error(codes=c) for c in codes) / len(codes)
        if self._alternating():
            total = sum(sides[self.active_side(step)])
        else:  # every term once (the joint mutual term stands on both sides' lists)
            total = sum(self.weights[name] * terms[name] for name in ("center", "pairwise", "mutual") if name in terms)
        if self.weights["quantization"] > 0:
            total = total + self.weights["quantization"] * terms["quantization"]
        return {"loss": total, **terms}


def _variant(class_name: str, name: str, summary: str, **attributes: str) -> type[MLH]:
    """An ablation variant: MLH with other class attributes (branches, architecture)."""
    variant = type(class_name, (MLH,), {"summary": summary, "__doc__": summary, "__module__": __name__,
                                        "ablation_of": "mlh", **attributes})
    return register_method(name)(variant)


MLHCenter = _variant("MLHCenter", "mlh-center", "MLH ablation: the center branch alone (L_C)", branches="center")
MLHPairwise = _variant("MLHPairwise", "mlh-pairwise", "MLH ablation: the pairwise branch alone (L_P)",
                       branches="pairwise")
MLHNoMoH = _variant("MLHNoMoH", "mlh-no-moh", "MLH ablation: two plain hash layers, mutual learning, no experts",
                    architecture="plain")
MLHMoE = _variant("MLHMoE", "mlh-moe", "MLH ablation: a traditional MoE per branch, feature experts then a hash "
                  "layer (Fig. 3a)", architecture="moe")
MLHMoHUnshared = _variant("MLHMoHUnshared", "mlh-moh-unshared", "MLH ablation: hash experts per branch, not shared "
                          "(Fig. 3c)", architecture="moh-unshared")
