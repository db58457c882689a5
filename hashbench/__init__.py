"""hashbench: a benchmark suite for deep supervised image hashing.

Importing the package registers the built-in datasets and backbones; methods (built-in
and third-party alike) are found through the ``hashbench.methods`` entry-point group.
"""

from hashbench import data, models  # noqa: F401  (registers built-in datasets and backbones)
from hashbench.method import HashLayer, HashMethod
from hashbench.registry import BACKBONES, DATASETS, METHODS

__all__ = ["BACKBONES", "DATASETS", "METHODS", "HashLayer", "HashMethod"]
