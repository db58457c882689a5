"""Loss terms shared by several methods, as small pure functions.

Each takes keyword-only tensors and options and returns a scalar tensor, so a method's
``loss`` reads as the weighted sum of its paper's named terms and tests can check each
term against a direct transcription of its formula. Each name means one formula wherever
it is used: ``quantization_error`` is always mean((|u| - 1)^2).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def pairwise_similarity(labels_a: torch.Tensor, labels_b: torch.Tensor) -> torch.Tensor:
    """s_ij = 1 when rows i and j share at least one label (multi-hot inputs)."""
    return (labels_a @ labels_b.T > 0).to(labels_a.dtype)


def pairwise_likelihood(*, theta: torch.Tensor, similarity: torch.Tensor, weights: torch.Tensor | None = None,
                        normalizer: float | torch.Tensor | None = None) -> torch.Tensor:
    """Negative log-likelihood of pairwise similarities under p(s=1) = sigmoid(theta),
    ``log(1 + e^theta) - s * theta`` with a stable softplus, optionally weighted per pair,
    summed and divided by ``normalizer`` (default: the number of pairs)."""
    nll = F.softplus(theta) - similarity * theta
    if weights is not None:
        nll = weights * nll
    return nll.sum() / (nll.numel() if normalizer is None else normalizer)


def quantization_error(*, codes: torch.Tensor) -> torch.Tensor:
    """Mean of (|u| - 1)^2: how far continuous codes are from +/-1 (CSQ, MLH)."""
    return (codes.abs() - 1).pow(2).mean()


def sign_quantization(*, codes: torch.Tensor, normalizer: float | None = None) -> torch.Tensor:
    """Sum of ||sign(u) - u||^2 over the batch (DPSH's regulariser, sign(u) held fixed),
    divided by ``normalizer`` (default: the number of entries)."""
    total = (codes.detach().sign() - codes).pow(2).sum()
    return total / (codes.numel() if normalizer is None else normalizer)


def cosine_quantization(*, codes: torch.Tensor) -> torch.Tensor:
    """Mean of 1 - cos(u, sign(u)) (OrthoHash's quantization term, sign(u) held fixed)."""
    return (1 - F.cosine_similarity(codes, codes.detach().sign(), dim=1)).mean()


def center_bce(*, codes: torch.Tensor, centers: torch.Tensor) -> torch.Tensor:
    """CSQ's central similarity: binary cross-entropy between (u + 1) / 2 and (c + 1) / 2,
    written on probabilities with clamping so |u| -> 1 stays finite."""
    prob = ((codes + 1) / 2).clamp(1e-7, 1 - 1e-7)
    return F.binary_cross_entropy(prob, (centers + 1) / 2)


def l1_quantization(*, codes: torch.Tensor, normalizer: float | None = None) -> torch.Tensor:
    """Sum of || |u| - 1 ||_1 over the batch, divided by ``normalizer`` (default: the number
    of entries): DSH's and IDHN's regulariser."""
    total = (codes.abs() - 1).abs().sum()
    return total / (codes.numel() if normalizer is None else normalizer)


def classification_loss(*, logits: torch.Tensor, labels: torch.Tensor, multi_label: bool, multi_label_loss: str
                        ) -> torch.Tensor:
    """Cross-entropy of a classifier on the codes: softmax cross-entropy against y / |y|
    (the plain cross-entropy on one-hot rows), or, on multi-label data with
    ``multi_label_loss="bce"``, binary cross-entropy per class averaged over classes and items."""
    if multi_label and multi_label_loss == "bce":
        return F.binary_cross_entropy_with_logits(logits, labels)
    targets = labels / labels.sum(1, keepdim=True).clamp_min(1)
    return -(targets * F.log_softmax(logits, dim=1)).sum(1).mean()


def feature_similarity_mse(*, codes: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
    """MSE between the cosine similarities of paired codes and of their features, the first
    half of the batch against the second (Bi-half's and GreedyHash-U's loss)."""
    half = len(codes) // 2
    code_similarity = F.cosine_similarity(codes[:half], codes[half : 2 * half])
    feature_similarity = F.cosine_similarity(features[:half], features[half : 2 * half])
    return F.mse_loss(code_similarity, feature_similarity)
