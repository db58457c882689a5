"""DSH, DHN, DCH and IDHN: losses against loop transcriptions of their formulas (value and
gradient, single- and multi-label), finite losses and gradients at extreme inputs, and each
method's head and wiring."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F
from helpers import assert_same_value_and_grad, labels_for, shares

from hashbench.losses import l1_quantization, pairwise_likelihood, pairwise_similarity
from hashbench.methods.dch import DCH, dch_loss
from hashbench.methods.dhn import DHN, dhn_loss, log_cosh
from hashbench.methods.dsh import DSH, dsh_loss
from hashbench.methods.idhn import IDHN, idhn_loss, soft_similarity

pytestmark = pytest.mark.usefixtures("float64")


def similarity_matrix(ya: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
    return torch.tensor([[shares(a, b) for b in yb] for a in ya])


def build(cls, bits: int = 8, **overrides):
    return cls(feature_dim=5, bits=bits, num_classes=4, num_train=10, **{**cls.defaults, **overrides}).double()


def all_finite(loss: torch.Tensor, codes: torch.Tensor) -> bool:
    return bool(torch.isfinite(loss)) and bool(torch.isfinite(codes.grad).all())


#: Extreme label sets: every item alike, every item different (no positive pair off the
#: diagonal), and items without any label (no positive pair at all).
EXTREME_LABELS = {
    "all-equal": torch.ones(4, 4),
    "no-positive-pairs": torch.eye(4),
    "no-labels": torch.zeros(4, 4),
}


def extreme_codes() -> list[torch.Tensor]:
    """Codes of +/-100, saturated tanh (exact +/-1, identical rows) and all zeros."""
    big = torch.full((4, 16), 100.0)
    big[1] = -100.0
    big[2, :8] = -100.0
    return [big, torch.tanh(big), torch.zeros(4, 16)]


def check_extremes(loss_fn) -> None:
    for labels, codes in itertools.product(EXTREME_LABELS.values(), extreme_codes()):
        u = codes.clone().requires_grad_(True)
        out = loss_fn(u, labels)
        out.backward()
        assert all_finite(out, u), (labels, codes)


# --- DSH ---------------------------------------------------------------------------------

@pytest.mark.parametrize("multi_label", [False, True])
def test_dsh_loss_is_the_papers_pair_objective_over_the_batch(multi_label):
    """The paper's L_r(b_i, b_j) = 1/2 s D + 1/2 (1 - s) max(m - D, 0) + alpha (|| |b_i| - 1 ||_1
    + || |b_j| - 1 ||_1) summed over the batch's pairs i < j and divided by B (B - 1): the
    objective whose gradient the authors' Caffe layer applies."""
    u = torch.randn(6, 8, generator=torch.Generator().manual_seed(1)) * 1.5
    y = labels_for(multi_label, 6, seed=1)
    s = similarity_matrix(y, y)
    distances = (u.unsqueeze(1) - u.unsqueeze(0)).pow(2).sum(2)
    margin, alpha = distances[s == 0].mean().item(), 0.3  # dissimilar pairs on both sides of the hinge

    def regularizer(v):
        return sum(abs(abs(v[k]) - 1) for k in range(8))

    def slow(u):
        total = 0
        for i, j in itertools.combinations(range(6), 2):
            d = ((u[i] - u[j]) ** 2).sum()
            total = total + 0.5 * s[i, j] * d + 0.5 * (1 - s[i, j]) * torch.clamp(margin - d, min=0)
            total = total + alpha * (regularizer(u[i]) + regularizer(u[j]))
        return total / (6 * 5)

    assert_same_value_and_grad(lambda u: dsh_loss(codes=u, similarity=s, margin=margin, alpha=alpha)["loss"], slow, u)


def test_dsh_margin_defaults_to_twice_the_bits_and_the_head_is_linear():
    method = build(DSH, bits=12)
    assert method.margin == 24.0 and method.alpha == 0.01
    assert build(DSH, margin=5.0).margin == 5.0
    assert not any(isinstance(m, torch.nn.Tanh) for m in method.modules())
    x = torch.randn(3, 5) * 100
    assert method(x).abs().max() > 1  # no squashing: the L1 term pulls outputs to +/-1
    y = labels_for(True, 3, seed=2)
    out = method.loss(method(x), labels=y, index=None, step=0)
    expected = dsh_loss(codes=method(x), similarity=pairwise_similarity(y, y), margin=24.0, alpha=0.01)
    assert out["loss"].item() == pytest.approx(expected["loss"].item())


def test_l1_quantization_normalizers():
    u = torch.tensor([[0.5, -2.0], [1.0, 0.0]])
    assert l1_quantization(codes=u).item() == pytest.approx((0.5 + 1.0 + 0.0 + 1.0) / 4)
    assert l1_quantization(codes=u, normalizer=2).item() == pytest.approx(2.5 / 2)


def test_dsh_is_finite_at_extremes():
    check_extremes(lambda u, y: dsh_loss(codes=u, similarity=pairwise_similarity(y, y), margin=32.0,
                                         alpha=0.01)["loss"])


