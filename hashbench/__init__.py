"""hashbench: a benchmark suite for deep supervised image hashing.

Importing the package registers the built-in datasets and backbones; methods (the built-in
ones in :mod:`hashbench.methods`, and third-party ones through the ``hashbench.methods``
entry-point group) are found on the first lookup. A method needs only what this module
exports: ``HashMethod``, ``register_method``, the parameter makers and ``HashLayer``.
"""

from hashbench import data, models  # noqa: F401  (registers built-in datasets and backbones)
from hashbench.blocks import HashLayer
from hashbench.method import HashMethod, choice, create_method, flag, integer, real, register_method
from hashbench.registry import BACKBONES, DATASETS, METHODS

__all__ = ["BACKBONES", "DATASETS", "METHODS", "HashLayer", "HashMethod", "choice", "create_method", "flag", "integer",
           "real", "register_method"]
