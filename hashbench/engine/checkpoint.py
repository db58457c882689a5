"""Checkpoints: written atomically each epoch, loaded with ``weights_only=True``, and refused
when they were written under another configuration."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from hashbench.storage import atomic_write
from hashbench.validation import HashbenchError


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    with atomic_write(path, "wb") as handle:
        torch.save(state, handle)


def load_checkpoint(path: Path, fingerprint: str) -> dict[str, Any]:
    """The checkpoint's state, if it was written by a run with this config ``fingerprint``."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a torn or foreign file: torch raises many types
        raise HashbenchError(f"checkpoint {path} cannot be read ({str(err).splitlines()[0]}); "
                             "remove it or rerun with --force") from None
    if state.get("fingerprint") != fingerprint:
        raise HashbenchError(
            f"checkpoint {path} was written under another config (fingerprint {state.get('fingerprint')} "
            f"!= {fingerprint}); refusing to resume from it: remove it or rerun with --force"
        )
    return state