# --- DHN ---------------------------------------------------------------------------------

@pytest.mark.parametrize("multi_label", [False, True])
def test_dhn_loss_matches_loops(multi_label):
    """Mean over all B x B pairs of log(1 + e^theta) - s theta, theta = <u_i, u_j>, plus
    lambda sum_k log cosh(|u_k| - 1) averaged over the batch (the Caffe layers' gradients)."""
    u = torch.tanh(torch.randn(6, 8))
    y = labels_for(multi_label, 6, seed=3)
    s = similarity_matrix(y, y)

    def slow(u):
        total = 0
        for i, j in itertools.product(range(6), range(6)):
            theta = (u[i] * u[j]).sum()
            total = total + torch.log(1 + torch.exp(theta)) - s[i, j] * theta
        quantization = sum(torch.log(torch.cosh(abs(u[i, k]) - 1)) for i, k in itertools.product(range(6), range(8)))
        return total / 36 + 0.2 * quantization / 6

    assert_same_value_and_grad(lambda u: dhn_loss(codes=u, similarity=s, quantization_weight=0.2)["loss"], slow, u)


def test_log_cosh_is_stable_with_tanh_gradient():
    x = torch.tensor([-3.0, -0.5, 0.0, 0.7, 4.0], requires_grad=True)
    value = log_cosh(x)
    torch.testing.assert_close(value, torch.log(torch.cosh(x)))
    value.sum().backward()
    torch.testing.assert_close(x.grad, torch.tanh(x.detach()))
    big = torch.tensor([1e4, -1e4], requires_grad=True)
    out = log_cosh(big).sum()
    out.backward()
    assert out.item() == pytest.approx(2 * (1e4 - math.log(2))) and torch.isfinite(big.grad).all()


def test_dhn_head_and_wiring():
    method = build(DHN, bits=16)
    last = method.hash_layer[1]
    assert last.bias.abs().max() == 0 and last.weight.std().item() == pytest.approx(0.01, rel=0.3)
    x = torch.randn(4, 5) * 1e3
    codes = method(x)
    assert codes.shape == (4, 16) and codes.abs().max() <= 1
    y = labels_for(True, 4, seed=4)
    out = method.loss(codes, labels=y, index=None, step=0)
    expected = dhn_loss(codes=codes, similarity=pairwise_similarity(y, y), quantization_weight=0.2)
    assert out["loss"].item() == pytest.approx(expected["loss"].item())


def test_dhn_is_finite_at_extremes():
    check_extremes(lambda u, y: dhn_loss(codes=u, similarity=pairwise_similarity(y, y),
                                         quantization_weight=0.2)["loss"])


# --- DCH ---------------------------------------------------------------------------------

def dch_transcription(u, s, gamma, lam, distance):
    """The reference's weighted Cauchy cross-entropy over off-diagonal pairs (similar pairs
    weigh B^2 / |S1|, the diagonal counted in |S1|) plus the paper's Cauchy quantization."""
    n, bits = u.shape
    positives = sum(s[i, j] for i, j in itertools.product(range(n), range(n)))

    def cos(a, b):
        return (a * b).sum() / (a.norm() * b.norm())

    total = 0
    for i, j in itertools.product(range(n), range(n)):
        if i == j:
            continue
        if distance == "cosine":
            d = bits / 2 * (1 - cos(u[i], u[j]) + 1e-6)
        else:
            d = ((u[i] - u[j]) ** 2).sum() + 0.001
        p = gamma / (gamma + d)
        weight = n * n / positives if s[i, j] else 1.0
        total = total + weight * (-s[i, j] * torch.log(p) - (1 - s[i, j]) * torch.log(1 - p))
    ones = torch.ones(bits)
    quantization = sum(torch.log(1 + bits / 2 * (1 - cos(u[i].abs(), ones) + 1e-6) / gamma) for i in range(n))
    return total / (n * (n - 1)) + lam * quantization / n


@pytest.mark.parametrize("distance", ["cosine", "euclidean"])
@pytest.mark.parametrize("multi_label", [False, True])
def test_dch_loss_matches_loops(multi_label, distance):
    u = torch.tanh(torch.randn(6, 8))
    y = labels_for(multi_label, 6, seed=5)
    s = similarity_matrix(y, y)
    assert (s == 0).any()

    def fast(u):
        return dch_loss(codes=u, similarity=s, gamma=20.0, quantization_weight=0.1, distance=distance)["loss"]

    assert_same_value_and_grad(fast, lambda u: dch_transcription(u, s, 20.0, 0.1, distance), u)


