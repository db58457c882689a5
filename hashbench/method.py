"""The method API: what a hashing method is, as the runner sees it.

A method is a ``torch.nn.Module`` that sits on top of the backbone's features. It

* declares its hyperparameters as data in ``params`` (:class:`Param`: default, type,
  range, choices), checked once when a run's config is resolved, before any run starts;
  ``defaults`` is derived from it, and ``__init__`` must take exactly those keywords;
* declares the optimizer settings of its reference code in ``train_defaults`` (keys of
  :class:`hashbench.config.RunConfig`, the augmentation recipe included), a cached-feature
  recipe in ``frozen_train_defaults``, and per-dataset settings of its reference commands
  in ``dataset_defaults`` (fnmatch pattern -> values);
* builds its hash head(s) in ``__init__(*, feature_dim, bits, num_classes, num_train, seed,
  **params)`` and keeps any state it needs (hash centers, a code memory) as buffers, so
  checkpoints and DDP carry it;
* maps features to continuous codes in ``forward`` (a tensor, or any object when it has
  several branches) and says which tensor gives the codes in ``codes``; the runner
  binarises that with ``>= 0``;
* computes its loss in ``loss(output, *, labels, index, step)`` and returns named terms with
  the weighted total under ``"loss"``, so every term is logged from the first step;
* or, for a shallow method (LSH, ITQ, SDH ...), is fitted in closed form: it overrides
  ``fit(features, labels)``, which the runner calls once with the training split's fixed
  features, keeps what it learns in buffers and has no trainable parameters.

Labels always arrive as multi-hot float rows, so single- and multi-label data share one
code path; ``index`` holds the training-set positions of the batch (for code memories).
A label-free method (``supervised = False``) never sees labels: the runner passes None
to ``on_fit_start``, ``loss`` and ``fit``.
The runner owns everything else: data, devices, precision, the loop, checkpoints,
evaluation and records. Build a method with :func:`create_method`.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from hashbench.validation import HashbenchError

#: Keywords every method's ``__init__`` takes from the runner (not hyperparameters).
RUNNER_KEYWORDS = ("feature_dim", "bits", "num_classes", "num_train", "seed")

#: The hash-head architectures every method offers through its ``head`` hyperparameter.
HEADS = ("linear", "mlp")


#: Method families, in the order tables and figures show them: ``pairwise`` (pairwise or
#: triplet similarity), ``center`` (hash centers, proxies, codebooks), ``classification`` (a
#: classifier on the codes), ``mutual`` (MLH), ``shallow`` (closed-form fits on features),
#: ``unsupervised`` (label-free deep methods), ``other`` (anything else; shown last).
FAMILIES = ("pairwise", "center", "classification", "mutual", "shallow", "unsupervised", "other")


def family_key(family: str) -> tuple[int, str]:
    """Sort key of a family: its place in :data:`FAMILIES`, unknown families last by name."""
    return (FAMILIES.index(family) if family in FAMILIES else len(FAMILIES) - 1, family)


@dataclass(frozen=True)
class Param:
    """One hyperparameter: its default and its constraints, as data (scikit-learn style).

    ``kind`` is ``float``, ``int``, ``bool`` or ``str``; numbers may be bounded by ``low``
    / ``high`` (``open_low`` excludes ``low``); strings may be limited to ``choices``;
    ``nullable`` admits None (meaning "derive it", as the method's docstring says).
    """

    default: Any
    kind: type = float
    low: float | None = None
    high: float | None = None
    open_low: bool = False
    choices: tuple[Any, ...] | None = None
    nullable: bool = False
    help: str = ""

    def describe(self) -> str:
        if self.choices is not None:
            text = "one of " + ", ".join(map(str, self.choices))
        elif self.kind is bool:
            text = "true or false"
        else:
            text = "an integer" if self.kind is int else "a finite number"
            if self.low is not None:
                text += f" {'>' if self.open_low else '>='} {self.low:g}"
            if self.high is not None:
                text += f"{' and' if self.low is not None else ''} <= {self.high:g}"
        return text + (" or none" if self.nullable else "")

    def check(self, name: str, value: Any) -> Any:
        """``value`` coerced to ``kind`` (ints for float keys, integral floats for int keys),
        or a one-line HashbenchError."""
        if value is None and self.nullable:
            return None
        bad = HashbenchError(f"{name} must be {self.describe()}; got {value!r}")
        if self.kind is bool:
            if not isinstance(value, bool):
                raise bad
            return value
        if self.kind is str:
            if not isinstance(value, str) or (self.choices is not None and value not in self.choices):
                raise bad
            return value
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise bad
        if self.kind is int:
            if float(value) != int(value):
                raise bad
            value = int(value)
        else:
            value = float(value)
        if self.low is not None and (value < self.low or (self.open_low and value == self.low)):
            raise bad
        if self.high is not None and value > self.high:
            raise bad
        return value

    def invalid_examples(self) -> list[Any]:
        """Values this parameter must refuse (the test suite feeds them to every method)."""
        examples: list[Any] = ["not-a-valid-value", float("nan")] if self.kind is not str else [3, True]
        if self.kind is str and self.choices is not None:
            examples.append("not-a-choice")
        if self.kind is bool:
            examples.append(2)
        if self.kind in (int, float):
            if self.low is not None:
                examples.append(self.low - 1)
            if self.high is not None:
                examples.append(self.high + 1)
            if self.kind is int:
                examples.append(1.5)
        if not self.nullable:
            examples.append(None)
        return examples

    @classmethod
    def infer(cls, default: Any) -> Param:
        """A parameter from a plain default (for plugins that declare ``defaults`` only)."""
        if default is None:
            return cls(None, kind=float, nullable=True)
        return cls(default, kind=type(default) if isinstance(default, (bool, int, str)) else float)


def real(default: float | None, low: float | None = None, high: float | None = None, *, open_low: bool = False,
         nullable: bool = False, help: str = "") -> Param:
    return Param(default, float, low, high, open_low=open_low, nullable=nullable, help=help)


def integer(default: int | None, low: int | None = None, high: int | None = None, *, nullable: bool = False,
            help: str = "") -> Param:
    return Param(default, int, low, high, nullable=nullable, help=help)


def choice(default: str, choices: tuple[str, ...], *, help: str = "") -> Param:
    return Param(default, str, choices=choices, help=help)


def flag(default: bool, *, help: str = "") -> Param:
    return Param(default, bool, help=help)


def head_param(default: str = "linear") -> Param:
    return choice(default, HEADS, help="layers before the last hash layer: linear (none) or mlp "
                                       "(CSQ's reference d-d-d trunk); the default is the reference's")


class HashMethod(nn.Module):
    """Base class of every hashing method (see the module docstring for the contract)."""

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    params: ClassVar[dict[str, Param]] = {}
    defaults: ClassVar[dict[str, Any]] = {}  # derived from ``params``
    train_defaults: ClassVar[dict[str, Any]] = {}
    frozen_train_defaults: ClassVar[dict[str, Any]] = {}
    dataset_defaults: ClassVar[dict[str, dict[str, Any]]] = {}
    #: The method this one is an ablation of (the report groups them); None for a method.
    ablation_of: ClassVar[str | None] = None
    #: False for label-free methods.
    supervised: ClassVar[bool] = True
    #: The family the report groups the method under (table rows, one figure panel each);
    #: one of :data:`FAMILIES`.
    family: ClassVar[str] = "other"
    #: True for a method fitted in closed form by ``fit`` (derived: the class overrides it).
    closed_form: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.closed_form = cls.fit is not HashMethod.fit
        if "params" in cls.__dict__:
            cls.defaults = {key: param.default for key, param in cls.params.items()}
        elif "defaults" in cls.__dict__:  # a plugin that declares plain defaults
            cls.params = {key: Param.infer(value) for key, value in cls.defaults.items()}
        if "__init__" in cls.__dict__:
            signature = inspect.signature(cls.__init__)
            keywords = {n for n, p in signature.parameters.items() if p.kind is p.KEYWORD_ONLY}
            if not any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values()):
                own = keywords - set(RUNNER_KEYWORDS)
                if own != set(cls.params):
                    raise TypeError(f"{cls.__name__}.__init__ takes {sorted(own)} but declares params "
                                    f"{sorted(cls.params)}: they must agree")

    @classmethod
    def check_params(cls, values: dict[str, Any]) -> dict[str, Any]:
        """Every declared parameter, validated and coerced (unknown keys are an error)."""
        unknown = sorted(set(values) - set(cls.params))
        if unknown:
            raise HashbenchError(f"{cls.name}: unknown hyperparameter {unknown[0]!r} "
                                 f"(known: {', '.join(sorted(cls.params))})")
        return {key: param.check(f"{cls.name}: {key}", values.get(key, param.default))
                for key, param in cls.params.items()}

    @classmethod
    def check_setup(cls, *, bits: int, num_classes: int, params: dict[str, Any]) -> None:
        """Refuse, in one line and before any run, a setup the method cannot train
        (e.g. more classes than its centers can separate at this code length)."""

    def __init__(self, *, feature_dim: int, bits: int, num_classes: int, num_train: int, seed: int = 0) -> None:
        super().__init__()
        self.feature_dim = feature_dim
        self.bits = bits
        self.num_classes = num_classes
        self.num_train = num_train
        self.seed = seed

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


def pairwise_similarity(labels_a: torch.Tensor, labels_b: torch.Tensor) -> torch.Tensor:
    """s_ij = 1 when rows i and j share at least one label (multi-hot inputs)."""
    return (labels_a @ labels_b.T > 0).to(labels_a.dtype)


def create_method(name: str, *, feature_dim: int, bits: int, num_classes: int, num_train: int, seed: int = 0,
                  **overrides: Any) -> HashMethod:
    """Build a registered method with its declared defaults, ``overrides`` validated first
    (the runner, benchmarks and tests all build methods this way)."""
    from hashbench.registry import METHODS

    cls = METHODS.get(name)
    params = cls.check_params(overrides)
    cls.check_setup(bits=bits, num_classes=num_classes, params=params)
    if "seed" in inspect.signature(cls.__init__).parameters:  # plugins written before ``seed`` existed omit it
        params["seed"] = seed
    return cls(feature_dim=feature_dim, bits=bits, num_classes=num_classes, num_train=num_train, **params)
