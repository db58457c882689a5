"""Loss terms shared by several methods, as small pure functions.

Each takes tensors and explicit keyword arguments and returns a scalar, so a method's
``loss`` reads as the weighted sum of its paper's terms and tests can check each term
against a direct transcription of its formula.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def pairwise_nll(theta: torch.Tensor, similarity: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Negative log-likelihood of pairwise similarities under p(s=1) = sigmoid(theta):
    ``log(1 + e^theta) - s * theta``, computed with a stable softplus, averaged (optionally
    weighted) over pairs."""
    nll = F.softplus(theta) - similarity * theta
    if weights is None:
        return nll.mean()
    return (weights * nll).sum() / weights.sum()


def quantization_error(codes: torch.Tensor) -> torch.Tensor:
    """Mean of (|u| - 1)^2: how far continuous codes are from +/-1."""
    return (codes.abs() - 1).pow(2).mean()


def center_bce(codes: torch.Tensor, centers: torch.Tensor) -> torch.Tensor:
    """CSQ's central similarity: binary cross-entropy between (u + 1) / 2 and (c + 1) / 2,
    written on logits-free probabilities with clamping so |u| -> 1 stays finite."""
    prob = ((codes + 1) / 2).clamp(1e-7, 1 - 1e-7)
    return F.binary_cross_entropy(prob, (centers + 1) / 2)
