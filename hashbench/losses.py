"""Loss terms shared by several methods, as small pure functions.

Each takes keyword-only tensors and options and returns a scalar tensor, so a method's
``loss`` reads as the weighted sum of its paper's named terms and tests can check each
term against a direct transcription of its formula. Each name means one formula wherever
it is used: ``quantization_error`` is always mean((|u| - 1)^2).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


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
