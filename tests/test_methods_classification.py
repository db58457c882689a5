"""The classification family (CE, GreedyHash, JMLH) and GreedyHash's label-free variant: losses
against loop transcriptions of their formulas (value and gradient), the straight-through and
stochastic binary layers, the dataset-level multi-label switch, and label independence."""

from __future__ import annotations

import inspect
import itertools
import math

import pytest
import torch
import torch.nn.functional as F
from helpers import assert_same_value_and_grad, labels_for

from hashbench.blocks import ClassifierOutput
from hashbench.losses import classification_loss
from hashbench.method import create_method
from hashbench.methods.greedyhash import greedy_penalty, greedy_sign, greedyhash_loss, greedyhash_unsupervised_loss
from hashbench.methods.jmlh import bernoulli_kl, jmlh_loss, stochastic_binary

pytestmark = pytest.mark.usefixtures("float64")

SUPERVISED = ("ce", "greedyhash", "jmlh")


def make(name: str, *, bits: int = 8, classes: int = 4, features: int = 6, **overrides):
    return create_method(name, feature_dim=features, bits=bits, num_classes=classes, num_train=10,
                         **overrides).double()


def loop_softmax_ce(logits, y):
    """-sum_k y_k / |y| log softmax(logits)_k, averaged over items (one-hot rows: plain CE)."""
    total = 0
    n, classes = y.shape
    for i in range(n):
        norm = sum(torch.exp(logits[i, k]) for k in range(classes))
        for k in range(classes):
            if y[i, k] > 0:
                total = total - y[i, k] / y[i].sum() * torch.log(torch.exp(logits[i, k]) / norm)
    return total / n


def loop_bce(logits, y):
    total = 0
    n, classes = y.shape
    for i, k in itertools.product(range(n), range(classes)):
        p = 1 / (1 + torch.exp(-logits[i, k]))
        total = total - (y[i, k] * torch.log(p) + (1 - y[i, k]) * torch.log(1 - p))
    return total / (n * classes)


def ste_sign(h):
    """sign(h) in value, the identity's gradient: the straight-through estimator written out."""
    return h + (torch.where(h >= 0, 1.0, -1.0) - h).detach()


# --- the shared classification loss --------------------------------------------------------

@pytest.mark.parametrize(("multi_label", "kind"), [(False, "bce"), (False, "softmax"), (True, "bce"),
                                                   (True, "softmax")])
def test_classification_loss_matches_loops(multi_label, kind):
    y = labels_for(multi_label, 6, seed=1)
    logits = torch.randn(6, 4)
    slow = loop_bce if multi_label and kind == "bce" else loop_softmax_ce

    def fast(z):
        return classification_loss(logits=z, labels=y, multi_label=multi_label, multi_label_loss=kind)

    assert_same_value_and_grad(fast, lambda z: slow(z, y), logits)


def test_single_label_softmax_is_plain_cross_entropy():
    y = labels_for(False, 7, seed=2)
    logits = torch.randn(7, 4)
    value = classification_loss(logits=logits, labels=y, multi_label=False, multi_label_loss="bce")
    assert value.item() == pytest.approx(F.cross_entropy(logits, y.argmax(1)).item(), rel=1e-12)


@pytest.mark.parametrize("name", SUPERVISED)
def test_multi_label_switch_is_decided_once_from_the_training_labels(name):
    """A one-hot batch of a multi-label dataset still gets the multi-label loss (and a
    single-label dataset never does), so the loss does not change form between batches."""
    method = make(name, multi_label_loss="bce")
    assert not method.multi_label
    method.on_fit_start(labels_for(True, 10, seed=3))
    assert method.multi_label
    y = labels_for(False, 5, seed=4)
    output = method(torch.randn(5, 6))
    terms = method.loss(output, labels=y, index=None, step=0)
    expected = F.binary_cross_entropy_with_logits(output.logits, y)
    assert terms["ce"].item() == pytest.approx(expected.item(), rel=1e-12)
    method.on_fit_start(labels_for(False, 10, seed=3))
    assert not method.multi_label
    assert "multi_label" in method.state_dict()


