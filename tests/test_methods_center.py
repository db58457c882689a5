"""DFH, DPN, DBDH and OrthoArc: losses against loop transcriptions of their formulas (value and
gradient), DFH's discrete B- and C-steps against their closed forms, DBDH's straight-through
sign, and each method's state and extreme inputs."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from helpers import assert_same_value_and_grad, labels_for, shares

from hashbench.blocks import binary_sign
from hashbench.method import create_method
from hashbench.methods.dbdh import StraightThroughSign, dbdh_binarize, dbdh_loss
from hashbench.methods.dfh import dfh_b_step, dfh_c_step, dfh_loss
from hashbench.methods.dpn import dpn_loss
from hashbench.methods.orthohash import OrthoArc, OrthoHash, orthoarc_loss, orthohash_loss

pytestmark = pytest.mark.usefixtures("float64")


def sign(x: float) -> float:
    return 1.0 if x >= 0 else -1.0


def similarity_matrix(ya: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
    return torch.tensor([[shares(a, b) for b in yb] for a in ya])


def all_finite(loss: torch.Tensor, *tensors: torch.Tensor) -> bool:
    return bool(torch.isfinite(loss)) and all(bool(torch.isfinite(t.grad).all()) for t in tensors)


# --- DFH ---------------------------------------------------------------------------------

@pytest.mark.parametrize("multi_label", [False, True])
def test_dfh_loss_matches_loops(multi_label):
    u, memory = torch.randn(4, 8) * 2, torch.randn(7, 8) * 2
    yb, ym = labels_for(multi_label, 4, seed=1), labels_for(multi_label, 7, seed=2)
    s = similarity_matrix(yb, ym)
    b = torch.randn(4, 8).sign()
    m, eta = 1.5, 0.5

    def slow(u, memory):
        pairs = 0
        for i, j in itertools.product(range(4), range(7)):
            theta = 0.5 * (u[i] * memory[j]).sum()
            pairs = pairs + ((1 - s[i, j]) * torch.log(1 + torch.exp(m + theta))
                             + s[i, j] * torch.log(1 + torch.exp(m - theta)))
        quant = sum((b[i, k] - u[i, k]) ** 2 for i, k in itertools.product(range(4), range(8)))
        return pairs / 28 + eta * quant / 32

    assert_same_value_and_grad(
        lambda u, mem: dfh_loss(codes=u, memory=mem, similarity=s, binary=b, margin=m, eta=eta)["loss"], slow, u,
        memory)


def test_dfh_without_margin_is_the_plain_likelihood():
    u, memory = torch.randn(3, 8), torch.randn(5, 8)
    s = similarity_matrix(labels_for(False, 3, seed=3), labels_for(False, 5, seed=4))
    out = dfh_loss(codes=u, memory=memory, similarity=s, binary=u.sign(), margin=0.0, eta=0.0)["pairwise"]
    theta = 0.5 * u @ memory.T
    assert out.item() == pytest.approx((torch.log1p(torch.exp(theta)) - s * theta).mean().item(), rel=1e-12)


@pytest.mark.parametrize("multi_label", [False, True])
def test_dfh_b_step_matches_closed_form(multi_label):
    u, centers = torch.randn(6, 8), torch.randn(4, 8).sign()
    y = labels_for(multi_label, 6, seed=5)
    b = dfh_b_step(codes=u, centers=centers, labels=y, mu=0.7)
    for i, k in itertools.product(range(6), range(8)):
        pulled = sum(0.7 * y[i, c] / y[i].sum() * centers[c, k] for c in range(4))
        assert b[i, k].item() == sign((pulled + u[i, k]).item())


def c_step_transcription(centers, binary, labels, nu):
    """The authors' ``Discretecenter`` as loops: classes in order, each against the current others."""
    y = labels / labels.sum(1, keepdim=True)
    c = centers.clone()
    classes, bits = c.shape
    for k in range(classes):
        for bit in range(bits):
            q = sum(y[i, k] * binary[i, bit] for i in range(len(binary)))
            pull = sum(sum(y[i, j] * y[i, k] for i in range(len(binary))) * c[j, bit] for j in range(classes) if j != k)
            push = sum(c[j, bit] for j in range(classes) if j != k)
            c[k, bit] = sign((q - pull - nu * push).item())
    return c


