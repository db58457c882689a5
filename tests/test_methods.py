"""Every method: losses against direct transcriptions of their formulas (value and gradient),
centers and codebooks, MLH's experts, and training through the CLI on digits."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from helpers import assert_same_value_and_grad, labels_for, shares

from hashbench.engine.runner import optimizer_step
from hashbench.method import create_method
from hashbench.methods.csq import CSQ
from hashbench.methods.dpsh import dpsh_loss
from hashbench.methods.hashnet import continuation_beta, hashnet_loss
from hashbench.methods.mlh import MLH, center_loss, mutual_loss, pairwise_loss
from hashbench.methods.orthohash import orthoarc_loss, orthohash_loss
from hashbench.models.centers import (
    gilbert_varshamov_distance,
    greedy_codebook,
    hadamard_centers,
    min_pairwise_distance,
    multi_label_centers,
    random_centers,
)
from hashbench.registry import METHODS

pytestmark = pytest.mark.usefixtures("float64")


def softplus(x: float) -> float:
    return max(x, 0.0) + math.log1p(math.exp(-abs(x)))


# --- DPSH --------------------------------------------------------------------------------

@pytest.mark.parametrize("multi_label", [False, True])
def test_dpsh_loss_matches_loops(multi_label):
    u = torch.randn(4, 8)
    memory = torch.randn(7, 8)
    yb, ym = labels_for(multi_label, 4, seed=1), labels_for(multi_label, 7, seed=2)
    s = torch.tensor([[shares(yb[i], ym[j]) for j in range(7)] for i in range(4)])

    def slow(u, memory):
        total = 0
        for i in range(4):
            for j in range(7):
                theta = 0.5 * (u[i] * memory[j]).sum()
                total = total + torch.log1p(torch.exp(theta)) - s[i, j] * theta
        quant = sum(((torch.sign(u[i].detach()) - u[i]) ** 2).sum() for i in range(4))
        return (total + 10 * quant) / 28

    assert_same_value_and_grad(lambda u, m: dpsh_loss(codes=u, memory=m, similarity=s, eta=10.0)["loss"], slow, u,
                               memory)


def test_dpsh_is_finite_for_huge_inner_products():
    u = torch.full((3, 64), 100.0, requires_grad=True)
    out = dpsh_loss(codes=u, memory=u.detach(), similarity=torch.zeros(3, 3), eta=10.0)["loss"]
    out.backward()
    assert torch.isfinite(out) and torch.isfinite(u.grad).all()


# --- HashNet -----------------------------------------------------------------------------

@pytest.mark.parametrize("multi_label", [False, True])
@pytest.mark.parametrize("positive_weight", [1.0, 5.0])
def test_hashnet_two_batch_loss_matches_reference_transcription(multi_label, positive_weight):
    """The reference's ``pairwise_loss``: only pairs across the two batches, positives
    weighted by class_num, the sum divided by the sum of the weights."""
    h = torch.tanh(torch.randn(8, 16))
    y = labels_for(multi_label, 8, seed=3)
    alpha = 10 / 16

    def slow(h):
        num, den = 0, 0
        for i, j in itertools.product(range(4), range(4)):
            s = shares(y[i], y[4 + j])
            x = alpha * (h[i] * h[4 + j]).sum()
            w = positive_weight if s else 1.0
            num = num + w * (torch.log1p(torch.exp(x)) - s * x)
            den += w
        return num / den

    method = create_method("hashnet", feature_dim=3, bits=16, num_classes=4, num_train=8,
                           positive_weight=positive_weight).double()
    assert_same_value_and_grad(lambda h: method.loss(h, labels=y, index=None, step=0)["loss"], slow, h)


@pytest.mark.parametrize("multi_label", [False, True])
def test_hashnet_balanced_weighting_matches_paper(multi_label):
    """``weighting=balanced``: |S|/|S1| and |S|/|S0| weights, the sum divided by |S|."""
    a, b = torch.tanh(torch.randn(5, 16)), torch.tanh(torch.randn(6, 16))
    ya, yb = labels_for(multi_label, 5, seed=3), labels_for(multi_label, 6, seed=9)
    s = [[shares(ya[i], yb[j]) for j in range(6)] for i in range(5)]
    n_pos = sum(map(sum, s))
    w_pos, w_neg = 30 / n_pos, 30 / (30 - n_pos)

    def slow(a, b):
        total = 0
        for i, j in itertools.product(range(5), range(6)):
            x = 0.5 * (a[i] * b[j]).sum()
            total = total + (w_pos if s[i][j] else w_neg) * (torch.log1p(torch.exp(x)) - s[i][j] * x)
        return total / 30

    def fast(a, b):
        return hashnet_loss(codes_a=a, codes_b=b, labels_a=ya, labels_b=yb, alpha=0.5, weighting="balanced")

    assert_same_value_and_grad(fast, slow, a, b)


def test_hashnet_large_inner_products_are_finite():
    h = torch.full((4, 32), 1.0, requires_grad=True)
    y = labels_for(False, 4)
    for weighting in ("reference", "balanced"):
        out = hashnet_loss(codes_a=h * 1e4, codes_b=h * 1e4, labels_a=y, labels_b=y, alpha=10.0, weighting=weighting)
        out.backward()
        assert torch.isfinite(out) and torch.isfinite(h.grad).all()


def test_hashnet_continuation_schedule():
    assert continuation_beta(0) == 1.0
    assert continuation_beta(199) == 1.0
    assert continuation_beta(200) == pytest.approx(math.sqrt(2.0))
    assert continuation_beta(1000) == pytest.approx(math.sqrt(1 + 0.005 * 1000))


# --- CSQ ---------------------------------------------------------------------------------

def make_csq(**overrides):
    params = {**CSQ.defaults, **overrides}
    return CSQ(feature_dim=5, bits=16, num_classes=4, num_train=10, **params).double()


@pytest.mark.parametrize("multi_label", [False, True])
def test_csq_loss_matches_formula(multi_label):
    method = make_csq(pairwise_weight=0.5)
    y = labels_for(multi_label, 6, seed=4)
    u = torch.tanh(torch.randn(6, 16))
    targets = method.targets(y)

    def slow(u):
        bce = 0
        for i, k in itertools.product(range(6), range(16)):
            p, t = (u[i, k] + 1) / 2, (targets[i, k] + 1) / 2
            bce = bce - (t * torch.log(p) + (1 - t) * torch.log(1 - p))
        quant = sum((abs(u[i, k]) - 1) ** 2 for i, k in itertools.product(range(6), range(16))) / 96
        pair, den = 0, 0
        for i, j in itertools.product(range(3), range(3)):
            ip = (10 / 16) * (u[i] * u[3 + j]).sum()
            s = shares(y[i], y[3 + j])
            pair = pair + torch.log1p(torch.exp(ip)) - s * ip
            den += 1
        return bce / 96 + 0.05 * quant + 0.5 * pair / den

    assert_same_value_and_grad(lambda u: method.loss(u, labels=y, index=None, step=0)["loss"], slow, u)


def test_csq_multi_label_centers_and_recipes():
    method = make_csq()
    y = torch.tensor([[1.0, 1, 0, 0], [0, 0, 1, 0]])
    targets = method.targets(y)
    mean = (method.centers[0] + method.centers[1]) / 2
    tie = mean == 0
    assert torch.equal(targets[0][~tie], torch.sign(mean[~tie]))
    assert torch.equal(targets[0][tie], method.tie_break[tie])
    assert torch.equal(targets[1], method.centers[2])
    assert make_csq().quantization_weight == 0.05
    assert make_csq(recipe="alexnet").quantization_weight == 0.001
    assert CSQ(feature_dim=5, bits=64, num_classes=4, num_train=1, **{**CSQ.defaults, "recipe": "alexnet"}
               ).quantization_weight == 0.0001


def test_csq_loss_finite_at_saturation():
    method = make_csq()
    u = torch.ones(2, 16, requires_grad=True)
    out = method.loss(u, labels=labels_for(False, 2), index=None, step=0)["loss"]
    out.backward()
    assert torch.isfinite(out) and torch.isfinite(u.grad).all()


# --- OrthoHash ---------------------------------------------------------------------------

MARGINS = {"cosine": lambda cos, m: cos - m, "arc": lambda cos, m: torch.cos(torch.acos(cos) + m)}


@pytest.mark.parametrize("margin_kind", list(MARGINS))
@pytest.mark.parametrize("multi_label", [False, True])
def test_orthohash_and_orthoarc_losses_match_loops(multi_label, margin_kind):
    """OrthoHash's logits s (cos - m y) and OrthoArc's s cos(theta + m y), soft targets
    y / |y|, plus the cosine quantization term."""
    codebook = torch.randn(4, 16).sign()
    y = labels_for(multi_label, 5, seed=5)
    u = torch.randn(5, 16)
    margin_logit = MARGINS[margin_kind]

    def slow(u):
        total = 0
        for i in range(5):
            logits = []
            for k in range(4):
                cos = (u[i] * codebook[k]).sum() / (u[i].norm() * codebook[k].norm())
                logits.append(8 * margin_logit(cos, 0.3 * y[i, k]))
            logits = torch.stack(logits)
            log_softmax = logits - torch.logsumexp(logits, 0)
            total = total - sum(y[i, k] / y[i].sum() * log_softmax[k] for k in range(4))
        quant = sum(1 - (u[i] @ u[i].detach().sign()) / (u[i].norm() * u[i].detach().sign().norm()) for i in range(5))
        return total / 5 + 0.5 * quant / 5

    loss = orthohash_loss if margin_kind == "cosine" else orthoarc_loss
    assert_same_value_and_grad(
        lambda u: loss(codes=u, codebook=codebook, labels=y, scale=8, margin=0.3, quantization_weight=0.5)["loss"],
        slow, u)


# --- centers and codebooks ---------------------------------------------------------------

def test_hadamard_centers_are_orthogonal():
    centers = hadamard_centers(32, 32)
    gram = centers[:32] @ centers[:32].T
    torch.testing.assert_close(gram, 32 * torch.eye(32, dtype=gram.dtype))
    assert min_pairwise_distance(hadamard_centers(64, 32)) == 16


@pytest.mark.parametrize(("classes", "bits", "distance"), [(10, 16, 8), (100, 64, 23), (80, 32, 10)])
def test_random_centers_meet_min_distance(classes, bits, distance):
    centers = random_centers(classes, bits, distance, seed=1, balanced=False)
    assert centers.shape == (classes, bits) and set(centers.unique().tolist()) == {-1.0, 1.0}
    assert min_pairwise_distance(centers) >= distance


def test_gilbert_varshamov_distance_by_hand():
    # 2 * V(3, 1) = 8 <= 2^3, 2 * V(3, 2) = 14 > 8  ->  d = 2
    assert gilbert_varshamov_distance(2, 3) == 2
    # 4 * V(4, 0) = 4 <= 16, 4 * V(4, 1) = 20 > 16  ->  d = 1
    assert gilbert_varshamov_distance(4, 4) == 1
    # 10 * V(16, 4) = 25,170 <= 65,536 < 10 * V(16, 5) = 68,850  ->  d = 5
    assert gilbert_varshamov_distance(10, 16) == 5


def test_greedy_codebook_and_multi_label_centers():
    codebook = greedy_codebook(10, 32, seed=0, tries=500)  # the threshold drops sooner: a faster test
    assert min_pairwise_distance(codebook) >= 0.2 * 32
    centers = torch.tensor([[1.0, 1, 1, -1], [1, -1, -1, -1]])
    merged = multi_label_centers(centers, torch.tensor([[1.0, 1]]))
    assert merged.tolist() == [[1, 1, 1, -1]]  # zeros take the default +1


# --- MLH ---------------------------------------------------------------------------------

def make_mlh(name: str = "mlh", bits: int = 16, **overrides) -> MLH:
    cls = METHODS.get(name)
    return cls(feature_dim=12, bits=bits, num_classes=5, num_train=10, **{**cls.defaults, **overrides}).double()


@pytest.mark.parametrize("bits", [16, 32, 64])
def test_moh_shapes_gates_and_sharing(bits):
    method = make_mlh(bits=bits, top_k=2)
    out = method(torch.randn(7, 12))
    assert out.center.shape == out.pairwise.shape == (7, bits)
    assert out.center.abs().max() < 1 and out.pairwise.abs().max() < 1
    for gate in out.gates.values():
        torch.testing.assert_close(gate.sum(1), torch.ones(7))
        assert ((gate > 0).sum(1) == 2).all()  # top-2
    assert set(method.gates) == {"center", "pairwise"}
    assert not hasattr(method, "branch")  # both branches read the one shared expert bank


def count(module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_variant_parameter_counts():
    features, bits, experts, hidden = 12, 16, 4, 512
    gate = features * experts + experts
    hash_experts = experts * (features * bits + bits)
    assert count(make_mlh("mlh")) == hash_experts + 2 * gate
    assert count(make_mlh("mlh-moh-unshared")) == 2 * (hash_experts + gate)
    moe_branch = gate + experts * (features * hidden + hidden) + hidden * bits + bits
    assert count(make_mlh("mlh-moe")) == 2 * moe_branch
    assert count(make_mlh("mlh-no-moh")) == 2 * (features * bits + bits)
    assert count(make_mlh("mlh-center")) == hash_experts + gate


@pytest.mark.parametrize("multi_label", [False, True])
def test_center_loss_matches_formula(multi_label):
    centers = torch.randn(5, 16).sign()
    y = labels_for(multi_label, 4, classes=5, seed=6)
    u = torch.tanh(torch.randn(4, 16))

    def slow(u):
        total = 0
        for j in range(4):
            z = torch.stack([4.0 * (u[j] @ centers[i]) / (u[j].norm() * centers[i].norm()) for i in range(5)])
            p = torch.exp(z) / torch.exp(z).sum()
            total = total - sum(y[j, i] * torch.log(p[i]) + (1 - y[j, i]) * torch.log(1 - p[i]) for i in range(5))
        return total / 4

    assert_same_value_and_grad(lambda u: center_loss(u, centers, y), slow, u)


@pytest.mark.parametrize("multi_label", [False, True])
def test_pairwise_and_mutual_losses_match_formula(multi_label):
    y = labels_for(multi_label, 4, seed=7)
    u = torch.tanh(torch.randn(4, 16))

    def slow_pairwise(u):
        total = 0
        for i, j in itertools.product(range(4), range(4)):
            theta = 0.5 * (u[i] * u[j]).sum()
            total = total + torch.log1p(torch.exp(theta)) - shares(y[i], y[j]) * theta
        return total / 16

    assert_same_value_and_grad(lambda u: pairwise_loss(u, y, 0.5), slow_pairwise, u)

    uc, up = torch.randn(4, 16), torch.randn(4, 16)

    def slow_mutual(uc, up):
        total = 0
        for i in range(4):
            target_p, target_c = up[i].detach(), uc[i].detach()
            total = total + 1 - (uc[i] @ target_p) / (uc[i].norm() * target_p.norm())
            total = total + 1 - (up[i] @ target_c) / (up[i].norm() * target_c.norm())
        return total / 4

    assert_same_value_and_grad(lambda a, b: sum(mutual_loss(a, b, detached=True)), slow_mutual, uc, up)


def test_mutual_loss_gradients_flow_each_way_only_to_the_learner():
    uc = torch.randn(3, 8, requires_grad=True)
    up = torch.randn(3, 8, requires_grad=True)
    to_pairwise, _ = mutual_loss(uc, up, detached=True)
    to_pairwise.backward()
    assert uc.grad.abs().sum() > 0 and up.grad is None


def test_mlh_centers_meet_gv_distance():
    for classes, bits in ((5, 16), (100, 64), (80, 32)):
        centers = MLH(feature_dim=4, bits=bits, num_classes=classes, num_train=1, **MLH.defaults).centers
        assert min_pairwise_distance(centers) >= gilbert_varshamov_distance(classes, bits)


def test_mlh_alternate_schedule_moves_only_the_active_side():
    """Each step updates the active branch's gate, the shared experts, never the inactive
    gate, also once Adam has momentum for it (a zero gradient would still move it)."""
    torch.manual_seed(0)
    method = make_mlh(schedule="alternate")
    optimizer = torch.optim.Adam(method.parameters(), lr=1e-2)
    features, y = torch.randn(8, 12), labels_for(False, 8, classes=5)
    for step in range(4):
        before = {name: p.detach().clone() for name, p in method.named_parameters()}
        optimizer_step(optimizer, method, method.loss(method(features), labels=y, index=None, step=step)["loss"],
                       step)
        moved = {name for name, p in method.named_parameters() if not torch.equal(p, before[name])}
        active, inactive = ("center", "pairwise") if step % 2 == 0 else ("pairwise", "center")
        assert any(name.startswith(f"gates.{active}.") for name in moved)
        assert not any(name.startswith(f"gates.{inactive}.") for name in moved), (step, moved)
        assert any(name.startswith("experts.") for name in moved)


def test_mlh_joint_schedule_moves_both_sides_and_mutual_modes_agree():
    """Under schedule=joint, mutual=detached and mutual=joint give the same gradients."""
    features, y = torch.randn(8, 12), labels_for(True, 8, classes=5)
    grads = []
    for mutual in ("detached", "joint"):
        torch.manual_seed(0)
        method = make_mlh(mutual=mutual)
        method.loss(method(features), labels=y, index=None, step=0)["loss"].backward()
        grads.append([p.grad.clone() for p in method.parameters()])
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b)


def test_mlh_alternate_schedule_selects_sides():
    method = make_mlh(schedule="alternate")
    out = method(torch.randn(6, 12))
    y = labels_for(False, 6, classes=5)
    even = method.loss(out, labels=y, index=None, step=0)
    odd = method.loss(out, labels=y, index=None, step=1)
    to_pairwise, to_center = (t.item() for t in mutual_loss(out.center, out.pairwise, detached=True))
    assert even["loss"].item() == pytest.approx(4 * even["center"].item() + to_pairwise)
    assert odd["loss"].item() == pytest.approx(odd["pairwise"].item() + to_center)


def count_params(module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("name", ["dpsh", "hashnet", "csq", "orthohash", "mlh"])
def test_head_option_sets_capacity(name):
    """``head=mlp`` adds CSQ's reference trunk (two d x d layers) to any method; CSQ has it
    by default, the others have a linear head by default."""
    d, bits = 12, 16
    kwargs = {"feature_dim": d, "bits": bits, "num_classes": 5, "num_train": 10}
    default = create_method(name, **kwargs)
    linear = create_method(name, **kwargs, head="linear")
    mlp = create_method(name, **kwargs, head="mlp")
    assert count_params(mlp) - count_params(linear) == 2 * (d * d + d)
    expected_default = mlp if name == "csq" else linear
    assert count_params(default) == count_params(expected_default)


def test_csq_reference_head_shape():
    d, bits = 20, 32
    method = create_method("csq", feature_dim=d, bits=bits, num_classes=10, num_train=1)
    assert count_params(method) == 2 * (d * d + d) + d * bits + bits
    dropouts = [m for m in method.modules() if isinstance(m, torch.nn.Dropout)]
    assert len(dropouts) == 1 and dropouts[0].p == 0.5


def test_orthohash_codebook_follows_the_run_seed():
    kwargs = {"feature_dim": 8, "bits": 32, "num_classes": 10, "num_train": 1}
    seed0 = create_method("orthohash", **kwargs, seed=0).class_codes
    seed1 = create_method("orthohash", **kwargs, seed=1).class_codes
    assert not torch.equal(seed0, seed1)
    assert torch.equal(seed0, create_method("orthohash", **kwargs, seed=0).class_codes)
    fixed = [create_method("orthohash", **kwargs, seed=s, codebook_seed=7).class_codes for s in (0, 1)]
    assert torch.equal(*fixed)


def test_orthohash_is_finite_for_extreme_codes():
    codebook = torch.randn(4, 16).sign()
    u = (torch.randn(3, 16) * 1e6).requires_grad_(True)
    out = orthohash_loss(codes=u, codebook=codebook, labels=labels_for(True, 3, seed=8), scale=8, margin=0.2,
                         quantization_weight=1.0)
    out["loss"].backward()
    assert torch.isfinite(out["loss"]) and torch.isfinite(u.grad).all()


def test_greedy_codebook_matches_its_transcription():
    """The vectorised search keeps the draws and decisions of the plain loop."""
    def transcription(num_classes, bits, seed, start=0.61, floor=0.2, step=0.01, tries=10_000):
        rng = np.random.default_rng(seed)
        threshold = start
        while threshold >= floor:
            kept, rejected = [], 0
            while len(kept) < num_classes and rejected < tries:
                code = rng.choice([-1.0, 1.0], size=bits)
                if all((code != other).mean() >= threshold for other in kept):
                    kept.append(code)
                else:
                    rejected += 1
            if len(kept) == num_classes:
                return np.stack(kept)[rng.permutation(num_classes)]
            threshold -= step
        raise AssertionError("no codebook")

    for num_classes, bits, seed in ((4, 8, 0), (6, 12, 3), (10, 16, 1)):
        expected = transcription(num_classes, bits, seed, tries=200)
        np.testing.assert_array_equal(greedy_codebook(num_classes, bits, seed=seed, tries=200).numpy(), expected)
