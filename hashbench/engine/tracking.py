"""Live training curves in TensorBoard (``--set tensorboard=true``), for watching a long run.

The runner creates a tracker for every run; without ``tensorboard`` it is a :class:`Tracker`
that does nothing, so nothing changes (no import, no folder). With it, rank 0 writes to
``<run folder>/tb/``: every named term the method's loss returns at every step
(``loss/<term>``); per epoch (``epoch/...``) the learning rate each parameter group trained
at, images per second, seconds, the mean loss terms and any validation mAP; and the final
metrics (``metrics/...``). A ``--force`` rerun moves the old ``tb/`` to ``history/`` with its
record. The record's per-epoch history stays the source the report reads; these
files are a view of the same numbers while the run trains.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hashbench.results import TB_DIR
from hashbench.validation import HashbenchError


class Tracker:
    """What the runner reports as it trains; this base class ignores all of it."""

    def step(self, step: int, losses: dict[str, float]) -> None:
        """The loss terms of one optimizer step."""

    def epoch(self, epoch: int, values: dict[str, float]) -> None:
        """One epoch's scalars (lr per group, images/s, mean loss terms, validation mAP)."""

    def final(self, step: int, metrics: dict[str, Any]) -> None:
        """The evaluated run's metrics."""

    def close(self) -> None:
        """Flush and release the writer."""


class TensorBoardTracker(Tracker):
    """Scalars through ``torch.utils.tensorboard.SummaryWriter`` into ``folder/tb``."""

    def __init__(self, folder: Path) -> None:
        self.writer = require_tensorboard()(log_dir=str(folder / TB_DIR))

    def step(self, step: int, losses: dict[str, float]) -> None:
        for name, value in losses.items():
            self.writer.add_scalar(f"loss/{name}", value, step)

    def epoch(self, epoch: int, values: dict[str, float]) -> None:
        for name, value in values.items():
            if value is not None:
                self.writer.add_scalar(f"epoch/{name}", value, epoch)

    def final(self, step: int, metrics: dict[str, Any]) -> None:
        for name, value in metrics.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool) and name != "topk":
                self.writer.add_scalar(f"metrics/{name}", value, step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def require_tensorboard() -> type:
    """``SummaryWriter``, or a one-line error saying what to install (checked before any run starts)."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise HashbenchError("tensorboard=true needs the tensorboard package: "
                             "pip install 'hashbench[tensorboard]'") from None
    return SummaryWriter


def make_tracker(enabled: bool, folder: Path, *, is_main: bool) -> Tracker:
    """A TensorBoard tracker when ``enabled`` on rank 0, else one that does nothing."""
    return TensorBoardTracker(folder) if enabled and is_main else Tracker()