def fisher_objective(centers, binary, labels, nu):
    """||B - Y C||^2 + nu sum_{i != j} c_i^T c_j, Y the normalised labels: what one C-step coordinate minimises."""
    y = labels / labels.sum(1, keepdim=True)
    gram = centers @ centers.T
    return ((binary - y @ centers) ** 2).sum() + nu * (gram.sum() - gram.diagonal().sum())


@pytest.mark.parametrize("multi_label", [False, True])
def test_dfh_c_step_matches_transcription_and_is_coordinatewise_optimal(multi_label):
    centers, binary = torch.randn(4, 5).sign(), torch.randn(9, 5).sign()
    y = labels_for(multi_label, 9, seed=6)
    new = dfh_c_step(centers=centers, binary=binary, labels=y, nu=0.5)
    torch.testing.assert_close(new, c_step_transcription(centers, binary, y, 0.5), rtol=0, atol=0)
    last = len(new) - 1  # the last class was updated against the final others: its code is their best reply
    best = min(fisher_objective(torch.cat([new[:last], torch.tensor([code])]), binary, y, 0.5).item()
               for code in itertools.product([-1.0, 1.0], repeat=5))
    assert fisher_objective(new, binary, y, 0.5).item() == pytest.approx(best)


def test_dfh_c_step_from_zero_centers_gives_binary_centers():
    y = labels_for(False, 8, seed=7)
    new = dfh_c_step(centers=torch.zeros(4, 6), binary=torch.randn(8, 6).sign(), labels=y, nu=1.0)
    assert set(new.unique().tolist()) <= {-1.0, 1.0}


def make(name: str, **overrides):
    method = create_method(name, feature_dim=5, bits=8, num_classes=4, num_train=10, **overrides).double()
    method.on_fit_start(labels_for(True, 10, seed=8))
    return method


def test_dfh_step_updates_memory_and_centers_before_the_loss():
    method = make("dfh")
    u = torch.randn(3, 8, requires_grad=True)
    index = torch.tensor([2, 5, 7])
    y = method.memory_labels[index]
    expected_b = dfh_b_step(codes=u, centers=method.centers.clone(), labels=y, mu=1.0)
    expected_c = dfh_c_step(centers=method.centers, binary=expected_b, labels=y, nu=1.0)
    out = method.loss(u, labels=y, index=index, step=0)
    torch.testing.assert_close(method.memory[index], u.detach())
    others = torch.ones(len(method.memory), dtype=torch.bool)
    others[index] = False
    assert not method.memory[others].any()  # only the batch's rows were written
    torch.testing.assert_close(method.centers, expected_c)
    expected = dfh_loss(codes=u, memory=method.memory, similarity=similarity_matrix(y, method.memory_labels),
                        binary=expected_b, margin=3.0, eta=0.5)
    assert out["loss"].item() == pytest.approx(expected["loss"].item())


def test_dfh_is_finite_for_extreme_codes_and_no_positive_pairs():
    u = torch.full((3, 16), 100.0)
    u[1] = -100.0
    u.requires_grad_(True)
    for similarity in (torch.zeros(3, 3), torch.ones(3, 3)):
        out = dfh_loss(codes=u, memory=u.detach(), similarity=similarity, binary=u.detach().sign(), margin=3.0,
                       eta=0.5)["loss"]
        u.grad = None
        out.backward()
        assert all_finite(out, u)


# --- DPN ---------------------------------------------------------------------------------

@pytest.mark.parametrize("multi_label", [False, True])
def test_dpn_loss_matches_loops(multi_label):
    u, targets = torch.randn(5, 8), torch.randn(4, 8).sign()
    y = labels_for(multi_label, 5, seed=9)

    def slow(u):
        total = 0
        for i in range(5):
            for k in range(4):
                if y[i, k]:
                    total = total + sum(torch.clamp(0.8 - u[i, b] * targets[k, b], min=0) for b in range(8))
        reg = sum(u[i, b] ** 2 for i, b in itertools.product(range(5), range(8))) / 40
        return total / 5 + 0.01 * reg

    assert_same_value_and_grad(
        lambda u: dpn_loss(codes=u, targets=targets, labels=y, margin=0.8, regularization_weight=0.01)["loss"], slow,
        u)


