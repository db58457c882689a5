"""Settings are data (:class:`hashbench.method.Param`): every distinct constraint shape that a
registered method declares refuses the values it must refuse, in one line; every method's
defaults are valid and build the method."""

from __future__ import annotations

from typing import Any

import pytest

from hashbench.config import resolve_config
from hashbench.method import HashMethod, Param, create_method, integer, real
from hashbench.registry import METHODS
from hashbench.validation import HashbenchError


def shape(param: Param) -> tuple[Any, ...]:
    """What decides which values a Param accepts (its default and help do not)."""
    return param.kind, param.low, param.high, param.open_low, param.choices, param.nullable


def invalid_values(param: Param) -> list[Any]:
    """Values a Param of this shape must refuse."""
    values: list[Any] = ["not-a-valid-value", float("nan"), "64"] if param.kind is not str else [3, True]
    if param.kind is str and param.choices is not None:
        values.append("not-a-choice")
    if param.kind is bool:
        values.append(2)
    if param.kind in (int, float):
        values += [float("inf"), True]
        if param.low is not None:
            values.append(param.low - 1)
            if param.open_low:
                values.append(param.low)
        if param.high is not None:
            values.append(param.high + 1)
        if param.kind is int:
            values.append(1.5)
    if not param.nullable:
        values.append(None)
    return values


SHAPES = {shape(param): param for name in METHODS.names() for param in METHODS.get(name).params.values()}
CASES = [(param, bad) for param in SHAPES.values() for bad in invalid_values(param)]


@pytest.mark.parametrize(("param", "bad"), CASES, ids=[f"{shape(p)}-{b!r}" for p, b in CASES])
def test_every_constraint_shape_refuses_bad_values_in_one_line(param, bad):
    with pytest.raises(HashbenchError) as err:
        param.check("m: key", bad)
    message = str(err.value)
    assert message.startswith("m: key must be ") and f"; got {bad!r}" in message and "\n" not in message


@pytest.mark.parametrize("param", list(SHAPES.values()), ids=[str(s) for s in SHAPES])
def test_every_constraint_shape_accepts_its_default(param):
    assert param.check("key", param.default) == param.default


def test_a_bad_hyperparameter_is_named_with_its_method_before_any_run():
    with pytest.raises(HashbenchError, match=r"^mlh: num_experts must be an integer >= 1 and <= 64; got 0$"):
        resolve("mlh", num_experts=0)
    with pytest.raises(HashbenchError, match=r"^csq: head must be one of linear, mlp; got 'deep'$"):
        resolve("csq", head="deep")


def resolve(name: str, **overrides):
    return resolve_config(method=name, method_cls=METHODS.get(name), dataset="digits", dataset_defaults={},
                          bits=16, seed=0, overrides=overrides)


@pytest.mark.parametrize("name", METHODS.names())
def test_defaults_are_valid_and_build_the_method(name):
    cls = METHODS.get(name)
    assert cls.name == name
    assert resolve(name).hparams == cls.defaults
    assert isinstance(cls.train_defaults, dict) and isinstance(cls.frozen_train_defaults, dict)
    method = create_method(name, feature_dim=8, bits=16, num_classes=4, num_train=10)
    assert isinstance(method, cls) and all(getattr(method, key) is not None or cls.params[key].nullable
                                           for key in cls.params)


def test_hyperparameters_are_declared_once_as_class_attributes():
    class Toy(HashMethod):
        scale = real(0.5, 0.0)
        steps = integer(3, 1)

    class Child(Toy):
        scale = real(2.0, 0.0)  # a subclass redeclares a default

    assert Toy.params == {"scale": real(0.5, 0.0), "steps": integer(3, 1)}
    assert Child.defaults == {"scale": 2.0, "steps": 3}
    method = Child(feature_dim=4, bits=8, num_classes=2, num_train=3, steps=5)
    assert (method.scale, method.steps, method.bits) == (2.0, 5, 8)
    with pytest.raises(HashbenchError, match="unknown hyperparameter 'scael'"):
        Child(feature_dim=4, bits=8, num_classes=2, num_train=3, scael=1.0)


def test_a_hyperparameter_may_not_shadow_what_the_runner_or_torch_sets():
    with pytest.raises(TypeError, match="cannot be called 'bits'"):
        type("Broken", (HashMethod,), {"bits": integer(8)})
    with pytest.raises(TypeError, match="cannot be called 'training'"):
        type("Broken", (HashMethod,), {"training": integer(8)})


def test_param_coercion_and_messages():
    assert real(1.0, 0.0).check("x", 2) == 2.0 and isinstance(real(1.0).check("x", 2), float)
    assert Param(3, int, 1).check("n", 4.0) == 4
    with pytest.raises(HashbenchError, match=r"n must be an integer >= 1; got 0"):
        Param(3, int, 1).check("n", 0)
    with pytest.raises(HashbenchError, match=r"x must be a finite number > 0 or none; got 'abc'"):
        real(None, 0.0, open_low=True, nullable=True).check("x", "abc")


def test_create_method_validates_overrides():
    with pytest.raises(HashbenchError, match="csq: unknown hyperparameter 'nope'"):
        create_method("csq", feature_dim=4, bits=16, num_classes=2, num_train=1, nope=1)
    with pytest.raises(HashbenchError, match="csq: head must be one of linear, mlp; got 'deep'"):
        create_method("csq", feature_dim=4, bits=16, num_classes=2, num_train=1, head="deep")


def test_dataset_recipes_of_a_method_apply_by_pattern():
    cls = METHODS.get("orthohash")
    cifar = resolve_config(method="orthohash", method_cls=cls, dataset="cifar10-1", dataset_defaults={}, bits=16,
                           seed=0, overrides={})
    other = resolve_config(method="orthohash", method_cls=cls, dataset="digits", dataset_defaults={}, bits=16,
                           seed=0, overrides={})
    assert cifar.hparams["margin"] == 0.3 and cifar.augment == "flip_jitter"
    assert other.hparams["margin"] == 0.2 and other.augment == "crop_flip"
    user = resolve_config(method="orthohash", method_cls=cls, dataset="cifar10", dataset_defaults={}, bits=16, seed=0,
                          overrides={"margin": 0.1})
    assert user.hparams["margin"] == 0.1  # the user's value wins over the method's dataset recipe


def test_infeasible_centers_fail_in_one_line_before_any_run(cli, tmp_path):
    """CSQ at 8 bits cannot place 100 random centers at distance 2: refused up front."""
    from helpers import make_list_dataset

    eye = [[int(i == c) for i in range(100)] for c in range(100)]
    root = make_list_dataset(tmp_path / "many", {"train": eye, "test": eye[:2], "database": eye[:3]}, size=8)
    out = cli("run", "--methods", "csq", "--bits", "8", "--datasets", f"listfile:{root}", "--backbone", "small_cnn",
              "--results", tmp_path / "results", "--no-progress")
    assert out.exit_code != 0 and "Traceback" not in out.output
    assert "100" in out.output and "8" in out.output and len(out.output.strip().splitlines()) == 1
    assert not (tmp_path / "results").exists()