@pytest.mark.parametrize("name", SUPERVISED)
@pytest.mark.parametrize("kind", ["bce", "softmax"])
def test_extreme_inputs_give_finite_losses_and_gradients(name, kind):
    method = make(name, multi_label_loss=kind)
    all_first_class = F.one_hot(torch.zeros(4, dtype=torch.long), 4).double()
    for labels in (torch.ones(4, 4), torch.zeros(4, 4), all_first_class):
        method.on_fit_start(labels)
        for scale in (100.0, -100.0):
            features = torch.full((4, 6), scale, requires_grad=True)
            output = method(features)
            terms = method.loss(output, labels=labels, index=None, step=0)
            terms["loss"].backward()
            assert all(torch.isfinite(t).all() for t in terms.values())
            assert torch.isfinite(features.grad).all()


# --- CE ------------------------------------------------------------------------------------

@pytest.mark.parametrize("multi_label", [False, True])
def test_ce_classifier_on_tanh_codes_matches_loops(multi_label):
    """The whole head: u = tanh(W x) (no bias), logits = V u + c, cross-entropy."""
    method = make("ce")
    y = labels_for(multi_label, 5, seed=5)
    method.on_fit_start(y)
    x = torch.randn(5, 6)
    assert method.hash_layer[1].bias is None
    W, V, c = method.hash_layer[1].weight.detach(), method.classifier.weight.detach(), method.classifier.bias.detach()

    def slow(x):
        u = torch.stack([torch.stack([torch.tanh(sum(W[k, j] * x[i, j] for j in range(6))) for k in range(8)])
                         for i in range(5)])
        logits = torch.stack([torch.stack([sum(V[c_, k] * u[i, k] for k in range(8)) + c[c_] for c_ in range(4)])
                              for i in range(5)])
        return (loop_bce if multi_label else loop_softmax_ce)(logits, y)

    assert_same_value_and_grad(lambda x: method.loss(method(x), labels=y, index=None, step=0)["loss"], slow, x)
    codes = method.codes(method(x))
    assert codes.shape == (5, 8) and codes.abs().max() < 1


# --- GreedyHash ----------------------------------------------------------------------------

def test_greedy_sign_is_sign_forward_and_identity_backward():
    h = torch.tensor([[-3.0, -0.2, 0.0, 0.5, 7.0]], requires_grad=True)
    b = greedy_sign(h)
    assert b.tolist() == [[-1.0, -1.0, 1.0, 1.0, 1.0]]
    weights = torch.tensor([[1.0, 2.0, 3.0, 4.0, 5.0]])
    (b * weights).sum().backward()
    torch.testing.assert_close(h.grad, weights)  # not gated at |h| > 1


def loop_penalty(h, power=3.0):
    n, bits = h.shape
    return sum(abs(abs(h[i, k]) - 1) ** power for i, k in itertools.product(range(n), range(bits))) / (n * bits)


@pytest.mark.parametrize("multi_label", [False, True])
def test_greedyhash_loss_matches_loops(multi_label):
    y = labels_for(multi_label, 5, seed=6)
    logits, h = torch.randn(5, 4), 1.5 * torch.randn(5, 8)

    def fast(logits, h):
        return greedyhash_loss(logits=logits, codes=h, labels=y, alpha=0.1, power=3.0, multi_label=multi_label,
                               multi_label_loss="softmax")["loss"]

    assert_same_value_and_grad(fast, lambda z, h: loop_softmax_ce(z, y) + 0.1 * loop_penalty(h), logits, h)


@pytest.mark.parametrize("multi_label", [False, True])
def test_greedyhash_classifier_sees_sign_codes_and_passes_gradients_straight_through(multi_label):
    """logits = V sign(h) (no bias); dL/dh is dL/db, as if sign were the identity."""
    method = make("greedyhash", alpha=0.5)
    y = labels_for(multi_label, 5, seed=7)
    method.on_fit_start(y)
    assert method.classifier.bias is None and method.hash_layer[1].bias is not None
    V = method.classifier.weight.detach()

    def fast(h):
        output = ClassifierOutput(codes=h, logits=method.classifier(greedy_sign(h)))
        return method.loss(output, labels=y, index=None, step=0)["loss"]

    def slow(h):
        b = ste_sign(h)
        logits = torch.stack([torch.stack([sum(V[c, k] * b[i, k] for k in range(8)) for c in range(4)])
                              for i in range(5)])
        return loop_softmax_ce(logits, y) + 0.5 * loop_penalty(h)

    assert_same_value_and_grad(fast, slow, torch.randn(5, 8))
    output = method(torch.randn(5, 6))
    torch.testing.assert_close(output.logits, method.classifier(torch.where(output.codes >= 0, 1.0, -1.0)))