def test_dch_cauchy_probability_prefers_close_similar_pairs():
    """With s = 1 the loss grows with the distance, with s = 0 it shrinks: log(1 + d/gamma)
    and log(1 + gamma/d)."""
    near = torch.tensor([[1.0, 1, 1, 1], [1, 1, 1, -1]])
    far = torch.tensor([[1.0, 1, 1, 1], [-1, -1, -1, 1]])
    same, different = torch.ones(2, 2), torch.eye(2)

    def cauchy(u, s):
        return dch_loss(codes=u, similarity=s, gamma=2.0, quantization_weight=0.0)["cauchy"].item()

    assert cauchy(near, same) < cauchy(far, same)
    assert cauchy(near, different) > cauchy(far, different)
    d = 4 / 2 * (1 - 0.5 + 1e-6)  # one differing bit of four: cos = 1/2
    assert cauchy(near, same) == pytest.approx(math.log1p(d / 2.0))  # weight B^2 / |S1| = 1


def test_dch_head_and_wiring():
    method = build(DCH, bits=16)
    last = method.hash_layer[1]
    assert last.bias.abs().max() == 0 and last.weight.std().item() == pytest.approx(0.01, rel=0.3)
    assert (method.gamma, method.quantization_weight, method.distance) == (20.0, 0.1, "cosine")
    codes = method(torch.randn(5, 5))
    y = labels_for(True, 5, seed=6)
    out = method.loss(codes, labels=y, index=None, step=0)
    expected = dch_loss(codes=codes, similarity=pairwise_similarity(y, y), gamma=20.0, quantization_weight=0.1)
    assert out["loss"].item() == pytest.approx(expected["loss"].item())


@pytest.mark.parametrize("distance", ["cosine", "euclidean"])
def test_dch_is_finite_at_extremes(distance):
    check_extremes(lambda u, y: dch_loss(codes=u, similarity=pairwise_similarity(y, y), gamma=20.0,
                                         quantization_weight=0.1, distance=distance)["loss"])


# --- IDHN --------------------------------------------------------------------------------

def idhn_transcription(u, y, beta, gamma, lam):
    n, bits = u.shape
    total = 0
    for i, j in itertools.product(range(n), range(n)):
        s = (y[i] * y[j]).sum() / (y[i].norm() * y[j].norm())
        ip = (u[i] * u[j]).sum()
        if s < 0.01 or s > 0.99:
            theta = beta * ip / bits
            total = total + torch.log(1 + torch.exp(theta)) - s * theta
        else:
            total = total + gamma * bits * ((ip + bits) / (2 * bits) - s) ** 2
    quantization = sum(abs(abs(u[i, k]) - 1) for i, k in itertools.product(range(n), range(bits)))
    return total / (n * n) + lam * quantization / (n * bits)


@pytest.mark.parametrize("multi_label", [False, True])
def test_idhn_loss_matches_loops(multi_label):
    u = F.softsign(torch.randn(6, 8) * 2)
    y = labels_for(multi_label, 6, classes=4, seed=7)
    s = soft_similarity(y, y)
    soft_pairs = ((s > 0.01) & (s < 0.99)).any()
    assert bool(soft_pairs) == multi_label  # the multi-label case exercises both branches

    def fast(u):
        return idhn_loss(codes=u, similarity=s, beta=5.0, gamma=0.1, quantization_weight=0.1)["loss"]

    assert_same_value_and_grad(fast, lambda u: idhn_transcription(u, y, 5.0, 0.1, 0.1), u)


def test_idhn_soft_similarity_is_the_label_cosine():
    y = torch.tensor([[1.0, 0, 0], [1, 1, 0], [0, 0, 1], [1, 0, 0], [0, 0, 0]])
    s = soft_similarity(y, y)
    assert s[0, 3].item() == pytest.approx(1.0) and s[0, 2].item() == 0
    assert s[0, 1].item() == pytest.approx(1 / math.sqrt(2))
    assert (s[4] == 0).all()  # an item without labels is dissimilar to everything


def test_idhn_single_label_is_the_scaled_likelihood():
    u = F.softsign(torch.randn(5, 16))
    y = labels_for(False, 5, seed=8)
    out = idhn_loss(codes=u, similarity=soft_similarity(y, y), beta=5.0, gamma=0.1, quantization_weight=0.0)
    expected = pairwise_likelihood(theta=5.0 / 16 * u @ u.T, similarity=pairwise_similarity(y, y))
    assert out["soft"].item() == 0
    assert out["loss"].item() == pytest.approx(expected.item(), rel=1e-12)


def test_idhn_codes_are_softsign_and_wired():
    method = build(IDHN, bits=16)
    x = torch.randn(4, 5) * 1e4
    codes = method(x)
    torch.testing.assert_close(codes, F.softsign(method.hash_layer(x)))
    assert codes.abs().max() < 1
    y = labels_for(True, 4, seed=9)
    out = method.loss(codes, labels=y, index=None, step=0)
    expected = idhn_loss(codes=codes, similarity=soft_similarity(y, y), beta=5.0, gamma=0.1, quantization_weight=0.1)
    assert out["loss"].item() == pytest.approx(expected["loss"].item())


def test_idhn_is_finite_at_extremes():
    check_extremes(lambda u, y: idhn_loss(codes=u, similarity=soft_similarity(y, y), beta=5.0, gamma=0.1,
                                          quantization_weight=0.1)["loss"])
