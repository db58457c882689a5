"""The engine: the one training loop, checkpoints and the frozen-feature cache."""