def test_greedy_penalty_at_plus_minus_one_and_power():
    assert greedy_penalty(codes=torch.tensor([[1.0, -1.0]])).item() == 0
    assert greedy_penalty(codes=torch.tensor([[0.0, 3.0]])).item() == pytest.approx((1 + 8) / 2)
    assert greedy_penalty(codes=torch.tensor([[3.0]]), power=2.0).item() == pytest.approx(4.0)


# --- GreedyHash, unsupervised --------------------------------------------------------------

def loop_cos(a, b):
    return sum(a[k] * b[k] for k in range(len(a))) / (
        torch.sqrt(sum(a[k] ** 2 for k in range(len(a)))) * torch.sqrt(sum(b[k] ** 2 for k in range(len(b)))))


@pytest.mark.parametrize("n", [6, 7])
def test_greedyhash_unsupervised_loss_matches_loops(n):
    """Item i of the first half pairs with item i of the second (an odd batch's last item
    is left out): MSE of cos(b_i, b_j) against cos(x_i, x_j), plus alpha * penalty."""
    h, x = torch.randn(n, 8), torch.randn(n, 5)
    half = n // 2

    def slow(h):
        b = ste_sign(h)
        mse = sum((loop_cos(b[i], b[half + i]) - loop_cos(x[i], x[half + i])) ** 2 for i in range(half)) / half
        return mse + 0.1 * loop_penalty(h)

    fast = lambda h: greedyhash_unsupervised_loss(codes=h, features=x, alpha=0.1, power=3.0)["loss"]  # noqa: E731
    assert_same_value_and_grad(fast, slow, h)


def test_greedyhash_unsupervised_loss_takes_no_labels_and_ignores_them():
    assert "labels" not in inspect.signature(greedyhash_unsupervised_loss).parameters
    method = make("greedyhash-u")
    assert not method.supervised and method.family == "unsupervised"
    method.on_fit_start(None)
    output = method(torch.randn(6, 6))
    assert not output.features.requires_grad  # the features are targets, never moved by the loss
    without = method.loss(output, labels=None, index=torch.arange(6), step=0)
    with_labels = method.loss(output, labels=labels_for(False, 6), index=torch.arange(6), step=0)
    assert all(torch.equal(without[k], with_labels[k]) for k in without)


def test_greedyhash_unsupervised_training_cannot_depend_on_a_label_permutation():
    """Two runs built by create_method, one given the training labels and one a permutation
    of them (wherever the API could pass labels), end with identical parameters and codes."""
    y = labels_for(False, 12, seed=8)
    permuted = y[torch.randperm(12, generator=torch.Generator().manual_seed(1))]
    features = torch.randn(12, 6)
    results = []
    for labels in (y, permuted):
        torch.manual_seed(0)
        method = make("greedyhash-u")
        method.on_fit_start(None)
        for step in range(3):  # plain gradient steps (torch.optim's first use costs seconds of imports)
            loss = method.loss(method(features), labels=labels, index=torch.arange(12), step=step)["loss"]
            with torch.no_grad():
                for param, grad in zip(method.parameters(), torch.autograd.grad(loss, list(method.parameters())),
                                       strict=True):
                    param -= 0.1 * grad
        method.eval()
        results.append((method.state_dict(), method.codes(method(features))))
    (state_a, codes_a), (state_b, codes_b) = results
    assert all(torch.equal(state_a[k], state_b[k]) for k in state_a)
    assert torch.equal(codes_a, codes_b)


