"""The method API: what a hashing method is, as the runner sees it.

A method is a ``torch.nn.Module`` on top of the backbone's features, registered under a
name (``@register_method("name")``, or a third-party package's ``hashbench.methods`` entry
point; the registry gives the class its ``name``). It

* declares each hyperparameter once, as a class attribute made by :func:`real`,
  :func:`integer`, :func:`choice` or :func:`flag` (default and constraints, checked before
  any run); ``__init__`` receives the validated values as attributes of ``self``;
* builds its hash head(s) in ``__init__`` (after ``super().__init__(**kwargs)``, which sets
  ``feature_dim``, ``bits``, ``num_classes``, ``num_train``, ``seed`` and the hyperparameters)
  and keeps any state (hash centers, a code memory) in buffers, so checkpoints and DDP carry it;
* maps features to continuous codes in ``forward``; their sign is the binary code;
* returns its loss as named terms from ``loss(output, *, labels, index, step)``, the weighted
  total under ``"loss"``; labels are multi-hot float rows (single- and multi-label data share
  one path), ``index`` the batch's training-set positions (for code memories).

Optional declarations: the reference recipe (``train_defaults``: optimizer, lr, epochs, ...,
keys of :class:`hashbench.config.RunConfig`), a cached-feature recipe
(``frozen_train_defaults``), per-dataset settings of the reference's commands
(``dataset_defaults``, fnmatch pattern -> values), ``family``, ``supervised = False`` (the
method never sees labels), ``ablation_of``, ``check_setup`` (refuse an impossible setup before
any run), and for the docs ``paper`` and ``fidelity``. Optional hooks: ``on_fit_start``,
``on_step_start``, ``inactive_parameters``, ``codes`` (when ``forward`` returns several
branches) and ``fit`` (a method fitted in closed form on fixed features instead of trained).
The runner owns everything else: data, devices, precision, the loop, checkpoints,
evaluation and records.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

import torch
from torch import nn

from hashbench.registry import METHODS
from hashbench.validation import HashbenchError, Param, choice, flag, integer, real, text

__all__ = ["FAMILIES", "HashMethod", "Param", "choice", "create_method", "family_key", "flag", "integer", "real",
           "register_method", "text"]

#: Keywords every method's ``__init__`` takes from the runner (not hyperparameters).
RUNNER_KEYWORDS = ("feature_dim", "bits", "num_classes", "num_train", "seed")
#: Names a hyperparameter cannot take: the runner's keywords and what torch.nn.Module defines.
RESERVED_NAMES = frozenset(RUNNER_KEYWORDS) | set(dir(nn.Module)) | set(vars(nn.Module()))

#: Method families, in the order tables and figures show them: ``pairwise`` (pairwise or
#: triplet similarity), ``center`` (hash centers, proxies, codebooks), ``classification`` (a
#: classifier on the codes), ``mutual`` (MLH), ``shallow`` (closed-form fits on features),
#: ``unsupervised`` (label-free deep methods), ``other`` (anything else; shown last).
FAMILIES = ("pairwise", "center", "classification", "mutual", "shallow", "unsupervised", "other")


def family_key(family: str) -> tuple[int, str]:
    """Sort key of a family: its place in :data:`FAMILIES`, unknown families last by name."""
    return (FAMILIES.index(family) if family in FAMILIES else len(FAMILIES) - 1, family)


class HashMethod(nn.Module):
    """Base class of every hashing method (see the module docstring for the contract)."""

    #: The registry key, set when the class is registered.
    name: ClassVar[str] = ""
    #: One line for ``hashbench list``; the docstring's first line when empty.
    summary: ClassVar[str] = ""
    #: Every hyperparameter (collected from the class's and its bases' Param attributes) and its default.
    params: ClassVar[dict[str, Param]] = {}
    defaults: ClassVar[dict[str, Any]] = {}
    train_defaults: ClassVar[dict[str, Any]] = {}
    frozen_train_defaults: ClassVar[dict[str, Any]] = {}
    dataset_defaults: ClassVar[dict[str, dict[str, Any]]] = {}
    #: The method this one is an ablation of (the report groups them); None for a method.
    ablation_of: ClassVar[str | None] = None
    #: False for label-free methods: the runner passes None wherever labels would go.
    supervised: ClassVar[bool] = True
    #: The family the report groups the method under; one of :data:`FAMILIES`.
    family: ClassVar[str] = "other"
    #: True for a method fitted in closed form by ``fit`` (derived: the class overrides it).
    closed_form: ClassVar[bool] = False
    #: For the docs: the paper (``"Li et al., IJCAI 2016"``) and the reference facts each
    #: default rests on, as (reference fact (file), hashbench, deviation and why) rows.
    paper: ClassVar[str] = ""
    fidelity: ClassVar[tuple[tuple[str, str, str], ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.closed_form = cls.fit is not HashMethod.fit
        own = {key: value for key, value in vars(cls).items() if isinstance(value, Param)}
        for key in own:
            if key in RESERVED_NAMES:
                raise TypeError(f"{cls.__name__}: a hyperparameter cannot be called {key!r} (a name the runner "
                                "or torch.nn.Module uses)")
        cls.params = {**cls.params, **own}  # a base's parameters first; a subclass may redeclare one
        cls.defaults = {key: param.default for key, param in cls.params.items()}

    @classmethod
    def check_params(cls, values: dict[str, Any], *, name: str | None = None) -> dict[str, Any]:
        """Every declared hyperparameter, from ``values`` or its default, validated and
        coerced; an unknown key is an error. Messages start with ``name`` (default: the
        method's registered name)."""
        name = name or cls.name or cls.__name__
        unknown = sorted(set(values) - set(cls.params))
        if unknown:
            raise HashbenchError(f"{name}: unknown hyperparameter {unknown[0]!r} "
                                 f"(known: {', '.join(sorted(cls.params)) or 'none'})")
        return {key: param.check(f"{name}: {key}", values.get(key, param.default)) for key, param in cls.params.items()}

    @classmethod
    def check_setup(cls, *, bits: int, num_classes: int, params: dict[str, Any]) -> None:
        """Refuse, in one line and before any run, a setup the method cannot train
        (e.g. more classes than its centers can separate at this code length)."""

    def __init__(self, *, feature_dim: int, bits: int, num_classes: int, num_train: int, seed: int = 0,
                 **hparams: Any) -> None:
        super().__init__()
        self.feature_dim = feature_dim
        self.bits = bits
        self.num_classes = num_classes
        self.num_train = num_train
        self.seed = seed
        for key, value in self.check_params(hparams).items():
            setattr(self, key, value)

    # -- lifecycle hooks (no-ops by default) -------------------------------------------
    def on_fit_start(self, train_labels: torch.Tensor | None) -> None:
        """Called once before training with the multi-hot labels of the whole train set
        (None for a label-free method)."""

    def on_step_start(self, step: int) -> None:
        """Called before each optimisation step (0-based, counted over the whole run)."""

    def inactive_parameters(self, step: int) -> list[nn.Parameter]:
        """Parameters that must not move at this step (alternating schedules): the runner
        drops their gradients before the optimizer step, so no optimizer state moves them."""
        return []

    # -- the contract ------------------------------------------------------------------
    def forward(self, features: torch.Tensor) -> Any:
        raise NotImplementedError

    def loss(self, output: Any, *, labels: torch.Tensor | None, index: torch.Tensor, step: int
             ) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def fit(self, features: torch.Tensor, labels: torch.Tensor | None) -> None:
        """Closed-form methods: set the method's state from the training split's features
        (N, D) and, for a supervised method, their multi-hot labels (None otherwise)."""
        raise NotImplementedError

    def codes(self, output: Any) -> torch.Tensor:
        """Continuous codes whose sign is the binary code (default: the output itself)."""
        return output


M = TypeVar("M", bound=type[HashMethod])


def register_method(name: str) -> Callable[[M], M]:
    """Class decorator: register a method under ``name`` (which becomes its ``name``)."""

    def add(cls: M) -> M:
        METHODS.register(name, cls)
        return cls

    return add


def create_method(name: str, *, feature_dim: int, bits: int, num_classes: int, num_train: int, seed: int = 0,
                  **overrides: Any) -> HashMethod:
    """Build a registered method with its declared defaults, ``overrides`` validated first
    (the runner, benchmarks and tests all build methods this way)."""
    cls = METHODS.get(name)
    params = cls.check_params(overrides)
    cls.check_setup(bits=bits, num_classes=num_classes, params=params)
    return cls(feature_dim=feature_dim, bits=bits, num_classes=num_classes, num_train=num_train, seed=seed, **params)