def test_dpn_single_label_is_the_reference_form():
    """One-hot rows: relu(m - u * t[argmax y]).sum(bits).mean(batch), the authors' single-label line."""
    u, targets = torch.randn(6, 8), torch.randn(4, 8).sign()
    y = labels_for(False, 6, seed=10)
    expected = torch.relu(1.0 - u * targets[y.argmax(1)]).sum(1).mean()
    out = dpn_loss(codes=u, targets=targets, labels=y, margin=1.0, regularization_weight=0.0)["loss"]
    assert out.item() == pytest.approx(expected.item(), rel=1e-12)


def test_dpn_targets_head_and_seeds():
    kwargs = {"feature_dim": 8, "bits": 32, "num_classes": 10, "num_train": 1}
    seed0 = create_method("dpn", **kwargs, seed=0)
    assert set(seed0.targets.unique().tolist()) == {-1.0, 1.0} and seed0.targets.shape == (10, 32)
    assert not torch.equal(seed0.targets, create_method("dpn", **kwargs, seed=1).targets)
    assert torch.equal(seed0.targets, create_method("dpn", **kwargs, seed=0).targets)
    fixed = [create_method("dpn", **kwargs, seed=s, codebook_seed=3).targets for s in (0, 1)]
    assert torch.equal(*fixed)
    linear = seed0.hash_layer[1]
    assert linear.bias is None and linear.weight.std().item() == pytest.approx(0.01, rel=0.2)
    assert seed0(torch.randn(3, 8)).shape == (3, 32)


def test_dpn_is_finite_for_extreme_codes():
    u = (torch.randn(3, 16).sign() * 100).requires_grad_(True)
    out = dpn_loss(codes=u, targets=torch.randn(4, 16).sign(), labels=labels_for(True, 3, seed=11), margin=1.0,
                   regularization_weight=1.0)["loss"]
    out.backward()
    assert all_finite(out, u)


# --- DBDH --------------------------------------------------------------------------------

@pytest.mark.parametrize("multi_label", [False, True])
@pytest.mark.parametrize("power", [1, 2])
def test_dbdh_loss_matches_loops(multi_label, power):
    b, memory = torch.randn(4, 8), torch.randn(7, 8).sign()
    yb, ym = labels_for(multi_label, 4, seed=12), labels_for(multi_label, 7, seed=13)
    s = similarity_matrix(yb, ym)

    def slow(b):
        total = 0
        for i, j in itertools.product(range(4), range(7)):
            theta = 0.5 * (b[i] * memory[j]).sum()
            total = total + torch.log1p(torch.exp(theta)) - s[i, j] * theta
        balance = sum(abs(sum(b[i, k] for k in range(8)) / 8) ** power for i in range(4)) / 4
        return total / 28 + 0.1 * balance

    assert_same_value_and_grad(
        lambda b: dbdh_loss(codes=b, memory=memory, similarity=s, balance_weight=0.1, power=power)["loss"], slow, b)


def test_straight_through_sign_forward_and_gradient():
    u = torch.tensor([-2.0, -1.0, -0.3, 0.0, 0.4, 1.0, 1.5], requires_grad=True)
    b = StraightThroughSign.apply(u)
    assert b.tolist() == [-1, -1, -1, 1, 1, 1, 1]
    weights = torch.arange(1.0, 8.0)
    (b * weights).sum().backward()
    assert u.grad.tolist() == [0, 2, 3, 4, 5, 6, 0]  # passed where |u| <= 1, cut outside
    assert torch.equal(binary_sign(torch.tensor([-0.0, 0.0, -1e-9])), torch.tensor([1.0, 1.0, -1.0]))


def test_dbdh_clamp_binarization_has_the_same_backward():
    u = torch.tensor([-2.0, -0.5, 0.25, 3.0])
    grads = []
    for kind in ("sign", "clamp"):
        x = u.clone().requires_grad_(True)
        (dbdh_binarize(x, kind) * torch.arange(1.0, 5.0)).sum().backward()
        grads.append(x.grad)
    torch.testing.assert_close(grads[0], grads[1])
    assert dbdh_binarize(u, "clamp").tolist() == [-1.0, -0.5, 0.25, 1.0]