def test_greedyhash_unsupervised_extreme_inputs_are_finite():
    method = make("greedyhash-u")
    for features in (torch.full((4, 6), 100.0), torch.zeros(4, 6), torch.full((4, 6), -100.0)):
        features.requires_grad_(True)
        method.zero_grad()
        terms = method.loss(method(features), labels=None, index=torch.arange(4), step=0)
        terms["loss"].backward()
        assert all(torch.isfinite(t) for t in terms.values())
        assert all(torch.isfinite(p.grad).all() for p in method.parameters())


# --- JMLH ----------------------------------------------------------------------------------

def loop_kl(z):
    total = 0
    n, bits = z.shape
    for i in range(n):
        for k in range(bits):
            p = 1 / (1 + torch.exp(-z[i, k]))
            total = total + p * torch.log(p / 0.5) + (1 - p) * torch.log((1 - p) / 0.5)
    return total / n


def test_bernoulli_kl_matches_loop():
    assert_same_value_and_grad(lambda z: bernoulli_kl(logits=z), loop_kl, 3 * torch.randn(5, 8))


def test_bernoulli_kl_is_finite_and_log2_per_bit_at_saturation():
    z = torch.tensor([[100.0, -100.0, 0.0]], requires_grad=True)
    value = bernoulli_kl(logits=z)
    value.backward()
    assert value.item() == pytest.approx(2 * math.log(2), rel=1e-12)
    assert torch.isfinite(z.grad).all()


@pytest.mark.parametrize("multi_label", [False, True])
def test_jmlh_loss_matches_loops(multi_label):
    y = labels_for(multi_label, 5, seed=9)

    def fast(logits, z):
        return jmlh_loss(logits=logits, code_logits=z, labels=y, kl_weight=0.2, multi_label=multi_label,
                         multi_label_loss="softmax")["loss"]

    assert_same_value_and_grad(fast, lambda logits, z: loop_softmax_ce(logits, y) + 0.2 * loop_kl(z),
                               torch.randn(5, 4), torch.randn(5, 8))


def test_stochastic_binary_layer_values_and_reference_gradient():
    """b = [sigmoid(z) >= eps] in {0, 1}; dL/dz = p (1 - p) (dL/db + dL/dp), the authors' rule."""
    z = torch.randn(4, 8, requires_grad=True)
    eps = torch.rand(4, 8)
    b = stochastic_binary(z, eps)
    p = torch.sigmoid(z)
    assert torch.equal(b, (p >= eps).double())
    db, dp = torch.randn(4, 8), torch.randn(4, 8)
    ((b * db).sum() + (p * dp).sum()).backward()
    expected = p.detach() * (1 - p.detach()) * (db + dp)
    torch.testing.assert_close(z.grad, expected)


def test_jmlh_codes_are_stochastic_in_training_and_sign_of_z_at_test():
    method = make("jmlh", bits=16)
    features = torch.randn(64, 6)
    torch.manual_seed(0)
    first, second = method(features), method(features)
    assert not torch.equal(first.logits, second.logits)  # fresh eps each forward
    method.eval()
    output = method(features)
    torch.testing.assert_close(output.logits, method.classifier((output.codes >= 0).double()))
    deterministic = make("jmlh", bits=16, stochastic=False)
    out_a, out_b = deterministic(features), deterministic(features)
    assert torch.equal(out_a.logits, out_b.logits)
    torch.testing.assert_close(out_a.logits, deterministic.classifier((out_a.codes >= 0).double()))


def test_jmlh_stochastic_codes_follow_their_probabilities():
    """Over many draws each bit is 1 with probability sigmoid(z)."""
    z = torch.tensor([[-2.0, -0.5, 0.0, 1.0, 3.0]])
    torch.manual_seed(1)
    draws = torch.stack([stochastic_binary(z, torch.rand_like(z)) for _ in range(20000)]).mean(0)
    torch.testing.assert_close(draws, torch.sigmoid(z), atol=0.015, rtol=0)


def test_jmlh_layers_start_as_keras_dense():
    method = make("jmlh")
    for layer in (method.hash_layer[1], method.classifier):
        assert torch.equal(layer.bias, torch.zeros_like(layer.bias))
        bound = math.sqrt(6 / sum(layer.weight.shape))
        assert layer.weight.abs().max() <= bound
