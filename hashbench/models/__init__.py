"""Models: backbones (features) and the hash-center / codebook builders that methods share."""

from hashbench.models.backbones import Backbone, build_backbone

__all__ = ["Backbone", "build_backbone"]
