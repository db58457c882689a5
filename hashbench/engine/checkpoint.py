"""Checkpoints: written atomically each epoch, loaded with ``weights_only=True``, and refused
when they were written under another configuration or their bytes are not those written.

A checkpoint has no record to hold its digest, so it carries its own: the state is saved
into bytes, and the file holds ``{"format": 1, "sha256": <of those bytes>, "state": <the
bytes as a uint8 tensor>}``. A flipped byte anywhere in the state (a weight included) is
found on load, before any of it is used.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import Any

import torch

from hashbench.storage import atomic_write
from hashbench.validation import HashbenchError

#: The layout of a checkpoint file (a file without ``format`` is the older bare state).
CHECKPOINT_FORMAT = 1


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    data = buffer.getbuffer()
    wrapped = {"format": CHECKPOINT_FORMAT, "sha256": hashlib.sha256(data).hexdigest(),
               "state": torch.frombuffer(data, dtype=torch.uint8)}
    with atomic_write(path, "wb") as handle:
        torch.save(wrapped, handle)


def read_checkpoint(path: Path) -> dict[str, Any]:
    """The state in a checkpoint file, its digest checked (an older checkpoint, which has none,
    unchecked), whatever config wrote it."""
    how = "remove it or rerun with --force"
    try:
        content = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(content, dict):
            raise ValueError(f"a {type(content).__name__}, not a checkpoint")
        if "format" not in content:
            return content
        if content["format"] != CHECKPOINT_FORMAT:
            raise ValueError(f"format {content['format']!r} is not {CHECKPOINT_FORMAT}")
        data = content["state"].numpy()
        digest_matches = hashlib.sha256(data).hexdigest() == content["sha256"]
        if digest_matches:
            state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as err:  # a torn or foreign file: torch raises many types
        detail = (str(err).splitlines() or [""])[0] or type(err).__name__
        raise HashbenchError(f"checkpoint {path} cannot be read ({detail}); {how}") from None
    if not digest_matches:
        raise HashbenchError(f"checkpoint {path} is damaged (its sha256 differs from the one stored in it); {how}")
    return state


def load_checkpoint(path: Path, fingerprint: str) -> dict[str, Any]:
    """The checkpoint's state, if its bytes are those written and it was written by a run
    with this config ``fingerprint``."""
    state = read_checkpoint(path)
    if not isinstance(state, dict) or state.get("fingerprint") != fingerprint:
        found = state.get("fingerprint") if isinstance(state, dict) else None
        raise HashbenchError(
            f"checkpoint {path} was written under another config (fingerprint {found} "
            f"!= {fingerprint}); refusing to resume from it: remove it or rerun with --force"
        )
    return state