@pytest.mark.parametrize("binarization", ["sign", "clamp"])
def test_dbdh_step_stores_the_discrete_codes_and_gates_the_gradient(binarization):
    method = make("dbdh", binarization=binarization)
    u = torch.tensor([[0.5, -2.0, 0.1, -0.2, 3.0, -0.9, 0.0, 0.7], [-0.3, 0.2, 1.5, -1.2, 0.4, 0.6, -0.8, 0.9]],
                     requires_grad=True)
    index = torch.tensor([1, 4])
    y = method.memory_labels[index]
    out = method.loss(u, labels=y, index=index, step=0)
    b = binary_sign(u.detach()) if binarization == "sign" else u.detach().clamp(-1, 1)
    torch.testing.assert_close(method.memory[index], b)
    out["loss"].backward()
    bb = b.clone().requires_grad_(True)
    direct = dbdh_loss(codes=bb, memory=method.memory, similarity=similarity_matrix(y, method.memory_labels),
                       balance_weight=0.1, power=2)["loss"]
    (grad_b,) = torch.autograd.grad(direct, bb)
    assert out["loss"].item() == pytest.approx(direct.item())
    torch.testing.assert_close(u.grad, grad_b * (u.detach().abs() <= 1))


@pytest.mark.parametrize("binarization", ["sign", "clamp"])
def test_dbdh_is_finite_for_extreme_codes_and_all_equal_labels(binarization):
    method = make("dbdh", binarization=binarization)
    u = (torch.randn(4, 8).sign() * 100).requires_grad_(True)
    y = torch.ones(4, 4)
    out = method.loss(u, labels=y, index=torch.arange(4), step=0)["loss"]
    out.backward()
    assert all_finite(out, u) and u.grad.abs().sum() == 0  # saturated: the gate cuts every gradient


# --- OrthoArc ----------------------------------------------------------------------------

def test_orthoarc_without_margin_equals_orthohash_without_margin():
    codebook, u, y = torch.randn(4, 16).sign(), torch.randn(5, 16), labels_for(True, 5, seed=15)
    arc = orthoarc_loss(codes=u, codebook=codebook, labels=y, scale=8, margin=0.0, quantization_weight=0.0)["loss"]
    cos = orthohash_loss(codes=u, codebook=codebook, labels=y, scale=8, margin=0.0, quantization_weight=0.0)["loss"]
    assert arc.item() == pytest.approx(cos.item(), rel=1e-9)


def test_orthoarc_margin_is_on_the_angle():
    """A code at angle theta from its class's target gets the logit s cos(theta + m), not s (cos(theta) - m)."""
    codebook = torch.tensor([[1.0, 1.0], [1.0, -1.0]])
    theta = 0.4
    u = torch.tensor([[math.cos(theta + math.pi / 4), math.sin(theta + math.pi / 4)]])
    y = torch.tensor([[1.0, 0.0]])
    other = math.cos(theta + math.pi / 2)  # the second target is a further right angle away
    logits = torch.tensor([2 * math.cos(theta + 0.5), 2 * other])
    expected = -(logits[0] - torch.logsumexp(logits, 0))
    out = orthoarc_loss(codes=u, codebook=codebook, labels=y, scale=2, margin=0.5, quantization_weight=0)["ce"]
    assert out.item() == pytest.approx(expected.item(), rel=1e-9)


def test_orthoarc_shares_orthohash_setup_and_is_finite_at_the_target():
    assert OrthoArc.params == OrthoHash.params and OrthoArc.train_defaults == OrthoHash.train_defaults
    assert OrthoArc.dataset_defaults == OrthoHash.dataset_defaults and OrthoArc.family == OrthoHash.family
    kwargs = {"feature_dim": 8, "bits": 16, "num_classes": 4, "num_train": 1, "seed": 3}
    arc, cos = create_method("orthoarc", **kwargs), create_method("orthohash", **kwargs)
    assert torch.equal(arc.class_codes, cos.class_codes)
    assert [p.shape for p in arc.parameters()] == [p.shape for p in cos.parameters()]
    codebook = arc.class_codes.double()
    y = labels_for(False, 4, seed=16)
    for u in (y @ codebook * 100, torch.randn(4, 16) * 1e6):  # exactly on the targets (cos = 1), and huge
        u = u.clone().requires_grad_(True)
        out = orthoarc_loss(codes=u, codebook=codebook, labels=y, scale=8, margin=0.2, quantization_weight=1.0)
        out["loss"].backward()
        assert all_finite(out["loss"], u)
