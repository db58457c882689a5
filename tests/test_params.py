"""Method hyperparameters are data: every registered method's every parameter refuses bad
values in config resolution, with a one-line error, before any run starts."""

from __future__ import annotations

import inspect
from typing import ClassVar

import pytest

from hashbench.config import resolve_config
from hashbench.method import RUNNER_KEYWORDS, HashMethod, Param, create_method, real
from hashbench.registry import METHODS
from hashbench.validation import HashbenchError

CASES = [(name, key, bad) for name in METHODS.names() for key, param in METHODS.get(name).params.items()
         for bad in param.invalid_examples()]


def resolve(name: str, **overrides):
    return resolve_config(method=name, method_cls=METHODS.get(name), dataset="digits", dataset_defaults={},
                          bits=16, seed=0, overrides=overrides)


@pytest.mark.parametrize(("name", "key", "bad"), CASES, ids=[f"{n}-{k}-{b!r}" for n, k, b in CASES])
def test_every_hyperparameter_refuses_bad_values(name, key, bad):
    with pytest.raises(HashbenchError) as err:
        resolve(name, **{key: bad})
    message = str(err.value)
    assert f"{name}: {key} must be" in message and "\n" not in message


@pytest.mark.parametrize("name", METHODS.names())
def test_defaults_are_valid_and_agree_with_the_constructor(name):
    cls = METHODS.get(name)
    assert resolve(name).hparams == cls.defaults
    keywords = {n for n, p in inspect.signature(cls.__init__).parameters.items() if p.kind is p.KEYWORD_ONLY}
    assert keywords - set(RUNNER_KEYWORDS) == set(cls.params)
    assert cls.frozen_train_defaults is not None and isinstance(cls.train_defaults, dict)
    method = create_method(name, feature_dim=8, bits=16, num_classes=4, num_train=10)
    assert isinstance(method, cls)


def test_a_constructor_that_disagrees_with_params_is_refused():
    with pytest.raises(TypeError, match="must agree"):
        class Broken(HashMethod):
            params: ClassVar = {"scale": real(1.0)}

            def __init__(self, *, feature_dim, bits, num_classes, num_train, seed=0, scael):
                super().__init__(feature_dim=feature_dim, bits=bits, num_classes=num_classes, num_train=num_train)


def test_param_coercion_and_messages():
    assert real(1.0, 0.0).check("x", 2) == 2.0 and isinstance(real(1.0).check("x", 2), float)
    assert Param(3, int, 1).check("n", 4.0) == 4
    with pytest.raises(HashbenchError, match=r"n must be an integer >= 1; got 0"):
        Param(3, int, 1).check("n", 0)
    with pytest.raises(HashbenchError, match=r"x must be a finite number > 0 or none; got 'abc'"):
        real(None, 0.0, open_low=True, nullable=True).check("x", "abc")
    assert Param.infer(0.5) == Param(0.5, float) and Param.infer("a").kind is str


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
    from test_listfile import make_list_dataset

    eye = [[int(i == c) for i in range(100)] for c in range(100)]
    root = make_list_dataset(tmp_path / "many", {"train": eye, "test": eye[:2], "database": eye[:3]}, size=8)
    out = cli("run", "--methods", "csq", "--bits", "8", "--datasets", f"listfile:{root}", "--backbone", "small_cnn",
              "--results", tmp_path / "results", "--no-progress")
    assert out.exit_code != 0 and "Traceback" not in out.output
    assert "100" in out.output and "8" in out.output and len(out.output.strip().splitlines()) == 1
    assert not (tmp_path / "results").exists()
